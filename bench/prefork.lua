-- bench/prefork.lua: the echo server across cores, examples/prefork_echo.lua
-- with 1, 2 and N workers (N: the online CPUs; and 2N, more workers than
-- CPUs), its listening socket shared with `exclusive` or one per worker
-- with SO_REUSEPORT, under the echo load generator of bench/echo.lua. Run
-- by make bench-prefork, make bench and make bench-smoke (mk/bench.mk),
-- from the top of the checkout, with LUA_CPATH and LUA_PATH finding
-- build/lepoll.so and lua/:
--   lua5.4 bench/prefork.lua [--rounds R] [--seconds S] [--warmup W] [--conns C]
--                            [--lua LUA] [--bin DIR] [--out FILE] [--smoke]
-- Each run is one process of DIR/echo-loadgen (bench/echo/loadgen.c): it
-- starts the master, loads the workers with C connections for W + S
-- seconds, every byte checked, ends the master (SIGTERM, which stops the
-- workers) and prints one line; the server's CPU is the master's and its
-- workers', and it also reports the whole machine's (/proc/stat). Nothing
-- is pinned: the workers are there to use every CPU. In each of R rounds
-- every configuration runs once, in an order rotated from round to round.
-- Reported: medians over the rounds (min–max), CPU time per round trip
-- (the server's and the machine's), and how the connections fell to the
-- workers (each worker says on stopping how many it accepted). --out FILE
-- gets a Markdown section (make bench-prefork: build/bench/prefork.md,
-- which bench/RESULTS.md takes in); --smoke runs 1 and 2 workers in each
-- mode once, tiny, and ends with "N passed, N failed".
local HERE = arg[0]:match("^(.*)/") or "."
package.path = HERE .. "/lib/?.lua;" .. package.path
local measure = require "measure"

local MSG = 64 -- bytes per message, as in the echo section
local EXAMPLE = "examples/prefork_echo.lua"

local opt = measure.options({ rounds = 5, seconds = 2, warmup = 0.5, conns = 100, lua = "lua5.4",
	bin = "build/bench" }, { "lua", "bin", "out" })
if opt.smoke then -- seconds in all: 1 and 2 workers in each mode once, 4 connections
	opt.rounds, opt.seconds, opt.warmup, opt.conns = 1, 0.2, 0.05, 4
end
local ROUNDS = math.max(1, math.floor(opt.rounds))
local LOADGEN = opt.bin .. "/echo-loadgen"

measure.setup({ pin = false, count = false })
local sh, summary = measure.sh, measure.summary

