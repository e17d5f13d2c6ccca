-- bench/profile.lua: user-space instructions per event of the dispatch
-- paths, counted by valgrind's callgrind (repeatable, unlike time).
--   lua5.4 bench/profile.lua [--out FILE]       the table (Markdown)
--   lua5.4 bench/profile.lua --child MODE WAITS  one workload, under callgrind
-- Each mode runs once with no waits and once with WAITS waits over N=64
-- ready pipes; the difference over WAITS*64 events is the cost per event,
-- with start-up and set-up cancelled out. Kernel time is not counted.
local N, WAITS = 64, 2000

package.path = (arg[0]:match("^(.*)/") or ".") .. "/lib/?.lua;" .. package.path
local measure = require "measure"

local MODES = {
	{ "wait", "wait(0) alone" },
	{ "floor", "wait(0) + a Lua loop of callbacks (the floor)" },
	{ "iter", "wait(0) + iter_ready" },
	{ "fold", "wait(0) + fold_ready" },
	{ "ready", "wait(0) + ready_into + a Lua loop of callbacks" },
	{ "luv", "luv: a poll handle per pipe, run(\"nowait\")" },
}

if arg[1] == "--child" then
	local lepoll = require "lepoll"
	local B = require "benchc"
	local mode, waits = arg[2], math.tointeger(tonumber(arg[3]))
	local r, w = B.pipes(N)
	local ep = lepoll.create(nil, N)
	for i = 1, N do ep:set(r[i], lepoll.IN) end
	local n = 0
	local function cb(_fd, _flags) n = n + 1 end
	local function fcb(acc, _fd, _flags) return acc + 1 end
	local fd, IN = r[1], lepoll.IN
	if mode == "wait" then
		for _ = 1, waits do ep:wait(0) end
		n = waits * N
	elseif mode == "floor" then
		for _ = 1, waits do
			ep:wait(0)
			for _ = 1, N do cb(fd, IN) end
		end
	elseif mode == "iter" then
		for _ = 1, waits do ep:wait(0); ep:iter_ready(cb) end
	elseif mode == "fold" then
		for _ = 1, waits do ep:wait(0); n = ep:fold_ready(n, fcb) end
	elseif mode == "ready" then
		local rfds, rflags = {}, {}
		for _ = 1, waits do
			ep:wait(0)
			for i = 1, ep:ready_into(rfds, rflags) do cb(rfds[i], rflags[i]) end
		end
	elseif mode == "luv" then
		local uv = require "luv"
		local handles = {}
		local function ucb(_err, _events) n = n + 1 end
		for i = 1, N do
			handles[i] = uv.new_poll(r[i])
			handles[i]:start("r", ucb)
		end
		for _ = 1, waits do uv.run("nowait") end
		for i = 1, N do handles[i]:close() end
		uv.run("nowait")
	else
		error("unknown mode " .. tostring(mode))
	end
	-- libuv may take more than one round of events per run("nowait")
	assert(n >= waits * N, ("%s: %d events, expected %d or more"):format(mode, n, waits * N))
	print("events=" .. n)
	ep:close(); B.close(r); B.close(w)
	os.exit(0)
end

local out = measure.options({}, { "out" }).out

local rows = {}
for _, m in ipairs(MODES) do
	local base, e0 = measure.callgrind_count(arg[0], "events", m[1], 0)
	local full, e1 = measure.callgrind_count(arg[0], "events", m[1], WAITS)
	rows[#rows + 1] = { m[2], (full - base) / (e1 - e0) }
	print(("profile %s: %.0f instructions per event"):format(m[1], rows[#rows][2]))
end

local L = {
	"### Instructions per event (callgrind)",
	"",
	("User-space instructions per event at N=64, all ready (`make bench-profile`, bench/profile.lua: " ..
		"%d waits, less a run with none). The kernel's share, most of the time per event, is not counted.")
		:format(WAITS),
	"",
	"| path | instructions per event | over wait(0) alone |",
	"|---|--:|--:|",
}
for _, r in ipairs(rows) do
	L[#L + 1] = ("| %s | %.0f | %.0f |"):format(r[1], r[2], r[2] - rows[1][2])
end
local text = table.concat(L, "\n") .. "\n"
measure.write_report("profile", text, out)
