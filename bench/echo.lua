-- bench/echo.lua: benchmark 5 (issue 5), the echo server: round trips per
-- second of the same TCP echo server written in C on epoll, in Lua on
-- lepoll (LuaSocket sockets), on luv, on cqueues and on socket.select
-- (bench/echo/). Run by make bench and make bench-smoke (mk/bench.mk),
-- from the top of the checkout, with LUA_CPATH and LUA_PATH finding
-- build/lepoll.so and the peers:
--   lua5.4 bench/echo.lua [--rounds R] [--seconds S] [--warmup W] [--conns C]
--                         [--lua LUA] [--bin DIR] [--no-pin] [--out FILE] [--smoke]
-- Each run is one process of DIR/echo-loadgen (bench/echo/loadgen.c): it
-- starts the server, loads it with C connections for W + S seconds, ends
-- it (SIGTERM, by its pid) and prints one line. In each of R rounds every
-- server runs once, in an order rotated from round to round. Reported: the
-- median over the rounds, and its ratio to the C server's median in this
-- run. --out FILE gets a Markdown section (make bench: build/bench/echo.md);
-- --smoke runs each server once, tiny, and ends with "N passed, N failed".
local HERE = arg[0]:match("^(.*)/") or "."
package.path = HERE .. "/lib/?.lua;" .. package.path
local measure = require "measure"

local MSG = 64 -- bytes per message, as the section's title says

local opt = measure.options({ rounds = 5, seconds = 2, warmup = 0.5, conns = 100, lua = "lua5.4",
	bin = "build/bench", pin = true }, { "lua", "bin", "out" }, { ["--no-pin"] = { "pin", false } })
if opt.smoke then -- seconds in all: every server once, 4 connections
	opt.rounds, opt.seconds, opt.warmup, opt.conns = 1, 0.2, 0.05, 4
end
local ROUNDS = math.max(1, math.floor(opt.rounds))
local DIR = HERE .. "/echo"
local LOADGEN = opt.bin .. "/echo-loadgen"

measure.setup({ pin = opt.pin, count = false }) -- the load generator pins; nothing is counted
local sh_quote, sh, summary = measure.sh_quote, measure.sh, measure.summary

local servers = {
	{ key = "c", name = "C (epoll)", cmd = { opt.bin .. "/echo-server" } },
	{ key = "lepoll", name = "lepoll (raw API, LuaSocket)", needs = { "lepoll", "socket" } },
	{ key = "luv", name = "luv", needs = { "luv" } },
	{ key = "cqueues", name = "cqueues (coroutine per connection)", needs = { "cqueues" } },
	{ key = "select", name = "socket.select (LuaSocket)", needs = { "socket" } },
}
for _, s in ipairs(servers) do
	s.cmd = s.cmd or { opt.lua, DIR .. "/server_" .. s.key .. ".lua" }
	s.runs = {}
	-- a peer that does not load fails here, with the reason, not as a
	-- server that never printed its port; mk/bench.mk installs them all
	for _, mod in ipairs(s.needs or {}) do
		local ok, err = pcall(require, mod)
		if not ok then s.failed = mod .. " not loadable: " .. tostring(err):gsub("\n.*", "") end
	end
end

local cpus, PIN = measure.cpus, measure.PIN
local pin_args = PIN and ("-S %d -L %d "):format(cpus[1], cpus[2]) or ""

-- One load generator run. -> { rtps=, server_cpu=, loadgen_cpu= } or nil, why
local function run(s)
	local f = io.open(LOADGEN)
	if not f then return nil, LOADGEN .. " missing (make builds it)" end
	f:close()
	local cmd = ("%s -c %d -m %d -w %g -d %g %s-- %s"):format(sh_quote(LOADGEN), opt.conns, MSG, opt.warmup,
		opt.seconds, pin_args, measure.argv(s.cmd))
	local p = assert(io.popen(cmd))
	local out = p:read("a")
	local ok, how, code = p:close()
	local r = {}
	for k, v in out:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) end
	if ok and r.rtps and r.rtps > 0 and r.errors == 0 and r.server_cpu then return r end
	local why = out:match("failed: ([^\n]*)") or ("echo-loadgen ended by %s %s"):format(how, code)
	return nil, why
end

-- ------------------------------------------------------------------ runs

local has_lepoll, lepoll = pcall(require, "lepoll")
local clock = has_lepoll and lepoll.now or os.time
local t_start = clock()
measure.rounds(servers, ROUNDS, run, function(r, s, res)
	if not opt.smoke then
		print(("echo round %d/%d %-8s %8.0f rt/s  server CPU %.2f  loadgen CPU %.2f"):format(r, ROUNDS,
			s.key, res.rtps, res.server_cpu, res.loadgen_cpu))
	end
end)

local passed, failed = 0, 0
for _, s in ipairs(servers) do
	local col = function(field)
		local t = {}
		for i, res in ipairs(s.runs) do t[i] = res[field] end
		return t
	end
	if s.failed then
		failed = failed + 1
		print(("bench echo %s: FAILED: %s"):format(s.key, s.failed))
	else
		passed = passed + 1
		for _, res in ipairs(s.runs) do res.us_per_rt = res.server_cpu / res.rtps * 1e6 end
		s.median, s.min, s.max = summary(col("rtps"))
		s.server_cpu, s.loadgen_cpu, s.us_per_rt = summary(col("server_cpu")), summary(col("loadgen_cpu")),
			summary(col("us_per_rt"))
		print(("bench echo %s: ok"):format(s.key))
	end
