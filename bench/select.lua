-- bench/select.lua: lepoll.select against LuaSocket's socket.select, cost
-- per call, in one process, rounds interleaved. Run by make bench-select,
-- make bench and make bench-smoke (mk/bench.mk), from the top of the
-- checkout, with LUA_CPATH finding build/bench/benchc.so and build/lepoll.so
-- and LUA_PATH lua/:
--   lua5.4 bench/select.lua [--rounds R] [--budget-ms B] [--out FILE] [--smoke]
-- The watched objects are eventfds (benchc.eventfds), each behind a table
-- with a getfd method, the same objects for both functions; the first
-- `active` have a count and stay readable (nobody reads them). Each call
-- is select(objects, nil, 0), as an event loop makes it once per round.
-- Sizes: 100 and 1,000 watched with 1 and 10 active, for both, prefixes of
-- one pool of 1,000 (below 1024,
-- where socket.select works: those descriptors are made first); then
-- lepoll.select alone at 10,000. Reported: median ns per call over the
-- rounds, and lepoll.select's / socket.select's of each round's pair.
local socket = require "socket"
local benchc = require "benchc"
local lselect = require "lepoll.select"
local lepoll = require "lepoll"

local opt = { rounds = 9, budget = 50 }
do
	local i = 1
	while arg[i] do
		local a = arg[i]
		if a == "--rounds" then i = i + 1; opt.rounds = assert(tonumber(arg[i]))
		elseif a == "--budget-ms" then i = i + 1; opt.budget = assert(tonumber(arg[i]))
		elseif a == "--out" then i = i + 1; opt.out = assert(arg[i])
		elseif a == "--smoke" then opt.smoke = true
		else error("unknown argument " .. a) end
		i = i + 1
	end
end
if opt.smoke then opt.rounds, opt.budget = 1, 5 end
local TARGET = 0.5 -- at 1,000 watched, 10 active

local now = benchc.now_ns

local function getfd(self) return self.fd end

-- n watched objects, the first `active` readable.
local function objects(n, active)
	local fds = benchc.eventfds(n, active)
	local list = {}
	for i = 1, n do list[i] = { fd = fds[i], getfd = getfd } end
	return list, fds
end

local function median(t)
	local s = {}
	for i = 1, #t do s[i] = t[i] end
	table.sort(s)
	local n = #s
	return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

