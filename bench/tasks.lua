-- bench/tasks.lua: the same server written in two styles on lepoll.loop,
-- measured against each other: the watcher style (an I/O watcher per
-- connection, a callback per event: bench/tasks/server_watcher.lua) and
-- the task style (a task per connection waiting in l:readable and
-- l:writable: bench/tasks/server_task.lua). Both run the same user code
-- (bench/tasks/work.lua) on non-blocking LuaSocket sockets. Run by
-- make bench-tasks, make bench and make bench-smoke (mk/bench.mk), from the
-- top of the checkout, with LUA_CPATH and LUA_PATH finding build/lepoll.so
-- and lua/:
--   lua5.4 bench/tasks.lua [--rounds R] [--seconds S] [--warmup W] [--conns C]
--                          [--loads echo,http] [--lua LUA] [--bin DIR]
--                          [--no-pin] [--count-with strace] [--out FILE] [--smoke]
-- Two loads: "echo", the echo load generator of bench/echo.lua
-- (DIR/echo-loadgen: 64-byte messages, every byte checked), and "http",
-- HTTP/1.1 keep-alive requests from wrk. Each is run, per style and round:
--   - once for time: requests per second, and the server's CPU time (utime
--     + stime, /proc/PID/stat) over the measured window, per request;
--   - once for system calls: epoll_ctl, epoll_wait and sendto calls of the
--     server, counted by perf stat (or strace -c when perf cannot, or
--     with --count-with strace) over a window inside the measured one; one
--     sendto per response.
-- Rounds alternate the styles' order. Before the rounds, each server is
-- checked by a client of this script (a large echo that fills the socket
-- buffers; pipelined and split HTTP requests). Reported: medians over the
-- rounds (min–max), and the task/watcher ratios of each round's pair.
-- --out FILE gets a Markdown section (make bench-tasks: build/bench/tasks.md,
-- which bench/RESULTS.md takes in); --smoke runs each once, tiny, and ends
-- with "N passed, N failed". Every process it starts it ends, by its pid.
local socket = require "socket"

local HERE = arg[0]:match("^(.*)/") or "."
package.path = HERE .. "/tasks/?.lua;" .. HERE .. "/lib/?.lua;" .. package.path
local work = require "work"

local MSG = 64 -- bytes per echo message
local CTL_TARGET, CPU_TARGET = 0.1, 1.10

local opt = { rounds = 9, seconds = 3, warmup = 0.5, conns = 100, lua = "lua5.4", bin = "build/bench", pin = true,
	loads = "echo,http" }
do
	local numeric = { ["--rounds"] = "rounds", ["--seconds"] = "seconds", ["--warmup"] = "warmup",
		["--conns"] = "conns" }
	local i = 1
	while arg[i] do
		local a = arg[i]
		if numeric[a] then i = i + 1; opt[numeric[a]] = assert(tonumber(arg[i]), a .. " needs a number")
		elseif a == "--lua" or a == "--bin" or a == "--out" or a == "--loads" or a == "--count-with" then
			i = i + 1; opt[a:sub(3)] = assert(arg[i], a)
		elseif a == "--no-pin" then opt.pin = false
		elseif a == "--smoke" then opt.smoke = true
		else error("unknown argument " .. a) end
		i = i + 1
	end
end
if opt.smoke then -- seconds in all: each server once per load, 4 connections
	opt.rounds, opt.seconds, opt.warmup, opt.conns = 1, 0.3, 0.1, 4
end
local ROUNDS = math.max(1, math.floor(opt.rounds))
local LOADGEN = opt.bin .. "/echo-loadgen"
-- wrk takes whole seconds
local HTTP_SECONDS = math.max(1, math.ceil(opt.seconds))
local HTTP_WARMUP = opt.smoke and 0 or math.max(1, math.ceil(opt.warmup))
-- the system-call count's window: inside the measured one, away from its
-- edges by MARGIN seconds
local MARGIN = 0.3
local COUNT_SECONDS = math.max(0.3, opt.seconds - 2 * MARGIN)

local measure = require "measure"
measure.setup(opt)
local sh_quote, sh, argv, read_file, summary = measure.sh_quote, measure.sh, measure.argv, measure.read_file,
	measure.summary
