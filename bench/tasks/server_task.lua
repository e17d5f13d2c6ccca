-- bench/tasks/server_task.lua: the server of bench/tasks.lua in the task
-- style: lepoll.loop with one task (l:spawn) per connection, written as
-- straight-line code: wait in l:readable, do the work, send the response,
-- waiting in l:writable while a send is partial. The work per request is
-- bench/tasks/work.lua's, as in server_watcher.lua.
--   lua5.4 server_task.lua echo|http [--pidfile FILE] [--stdin]
-- Prints its port, then serves until SIGTERM (or, with --stdin, the end of
-- its standard input).
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local loop = require "lepoll.loop"
local socket = require "socket"
local work = require "work"
local styles = require "styles"

local serve, new_state, opts = work.setup(arg)
local send = work.send

local l = loop.new()
local server = assert(socket.bind("127.0.0.1", 0, 128))
server:settimeout(0)

l:spawn(function()
	while l:readable(server) do
		local c = server:accept()
		if c then
			c:settimeout(0)
			c:setoption("tcp-nodelay", true)
			l:spawn(styles.task, l, c, serve, new_state, send)
		end
	end
end)

if opts.stdin then
	l:spawn(function()
		l:readable(0)
		os.exit(0)
	end)
end

work.ready(opts, select(2, server:getsockname()))
l:run()
