-- bench/echo/echo_conn.lua: the echo step of the two LuaSocket servers
-- (server_lepoll.lua, server_select.lua), shared so that they differ only
-- in how they wait. Sockets have timeout 0.
local M = {}

-- LuaSocket's receive(n) calls recv() until it has n bytes or the socket
-- would block: asking for the message size (64) costs one recv() per
-- message, asking for more costs a second recv() that fails with EAGAIN.
-- Bytes LuaSocket buffered beyond n are seen by dirty(), not by epoll.
local READ_SIZE = 64

-- Sends data. -> "" when all of it went, the unsent rest when the socket
-- would block, nil when the connection failed.
local function send(sock, data)
	local last, err, sent = sock:send(data)
	if last then return "" end
	if err ~= "timeout" then return nil end
	return data:sub(sent + 1)
end

-- On readable: reads what there is and sends it back. -> as send; nil
-- also when the peer closed.
local function echo(sock)
	repeat
		local data, err, partial = sock:receive(READ_SIZE)
		if err and err ~= "timeout" then return nil end -- "closed", or a failure
		local rest = send(sock, data or partial)
		if rest ~= "" then return rest end
	until not sock:dirty()
	return ""
end
M.echo = echo

-- On writable, with `rest` unsent: sends it, then echoes what LuaSocket
-- kept buffered meanwhile (no readiness will report that). -> as send.
function M.flush(sock, rest)
	rest = send(sock, rest)
	if rest == "" and sock:dirty() then return echo(sock) end
	return rest
end

return M
