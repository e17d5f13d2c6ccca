-- bench/run.lua: lepoll's benchmarks (issue 5), run by make bench and
-- make bench-smoke (mk/bench.mk).
--   lua5.4 bench/run.lua [--rounds R] [--budget-ms MS] [--out FILE] [--smoke]
--                        [--echo FILE] [--tasks FILE] [--http FILE] [--select FILE]
--                        [--profile FILE] [--luajit FILE] [--prefork FILE] [--plot PNG]
--   luajit bench/run.lua [--rounds R] [--budget-ms MS] [--out FILE] [--smoke]
-- --echo, --tasks, --http, --select, --profile, --luajit and --prefork name
-- sections written before (bench/echo.lua, bench/tasks.lua, bench/http.lua,
-- bench/select.lua, bench/profile.lua, this file under LuaJIT,
-- bench/prefork.lua) that the report takes in. Under LuaJIT (make
-- bench-luajit) the same benchmarks run and the report is that one
-- section, the LuaJIT tables.
-- Every contender of a benchmark runs in this one process, in rounds; in
-- each round every contender runs for MS milliseconds (its loop checks the
-- clock every 16 waits), in an order rotated from round to round. Reported:
-- the median over the rounds, and its ratio to raw C's median in this run.
-- Raw C is build/bench/benchc.so (bench/benchc.c), timed in C.
local B = require "benchc"
local lepoll = require "lepoll"

local opt = { rounds = 7, budget_ms = 40, out = nil, smoke = false }
do
	local i = 1
	while arg[i] do
		local a = arg[i]
		if a == "--smoke" then opt.smoke = true
		elseif a == "--rounds" then i = i + 1; opt.rounds = assert(tonumber(arg[i]), "--rounds N")
		elseif a == "--budget-ms" then i = i + 1; opt.budget_ms = assert(tonumber(arg[i]), "--budget-ms MS")
		elseif a == "--out" then i = i + 1; opt.out = arg[i]
		elseif a == "--echo" then i = i + 1; opt.echo = arg[i]
		elseif a == "--tasks" then i = i + 1; opt.tasks = arg[i]
		elseif a == "--http" then i = i + 1; opt.http = arg[i]
		elseif a == "--prefork" then i = i + 1; opt.prefork = arg[i]
		elseif a == "--select" then i = i + 1; opt.select = arg[i]
		elseif a == "--plot" then i = i + 1; opt.plot = arg[i]
		elseif a == "--profile" then i = i + 1; opt.profile = arg[i]
		elseif a == "--luajit" then i = i + 1; opt.luajit = arg[i]
		else error("unknown argument " .. a) end
		i = i + 1
	end
end
-- LuaJIT runs this file too (make bench-luajit): its numbers are doubles,
-- with no integer division and no math.maxinteger.
local JIT = rawget(_G, "jit")
local function idiv(a, b) return math.floor(a / b) end
local SMOKE = opt.smoke
local ROUNDS = SMOKE and 1 or math.max(1, math.floor(opt.rounds))
local BUDGET = math.floor((SMOKE and 2 or opt.budget_ms) * 1e6) -- ns per contender per round
local NOLIMIT = math.maxinteger or 2 ^ 53
local FLOOR = "floor: wait(0) + a Lua loop of callbacks"
local READY_INTO = "lepoll ready_into + a Lua loop of callbacks"
local READY_INTO_C = "lepoll ready_into, C path (tables with a metatable)"

local NOFILE = B.raise_nofile()
local CPU = B.pin_cpu()
local IN = lepoll.IN
local now = B.now_ns
-- Under LuaJIT, ready_into is a Lua function that reads the ready buffer
-- through the FFI (src/binding/ready.c) and leaves tables with a metatable
-- to the C function: both paths are measured.
local FFI_PATH
do
	local probe = lepoll.create(1, 1)
	FFI_PATH = debug.getinfo(probe.ready_into, "S").what == "Lua"
	probe:close()
end

-- The peers: each may be missing; then it is shown as unavailable.
local peers = {}
for _, name in ipairs { "luv", "cqueues", "socket" } do
	local ok, mod = pcall(require, name)
	peers[name] = ok and mod or nil
	if not ok then io.stderr:write("bench: ", name, " unavailable under ", _VERSION, ": ", tostring(mod), "\n") end
end
local uv, cqueues, socket = peers.luv, peers.cqueues, peers.socket

local function median(t)
	local s = {}
	for i = 1, #t do s[i] = t[i] end
	table.sort(s)
	local n = #s
	if n == 0 then return nil end
	if n % 2 == 1 then return s[(n + 1) / 2] end
	return (s[n / 2] + s[n / 2 + 1]) / 2
end

-- ---------------------------------------------------------------- fixtures

