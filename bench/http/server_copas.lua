-- bench/http/server_copas.lua: copas (Debian's lua-copas, on LuaSocket's
-- socket.select), a coroutine per connection.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local socket = require "socket"
local copas = require "copas"
local work = require "work"

local opts = work.options(arg)
local feed, new_state = work.feed, work.new_state
local listener = assert(socket.bind("127.0.0.1", 0, 1024))

copas.addserver(listener, function(c)
	c:setoption("tcp-nodelay", true)
	local st = new_state()
	while true do
		local data, err, partial = copas.receivePartial(c, 65536)
		data = data or partial
		if not data or data == "" then break end
		local out = feed(st, data)
		if out == nil or (out ~= "" and not copas.send(c, out)) or st.closing then break end
		if err and err ~= "timeout" then break end
	end
	c:close()
end)

work.ready(select(2, listener:getsockname()))
-- copas watches sockets only: between its steps, stdin is polled
-- (at least twice a second).
local stdin = { getfd = function() return 0 end, dirty = function() return false end }
while true do
	copas.step(0.5)
	if opts.stdin then
		local r = socket.select({ stdin }, nil, 0)
		if r[1] and io.stdin:read(1) == nil then os.exit(0) end
	end
end
