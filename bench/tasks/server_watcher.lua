-- bench/tasks/server_watcher.lua: the server of bench/tasks.lua in the
-- watcher style: lepoll.loop with one I/O watcher (l:io) per connection and
-- a callback per event. A connection is watched for "in", or for "out"
-- alone while a response it did not take whole is pending. The work per
-- request is bench/tasks/work.lua's, as in server_task.lua.
--   lua5.4 server_watcher.lua echo|http [--pidfile FILE] [--stdin]
-- Prints its port, then serves until SIGTERM (or, with --stdin, the end of
-- its standard input).
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local lepoll = require "lepoll"
local loop = require "lepoll.loop"
local socket = require "socket"
local work = require "work"
local styles = require "styles"

local serve, new_state, opts = work.setup(arg)
local send = work.send
local IN = lepoll.IN

local l = loop.new()
local server = assert(socket.bind("127.0.0.1", 0, 128))
server:settimeout(0)

l:io(server, IN, function()
	local c = server:accept()
	if c then
		c:settimeout(0)
		c:setoption("tcp-nodelay", true)
		styles.watcher(l, c, serve, new_state, send)
	end
end)

if opts.stdin then
	l:io(0, IN, function() os.exit(0) end)
end

work.ready(opts, select(2, server:getsockname()))
l:run()
