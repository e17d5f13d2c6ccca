-- bench/echo/server_select.lua: the echo server on socket.select, the
-- classic LuaSocket loop (bench/echo.lua). A connection is in the read
-- list, or in the write list alone while an echo it did not take is
-- pending. Prints its port, then serves until SIGTERM.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local socket = require "socket"
local echo_conn = require "echo_conn"

local echo, flush = echo_conn.echo, echo_conn.flush

local server = assert(socket.bind("127.0.0.1", 0, 128))
server:settimeout(0)

-- The lists socket.select takes, with each socket's index, so a socket
-- leaves its list in O(1) (the last one takes its place).
local recvt, recv_at = {}, {}
local sendt, send_at = {}, {}
local function insert(list, at, s)
	local n = #list + 1
	list[n], at[s] = s, n
end
local function delete(list, at, s)
	local i, n = at[s], #list
	local last = list[n]
	list[i], at[last] = last, i
	list[n], at[s] = nil, nil
end

local pending = {} -- socket -> the unsent rest of its echo

local function settle(sock, was, rest)
	if rest == nil then
		delete(was and sendt or recvt, was and send_at or recv_at, sock)
		sock:close()
		pending[sock] = nil
	elseif rest == "" then
		if was then
			pending[sock] = nil
			delete(sendt, send_at, sock)
			insert(recvt, recv_at, sock)
		end
	else
		if not was then
			delete(recvt, recv_at, sock)
			insert(sendt, send_at, sock)
		end
		pending[sock] = rest
	end
end

insert(recvt, recv_at, server)
io.stdout:write(select(2, server:getsockname()), "\n")
io.stdout:flush()
while true do
	local readable, writable = socket.select(recvt, sendt)
	for i = 1, #readable do
		local sock = readable[i]
		if sock == server then
			local c = server:accept()
			if c then
				c:settimeout(0)
				c:setoption("tcp-nodelay", true)
				insert(recvt, recv_at, c)
			end
		else
			settle(sock, nil, echo(sock))
		end
	end
	for i = 1, #writable do
		local sock = writable[i]
		local was = pending[sock]
		settle(sock, was, flush(sock, was))
	end
end
