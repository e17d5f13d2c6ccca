-- bench/http/server_watcher.lua: lepoll.loop's I/O watchers, a callback per
-- event on non-blocking LuaSocket sockets.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local loop = require "lepoll.loop"
local socket = require "socket"
local work = require "work"

local opts = work.options(arg)
local feed, new_state = work.feed, work.new_state
local l = loop.new()
local listener = assert(socket.bind("127.0.0.1", 0, 1024))
listener:settimeout(0)

local function connection(c)
	local st, pending, w = new_state(), nil, nil
	local function drop()
		w:stop()
		c:close()
	end
	-- Sends out; the unsent rest waits for writability.
	local function send(out)
		local last, err, sent = c:send(out)
		if last then
			if st.closing then return drop() end
			if pending then pending = nil; w:set("in") end
			return
		end
		if err ~= "timeout" then return drop() end
		if not pending then w:set("out") end
		pending = out:sub(sent + 1)
	end
	w = l:io(c, "in", function()
		if pending then return send(pending) end
		repeat
			local data, err, partial = c:receive(65536)
			data = data or partial
			if err and err ~= "timeout" then return drop() end
			local out = feed(st, data)
			if out == nil then return drop() end
			if out ~= "" then send(out) end
		until pending or not c:dirty() or w.fd == nil
	end)
end

l:io(listener, "in", function()
	local c = listener:accept()
	if c then
		c:settimeout(0)
		c:setoption("tcp-nodelay", true)
		connection(c)
	end
end)

if opts.stdin then
	l:io(io.stdin, "in", function() if io.stdin:read(1) == nil then os.exit(0) end end)
end
work.ready(select(2, listener:getsockname()))
l:run()
