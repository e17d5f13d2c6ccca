-- bench/echo/server_luv.lua: the echo server on luv (bench/echo.lua), as a
-- luv user writes it: read_start, and write what was read. libuv reads
-- what is there on each readiness, and queues what the socket does not
-- take. Prints its port, then serves until SIGTERM.
local uv = require "luv"

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
assert(server:listen(128, function(err)
	assert(not err, err)
	local client = uv.new_tcp()
	server:accept(client)
	client:nodelay(true)
	client:read_start(function(rerr, data)
		if rerr or not data then
			client:close()
		else
			client:write(data)
		end
	end)
end))

io.stdout:write(server:getsockname().port, "\n")
io.stdout:flush()
uv.run()
