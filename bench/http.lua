-- bench/http.lua: one HTTP server written on five event libraries, under
-- the same load: lepoll.loop's wrapped sockets (a task per connection,
-- l:serve), lepoll.loop's watchers (a callback per event), luv, cqueues
-- and copas (bench/http/server_*.lua). All run the same user code
-- (bench/http/work.lua): what has come on a connection, in whatever chunks
-- the library gives, answered request by request (keep-alive, pipelined).
-- Run by make bench-http, make bench and make bench-smoke (mk/bench.mk),
-- from the top of the checkout, with LUA_CPATH and LUA_PATH finding
-- build/lepoll.so and lua/:
--   lua5.4 bench/http.lua [--rounds R] [--seconds S] [--warmup W] [--conns C]
--                         [--lua LUA] [--no-pin] [--out FILE] [--smoke]
-- The load is wrk (HTTP/1.1 keep-alive, GET /, one thread, C connections);
-- each server, per round: W s of warm-up, then S s measured: requests per
-- second and the server's CPU time (utime + stime, /proc/PID/stat) per
-- request. Rounds rotate the servers' order. Before the rounds, each
-- server answers pipelined and split requests. Reported: medians over the
-- rounds (min–max), and each server's CPU per request against luv's of the
-- same round. --out FILE gets a Markdown section (make bench-http:
-- build/bench/http.md, which bench/RESULTS.md takes in); --smoke runs each
-- once, tiny, and ends with "N passed, N failed". Every process it starts
-- it ends, by its pid.
local socket = require "socket"

local HERE = arg[0]:match("^(.*)/") or "."
package.path = HERE .. "/http/?.lua;" .. HERE .. "/lib/?.lua;" .. package.path
local work = require "work"
local measure = require "measure"

local CPU_TARGET = 1.10 -- wrapped sockets against luv, CPU per request

local opt = { rounds = 5, seconds = 3, warmup = 1, conns = 100, lua = "lua5.4", pin = true }
do
	local numeric = { ["--rounds"] = "rounds", ["--seconds"] = "seconds", ["--warmup"] = "warmup",
		["--conns"] = "conns" }
	local i = 1
	while arg[i] do
		local a = arg[i]
		if numeric[a] then i = i + 1; opt[numeric[a]] = assert(tonumber(arg[i]), a .. " needs a number")
		elseif a == "--lua" or a == "--out" then i = i + 1; opt[a:sub(3)] = assert(arg[i], a)
		elseif a == "--no-pin" then opt.pin = false
		elseif a == "--smoke" then opt.smoke = true
		else error("unknown argument " .. a) end
		i = i + 1
	end
end
if opt.smoke then opt.rounds, opt.seconds, opt.warmup, opt.conns = 1, 1, 0, 4 end
local ROUNDS = math.max(1, math.floor(opt.rounds))
local SECONDS = math.max(1, math.ceil(opt.seconds)) -- wrk takes whole seconds
local WARMUP = math.max(0, math.ceil(opt.warmup))

measure.setup(opt)
local sh, summary = measure.sh, measure.summary

-- copas is packaged for Lua 5.1 and 5.2 only; it is plain Lua, so other
-- versions find it (and coxpcall) there.
local COPAS_PATH = "/usr/share/lua/5.2/?.lua;/usr/share/lua/5.1/?.lua;"

local STYLES = {
	{ key = "wrapped", name = "lepoll.loop, wrapped sockets (l:serve, a task per connection)" },
	{ key = "watcher", name = "lepoll.loop, watchers (l:io, a callback per event)" },
	{ key = "luv", name = "luv (libuv), a read callback per chunk" },
	{ key = "cqueues", name = "cqueues, a coroutine per connection" },
	{ key = "copas", name = "copas (on socket.select), a coroutine per connection",
		env = "LUA_PATH=" .. COPAS_PATH .. (os.getenv("LUA_PATH") or ";") },
}

local function server_argv(style)
	local a = { opt.lua, HERE .. "/http/server_" .. style.key .. ".lua", "--stdin" }
	if style.env then table.insert(a, 1, style.env); table.insert(a, 1, "env") end
	return a
end

local function check(style)
	local srv, why = measure.start_server(server_argv(style))
	if not srv then return nil, why end
	local ok
	if srv.port then ok, why = measure.check_http(srv.port, work.RESPONSE) end
	local stopped, swhy = measure.stop_server(srv)
	if ok and not stopped then ok, why = nil, swhy end
	return ok, why or swhy
end

-- ------------------------------------------------------------------ runs

local t_start = socket.gettime()
local results = {}
local have_wrk = select(2, sh("command -v wrk"))
for _, style in ipairs(STYLES) do
	local res = { time = {} }
	results[style.key] = res
	if not have_wrk then
		res.failed = "wrk missing (make deps-bench installs it)"
	else
		local ok, why = check(style)
		if not ok then res.failed = "check: " .. tostring(why) end
	end
end

