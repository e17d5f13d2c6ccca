-- bench/tasks/styles.lua: one connection served in each style on
-- lepoll.loop, as the servers of bench/tasks.lua run it (server_watcher.lua,
-- server_task.lua) and bench/tasks_profile.lua counts it. Both call the user
-- code of work.lua (serve, send) and differ only in how they wait.
local lepoll = require "lepoll"

local IN, OUT = lepoll.IN, lepoll.OUT

local M = {}

-- Watcher style: an I/O watcher on c, a callback per event; c watched for
-- "in", or for "out" alone while a response it did not take whole is
-- pending.
function M.watcher(l, c, serve, new_state, send)
	local st = new_state()
	local pending -- the unsent rest of a response
	local w
	local function drop()
		w:stop()
		c:close()
	end
	w = l:io(c, IN, function()
		if pending then -- writable
			local rest = send(c, pending)
			if rest ~= "" then
				if rest == nil then drop() else pending = rest end
				return
			end
			pending = nil
			if st and st.closing then return drop() end
			w:set(IN)
			return
		end
		local out = serve(c, st)
		if out == nil then return drop() end
		if out ~= "" then
			local rest = send(c, out)
			if rest == nil then return drop() end
			if rest ~= "" then
				pending = rest
				w:set(OUT)
				return
			end
		end
		if st and st.closing then drop() end
	end)
end

-- Task style, the function of a task (l:spawn(M.task, l, c, ...)):
-- straight-line code that waits in l:readable, does the work, sends the
-- response, waiting in l:writable while a send is partial. serve() leaves
-- LuaSocket's buffer empty, so readiness tells all.
function M.task(l, c, serve, new_state, send)
	local st = new_state()
	while l:readable(c) do
		local out = serve(c, st)
		if out == nil then break end
		while out ~= "" do
			out = send(c, out)
			if out == nil or (out ~= "" and not l:writable(c)) then
				out = nil
				break
			end
		end
		if out == nil or (st and st.closing) then break end
	end
	c:close()
end

return M
