-- bench/lib/measure.lua: what the benchmarks that drive servers share
-- (bench/echo.lua, bench/tasks.lua, bench/http.lua): shell helpers, the
-- CPUs to pin to, CPU time from /proc/PID/stat, system calls counted by
-- perf (or strace), servers started and ended by their pid, wrk runs, and
-- the report's ranges, verdicts and last lines. Every process it starts it
-- ends, by its pid.
--   local measure = require "measure"
--   measure.setup({ pin = true, ["count-with"] = nil })   -- once, first
local socket = require "socket"

local M = {}

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

-- The CPUs; whether servers and load generators are pinned apart (the
-- server to cpus[1], its load to cpus[2]): set by M.setup.
local cpus = allowed_cpus()
local PIN = false
M.cpus = cpus
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

-- opts.pin: pin when there are two CPUs; opts["count-with"] = "strace":
-- count with strace even where perf can; opts.count = false: no counter
-- (a benchmark that counts no system calls, spared the probe).
function M.setup(opts)
	PIN = opts.pin and #cpus >= 2 or false
	M.PIN = PIN
	counter, counter_why, M.counter = nil, "no counter asked for (count = false)", nil
	if opts.count == false then return end
	local events = {}
	for i, c in ipairs(CALLS) do events[i] = "syscalls:sys_enter_" .. c end
	local PERF_EVENTS = table.concat(events, ",")
	local out, ok = "not asked for", false
	if opts["count-with"] ~= "strace" then out, ok = sh("perf stat -x, -e " .. PERF_EVENTS .. " -- true") end
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
	M.counter = counter
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

local function pin_prefix(cpu)
	return PIN and ("taskset -c %d "):format(cpu) or ""
end

-- Starts a server of this process's own (the HTTP load, the checks), its
-- stdin a pipe from here: it exits when that pipe closes, so it cannot
-- outlive this process. -> { pid=, port=, p= } or nil, why
local function start_server(server_argv)
	local pidf, portf = os.tmpname(), os.tmpname()
	local cmd = ("echo $$ > %s; exec %s%s > %s"):format(sh_quote(pidf), pin_prefix(cpus[1] or 0),
		argv(server_argv), sh_quote(portf))
	local p = io.popen(cmd, "w")
	if not p then return nil, "cannot start " .. server_argv[2] end
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

-- wrk, pinned; its CPU time from the shell that waited for it.
-- -> handle, to read with wrk_result
local function start_wrk(port, seconds, conns)
	local cmd = ("%swrk -t1 -c%d -d%ds http://127.0.0.1:%d/; echo; echo \"stat: $(cat /proc/$$/stat)\"")
		:format(pin_prefix(cpus[2] or 0), conns, seconds, port)
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