for r = 1, ROUNDS do
	for k = 0, #STYLES - 1 do
		local style = STYLES[(r - 1 + k) % #STYLES + 1]
		local res = results[style.key]
		if not res.failed then
			local v, why = measure.http_time(server_argv(style), opt.conns, WARMUP, SECONDS)
			if v then
				v.round = r
				res.time[#res.time + 1] = v
				if not opt.smoke then
					print(("http round %d/%d %-8s %8.0f req/s  server CPU %.2f  %.1f µs/req")
						:format(r, ROUNDS, style.key, v.rps, v.server_cpu, v.cpu_us))
				end
			else
				res.failed = "run: " .. tostring(why)
			end
		end
	end
end

-- ------------------------------------------------------------- summary

local passed, failed = 0, 0
local luv = results.luv
for _, style in ipairs(STYLES) do
	local res = results[style.key]
	if res.failed then
		failed = failed + 1
		print(("bench http %s: FAILED: %s"):format(style.key, res.failed))
	else
		passed = passed + 1
		local function col(f)
			local t = {}
			for i, v in ipairs(res.time) do t[i] = f(v) end
			return t
		end
		res.rps = { summary(col(function(v) return v.rps end)) }
		res.cpu_us = { summary(col(function(v) return v.cpu_us end)) }
		res.server_cpu = summary(col(function(v) return v.server_cpu end))
		res.gen_cpu = summary(col(function(v) return v.gen_cpu or -1 end))
		if not luv.failed then
			local ratios = {}
			for i = 1, math.min(#res.time, #luv.time) do ratios[i] = res.time[i].cpu_us / luv.time[i].cpu_us end
			res.ratio = { summary(ratios) }
		end
		print(("bench http %s: ok"):format(style.key))
	end
end

local range = measure.range
local wrapped = results.wrapped
local verdict = {
	("HTTP: wrapped sockets' CPU per request ≤ %.2f× luv's"):format(CPU_TARGET),
	measure.verdict_at_most(wrapped.ratio and wrapped.ratio[1], CPU_TARGET),
}

local function report()
	local L = {}
	local function add(s) L[#L + 1] = s or "" end
	add("## 7. One HTTP server on five event libraries")
	add()
	add(("Method: the same HTTP/1.1 keep-alive server (`bench/http/`) on lepoll.loop's wrapped sockets " ..
		"(`l:serve`, a task per connection, `conn:receivesome` and `conn:send` written as blocking calls), " ..
		"on lepoll.loop's watchers (`l:io`, a callback per event, LuaSocket non-blocking), on luv (libuv, " ..
		"`read_start`), on cqueues (a coroutine per connection, `con:read(-65536)`) and on copas (Debian's " ..
		"%s, on `socket.select`, `copas.receivePartial`). Every one runs the same user code " ..
		"(`bench/http/work.lua`): the chunks that came, parsed for complete request heads, answered with " ..
		"one %d-byte response each. The load: `wrk`, one thread, %d connections, `GET /`; %d s of warm-up, " ..
		"then %d s measured per server and round; a run with a socket error or a status other than 2xx " ..
		"fails. Before the rounds each server answers pipelined and split requests. %d round%s, the " ..
		"servers' order rotating from round to round. Interpreter: `%s`.")
		:format((sh(("env LUA_PATH=%s %s -e 'print((require \"copas\")._VERSION)'"):format(
			measure.sh_quote(COPAS_PATH .. ";"), opt.lua))):gsub("\n.*", ""),
			#work.RESPONSE, opt.conns, WARMUP, SECONDS, ROUNDS, ROUNDS == 1 and "" or "s", opt.lua))
	add()
	add(("Shown: requests per second; the server's CPU time (utime + stime from `/proc/PID/stat`, read at " ..
		"the start and the end of the measured window) per request, and as CPUs busy; wrk's CPUs busy; " ..
		"and each server's CPU per request divided by luv's in the same round. Medians over the rounds " ..
		"(min–max). The machine has %s online CPUs; %s")
		:format((sh("getconf _NPROCESSORS_ONLN")),
			measure.PIN and ("the server is pinned to CPU %d and wrk to CPU %d. Where wrk's CPU is near 1.00, " ..
				"wrk is the limit, and requests per second compare the servers less than CPU per request does.")
				:format(measure.cpus[1], measure.cpus[2]) or "neither process is pinned."))
	add()
	add("| server | req/s (min–max) | server CPU µs per request (min–max) | server CPU | wrk CPU | " ..
		"CPU per request / luv's (min–max) |")
	add("|---|--:|--:|--:|--:|--:|")
	for _, style in ipairs(STYLES) do
		local res = results[style.key]
		if res.failed then
			add(("| %s | FAILED: %s | — | — | — | — |"):format(style.name, res.failed:gsub("|", "/")))
		else
			add(("| %s | %s | %s | %.2f | %s | %s |"):format(style.name, range(res.rps, "%.0f"),
				range(res.cpu_us, "%.2f"), res.server_cpu,
				res.gen_cpu >= 0 and ("%.2f"):format(res.gen_cpu) or "—",
				res.ratio and range(res.ratio, "%.3f") or "—"))
		end
	end
	add()
	add("| target | result |")
	add("|---|---|")
	add(("| %s | %s |"):format(verdict[1], verdict[2]))
	add()
	return table.concat(L, "\n")
end

if not opt.smoke then
	measure.write_report("http", report(), opt.out)
	print(("http: %s: %s"):format(verdict[1], verdict[2]))
end
measure.finish("http", socket.gettime() - t_start, passed, failed)