local TCK = measure.TCK
local count_calls, stop_server = measure.count_calls, measure.stop_server
local start_wrk, wrk_result = measure.start_wrk, measure.wrk_result
local cpus, PIN, counter = measure.cpus, measure.PIN, measure.counter


-- ------------------------------------------------------------- servers

local STYLES = {
	{ key = "watcher", name = "watchers (l:io, callbacks)", script = HERE .. "/tasks/server_watcher.lua" },
	{ key = "task", name = "tasks (l:spawn, l:readable)", script = HERE .. "/tasks/server_task.lua" },
}

local function server_argv(style, proto, ...)
	return { opt.lua, style.script, proto, ... }
end

-- A server of this process's own (the HTTP load, the checks): it exits
-- when its stdin, a pipe from here, closes.
local function start_server(style, proto)
	return measure.start_server(server_argv(style, proto, "--stdin"))
end

-- ------------------------------------------------------------- checks

-- A client that sends `total` bytes of a pattern as fast as the server
-- takes them, reading the echo only once the server stops taking more (so
-- that the server's sends block and it waits for writable), then both at
-- once; every byte is compared. -> true or nil, why
local function check_echo(port)
	local c = assert(socket.tcp())
	c:settimeout(2)
	local ok, err = c:connect("127.0.0.1", port)
	if not ok then return nil, "connect: " .. tostring(err) end
	c:settimeout(0)
	local parts = {}
	for i = 1, 4 * 1024 * 1024 // 16 do parts[i] = ("%015d\n"):format(i) end
	local data = table.concat(parts)
	local sent, got, received = 0, {}, 0
	local reading = false
	local deadline = socket.gettime() + 10
	while received < #data do
		if socket.gettime() > deadline then
			c:close()
			return nil, ("echo check: %d of %d bytes back in 10 s"):format(received, #data)
		end
		local r, w = socket.select(reading and { c } or nil, sent < #data and { c } or nil, 0.2)
		if sent < #data and w and w[1] then
			local last, e, n = c:send(data, sent + 1, math.min(#data, sent + 65536))
			last = last or n
			if not last and e ~= "timeout" then c:close(); return nil, "echo check: send: " .. tostring(e) end
			sent = last
		elseif not reading then
			reading = true -- the server takes no more until its echo is read
		end
		if reading and r and r[1] then
			local s, e, partial = c:receive(65536)
			s = s or partial
			if e and e ~= "timeout" then c:close(); return nil, "echo check: receive: " .. tostring(e) end
			got[#got + 1] = s
			received = received + #s
		end
	end
	c:close()
	if table.concat(got) ~= data then return nil, "echo check: the echo differs from what was sent" end
	return true
end

local function check_http(port)
	return measure.check_http(port, work.RESPONSE)
end

local function check(style, proto)
	local srv, why = start_server(style, proto)
	if not srv then return nil, why end
	local ok
	if srv.port then
		ok, why = (proto == "echo" and check_echo or check_http)(srv.port)
	end
	local stopped, swhy = stop_server(srv)
	if ok and not stopped then ok, why = nil, swhy end
	return ok, why or swhy
end

-- -------------------------------------------------------------- loads

-- One echo-loadgen process; the server its child. -> its popen handle
local function start_loadgen(server, seconds)
	local cmd = ("%s -c %d -m %d -w %g -d %g %s-- %s"):format(sh_quote(LOADGEN), opt.conns, MSG, opt.warmup,
		seconds, PIN and ("-S %d -L %d "):format(cpus[1], cpus[2]) or "", argv(server))
	return assert(io.popen(cmd .. " 2>&1"))
end

local function loadgen_result(p)
	local out = p:read("a")
	local ok, how, code = p:close()
	local r = {}
	for k, v in out:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) end
	if ok and r.rtps and r.rtps > 0 and r.errors == 0 and r.server_cpu then return r end
	return nil, out:match("failed: ([^\n]*)") or ("echo-loadgen ended by %s %s: %s"):format(how, code, out)
end

local echo = {}

function echo.time(style)
	local r, why = loadgen_result(start_loadgen(server_argv(style, "echo"), opt.seconds))
	if not r then return nil, why end
	return { rps = r.rtps, cpu_us = r.server_cpu / r.rtps * 1e6, server_cpu = r.server_cpu, gen_cpu = r.loadgen_cpu }
end

-- The server writes its pid to a file once it listens; the count starts
-- MARGIN s into the load generator's measured window.
function echo.count(style)
	local pidf = os.tmpname()
	local p = start_loadgen(server_argv(style, "echo", "--pidfile", pidf), COUNT_SECONDS + 2 * MARGIN)
	local pid
	local deadline = socket.gettime() + 10
	repeat
		pid = math.tointeger(tonumber((read_file(pidf) or ""):match("%d+")))
		if not pid then socket.sleep(0.01) end
	until pid or socket.gettime() > deadline
	os.remove(pidf)
	local n, why
	if pid then
		socket.sleep(opt.warmup + MARGIN)
		n, why = count_calls(pid, COUNT_SECONDS)
	else
		why = "the server wrote no pid"
	end
	local r, lwhy = loadgen_result(p)
	if not r then return nil, lwhy end
	return n, why
end


local http = {}

function http.time(style)
	return measure.http_time(server_argv(style, "http", "--stdin"), opt.conns, HTTP_WARMUP, HTTP_SECONDS)
end

function http.count(style)
	local srv, why = start_server(style, "http")
	if not srv then return nil, why end
	local n
	if srv.port then
		if HTTP_WARMUP > 0 then
			local w, wwhy = wrk_result(start_wrk(srv.port, HTTP_WARMUP, opt.conns))
			if not w then why = wwhy end
		end
		if not why then
			local p = start_wrk(srv.port, math.max(HTTP_SECONDS, math.ceil(COUNT_SECONDS + 2 * MARGIN)), opt.conns)
			socket.sleep(MARGIN)
			n, why = count_calls(srv.pid, COUNT_SECONDS)
			local w, wwhy = wrk_result(p)
			if not w then n, why = nil, wwhy end
		end
	end
	local ok, swhy = stop_server(srv)
	if not ok then return nil, swhy end
	return n, why
end

local LOADS = {
	{ key = "echo", name = ("echo, %d connections, %d-byte messages (echo-loadgen)"):format(opt.conns, MSG),
		short = "echo", run = echo },
	{ key = "http", name = ("HTTP/1.1 keep-alive, %d connections (wrk)"):format(opt.conns), short = "HTTP",
		run = http },
}
do
	local want, keep = {}, {}
	for k in opt.loads:gmatch("[^,]+") do want[k] = true end
	for _, load in ipairs(LOADS) do
		if want[load.key] then keep[#keep + 1] = load end
		want[load.key] = nil
	end
	assert(next(want) == nil, "--loads: echo, http or both")
	LOADS = keep
end

-- ------------------------------------------------------------------ runs

local t_start = socket.gettime()
local results = {} -- results[load][style] = { runs = { {rps, cpu_us, ...} }, failed = why }
local function fail(load, style, why)
	local r = results[load.key][style.key]
	r.failed = r.failed or why
end

for _, load in ipairs(LOADS) do
	results[load.key] = {}
	for _, style in ipairs(STYLES) do
		results[load.key][style.key] = { time = {}, count = {} }
		local ok, why = check(style, load.key)
		if not ok then
			results[load.key][style.key].failed = "check: " .. tostring(why)
		end
		if load.key == "echo" and not read_file(LOADGEN) then
			results.echo[style.key].failed = LOADGEN .. " missing (make builds it)"
		end
		if load.key == "http" and not select(2, sh("command -v wrk")) then
			results.http[style.key].failed = "wrk missing (make deps-bench installs it)"
		end
	end
end

-- each round: every load timed in both styles, then counted in both; the
-- styles' order alternates from round to round
for r = 1, ROUNDS do
	local order = r % 2 == 1 and { STYLES[1], STYLES[2] } or { STYLES[2], STYLES[1] }
	for _, what in ipairs { "time", "count" } do
		for _, load in ipairs(LOADS) do
			for _, style in ipairs(order) do
				local res = results[load.key][style.key]
				if not res.failed then
					local v, why = load.run[what](style)
					if v then
						v.round = r
						res[what][#res[what] + 1] = v
						if not opt.smoke then
							if what == "time" then
								print(("tasks round %d/%d %-4s %-7s %8.0f req/s  server CPU %.2f  %.1f µs/req")
									:format(r, ROUNDS, load.key, style.key, v.rps, v.server_cpu, v.cpu_us))
							else
								print(("tasks round %d/%d %-4s %-7s epoll_ctl %.3f/req  epoll_wait %.3f/req  (%d sends)")
									:format(r, ROUNDS, load.key, style.key, v.ctl / v.sends, v.waits / v.sends, v.sends))
							end
						end
					else
						fail(load, style, ("%s run: %s"):format(what, tostring(why)))
					end
				end
			end
		end
	end
end

-- ------------------------------------------------------------- summary

local passed, failed = 0, 0
for _, load in ipairs(LOADS) do
	for _, style in ipairs(STYLES) do
		local res = results[load.key][style.key]
		if res.failed then
			failed = failed + 1
			print(("bench tasks %s %s: FAILED: %s"):format(load.key, style.key, res.failed))
		else
			passed = passed + 1
			local function col(list, f)
				local t = {}
				for i, v in ipairs(list) do t[i] = f(v) end
				return t
			end
			res.rps = { summary(col(res.time, function(v) return v.rps end)) }
			res.cpu_us = { summary(col(res.time, function(v) return v.cpu_us end)) }
			res.server_cpu = summary(col(res.time, function(v) return v.server_cpu end))
			local gen = col(res.time, function(v) return v.gen_cpu or -1 end)
			res.gen_cpu = summary(gen)
			res.ctl = { summary(col(res.count, function(v) return v.ctl / v.sends end)) }
			res.waits = { summary(col(res.count, function(v) return v.waits / v.sends end)) }
			print(("bench tasks %s %s: ok"):format(load.key, style.key))
		end
	end
	-- the ratios task/watcher of each round's pair
	local w, t = results[load.key].watcher, results[load.key].task
	if not w.failed and not t.failed then
		local cpu, rps = {}, {}
		for i = 1, math.min(#w.time, #t.time) do
			cpu[i] = t.time[i].cpu_us / w.time[i].cpu_us
			rps[i] = t.time[i].rps / w.time[i].rps
		end
		results[load.key].ratio = { cpu = { summary(cpu) }, rps = { summary(rps) } }
	end
end

-- ---------------------------------------------------------------- report

local range = measure.range

local verdicts = {}
for _, load in ipairs(LOADS) do
	local lr = results[load.key]
	local ratio = lr.ratio
	verdicts[#verdicts + 1] = {
		("%s: task style CPU per request ≤ %.2f× watcher style"):format(load.short, CPU_TARGET),
		measure.verdict_at_most(ratio and ratio.cpu[1], CPU_TARGET) }
	local ctl = not lr.task.failed and lr.task.ctl[1]
	verdicts[#verdicts + 1] = {
		("%s: task style ≤ %g epoll_ctl per request"):format(load.short, CTL_TARGET),
		not ctl and "not measured" or ctl <= CTL_TARGET and ("met (%.3f)"):format(ctl)
			or ("missed (%.3f)"):format(ctl) }
end

local function report()
	local L = {}
	local function add(s) L[#L + 1] = s or "" end
	add("## 6. Tasks against watchers: one server in two styles on `lepoll.loop`")
	add()
	add(("Method: the same server, written twice on `lepoll.loop` (`bench/tasks/`): with a watcher per " ..
		"connection (`l:io`, a callback per event, the connection watched for `out` only while a response " ..
		"is pending) and with a task per connection (`l:spawn`; `while l:readable(c) do ... end`, " ..
		"`l:writable(c)` while a send is partial); each accepts in its own style, once per connection " ..
		"(before the measured window with the echo load, at its start with wrk's). Both call " ..
		"the same user code (`bench/tasks/work.lua`) on non-blocking LuaSocket sockets: it reads what is " ..
		"there, goes on while LuaSocket's own buffer holds bytes (`dirty()`: epoll does not see it), and " ..
		"sends the response; the styles differ only in how they wait. Two loads, each a process of its own: " ..
		"the echo load generator of section 5 (%d connections, %d-byte messages, every byte checked; %g s " ..
		"of warm-up, %g s measured) and `wrk` (HTTP/1.1 keep-alive, `GET /`, one thread, %d connections, " ..
		"a %d-byte response; %d s of warm-up, then %d s measured; a run with a socket error or a status " ..
		"other than 2xx fails). Before the rounds each server passes a check: a %d MiB echo sent faster " ..
		"than it is read back (so that the server's sends block), and pipelined and split HTTP requests. " ..
		"%d round%s; in each, every load runs once per style for time, then once per style for system " ..
		"calls, the styles' order alternating from round to round.")
		:format(opt.conns, MSG, opt.warmup, opt.seconds, opt.conns, #work.RESPONSE, HTTP_WARMUP, HTTP_SECONDS,
			4, ROUNDS, ROUNDS == 1 and "" or "s"))
	add()
	add(("Shown: requests (round trips) per second; the server's CPU time (utime + stime from " ..
		"`/proc/PID/stat`, read at the start and the end of the measured window) per request, and as " ..
		"CPUs busy; the load generator's CPUs busy; and the server's `epoll_ctl` and `epoll_wait` calls " ..
		"per request, counted by `%s` over %.1f s inside the measured window of a separate run (the " ..
		"count slows the server) and divided by the responses sent in the same window (`sendto` calls: " ..
		"one per response unless a send is partial). Medians over the rounds (min–max). The ratios " ..
		"task/watcher are each round's pair, run one after the other; their median (min–max). `/proc` " ..
		"counts CPU time in ticks of %g ms, about %.1f%% of a window at one CPU busy.")
		:format(counter and counter.name or "perf stat", COUNT_SECONDS, 1000 / TCK,
			100 / TCK / opt.seconds))
	add()
	add(("The machine has %s online CPUs, shared by the server and the load generator. %s Where the " ..
		"load generator's CPU is near 1.00 it is the limit, and requests per second compare the styles " ..
		"less than CPU per request does.")
		:format((sh("getconf _NPROCESSORS_ONLN")),
			PIN and ("The server is pinned to CPU %d and the load generator to CPU %d."):format(cpus[1], cpus[2])
			or "Neither process is pinned."))
	add()
	add("| load | style | req/s (min–max) | server CPU µs per request (min–max) | server CPU | " ..
		"load generator CPU | epoll_ctl per request (min–max) | epoll_wait per request |")
	add("|---|---|--:|--:|--:|--:|--:|--:|")
	for _, load in ipairs(LOADS) do
		for _, style in ipairs(STYLES) do
			local res = results[load.key][style.key]
			if res.failed then
				add(("| %s | %s | FAILED: %s | — | — | — | — | — |"):format(load.short, style.name,
					res.failed:gsub("|", "/")))
			else
				add(("| %s | %s | %s | %s | %.2f | %s | %s | %.2f |"):format(load.short, style.name,
					range(res.rps, "%.0f"), range(res.cpu_us, "%.2f"), res.server_cpu,
					res.gen_cpu >= 0 and ("%.2f"):format(res.gen_cpu) or "—", range(res.ctl, "%.3f"), res.waits[1]))
			end
		end
	end
	add()
	add("| load | task/watcher: CPU per request (min–max) | task/watcher: req/s (min–max) |")
	add("|---|--:|--:|")
	for _, load in ipairs(LOADS) do
		local ratio = results[load.key].ratio
		if ratio then
			add(("| %s | %s | %s |"):format(load.short, range(ratio.cpu, "%.3f"), range(ratio.rps, "%.3f")))
		else
			add(("| %s | — | — |"):format(load.short))
		end
	end
	add()
	add("| target | result |")
	add("|---|---|")
	for _, v in ipairs(verdicts) do add(("| %s | %s |"):format(v[1], v[2])) end
	add()
	return table.concat(L, "\n")
end

if not opt.smoke then
	measure.write_report("tasks", report(), opt.out)
	for _, v in ipairs(verdicts) do print(("tasks: %s: %s"):format(v[1], v[2])) end
end
measure.finish("tasks", socket.gettime() - t_start, passed, failed)
