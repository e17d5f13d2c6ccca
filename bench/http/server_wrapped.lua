-- bench/http/server_wrapped.lua: lepoll.loop's wrapped sockets, a task per
-- connection (l:serve), written as blocking code.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local loop = require "lepoll.loop"
local socket = require "socket"
local work = require "work"

local opts = work.options(arg)
local feed, new_state = work.feed, work.new_state
local l = loop.new()
local listener = assert(socket.bind("127.0.0.1", 0, 1024))

l:serve(listener, function(conn)
	conn:setoption("tcp-nodelay", true)
	local st = new_state()
	while true do
		local data = conn:receivesome(65536)
		if not data then return end
		local out = feed(st, data)
		if out == nil or (out ~= "" and not conn:send(out)) or st.closing then return end
	end
end)

if opts.stdin then
	l:io(io.stdin, "in", function() if io.stdin:read(1) == nil then os.exit(0) end end)
end
work.ready(select(2, listener:getsockname()))
l:run()