-- n loopback TCP pairs made with LuaSocket; the first `ready` accepted ends
-- get one unread byte. socket.select needs descriptors below FD_SETSIZE
-- (1024), so these are made first, while descriptor numbers are low.
local function tcp_pairs(n, ready)
	local server = assert(socket.bind("127.0.0.1", 0))
	local host, port = server:getsockname()
	local accepted, clients = {}, {}
	for i = 1, n do
		local c = assert(socket.tcp())
		assert(c:connect(host, port))
		local a = assert(server:accept())
		if i <= ready then assert(c:send("x")) end
		accepted[i], clients[i] = a, c
	end
	server:close()
	-- wait until the bytes have arrived
	local deadline = now() + 2e9
	repeat
		local r = socket.select(accepted, nil, 0)
	until #r >= ready or now() > deadline
	return { recvt = accepted, clients = clients }
end

local select_fx = {}
local SELECT_MAX = 256 -- the largest set socket.select is asked to watch here
if socket then
	-- the dispatch and memory sizes, then the scaling ones: 336 pairs, 672
	-- descriptors, all below 1024
	select_fx.dispatch = {}
	select_fx.scaling = {}
	for _, n in ipairs(SMOKE and { 8 } or { 64 }) do select_fx.dispatch[n] = tcp_pairs(n, n) end
	for _, n in ipairs(SMOKE and { 4, 16 } or { 16, SELECT_MAX }) do select_fx.scaling[n] = tcp_pairs(n, 1) end
end

-- ------------------------------------------------------------- contenders
-- A contender: make(fds, maxev, fx) -> { run = function(budget, maxwaits)
-- -> elapsed_ns, waits, events end, close = function() end } or nil, why.

local contenders = {}

-- A Lua contender's instance: step() makes 16 waits (or the peer's
-- equivalent) and their dispatch and returns the events it saw; run
-- steps until the budget is spent or maxwaits reached.
local function lua_instance(step, close)
	return {
		run = function(budget, maxwaits)
			local t0, waits, events = now(), 0, 0
			local t
			repeat
				events = events + step()
				waits = waits + 16
				t = now()
			until t - t0 >= budget or waits >= maxwaits
			return t - t0, waits, events
		end,
		close = close,
	}
end

-- The trivial callback the Lua contenders dispatch to, and take(), the
-- number of calls since the last take().
local function counter()
	local n = 0
	return function() n = n + 1 end, function()
		local k = n
		n = 0
		return k
	end
end

-- A new lepoll set with fds watched for IN, and its close.
local function watching(fds, maxev)
	local ep = lepoll.create(NOFILE, maxev)
	for i = 1, #fds do ep:set(fds[i], IN) end
	return ep, function() ep:close() end
end

contenders[#contenders + 1] = { name = "raw C (epoll_wait)", c = true, make = function(fds, maxev)
	return {
		run = function(budget)
			return B.raw_wait(fds, maxev, budget)
		end,
		close = function() end,
	}
end }

contenders[#contenders + 1] = { name = "lepoll iter_ready", make = function(fds, maxev)
	local ep, close = watching(fds, maxev)
	local cb, take = counter()
	return lua_instance(function()
		for _ = 1, 16 do
			ep:wait(0)
			ep:iter_ready(cb)
		end
		return take()
	end, close)
end }

-- A reference, not a binding: the same wait(0), then a plain Lua loop that
-- calls the callback as often as one wait reports events, with arguments
-- ready-made. No binding can dispatch for less than the interpreter's own
-- Lua-to-Lua call, so this is the floor under every Lua contender.
contenders[#contenders + 1] = { name = FLOOR, make = function(fds, maxev)
	local ep, close = watching(fds, maxev)
	ep:wait(0)
	local k = ep:fold_ready(0, function(acc) return acc + 1 end)
	local fd = fds[1]
	local cb, take = counter()
	return lua_instance(function()
		for _ = 1, 16 do
			ep:wait(0)
			for _ = 1, k do cb(fd, IN) end
		end
		return take()
	end, close)
end }

contenders[#contenders + 1] = { name = "lepoll fold_ready", make = function(fds, maxev)
	local ep, close = watching(fds, maxev)
	local function cb(acc, _fd, _flags) return acc + 1 end
	return lua_instance(function()
		local n = 0
		for _ = 1, 16 do
			ep:wait(0)
			n = ep:fold_ready(n, cb)
		end
		return n
	end, close)
end }

-- The ready set copied into two tables (made by buffer()), then the same
-- plain Lua loop of callbacks as the floor's, over the copy.
local function ready_into_contender(name, buffer)
	return { name = name, make = function(fds, maxev)
		local ep, close = watching(fds, maxev)
		local rfds, rflags = buffer(), buffer()
		local cb, take = counter()
		return lua_instance(function()
			for _ = 1, 16 do
				ep:wait(0)
				for i = 1, ep:ready_into(rfds, rflags) do cb(rfds[i], rflags[i]) end
			end
			return take()
		end, close)
	end }