-- ns per call of sel(list, nil, 0), calls for about budget ms; checks that
-- each call reports `active` readable objects.
local function per_call(sel, list, active)
	local r = sel(list, nil, 0) -- the first call registers; not counted
	assert(#r == active, ("%d ready, expected %d"):format(#r, active))
	local budget = opt.budget * 1e6
	local calls, t0 = 0, now()
	local t
	repeat
		for _ = 1, 8 do sel(list, nil, 0) end
		calls = calls + 8
		t = now() - t0
	until t >= budget
	return t / calls
end

local CASES = opt.smoke and { { 10, 1 }, { 100, 10 } } or { { 100, 1 }, { 100, 10 }, { 1000, 1 }, { 1000, 10 } }
-- One pool of objects, made first while descriptor numbers are low (all of
-- them must stay under 1024 for socket.select); each case watches a prefix
-- of it, and set_active gives the first `active` of the pool a count and
-- takes it from the others up to the largest `active` of any case.
local pool_size, most_active = 0, 0
for _, c in ipairs(CASES) do
	pool_size, most_active = math.max(pool_size, c[1]), math.max(most_active, c[2])
end
local pool, pool_fds = objects(pool_size, most_active)
local all_fds = { pool_fds }
local fixtures = {}
for i, c in ipairs(CASES) do
	local list = {}
	for k = 1, c[1] do list[k] = pool[k] end
	fixtures[i] = list
end
local ONE = string.pack("=I8", 1)
local function set_active(active)
	for k = 2, most_active do
		if k <= active then
			assert(lepoll.write(pool_fds[k], ONE) == 8)
		else
			assert(lepoll.read(pool_fds[k], 8))
		end
	end
end
local active_now = most_active

local results = {}
local t_start = now()
for r = 1, opt.rounds do
	for i, c in ipairs(CASES) do
		if c[2] ~= active_now then set_active(c[2]); active_now = c[2] end
		local res = results[i] or { socket = {}, lepoll = {}, ratio = {} }
		results[i] = res
		-- the order alternates from round to round
		local first, second = socket.select, lselect
		if r % 2 == 0 then first, second = lselect, socket.select end
		local a = per_call(first, fixtures[i], c[2])
		local b = per_call(second, fixtures[i], c[2])
		local s, l = a, b
		if r % 2 == 0 then s, l = b, a end
		res.socket[r], res.lepoll[r], res.ratio[r] = s, l, l / s
	end
	lselect(nil, nil, 0) -- the set forgets them (so the next case starts afresh)
end

-- lepoll.select alone at 10,000 watched (socket.select cannot)
local big
do
	local n = opt.smoke and 2000 or 10000
	if benchc.raise_nofile() > n + 100 then
		local list, fds = objects(n, 10)
		all_fds[#all_fds + 1] = fds
		local t = {}
		for r = 1, opt.rounds do t[r] = per_call(lselect, list, 10) end
		big = { n = n, ns = median(t) }
		lselect(nil, nil, 0)
	end
end
for _, fds in ipairs(all_fds) do benchc.close(fds) end

local passed, failed = 0, 0
local lines = {}
for i, c in ipairs(CASES) do
	local res = results[i]
	res.s, res.l, res.q = median(res.socket), median(res.lepoll), median(res.ratio)
	local qs = {}
	for k, q in ipairs(res.ratio) do qs[k] = q end
	table.sort(qs)
	res.qmin, res.qmax = qs[1], qs[#qs]
	lines[#lines + 1] = ("| %d | %d | %.0f | %.0f | %.3f (%.3f–%.3f) |"):format(c[1], c[2], res.s, res.l, res.q,
		res.qmin, res.qmax)
	print(("bench select %d watched, %d active: socket.select %.0f ns, lepoll.select %.0f ns per call (%.3f)")
		:format(c[1], c[2], res.s, res.l, res.q))
	passed = passed + 1
end
if big then
	print(("bench select %d watched, 10 active: lepoll.select %.0f ns per call"):format(big.n, big.ns))
	passed = passed + 1
else
	print("bench select: FAILED: RLIMIT_NOFILE cannot be raised for 10,000 descriptors")
	failed = failed + 1
end

local verdict
for i, c in ipairs(CASES) do
	if c[1] == 1000 and c[2] == 10 then
		local q = results[i].q
		verdict = q <= TARGET and ("met (%.2f×)"):format(q) or ("missed (%.2f×)"):format(q)
	end
end

if not opt.smoke then
	local L = {}
	local function add(s) L[#L + 1] = s or "" end
	add("## 8. lepoll.select against socket.select: cost per call")
	add()
	add(("Method: `bench/select.lua`, one process. The watched objects are eventfds behind tables with a " ..
		"`getfd` method, the same objects for both functions; the first `active` ones have a count, so " ..
		"they stay readable. Each call is `select(objects, nil, 0)`, as an event loop makes it once per " ..
		"round; the first call of each run (lepoll.select's registrations) is not counted. Calls for %d ms " ..
		"per run; %d rounds, the two functions' order alternating; medians over the rounds, and the median " ..
		"(min–max) of each round's ratio lepoll.select / socket.select. socket.select cannot watch " ..
		"descriptor 1024 or above, so its sizes stop at 1,000."):format(opt.budget, opt.rounds))
	add()
	add("| watched | active | socket.select ns per call | lepoll.select ns per call | lepoll / socket (min–max) |")
	add("|--:|--:|--:|--:|--:|")
	for _, line in ipairs(lines) do add(line) end
	if big then add(("| %d | 10 | (cannot) | %.0f | — |"):format(big.n, big.ns)) end
	add()
	add("| target | result |")
	add("|---|---|")
	add(("| lepoll.select ≤ %.1f× socket.select per call at 1,000 watched, 10 active | %s |"):format(TARGET,
		verdict or "not measured"))
	add()
	local text = table.concat(L, "\n")
	if opt.out then
		local f = assert(io.open(opt.out, "w"))
		f:write(text)
		f:close()
		print("bench select: wrote " .. opt.out)
	else
		io.write(text)
	end
	print(("select: lepoll.select ≤ %.1f× socket.select at 1,000/10: %s"):format(TARGET, verdict or "not measured"))
end
print(("bench select: %.1f s"):format((now() - t_start) / 1e9))
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