local NCPU = tonumber((sh("getconf _NPROCESSORS_ONLN"))) or 1
local counts = {}
do
	local seen = {}
	for _, n in ipairs(opt.smoke and { 1, 2 } or { 1, 2, NCPU, 2 * NCPU }) do
		if not seen[n] then
			seen[n] = true
			counts[#counts + 1] = n
		end
	end
	table.sort(counts)
end

local configs = {}
for _, mode in ipairs({ "exclusive", "reuseport" }) do
	for _, n in ipairs(counts) do
		local cmd = { opt.lua, EXAMPLE, "--workers", tostring(n) }
		if mode == "reuseport" then cmd[#cmd + 1] = "--reuseport" end
		configs[#configs + 1] = { mode = mode, workers = n, cmd = cmd, runs = {} }
	end
end

-- One load generator run, the server's stderr with its result.
-- -> { rtps=, server_cpu=, loadgen_cpu=, per_worker = {connections},, found_none= } or nil, why
local function run(c)
	local f = io.open(LOADGEN)
	if not f then return nil, LOADGEN .. " missing (make builds it)" end
	f:close()
	local cmd = ("%s -c %d -m %d -w %g -d %g -- %s 2>&1"):format(measure.sh_quote(LOADGEN), opt.conns, MSG,
		opt.warmup, opt.seconds, measure.argv(c.cmd))
	local p = assert(io.popen(cmd))
	local out = p:read("a")
	local ok, how, code = p:close()
	local r = { per_worker = {}, found_none = 0 }
	for k, v in out:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) end
	for n, none in out:gmatch("worker %d+: (%d+) connections, (%d+) accepts found none") do
		r.per_worker[#r.per_worker + 1] = tonumber(n)
		r.found_none = r.found_none + tonumber(none)
	end
	if ok and r.rtps and r.rtps > 0 and r.errors == 0 and r.server_cpu and r.machine_cpu and #r.per_worker == c.workers
	then
		return r
	end
	local why = out:match("failed: ([^\n]*)") or out:match("prefork_echo: ([^\n]*)") or
		("echo-loadgen ended by %s %s"):format(how, code)
	return nil, why
end

-- ------------------------------------------------------------------ runs

local loadavg = (measure.read_file("/proc/loadavg") or ""):match("^(%S+ %S+ %S+)") or "unknown"
local has_lepoll, lepoll = pcall(require, "lepoll")
local clock = has_lepoll and lepoll.now or os.time
local t_start = clock()
measure.rounds(configs, ROUNDS, run, function(r, c, res)
	if not opt.smoke then
		print(("prefork round %d/%d %-9s %d workers %8.0f rt/s  server CPU %.2f  loadgen CPU %.2f")
			:format(r, ROUNDS, c.mode, c.workers, res.rtps, res.server_cpu, res.loadgen_cpu))
	end
end)

local passed, failed = 0, 0
for _, c in ipairs(configs) do
	local key = ("%s %d"):format(c.mode, c.workers)
	if c.failed then
		failed = failed + 1
		print(("bench prefork %s: FAILED: %s"):format(key, c.failed))
	else
		passed = passed + 1
		local col = function(fn)
			local t = {}
			for i, res in ipairs(c.runs) do t[i] = fn(res) end
			return t
		end
		c.rtps = { summary(col(function(res) return res.rtps end)) }
		c.server_cpu = summary(col(function(res) return res.server_cpu end))
		c.loadgen_cpu = summary(col(function(res) return res.loadgen_cpu end))
		c.server_us = summary(col(function(res) return res.server_cpu / res.rtps * 1e6 end))
		c.machine_cpu = summary(col(function(res) return res.machine_cpu end))
		c.machine_us = summary(col(function(res) return res.machine_cpu / res.rtps * 1e6 end))
		-- the connections of each run's busiest and idlest worker; accepts that found none
		c.busiest = summary(col(function(res) return math.max(table.unpack(res.per_worker)) end))
		c.idlest = summary(col(function(res) return math.min(table.unpack(res.per_worker)) end))
		c.found_none = summary(col(function(res) return res.found_none end))
		print(("bench prefork %s: ok"):format(key))
	end
end

-- ---------------------------------------------------------------- report

local function report()
	local L = {}
	local function add(s) L[#L + 1] = s or "" end
	add(("## 10. Across cores: the prefork echo server, %d connections, %d-byte messages"):format(opt.conns, MSG))
	add()
	add(("Method: `%s` (see [doc/cores.md](../doc/cores.md)): a master process and W worker processes, each " ..
		"a `lepoll.loop` of its own (a task per connection on wrapped sockets, `receivesome` and `send`), " ..
		"either all accepting on the master's one listening socket, watched with `exclusive` (EPOLLEXCLUSIVE), " ..
		"or each on a socket of its own bound with SO_REUSEPORT. The load is the echo section's load " ..
		"generator (`bench/echo/loadgen.c`, C on epoll, one process): it starts the master, reads the port " ..
		"it prints, holds %d connections each sending %d bytes and checking every byte of the echo, %g s of " ..
		"warm-up, then %g s measured, then ends the master with SIGTERM, which stops the workers. Nothing is " ..
		"pinned. %d rounds; in each every configuration runs once, in an order rotated from round to round. " ..
		"Shown: medians over the rounds (min–max for the rate); the rate's ratio to 1 worker in the same " ..
		"mode; CPUs busy during the measured window (1.00 is one CPU) of the server (the master and its " ..
		"workers, `/proc/PID/stat`), of the load generator, and of the whole machine (`/proc/stat`: it also " ..
		"counts the interrupt time no process is charged for, where much of loopback TCP runs, and anything " ..
		"else running); CPU µs per round trip, the server's and the machine's; and how the %d connections " ..
		"fell to the workers: the busiest and the idlest worker's count, and the accepts that found no " ..
		"connection (another worker had taken it)."):format(EXAMPLE, opt.conns, MSG, opt.warmup, opt.seconds,
		ROUNDS, opt.conns))
	add()
	add("| mode | workers | rt/s (min–max) | × 1 worker | server CPU | load generator CPU | machine CPU " ..
		"| server µs per rt | machine µs per rt | connections: busiest / idlest worker | accepts that found none |")
	add("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	local one, at_ncpu = {}, {}
	for _, c in ipairs(configs) do
		if not c.failed and c.workers == 1 then one[c.mode] = c end
		if not c.failed and c.workers == NCPU then at_ncpu[c.mode] = c end
	end
	for _, c in ipairs(configs) do
		if c.failed then
			add(("| %s | %d | FAILED: %s | — | — | — | — | — | — | — | — |"):format(c.mode, c.workers, c.failed))
		else
			add(("| %s | %d | %.0f (%.0f–%.0f) | %s | %.2f | %.2f | %.2f | %.1f | %.1f | %g / %g | %g |"):format(
				c.mode, c.workers, c.rtps[1], c.rtps[2], c.rtps[3],
				one[c.mode] and ("%.2f"):format(c.rtps[1] / one[c.mode].rtps[1]) or "—", c.server_cpu,
				c.loadgen_cpu, c.machine_cpu, c.server_us, c.machine_us, c.busiest, c.idlest, c.found_none))
		end
	end
	add()
	local a, b = one.exclusive, at_ncpu.exclusive
	local measured = ""
	if a and b and NCPU > 1 then
		local function rest(c) return math.max(c.machine_cpu - c.server_cpu - c.loadgen_cpu, 0) end
		measured = ("Here, with `exclusive`: 1 worker kept %.2f CPUs busy at %.0f rt/s, the load generator %.2f, " ..
			"the machine %.2f, so %.2f went to interrupts and other work; %d workers together kept %.2f busy at " ..
			"%.2f× the rate, the load generator %.2f, the machine %.2f, the rest %.2f. "):format(a.server_cpu,
			a.rtps[1], a.loadgen_cpu, a.machine_cpu, rest(a), b.workers, b.server_cpu, b.rtps[1] / a.rtps[1],
			b.loadgen_cpu, b.machine_cpu, rest(b))
	end
	add(("The machine has %d online CPUs, shared with other work (load average %s when the run began), and " ..
		"the load generator runs on them too. %sOne worker is one Lua state, so it can keep one CPU busy at " ..
		"most; a second worker can only use what the load generator and the rest of the machine leave, and " ..
		"workers beyond the CPUs take turns. Where other work is busy, more workers also take a larger share " ..
		"of the CPUs from it (the scheduler shares them by process), and the rate rises for that reason too, " ..
		"not only from using an idle core. So this run shows the workers sharing the connections and the " ..
		"load, what a round trip costs in CPU with one worker and with several processes switching on the " ..
		"same CPUs, and, with `exclusive`, the uneven spread of connections that " ..
		"[doc/cores.md](../doc/cores.md) explains. It cannot show how the rate scales with cores, which needs " ..
		"more CPUs than workers, with the load generated elsewhere or on CPUs of its own; nor what `exclusive` " ..
		"saves, which is a wakeup of every worker per new connection: these connections are opened once " ..
		"and kept (spec/84 counts the wakeups themselves).")
		:format(NCPU, loadavg, measured))
	add()
	return table.concat(L, "\n")
end

if not opt.smoke then measure.write_report("prefork", report(), opt.out) end
measure.finish("prefork", clock() - t_start, passed, failed)
