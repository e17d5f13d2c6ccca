-- bench/tasks_profile.lua: user-space instructions per echo request of the
-- two styles of bench/tasks.lua, counted by valgrind's callgrind
-- (repeatable, unlike CPU time), and of the least a task per connection can
-- do on LuaSocket.
--   lua5.4 bench/tasks_profile.lua [--out FILE] [--smoke]  the table (Markdown)
--   lua5.4 bench/tasks_profile.lua --child STYLE ROUNDS     one workload, under callgrind
-- One process holds CONNS loopback TCP connections (LuaSocket, timeout 0)
-- and both their ends: the server ends are served in STYLE with the echo
-- of bench/tasks/work.lua, the client ends are this script's. A round sends
-- 64 bytes on every client and steps the server (pump) until every echo is
-- back. Each style runs once with no rounds and once with ROUNDS; the
-- difference over ROUNDS*CONNS requests is the cost per request, start-up
-- cancelled out. The clients' share is in every row alike; the kernel's is
-- in none. --smoke: 20 rounds, and a last line "N passed, N failed". Styles:
--   watcher  lepoll.loop, an I/O watcher per connection (styles.lua)
--   task     lepoll.loop, a task per connection in l:readable (styles.lua)
--   floor    no loop: a coroutine per connection, resumed from ready_into,
--            whose wait makes only the checks l:readable must (the task, the
--            object's getfd, its dirty(), that it can yield) and yields
local HERE = arg[0]:match("^(.*)/") or "."
package.path = HERE .. "/tasks/?.lua;" .. HERE .. "/lib/?.lua;" .. package.path
local measure = require "measure"

local CONNS, ROUNDS, MSG = 20, 1000, 64

local STYLES = {
	{ "watcher", "watchers (l:io, callbacks)" },
	{ "task", "tasks (l:spawn, l:readable)" },
	{ "floor", "floor: a coroutine per connection, no loop (the checks of l:readable only)" },
}

-- The floor's server: -> attach(c), pump().
local function floor_server(serve, new_state, send)
	local lepoll = require "lepoll"
	local co_running, co_yield, co_resume, co_create = coroutine.running, coroutine.yield, coroutine.resume,
		coroutine.create
	local co_isyieldable = coroutine.isyieldable
	local ep = lepoll.create()
	local fd_of, waiting, rfds, rflags = {}, {}, {}, {}
	local function readable(c)
		local fd = fd_of[co_running()]
		if c:getfd() ~= fd then error("the socket changed") end
		if c:dirty() then return true end
		if not co_isyieldable() then error("cannot yield") end
		waiting[fd] = co_running()
		return co_yield()
	end
	local function connection(c)
		local st = new_state()
		while readable(c) do
			local out = serve(c, st)
			if out == nil or send(c, out) ~= "" then break end
		end
		ep:remove(c)
		c:close()
	end
	local function attach(c)
		local co = co_create(connection)
		fd_of[co] = c:getfd()
		ep:set(c, lepoll.IN)
		assert(co_resume(co, c))
	end
	local function pump()
		ep:wait(0)
		for i = 1, ep:ready_into(rfds, rflags) do
			local fd = rfds[i]
			local co = waiting[fd]
			if co then
				waiting[fd] = nil
				assert(co_resume(co, true))
			end
		end
	end
	return attach, pump
end

if arg[1] == "--child" then
	local socket = require "socket"
	local work = require "work"
	local style, rounds = arg[2], math.tointeger(tonumber(arg[3]))
	local serve, new_state = work.setup({ "echo" })
	local send = work.send
	local attach, pump
	if style == "floor" then
		attach, pump = floor_server(serve, new_state, send)
	else
		local styles = require "styles"
		local l = require("lepoll.loop").new()
		if style == "watcher" then
			attach = function(c) styles.watcher(l, c, serve, new_state, send) end
		elseif style == "task" then
			attach = function(c) l:spawn(styles.task, l, c, serve, new_state, send) end
		else
			error("unknown style " .. tostring(style))
		end
		pump = function() l:run("nowait") end
	end
	local srv = assert(socket.bind("127.0.0.1", 0, CONNS))
	local port = select(2, srv:getsockname())
	local clients = {}
	for i = 1, CONNS do
		local c = assert(socket.connect("127.0.0.1", port))
		local s = assert(srv:accept())
		for _, sock in ipairs({ c, s }) do
			sock:settimeout(0)
			sock:setoption("tcp-nodelay", true)
		end
		clients[i] = c
		attach(s)
	end
	srv:close()
	pump() -- tasks start, and wait
	local msg = string.rep("x", MSG)
	local need, served = {}, 0
	for _ = 1, rounds do
		for i = 1, CONNS do
			assert(clients[i]:send(msg))
			need[i] = MSG
		end
		local left, pumps = CONNS, 0
		while left > 0 do
			pump()
			pumps = pumps + 1
			assert(pumps < 1000, "the echoes did not come back")
			for i = 1, CONNS do
				if need[i] > 0 then
					local data, err, part = clients[i]:receive(need[i])
					data = data or part
					assert(data, err)
					need[i] = need[i] - #data
					if need[i] == 0 then left = left - 1 end
				end
			end
		end
		served = served + CONNS
	end
	print("requests=" .. served)
	for i = 1, CONNS do clients[i]:close() end
	os.exit(0)
end

local opt = measure.options({}, { "out" })
local out, smoke = opt.out, opt.smoke
if smoke then ROUNDS = 20 end

local rows = {}
for _, s in ipairs(STYLES) do
	local base, r0 = measure.callgrind_count(arg[0], "requests", s[1], 0)
	local full, r1 = measure.callgrind_count(arg[0], "requests", s[1], ROUNDS)
	rows[#rows + 1] = { s[2], (full - base) / (r1 - r0) }
	print(("tasks profile %s: %.0f instructions per request"):format(s[1], rows[#rows][2]))
end

local L = {
	"### Instructions per request (callgrind)",
	"",
	("User-space instructions per echo request, %d connections in one process (`bench/tasks_profile.lua`, " ..
		"run by make bench-tasks): %d rounds of a 64-byte echo on every connection, less a run with none. " ..
		"The clients' share (the same in every row) is counted, the kernel's is not. The floor is no " ..
		"loop: a coroutine per connection, resumed from `ready_into`, whose wait makes only the checks " ..
		"`l:readable` must (the task, the object's `getfd`, its `dirty()`, that it can yield)."):format(CONNS, ROUNDS),
	"",
	"| style | instructions per request | over watchers |",
	"|---|--:|--:|",
}
for _, r in ipairs(rows) do
	L[#L + 1] = ("| %s | %.0f | %+.0f |"):format(r[1], r[2], r[2] - rows[1][2])
end
local text = table.concat(L, "\n") .. "\n"
if smoke then
	print(("%d passed, 0 failed"):format(#rows))
else
	measure.write_report("tasks profile", text, out)
end