end
contenders[#contenders + 1] = ready_into_contender(READY_INTO, function() return {} end)
if FFI_PATH then
	contenders[#contenders + 1] = ready_into_contender(READY_INTO_C, function() return setmetatable({}, {}) end)
end

contenders[#contenders + 1] = { name = "luv poll + run(\"nowait\")", cap = true, make = function(fds)
	if not uv then return nil, "luv not loadable" end
	local cb, take = counter()
	local handles = {}
	for i = 1, #fds do
		local h = assert(uv.new_poll(fds[i]))
		h:start("r", cb)
		handles[i] = h
	end
	local run = uv.run
	return lua_instance(function()
		for _ = 1, 16 do run("nowait") end
		return take()
	end, function()
		for i = 1, #handles do handles[i]:stop(); handles[i]:close() end
		uv.run("nowait")
	end)
end }

-- cqueues takes at most 32 events from the kernel per step (its kpoll
-- buffer), so a step dispatches at most 32 ready coroutines.
contenders[#contenders + 1] = { name = "cqueues (coroutine per fd)", cap = 32, make = function(fds)
	if not cqueues then return nil, "cqueues not loadable" end
	local cq = cqueues.new()
	local cb, take = counter()
	local poll = cqueues.poll
	for i = 1, #fds do
		local fd = fds[i]
		local o = { pollfd = function() return fd end, events = function() return "r" end }
		cq:wrap(function()
			while true do
				poll(o)
				cb()
			end
		end)
	end
	return lua_instance(function()
		for _ = 1, 16 do assert(cq:step(0)) end
		return take()
	end, function() cq = nil; collectgarbage() end)
end }

contenders[#contenders + 1] = { name = "socket.select (TCP sockets)", make = function(fds, _maxev, fx)
	if not socket then return nil, "socket not loadable" end
	if not fx then
		return nil, #fds > 1023 and "n/a: FD_SETSIZE 1024" or "n/a: no descriptors below FD_SETSIZE left"
	end
	local recvt, sel = fx.recvt, socket.select
	local cb, take = counter()
	return lua_instance(function()
		for _ = 1, 16 do
			local r = sel(recvt, nil, 0)
			for i = 1, #r do cb(r[i]) end
		end
		return take()
	end, function() end)
end }

-- Runs every contender on one fixture: rounds, interleaved, rotated.
-- per(elapsed, waits, events) gives the reported number; expect(waits,
-- events) checks the events seen. -> { [name] = {median=, min=, max=} or {na=why} }
local function compare(fds, maxev, fx, per, expect)
	local live, out = {}, {}
	for _, c in ipairs(contenders) do
		local inst, why = c.make(fds, maxev, fx)
		if inst then
			live[#live + 1] = { c = c, inst = inst, samples = {} }
		else
			out[c.name] = { na = why }
		end
	end
	local ok, err = pcall(function()
		for _, l in ipairs(live) do -- warm-up, and the events check
			local _, waits, events = l.inst.run(idiv(BUDGET, 4), NOLIMIT)
			local good, why = expect(waits, events, l.c.cap)
			if not good then error(l.c.name .. ": " .. why, 0) end
		end
		for r = 1, ROUNDS do
			for k = 0, #live - 1 do
				local l = live[(k + r - 1) % #live + 1]
				local elapsed, waits, events = l.inst.run(BUDGET, NOLIMIT)
				local good, why = expect(waits, events, l.c.cap)
				if not good then error(l.c.name .. ": " .. why, 0) end
				l.samples[#l.samples + 1] = per(elapsed, waits, events)
				l.epw = events / waits
			end
		end
	end)
	for _, l in ipairs(live) do l.inst.close() end
	if not ok then error(err, 0) end
	for _, l in ipairs(live) do
		table.sort(l.samples)
		out[l.c.name] = { median = median(l.samples), min = l.samples[1], max = l.samples[#l.samples], epw = l.epw }
	end
	return out
end

-- ------------------------------------------------------------- benchmarks

local results = {}

local function bench_dispatch()
	local sizes = SMOKE and { 8 } or { 64, 1024 }
	results.dispatch = { sizes = sizes }
	for _, n in ipairs(sizes) do
		local r, w = B.pipes(n)
		local fx = select_fx.dispatch and select_fx.dispatch[n]
		local ok, res = pcall(compare, r, n, fx,
			function(elapsed, _, events) return elapsed / events end,
			function(waits, events, cap)
				-- cqueues resumes a coroutine one step after its poll: one step's worth more or less
				-- peers batch their own way (cqueues: at most 32 per step;
				-- libuv: up to 48 epoll_waits per run("nowait") while the
				-- event buffer fills): only lepoll, raw C and select are exact
				if cap then
					if events < waits then return false, ("%d events in %d waits"):format(events, waits) end
				elseif math.abs(events - waits * n) > n then
					return false, ("%d events in %d waits, expected %d each"):format(events, waits, n)
				end
				return true
			end)
		B.close(r); B.close(w)
		if not ok then error(res, 0) end
		results.dispatch[n] = res
		print(("dispatch N=%d done"):format(n))
	end
end

local function bench_scaling()
	local sizes = SMOKE and { 4, 16 } or { 16, 256, 4096, 16384 }
	results.scaling = { sizes = sizes }
	for _, n in ipairs(sizes) do
		local fds = B.eventfds(n, 1)
		local fx = select_fx.scaling and select_fx.scaling[n]
		local ok, res = pcall(compare, fds, 64, fx,
			function(elapsed, waits) return elapsed / waits end,
			function(waits, events)
				if math.abs(events - waits) > 1 then
					return false, ("%d events in %d waits, expected 1 each"):format(events, waits)
				end
				return true
			end)
		B.close(fds)
		if not ok then error(res, 0) end
		results.scaling[n] = res
		print(("scaling N=%d done"):format(n))
	end
end

-- Churn: ADD, MOD (same flags) and DEL of n descriptors, phase by phase.
local function bench_churn()
	local n = SMOKE and 8 or 256
	local fds = B.eventfds(n, 0)
	local function lepoll_churn(flags)
		return function(budget)
			local ep = lepoll.create(NOFILE, 64)
			local ta, tm, td, ops = 0, 0, 0, 0
			local start = now()
			local t3
			repeat
				local t0 = now()
				for i = 1, n do ep:set(fds[i], flags) end
				local t1 = now()
				for i = 1, n do ep:set(fds[i], flags) end
				local t2 = now()
				for i = 1, n do ep:remove(fds[i]) end
				t3 = now()
				ta, tm, td, ops = ta + (t1 - t0), tm + (t2 - t1), td + (t3 - t2), ops + n
			until t3 - start >= budget
			ep:close()
			return ta, tm, td, ops
		end
	end
	local cs = {
		{ name = "raw C (epoll_ctl)", run = function(budget) return B.raw_churn(fds, budget) end },
		{ name = "lepoll set/remove (flags lepoll.IN)", run = lepoll_churn(IN) },
		{ name = "lepoll set/remove (flags \"in\")", run = lepoll_churn("in") },
	}
	for _, c in ipairs(cs) do c.add, c.mod, c.del = {}, {}, {}; c.run(idiv(BUDGET, 4)) end
	for r = 1, ROUNDS do
		for k = 0, #cs - 1 do
			local c = cs[(k + r - 1) % #cs + 1]
			local ta, tm, td, ops = c.run(BUDGET)
			assert(ops > 0, c.name .. ": no operations")
			c.add[#c.add + 1], c.mod[#c.mod + 1], c.del[#c.del + 1] = ta / ops, tm / ops, td / ops
		end
	end
	B.close(fds)
	results.churn = { n = n, list = {} }
	for _, c in ipairs(cs) do
		results.churn.list[#results.churn.list + 1] =
			{ name = c.name, add = median(c.add), mod = median(c.mod), del = median(c.del) }
	end
	print("churn done")
end

-- Memory: Lua heap growth per wait+dispatch, the collector stopped, after
-- a warm-up; N = 64 ready (8 when smoke).
local function bench_memory()
	local n = SMOKE and 8 or 64
	local waits = SMOKE and 160 or 4000
	local r, w = B.pipes(n)
	local fx = select_fx.dispatch and select_fx.dispatch[n]
	results.memory = { n = n, waits = waits, list = {} }
	for _, c in ipairs(contenders) do
		local row = { name = c.name }
		if c.c then
			row.na = "C: no Lua heap"
		else
			local inst, why = c.make(r, n, fx)
			if not inst then
				row.na = why
			else
				inst.run(NOLIMIT, waits) -- warm-up
				collectgarbage("collect")
				collectgarbage("stop")
				local before = collectgarbage("count")
				local _, done, events = inst.run(NOLIMIT, waits)
				local after = collectgarbage("count")
				collectgarbage("restart")
				inst.close()
				assert(events >= done and (c.cap or math.abs(events - done * n) <= n),
					("%s: %d events in %d waits, expected %d each"):format(c.name, events, done, n))
				row.bytes_per_event = (after - before) * 1024 / events
				row.bytes = (after - before) * 1024 / done
			end
		end
		results.memory.list[#results.memory.list + 1] = row
	end
	B.close(r); B.close(w)
	print("memory done")
end

local benches = {
	{ "dispatch", bench_dispatch },
	{ "scaling", bench_scaling },
	{ "churn", bench_churn },
	{ "memory", bench_memory },
}
local passed, failed = 0, 0
local t_start = now()
for _, b in ipairs(benches) do
	local ok, err = xpcall(b[2], debug.traceback)
	if ok then
		passed = passed + 1
		print(("bench %s: ok"):format(b[1]))
	else
		failed = failed + 1
		print(("bench %s: FAILED: %s"):format(b[1], err))
	end
end

-- ---------------------------------------------------------------- report

local function sh(cmd)
	local f = io.popen(cmd .. " 2>/dev/null")
	if not f then return "?" end
	local s = f:read("a") or ""
	f:close()
	s = s:gsub("%s+$", "")
	return s ~= "" and s or "?"
end

local function fmt(x)
	if x == nil then return "—" end
	if x >= 100 then return ("%.0f"):format(x) end
	return ("%.1f"):format(x)
end

local RAW = "raw C (epoll_wait)"

local function table_for(section, unit)
	local sizes = section.sizes
	local L = {}
	local head, sep = { "contender" }, { "---" }
	for _, n in ipairs(sizes) do
		head[#head + 1] = ("N=%d %s (min–max)"):format(n, unit)
		head[#head + 1] = "× raw C"
		sep[#sep + 1] = "--:"
		sep[#sep + 1] = "--:"
	end
	L[#L + 1] = "| " .. table.concat(head, " | ") .. " |"
	L[#L + 1] = "|" .. table.concat(sep, "|") .. "|"
	for _, c in ipairs(contenders) do
		local row = { c.name }
		for _, n in ipairs(sizes) do
			local e, raw = section[n] and section[n][c.name], section[n] and section[n][RAW]
			if e == nil then
				row[#row + 1], row[#row + 1] = "—", "—"
			elseif e.na then
				row[#row + 1], row[#row + 1] = e.na, "—"
			else
				row[#row + 1] = ("%s (%s–%s)"):format(fmt(e.median), fmt(e.min), fmt(e.max))
				row[#row + 1] = raw and raw.median and ("%.2f"):format(e.median / raw.median) or "—"
			end
		end
		L[#L + 1] = "| " .. table.concat(row, " | ") .. " |"
	end
	return table.concat(L, "\n")
end

local function get(section, n, name)
	local e = results[section] and results[section][n] and results[section][n][name]
	return e and e.median
end

local function verdict(value, limit, ge)
	if value == nil then return "not measured" end
	local met = ge and value >= limit or (not ge and value <= limit)
	if met then return ("met (%.3f)"):format(value) end
	if ge then return ("missed: %.3f, %.1f%% below %.2f"):format(value, (1 - value / limit) * 100, limit) end
	return ("missed: %.3f, %.1f%% over %.2f"):format(value, (value / limit - 1) * 100, limit)
end

local function method()
	return ("Method: every contender runs in the one %s process, %s, in %d rounds; in each round each contender " ..
		"runs for %d ms (its loop reads CLOCK_MONOTONIC every 16 waits), in an order rotated from round to " ..
		"round, after one warm-up run. Shown: the median over the rounds (min–max in brackets) and the " ..
		"median's ratio to raw C's median of this run. Raw C is `bench/benchc.c`, a bench-only Lua module: " ..
		"`epoll_wait(0)` and a non-inlined handler per event, timed in C. Every run checks the number " ..
		"of events its callbacks saw."):format(JIT and "luajit" or "lua5.4",
		CPU and ("bound to CPU " .. CPU) or "not bound to a CPU", ROUNDS, idiv(BUDGET, 1000000))
end

-- Benchmarks 1 to 4, each under number:format(its number) and its title:
-- the Lua 5.4 report's sections ("## %d. "), or the LuaJIT section's.
local function add_sections(add, number)
	local function head(i, title) return number:format(i) .. title end
	if results.dispatch then
		add(head(1, "Dispatch: ns per event"))
		add()
		add("N level-triggered pipes, one unread byte each, all ready; `wait(0)` (or the peer's equivalent) " ..
			"then a trivial callback per event. max_ready_events = N for lepoll and raw C. luv: one poll " ..
			"handle per pipe, `uv.run(\"nowait\")`. cqueues: one coroutine per pipe looping on " ..
			"`cqueues.poll`, `cq:step(0)`. socket.select: N loopback TCP sockets with a byte each " ..
			"(LuaSocket), the callback per returned socket; at N=1024 it cannot run (FD_SETSIZE is 1024 " ..
			"and descriptors 0–2 are taken).")
		add()
		add(table_for(results.dispatch, "ns/event"))
		add()
		for _, n in ipairs(results.dispatch.sizes) do
			local parts = {}
			for _, c in ipairs(contenders) do
				local e = results.dispatch[n] and results.dispatch[n][c.name]
				if e and e.epw then parts[#parts + 1] = ("%s %.1f"):format(c.name, e.epw) end
			end
			add(("Events per wait (or step) at N=%d, last round: %s."):format(n, table.concat(parts, "; ")))
			add()
		end
		add("cqueues takes at most 32 events per step from the kernel; libuv's `run(\"nowait\")` calls " ..
			"`epoll_wait` again while it fills its 1024-event buffer (up to 48 times), so at N=1024 one run " ..
			"dispatches many rounds of events. The figure is per event either way.")
		add()
	end
	if results.scaling then
		add(head(2, "Scaling: ns per wait, one descriptor ready among N"))
		add()
		add("N eventfds watched for `in`, one readable; a wait plus its one callback. socket.select watches " ..
			"TCP sockets and is only run up to N=" .. SELECT_MAX .. " (it cannot go past FD_SETSIZE 1024).")
		add()
		add(table_for(results.scaling, "ns/wait"))
		add()
	end
	if results.churn then
		add(head(3, ("Churn: ns per operation (%d eventfds per phase)"):format(results.churn.n)))
		add()
		add("| contender | set (ADD) | × raw | set (MOD) | × raw | remove (DEL) | × raw |")
		add("|---|--:|--:|--:|--:|--:|--:|")
		local raw = results.churn.list[1]
		for _, c in ipairs(results.churn.list) do
			add(("| %s | %s | %.2f | %s | %.2f | %s | %.2f |"):format(c.name, fmt(c.add), c.add / raw.add,
				fmt(c.mod), c.mod / raw.mod, fmt(c.del), c.del / raw.del))
		end
		add()
	end
	if results.memory then
		add(head(4, ("Memory: Lua heap bytes per wait + dispatch (N=%d ready, %d waits, collector stopped)")
			:format(results.memory.n, results.memory.waits)))
		add()
		add("`collectgarbage(\"count\")` before and after, after a warm-up of as many waits. " ..
			"Memory that libuv or cqueues take with malloc is not counted.")
		add()
		add("| contender | bytes per wait |")
		add("|---|--:|")
		for _, m in ipairs(results.memory.list) do
			add(("| %s | %s |"):format(m.name, m.na or ("%.1f"):format(m.bytes)))
		end
		add()
	end
end

-- A target row per lepoll contender of the memory benchmark.
local function add_memory_targets(add, prefix)
	if not results.memory then return end
	for _, m in ipairs(results.memory.list) do
		if m.name:match("^lepoll") then
			add(("| %smemory: %s 0 bytes per wait | %s |"):format(prefix, m.name,
				m.bytes == 0 and "met (0)" or ("missed: %.1f bytes"):format(m.bytes or -1)))
		end
	end
end

local function report()
	local L = {}
	local function add(s) L[#L + 1] = s or "" end
	local cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-"):gsub("^%s+", "")
	add("# lepoll benchmarks")
	add()
	add("Generated by `make bench` (bench/run.lua, mk/bench.mk) on " .. os.date("!%Y-%m-%d %H:%M UTC") .. ".")
	add("Do not edit: rerun `make bench`.")
	add()
	add("## Machine")
	add()
	add("- CPU: " .. cpu .. ", " .. sh("getconf _NPROCESSORS_ONLN") .. " online CPUs")
	add("- kernel: " .. sh("uname -srm"))
	add("- Lua: " .. _VERSION .. " (" .. sh("lua5.4 -v") .. ")")
	add("- compiler: " .. sh("cc --version | head -1") .. ", lepoll and benchc built with " ..
		"`-O2` (the Makefile's CFLAGS)")
	local pkgs = sh("dpkg-query -W -f='${Package} ${Version}, ' lua5.4 lua-luv libuv1 lua-cqueues lua-socket")
	add("- packages: " .. pkgs:gsub(",%s*$", ""))
	local dirty = sh("git status --porcelain -- src lua")
	add("- lepoll: " .. sh("git rev-parse --short HEAD") ..
		((dirty ~= "" and dirty ~= "?") and " (src/ or lua/ modified)" or ""))
	add()
	add(method())
	add()
	add_sections(add, "## %d. ")
	add("## Targets")
	add()
	local it, fo, lu = get("dispatch", 64, "lepoll iter_ready"), get("dispatch", 64, "lepoll fold_ready"),
		get("dispatch", 64, "luv poll + run(\"nowait\")")
	local raw = get("dispatch", 64, RAW)
	add("| target | result |")
	add("|---|---|")
	add("| dispatch N=64: iter_ready ≤ 1.20× raw C | " .. verdict(it and raw and it / raw, 1.20) .. " |")
	add("| dispatch N=64: fold_ready ≤ 1.30× raw C | " .. verdict(fo and raw and fo / raw, 1.30) .. " |")
	add("| dispatch N=64: luv ≥ 1.8× lepoll iter_ready | " .. verdict(lu and it and lu / it, 1.8, true) .. " |")
	local s16, sbig = get("scaling", 16, "lepoll iter_ready"), get("scaling", 16384, "lepoll iter_ready")
	add("| scaling: lepoll at 16384 ≤ 1.2× at 16 | " .. verdict(s16 and sbig and sbig / s16, 1.2) .. " |")
	if results.churn then
		local rc = results.churn.list[1]
		for i = 2, #results.churn.list do
			local c = results.churn.list[i]
			for _, op in ipairs { "add", "mod", "del" } do
				add(("| churn: %s %s ≤ 1.5× raw | %s |"):format(c.name, op:upper(), verdict(c[op] / rc[op], 1.5)))
			end
		end
	end
	local ri = get("dispatch", 64, READY_INTO)
	add("| dispatch N=64: ready_into + a Lua loop of callbacks ≤ iter_ready | " ..
		verdict(ri and it and ri / it, 1.0) .. " |")
	add_memory_targets(add, "")
	add("| echo server | in section 5 |")
	if opt.tasks then add("| tasks against watchers | in section 6 |") end
	if opt.http then add("| one HTTP server on five event libraries | in section 7 |") end
	if opt.select then add("| lepoll.select against socket.select | in section 8 |") end
	if opt.luajit then add("| LuaJIT: ready_into + a Lua loop ≤ 1.15× raw C; memory | in section 9 |") end
	if opt.prefork then add("| the echo server across cores | in section 10 |") end
	add()
	local fl = get("dispatch", 64, FLOOR)
	if it and fo and raw and fl and lu then
		add("### Where the dispatch time goes")
		add()
		local over = fl / raw > 1.20
		add(("At N=64 the floor, a plain Lua loop that calls the same callback with ready-made arguments after " ..
			"the same `wait(0)`, costs %.2f× raw C per event%s. iter_ready costs %.2f× the floor and " ..
			"fold_ready %.2f× (%s). luv's cost per event is %.2f× lepoll's; its overhead over raw C is %.0f ns " ..
			"per event against lepoll's %.0f."):format(fl / raw,
			over and ": one Lua call in the interpreter already costs more than the 20% the iter_ready target " ..
				"allows over the kernel's own work, so no Lua 5.4 binding can meet it here" or "",
			it / fl, fo / fl,
			(it - fl) / raw < 0.05 and "within 5% of raw C of the floor: what is left over is the " ..
				"interpreter's call, not the binding" or ("the binding adds %.0f ns per event"):format(it - fl),
			lu / it, lu - raw, it - raw))
		add()
		if ri then
			add(("`ready_into` and the same loop over its copy cost %.2f× iter_ready (%.2f× raw C): the loop " ..
				"makes the floor's calls, and the copy comes on top, two `lua_rawseti` per event (the C API's " ..
				"cheapest store into a table) and two reads back in Lua. Lua 5.4 calls from C into Lua as " ..
				"cheaply as from Lua, so handing the events over as data cannot cost less than calling back " ..
				"with them; it pays under LuaJIT (section 9), whose JIT compiles a loop in Lua but never a " ..
				"call from C, and where the events are wanted as data (the loop's dispatch, `lepoll.select`)."):format(
				ri / it, ri / raw))
			add()
		end
		add("The instruction counts below agree, and do not depend on the machine's noise: per event, iter_ready " ..
			"executes no more user-space instructions than the plain Lua loop does, and luv several times as " ..
			"many. The hot path pushes two integers and calls, per event; it allocates nothing and makes no " ..
			"system call but `epoll_wait`.")
		add()
	end
	if opt.profile then
		local f = io.open(opt.profile)
		if f then add(f:read("a")); f:close() else add("(No instruction counts: " .. opt.profile .. " is missing.)") end
		add()
	end
	if opt.plot then add(("Scaling plot: [%s](%s)."):format(opt.plot:match("[^/]+$"), opt.plot:match("[^/]+$"))); add() end
	-- Sections 5 to 10, written before by their own runs.
	for _, part in ipairs {
		{ opt.echo, "## 5. Echo server" },
		{ opt.tasks, "## 6. Tasks against watchers" },
		{ opt.http, "## 7. One HTTP server on five event libraries" },
		{ opt.select, "## 8. lepoll.select against socket.select" },
		{ opt.luajit, "## 9. LuaJIT: dispatch, scaling, churn and memory" },
		{ opt.prefork, "## 10. Across cores" },
	} do
		local path, title = part[1], part[2]
		if path then
			local f = io.open(path)
			if f then
				add(f:read("a"))
				f:close()
			else
				add(title)
				add()
				add("Not run: " .. path .. " is missing.")
			end
		end
	end
	return table.concat(L, "\n") .. "\n"
end

-- Under LuaJIT: section 9 alone, which the Lua 5.4 report takes in.
local function luajit_report()
	local L = {}
	local function add(s) L[#L + 1] = s or "" end
	add("## 9. LuaJIT: dispatch, scaling, churn and memory")
	add()
	add(("Written by `make bench-luajit` (bench/run.lua under `luajit`: %s, JIT %s) on %s and taken in here: " ..
		"the benchmarks of sections 1–4, the same code, against lepoll and benchc built with LuaJIT's " ..
		"headers. %s"):format(JIT.version, JIT.status() and "on" or "off", os.date("!%Y-%m-%d %H:%M UTC"),
		method()))
	add()
	add("The peers are Debian's builds for Lua 5.1 (" ..
		sh("dpkg-query -W -f='${Package} ${Version}, ' luajit lua-luv lua-cqueues lua-socket"):gsub(",%s*$", "") ..
		"), which LuaJIT loads as they are (the same C API): Debian has no build of luv for LuaJIT as such, " ..
		"and its 5.1 build is the one measured here.")
	add()
	if FFI_PATH then
		add("Under LuaJIT, `ready_into` is a Lua function that reads the ready buffer through the FFI " ..
			"(src/binding/ready.c), compiled with the caller's loop, for tables without a metatable; it leaves " ..
			"any other table to the C function. The row `" .. READY_INTO_C .. "` passes tables with an empty " ..
			"metatable, so the same loop runs on the C path: the difference is what the FFI path saves.")
	else
		add("`ready_into` ran on its C path here: the FFI path was not in place.")
	end
	add()
	add_sections(add, "### 9.%d ")
	add("### 9.5 Targets")
	add()
	local raw, fl = get("dispatch", 64, RAW), get("dispatch", 64, FLOOR)
	local ri, ric = get("dispatch", 64, READY_INTO), get("dispatch", 64, READY_INTO_C)
	local it, fo = get("dispatch", 64, "lepoll iter_ready"), get("dispatch", 64, "lepoll fold_ready")
	add("| target | result |")
	add("|---|---|")
	add("| LuaJIT dispatch N=64: ready_into + a Lua loop of callbacks ≤ 1.15× raw C | " ..
		verdict(ri and raw and ri / raw, 1.15) .. " |")
	add_memory_targets(add, "LuaJIT ")
	add()
	if raw and fl and ri and it and fo then
		add(("At N=64 the floor costs %.2f× raw C per event: the JIT compiles the plain loop of calls, and " ..
			"the wait's system call is nearly all that is left. ready_into and the same loop over its copy cost " ..
			"%.2f×%s. iter_ready costs %.2f× and fold_ready %.2f×: LuaJIT never compiles a call from C " ..
			"into Lua, so every event they dispatch runs in the interpreter."):format(fl / raw, ri / raw,
			ric and (", against %.2f× on the C path: the FFI path costs %.2f× the C path, %.0f ns per event " ..
				"less"):format(ric / raw, ri / ric, ric - ri) or "",
			it / raw, fo / raw))
		add()
	end
	return table.concat(L, "\n") .. "\n"
end

-- The scaling benchmark as a PNG: ns per wait against N watched, log-log,
-- one line per contender (gnuplot; the data go inline, no temporary files).
local function plot(path)
	local sc = results.scaling
	if not sc then return false, "no scaling results" end
	local lines, series = {}, {}
	for _, c in ipairs(contenders) do
		local pts = {}
		for _, n in ipairs(sc.sizes) do
			local r = sc[n] and sc[n][c.name]
			if r and r.median then pts[#pts + 1] = ("%d %.1f"):format(n, r.median) end
		end
		if #pts > 0 then series[#series + 1] = { name = c.name, pts = pts } end
	end
	lines[#lines + 1] = "set terminal pngcairo size 900,560 noenhanced"
	lines[#lines + 1] = ("set output '%s'"):format(path)
	lines[#lines + 1] = "set title 'Scaling: one ready descriptor among N watched'"
	lines[#lines + 1] = "set xlabel 'N watched'; set ylabel 'ns per wait (median)'"
	lines[#lines + 1] = "set logscale xy; set grid; set key outside right"
	lines[#lines + 1] = "set xtics (16, 256, 4096, 16384)"
	local plots = {}
	for _, sr in ipairs(series) do
		plots[#plots + 1] = ("'-' using 1:2 with linespoints title '%s'"):format(sr.name:gsub("'", "''"))
	end
	lines[#lines + 1] = "plot " .. table.concat(plots, ", ")
	for _, sr in ipairs(series) do
		for _, pt in ipairs(sr.pts) do lines[#lines + 1] = pt end
		lines[#lines + 1] = "e"
	end
	local gp = io.popen("gnuplot", "w")
	if not gp then return false, "cannot run gnuplot" end
	gp:write(table.concat(lines, "\n"), "\n")
	local ok, _, code = gp:close()
	if not ok then return false, "gnuplot exited with " .. tostring(code) end
	return true
end

if not SMOKE and opt.plot and not JIT then
	local ok, why = plot(opt.plot)
	if ok then print("bench: wrote " .. opt.plot) else io.stderr:write("bench: no plot: ", why, "\n"); opt.plot = nil end
end

-- The report is made when smoking too, so that CI runs its code; it is
-- only written at full size.
local made, text = xpcall(JIT and luajit_report or report, debug.traceback)
if not made then
	failed = failed + 1
	print("bench report: FAILED: " .. text)
elseif not SMOKE and opt.out then
	local f = assert(io.open(opt.out, "w"))
	f:write(text)
	f:close()
	print("bench: wrote " .. opt.out)
elseif not SMOKE then
	io.write(text)
end
print(("bench: %.1f s"):format((now() - t_start) / 1e9))
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
