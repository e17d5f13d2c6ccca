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
package.path = HERE .. "/tasks/?.lua;" .. package.path
local work = require "work"

local MSG = 64 -- bytes per echo message
local CTL_TARGET, CPU_TARGET = 0.1, 1.10

local opt = { rounds = 5, seconds = 3, warmup = 0.5, conns = 100, lua = "lua5.4", bin = "build/bench", pin = true,
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

local function sh_quote(s)
	return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The output of a shell command (stderr too), trailing space trimmed, and
-- whether it succeeded.
local function sh(cmd)
	local f = io.popen(cmd .. " 2>&1")
	local s = f and f:read("a") or ""
	local ok = f and f:close()
	return (s:gsub("%s+$", "")), ok
end

local function argv(t)
	local q = {}
	for i, a in ipairs(t) do q[i] = sh_quote(a) end
	return table.concat(q, " ")
end

-- The CPUs this process may run on, in order (Cpus_allowed_list: "0-1,4").
local function allowed_cpus()
	local cpus, f = {}, io.open("/proc/self/status")
	local list = f and f:read("a"):match("Cpus_allowed_list:%s*(%S+)") or ""
	if f then f:close() end
	for part in list:gmatch("[^,]+") do
		local a, b = part:match("^(%d+)-?(%d*)$")
		for c = tonumber(a) or 0, tonumber(b) or tonumber(a) or -1 do cpus[#cpus + 1] = c end
	end
	return cpus
end

local cpus = allowed_cpus()
local PIN = opt.pin and #cpus >= 2
local TCK = tonumber((sh("getconf CLK_TCK"))) or 100

-- A /proc/PID/stat line -> its state, its CPU seconds (utime + stime), its
-- reaped children's (cutime + cstime). The command name may hold spaces:
-- fields count from its closing ')'.
local function parse_stat(line)
	local rest = line and line:match("^.*%)%s+(.*)$")
	if not rest then return nil end
	local f = {}
	for w in rest:gmatch("%S+") do f[#f + 1] = w end
	return f[1], (tonumber(f[12]) + tonumber(f[13])) / TCK, (tonumber(f[14]) + tonumber(f[15])) / TCK
end

local function proc_stat(pid)
	local f = io.open("/proc/" .. pid .. "/stat")
	if not f then return nil end
	local line = f:read("a")
	f:close()
	return parse_stat(line)
end

local function read_file(path)
	local f = io.open(path)
	if not f then return nil end
	local s = f:read("a")
	f:close()
	return s
end

-- -> median, min, max of a non-empty list
local function summary(t)
	local s = table.move(t, 1, #t, 1, {})
	table.sort(s)
	local n = #s
	return (s[(n + 1) // 2] + s[n // 2 + 1]) / 2, s[1], s[n]
end

-- ------------------------------------------------------- system calls

local CALLS = { "epoll_ctl", "epoll_wait", "epoll_pwait", "sendto" }

-- How the server's system calls are counted: perf's syscall tracepoints,
-- else strace -c, else not at all (nil, why).
local counter, counter_why
do
	local events = {}
	for i, c in ipairs(CALLS) do events[i] = "syscalls:sys_enter_" .. c end
	local PERF_EVENTS = table.concat(events, ",")
	local out, ok = "not asked for", false
	if opt["count-with"] ~= "strace" then out, ok = sh("perf stat -x, -e " .. PERF_EVENTS .. " -- true") end
	if ok and out:match("%d+,[^,]*,syscalls:sys_enter_epoll_ctl") then
		counter = { name = "perf stat", cmd = function(pid, seconds)
			return ("perf stat -x, -e %s -p %d -- sleep %.3f"):format(PERF_EVENTS, pid, seconds)
		end, parse = function(text)
			local n = {}
			for v, c in text:gmatch("(%d+),[^,\n]*,syscalls:sys_enter_([%w_]+)") do n[c] = tonumber(v) end
			return n
		end }
	else
		counter_why = "perf cannot count syscalls:sys_enter_epoll_ctl (" .. (out:match("[^\n]*") or "") .. ")"
		local _, has_strace = sh("strace -V")
		if has_strace then
			counter = { name = "strace -c", cmd = function(pid, seconds)
				return ("timeout -s INT %.3f strace -c -e trace=%s -p %d"):format(seconds, table.concat(CALLS, ","), pid)
			end, parse = function(text)
				local n = {}
				for line in text:gmatch("[^\n]+") do
					local f = {}
					for w in line:gmatch("%S+") do f[#f + 1] = w end
					local name = f[#f]
					if #f >= 5 and tonumber(f[4]) then n[name] = tonumber(f[4]) end
				end
				-- a call never made has no row
				if n.total then
					for _, c in ipairs(CALLS) do n[c] = n[c] or 0 end
				end
				return n
			end }
		end
	end
end

-- Counts pid's system calls for `seconds`. -> { ctl=, waits=, sends= } or
-- nil, why
local function count_calls(pid, seconds)
	if not counter then return nil, counter_why end
	local text = sh(counter.cmd(pid, seconds))
	local n = counter.parse(text)
	if not n.epoll_ctl or not n.sendto then
		return nil, counter.name .. " counted nothing: " .. (text:match("[^\n]*") or "")
	end
	if n.sendto == 0 then return nil, counter.name .. ": the server sent nothing in the window" end
	return { ctl = n.epoll_ctl, waits = (n.epoll_wait or 0) + (n.epoll_pwait or 0), sends = n.sendto }
end

-- ------------------------------------------------------------- servers

local STYLES = {
	{ key = "watcher", name = "watchers (l:io, callbacks)", script = HERE .. "/tasks/server_watcher.lua" },
	{ key = "task", name = "tasks (l:spawn, l:readable)", script = HERE .. "/tasks/server_task.lua" },
}

local function server_argv(style, proto, ...)
	return { opt.lua, style.script, proto, ... }
end

local function pin_prefix(cpu)
	return PIN and ("taskset -c %d "):format(cpu) or ""
end

-- Starts a server of this process's own (the HTTP load, the checks), its
-- stdin a pipe from here: it exits when that pipe closes, so it cannot
-- outlive this process. -> { pid=, port=, p= } or nil, why
local function start_server(style, proto)
	local pidf, portf = os.tmpname(), os.tmpname()
	local cmd = ("echo $$ > %s; exec %s%s > %s"):format(sh_quote(pidf), pin_prefix(cpus[1] or 0),
		argv(server_argv(style, proto, "--stdin")), sh_quote(portf))
	local p = io.popen(cmd, "w")
	if not p then return nil, "cannot start " .. style.script end
	local srv = { p = p, files = { pidf, portf } }
	local deadline = socket.gettime() + 10
	repeat
		srv.pid = srv.pid or math.tointeger(tonumber((read_file(pidf) or ""):match("%d+")))
		srv.port = tonumber((read_file(portf) or ""):match("^(%d+)\n"))
		if srv.port then break end
		local state = srv.pid and proc_stat(srv.pid)
		if srv.pid and (not state or state == "Z") then break end
		socket.sleep(0.01)
	until socket.gettime() > deadline
	if not srv.port then
		srv.why = "the server printed no port"
	end
	return srv
end

-- Ends it: SIGTERM to its pid, SIGKILL if it lingers 2 s; then reaps it.
-- -> true, or nil, why when it had died before.
local function stop_server(srv)
	local died
	if srv.pid then
		local state = proc_stat(srv.pid)
		if not state or state == "Z" then died = "the server died during the run" end
		os.execute(("kill -TERM %d 2>/dev/null"):format(srv.pid))
		local deadline = socket.gettime() + 2
		repeat
			state = proc_stat(srv.pid)
			if not state or state == "Z" then break end
			socket.sleep(0.01)
		until socket.gettime() > deadline
		if state and state ~= "Z" then os.execute(("kill -KILL %d 2>/dev/null"):format(srv.pid)) end
	end
	srv.p:close()
	for _, f in ipairs(srv.files) do os.remove(f) end
	if srv.why or died then return nil, srv.why or died end
	return true
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

-- Two requests pipelined in one send, a third split inside a header line
-- and asking for Connection: close: three responses, then the end.
local function check_http(port)
	local c = assert(socket.tcp())
	c:settimeout(2)
	local ok, err = c:connect("127.0.0.1", port)
	if not ok then return nil, "connect: " .. tostring(err) end
	c:send("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nGET /c HTTP/1.1\r\nHo")
	socket.sleep(0.05)
	c:send("st: a\r\nConnection: close\r\n\r\n")
	local all, e, partial = c:receive("*a")
	c:close()
	all = all or partial
	if e then return nil, "http check: " .. tostring(e) end
	if all ~= work.RESPONSE:rep(3) then
		return nil, ("http check: %d bytes back, expected three responses of %d"):format(#all, #work.RESPONSE)
	end
	return true
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

-- wrk, pinned; its CPU time from the shell that waited for it.
-- -> handle, to read with wrk_result
local function start_wrk(port, seconds)
	local cmd = ("%swrk -t1 -c%d -d%ds http://127.0.0.1:%d/; echo; echo \"stat: $(cat /proc/$$/stat)\"")
		:format(pin_prefix(cpus[2] or 0), opt.conns, seconds, port)
	return assert(io.popen(cmd .. " 2>&1"))
end

local function wrk_result(p)
	local out = p:read("a")
	p:close()
	local n = tonumber(out:match("(%d+) requests in"))
	local rps = tonumber(out:match("Requests/sec:%s*([%d%.]+)"))
	local errors = out:match("Socket errors:[^\n]*")
	local non2xx = out:match("Non%-2xx or 3xx responses:[^\n]*")
	local _, _, child_cpu = parse_stat(out:match("stat: ([^\n]*)"))
	if not (n and rps and n > 0) then return nil, "wrk: " .. (out:match("[^\n]*") or "no output") end
	if errors or non2xx then return nil, "wrk: " .. (errors or non2xx) end
	return { requests = n, rps = rps, cpu = child_cpu }
end

local http = {}

function http.time(style)
	local srv, why = start_server(style, "http")
	if not srv then return nil, why end
	local res
	if srv.port then
		if HTTP_WARMUP > 0 then
			local w, wwhy = wrk_result(start_wrk(srv.port, HTTP_WARMUP))
			if not w then why = wwhy end
		end
		if not why then
			local _, cpu0 = proc_stat(srv.pid)
			local t0 = socket.gettime()
			local w, wwhy = wrk_result(start_wrk(srv.port, HTTP_SECONDS))
			local t = socket.gettime() - t0
			local _, cpu1 = proc_stat(srv.pid) -- just before it is stopped
			if w and cpu0 and cpu1 then
				res = { rps = w.rps, cpu_us = (cpu1 - cpu0) / w.requests * 1e6, server_cpu = (cpu1 - cpu0) / t,
					gen_cpu = w.cpu and w.cpu / t }
			else
				why = wwhy or "no CPU time of the server"
			end
		end
	end
	local ok, swhy = stop_server(srv)
	if not ok then return nil, swhy end
	return res, why
end

function http.count(style)
	local srv, why = start_server(style, "http")
	if not srv then return nil, why end
	local n
	if srv.port then
		if HTTP_WARMUP > 0 then
			local w, wwhy = wrk_result(start_wrk(srv.port, HTTP_WARMUP))
			if not w then why = wwhy end
		end
		if not why then
			local p = start_wrk(srv.port, math.max(HTTP_SECONDS, math.ceil(COUNT_SECONDS + 2 * MARGIN)))
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

local function range(t, fmt)
	return (fmt .. " (" .. fmt .. "–" .. fmt .. ")"):format(t[1], t[2], t[3])
end

local verdicts = {}
for _, load in ipairs(LOADS) do
	local lr = results[load.key]
	local ratio = lr.ratio
	verdicts[#verdicts + 1] = {
		("%s: task style CPU per request ≤ %.2f× watcher style"):format(load.short, CPU_TARGET),
		not ratio and "not measured" or ratio.cpu[1] <= CPU_TARGET and ("met (%.2f×)"):format(ratio.cpu[1])
			or ("missed by %.1f%% (%.2f×)"):format((ratio.cpu[1] / CPU_TARGET - 1) * 100, ratio.cpu[1]) }
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
	local text = report()
	if opt.out then
		local f = assert(io.open(opt.out, "w"))
		f:write(text)
		f:close()
		print("bench tasks: wrote " .. opt.out)
	else
		io.write(text)
	end
	for _, v in ipairs(verdicts) do print(("tasks: %s: %s"):format(v[1], v[2])) end
end
print(("bench tasks: %.1f s"):format(socket.gettime() - t_start))
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
