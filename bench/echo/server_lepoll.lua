-- bench/echo/server_lepoll.lua: the echo server on lepoll's raw API, with
-- LuaSocket sockets (bench/echo.lua). One level-triggered set; a
-- connection is watched for IN, or for OUT alone while an echo it did not
-- take is pending. Prints its port, then serves until SIGTERM.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local lepoll = require "lepoll"
local socket = require "socket"
local echo_conn = require "echo_conn"

local IN, OUT = lepoll.IN, lepoll.OUT
local echo, flush = echo_conn.echo, echo_conn.flush

local ep = lepoll.create()
local server = assert(socket.bind("127.0.0.1", 0, 128))
server:settimeout(0)
local server_fd = math.tointeger(server:getfd())
ep:set(server_fd, IN)

local conns = {}   -- fd -> socket
local pending = {} -- fd -> the unsent rest of its echo

local function on_event(fd)
	if fd == server_fd then
		local c = server:accept()
		if c then
			c:settimeout(0)
			c:setoption("tcp-nodelay", true)
			local cfd = math.tointeger(c:getfd())
			conns[cfd] = c
			ep:set(cfd, IN)
		end
		return
	end
	local sock, was = conns[fd], pending[fd]
	local rest
	if was then rest = flush(sock, was) else rest = echo(sock) end
	if rest == nil then
		ep:remove(fd)
		sock:close()
		conns[fd], pending[fd] = nil, nil
	elseif rest == "" then
		if was then
			pending[fd] = nil
			ep:set(fd, IN)
		end
	else
		if not was then ep:set(fd, OUT) end
		pending[fd] = rest
	end
end

io.stdout:write(select(2, server:getsockname()), "\n")
io.stdout:flush()
while true do
	if ep:wait() == "ok" then ep:iter_ready(on_event) end
end