-- Two requests pipelined in one send, a third split inside a header line
-- and asking for Connection: close: three responses, then the end.
local function check_http(port, response)
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
	if all ~= response:rep(3) then
		return nil, ("http check: %d bytes back, expected three responses of %d"):format(#all, #response)
	end
	return true
end

-- HTTP load on a server of this process's own (server_argv), with wrk:
-- warm-up, then the measured window. -> { rps, cpu_us (server CPU per
-- request), server_cpu, gen_cpu (CPUs busy) } or nil, why
local function http_time(server_argv, conns, warmup, seconds)
	local srv, why = start_server(server_argv)
	if not srv then return nil, why end
	local res
	if srv.port then
		if warmup > 0 then
			local w, wwhy = wrk_result(start_wrk(srv.port, warmup, conns))
			if not w then why = wwhy end
		end
		if not why then
			local _, cpu0 = proc_stat(srv.pid)
			local t0 = socket.gettime()
			local w, wwhy = wrk_result(start_wrk(srv.port, seconds, conns))
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

-- ------------------------------------------------------------- report

-- "median (min–max)" of a summary { median, min, max }, each with fmt.
local function range(t, fmt)
	return (fmt .. " (" .. fmt .. "–" .. fmt .. ")"):format(t[1], t[2], t[3])
end

-- A ratio against a target it should reach or pass: "met (1.31×)", or
-- "missed by 12.0% (0.88×)"; "not measured" when ratio is nil.
local function verdict_at_least(ratio, target)
	if not ratio then return "not measured" end
	if ratio >= target then return ("met (%.2f×)"):format(ratio) end
	return ("missed by %.1f%% (%.2f×)"):format((1 - ratio / target) * 100, ratio)
end

-- A ratio against a target it should stay within: "met (1.04×)", or
-- "missed by 3.0% (1.13×)"; "not measured" when ratio is nil.
local function verdict_at_most(ratio, target)
	if not ratio then return "not measured" end
	if ratio <= target then return ("met (%.2f×)"):format(ratio) end
	return ("missed by %.1f%% (%.2f×)"):format((ratio / target - 1) * 100, ratio)
end

-- The Markdown section of benchmark `name`: to the file `out` when given
-- (make bench takes it into bench/RESULTS.md), else to stdout.
local function write_report(name, text, out)
	if out then
		local f = assert(io.open(out, "w"))
		f:write(text)
		f:close()
		print(("bench %s: wrote %s"):format(name, out))
	else
		io.write(text)
	end
end

-- User-space instructions valgrind's callgrind counts in one run of
-- `script --child ARGS...` under the Lua of this process, and the number
-- the run prints after "TAG=" (what it did: events, requests). Raises with
-- the run's output when it fails.
local function callgrind_count(script, tag, ...)
	local cmd = ("valgrind --tool=callgrind --callgrind-out-file=/dev/null %s %s --child %s 2>&1")
		:format(arg[-1] or "lua5.4", script, table.concat({ ... }, " "))
	local p = assert(io.popen(cmd))
	local text = p:read("a")
	local ok = p:close()
	local count, done = text:match("Collected : (%d+)"), text:match(tag .. "=(%d+)")
	if not ok or not count or not done then error(("callgrind run of %s failed:\n%s"):format(cmd, text), 0) end
	return tonumber(count), tonumber(done)
end

-- ------------------------------------------------------------ the driver

-- The command line (arg) into opt, whose fields hold the defaults: the
-- numbers --rounds, --seconds, --warmup and --conns, the strings named in
-- `strings` ({ "lua", "out" }: --lua, --out), --smoke, and the switches
-- in `switches` ({ ["--no-pin"] = { "pin", false } }: the field, its value).
-- An unknown argument is an error. -> opt
local function options(opt, strings, switches)
	local numeric = { ["--rounds"] = "rounds", ["--seconds"] = "seconds", ["--warmup"] = "warmup",
		["--conns"] = "conns" }
	local string_opt = {}
	for _, name in ipairs(strings) do string_opt["--" .. name] = name end
	switches = switches or {}
	local i = 1
	while arg[i] do
		local a = arg[i]
		if numeric[a] then i = i + 1; opt[numeric[a]] = assert(tonumber(arg[i]), a .. " needs a number")
		elseif string_opt[a] then i = i + 1; opt[string_opt[a]] = assert(arg[i], a)
		elseif switches[a] then opt[switches[a][1]] = switches[a][2]
		elseif a == "--smoke" then opt.smoke = true
		else error("unknown argument " .. a) end
		i = i + 1
	end
	return opt
end

-- `rounds` rounds in which every contender of `list` that has not failed
-- runs once (run(c) -> a result, or nil and why), in an order rotated from
-- round to round; results go to c.runs, the first failure to c.failed and
-- the contender runs no more; progress(round, c, result) after each.
local function rounds(list, n, run, progress)
	for r = 1, n do
		for k = 0, #list - 1 do
			local c = list[(k + r - 1) % #list + 1]
			if not c.failed then
				local res, why = run(c)
				if res then
					c.runs[#c.runs + 1] = res
					progress(r, c, res)
				else
					c.failed = why
				end
			end
		end
	end
end

-- The run's last lines ("N passed, N failed" is what make bench-smoke
-- reads) and its exit: status 0 when nothing failed.
local function finish(name, seconds, passed, failed)
	print(("bench %s: %.1f s"):format(name, seconds))
	print(("%d passed, %d failed"):format(passed, failed))
	os.exit(failed == 0 and 0 or 1)
end

M.sh_quote, M.sh, M.argv, M.read_file, M.summary = sh_quote, sh, argv, read_file, summary
M.TCK, M.parse_stat, M.proc_stat = TCK, parse_stat, proc_stat
M.count_calls, M.pin_prefix = count_calls, pin_prefix
M.start_server, M.stop_server, M.start_wrk, M.wrk_result = start_server, stop_server, start_wrk, wrk_result
M.check_http, M.http_time = check_http, http_time
M.range, M.verdict_at_least, M.verdict_at_most = range, verdict_at_least, verdict_at_most
M.write_report, M.finish, M.callgrind_count = write_report, finish, callgrind_count
M.options, M.rounds = options, rounds

return M