end

-- ---------------------------------------------------------------- report

local by = {}
for _, s in ipairs(servers) do by[s.key] = s end

-- a's median rate against b's, as a ratio that should reach target
local function verdict(a, b, target)
	return measure.verdict_at_least(a and a.median and b and b.median and a.median / b.median, target)
end

local function report()
	local L = {}
	local function add(s) L[#L + 1] = s or "" end
	local c = by.c
	add(("## 5. Echo server: round trips per second, %d connections, %d-byte messages"):format(opt.conns, MSG))
	add()
	add(("Method: one TCP echo server per contender, each its own process (`bench/echo/`), all of one design: " ..
		"a listening socket on 127.0.0.1 (ephemeral port), non-blocking accepted sockets with TCP_NODELAY, " ..
		"level-triggered readiness; on readable, read what is there and write it back (the rest of an echo " ..
		"the socket did not take is kept, and the connection watched for writable only until it is sent; " ..
		"luv and cqueues do this their own way). The lepoll server uses the raw API (`create`, `set`, " ..
		"`wait`, `iter_ready`, no `lepoll.loop`); it and the `socket.select` server share the LuaSocket echo " ..
		"step (`bench/echo/echo_conn.lua`), which reads with `receive(%d)`: LuaSocket's `receive(n)` calls " ..
		"`recv` until it has n bytes or would block, so a larger n costs a second `recv` per message. " ..
		"The load generator (`bench/echo/loadgen.c`, C on epoll, its own process) starts the server, reads " ..
		"the port it prints, and holds %d connections, each sending %d bytes (a pattern that changes every " ..
		"round trip), waiting for the same bytes back and checking them, then sending again: %g s of warm-up, " ..
		"then %g s measured; it then ends the server with SIGTERM. %d rounds; in each round every server runs " ..
		"once, in an order rotated from round to round. Shown: the median over the rounds (min–max), its " ..
		"ratio to the C server's median of this run, and the CPU the server and the load generator used " ..
		"during the measured window (medians; 1.00 is one CPU busy), and the server's CPU time per round trip " ..
		"(median of the runs' ratios), which CPU time lost to other load on the machine affects less.")
		:format(MSG, opt.conns, MSG, opt.warmup, opt.seconds, ROUNDS))
	add()
	add(("The machine has %s online CPUs, shared by the server and the load generator, so a round trip " ..
		"costs both, and where the load generator's CPU is near 1.00 it is the limit, not the server. %s")
		:format(sh("nproc"), PIN and ("The server is pinned to CPU %d and the load generator to CPU %d " ..
			"(sched_setaffinity): in trials here, pinned runs were as fast or faster than runs left to the " ..
			"scheduler, and steadier (unpinned runs at times fell to about half)."):format(cpus[1], cpus[2])
		or "Neither process is pinned (`--no-pin`, or fewer than 2 CPUs allowed)."))
	add()
	add("| server | rt/s (min–max) | × C server | server CPU | load generator CPU | server CPU µs per rt |")
	add("|---|--:|--:|--:|--:|--:|")
	for _, s in ipairs(servers) do
		if s.failed then
			add(("| %s | FAILED: %s | — | — | — | — |"):format(s.name, s.failed))
		else
			add(("| %s | %.0f (%.0f–%.0f) | %s | %.2f | %.2f | %.1f |"):format(s.name, s.median, s.min, s.max,
				c.median and ("%.2f"):format(s.median / c.median) or "—", s.server_cpu, s.loadgen_cpu, s.us_per_rt))
		end
	end
	add()
	add("| target | result |")
	add("|---|---|")
	add("| echo: lepoll ≥ luv (rt/s) | " .. verdict(by.lepoll, by.luv, 1) .. " |")
	add(("| echo: lepoll ≥ 3× socket.select (rt/s, %d connections) | %s |"):format(opt.conns,
		verdict(by.lepoll, by.select, 3)))
	add()
	if c.median and by.select.median then
		add(("Why socket.select keeps up here: every connection is busy, so each wait returns nearly all of " ..
			"them (strace, when this benchmark was written: about 100 events per `epoll_wait` or `select`), " ..
			"and select's scan of all watched sockets is shared by as many events as epoll's; and the " ..
			"kernel's loopback TCP work, the same for every server, is most of each server's CPU (perf: the " ..
			"send path alone 55–65%%). Even the C server reached %.2f× socket.select's rate in this run.")
			:format(c.median / by.select.median))
		add()
	end
	return table.concat(L, "\n")
end

if not opt.smoke then
	measure.write_report("echo", report(), opt.out)
	print("echo: lepoll ≥ luv: " .. verdict(by.lepoll, by.luv, 1))
	print("echo: lepoll ≥ 3× socket.select: " .. verdict(by.lepoll, by.select, 3))
end
measure.finish("echo", clock() - t_start, passed, failed)
