-- bench/tasks/work.lua: the user code of the two servers of bench/tasks.lua
-- (server_watcher.lua, server_task.lua): what a connection does with the
-- bytes it receives, and the send step. Both servers call exactly this; they
-- differ only in how they wait (a watcher callback per event, or a task per
-- connection that waits in l:readable and l:writable). Sockets are
-- LuaSocket's, with timeout 0.
--
-- A protocol is serve(sock, state) -> out: the bytes to send back ("" when
-- there are none yet), or nil when the connection ended (closed by the
-- peer, failed, or a request this server does not take). It reads what
-- LuaSocket gives without blocking, and goes on while LuaSocket's own buffer
-- holds bytes (sock:dirty()): LuaSocket reads ahead, and epoll sees only
-- the kernel's buffer, so bytes left there would get no readiness event.
-- When serve returns, LuaSocket's buffer is empty. state.closing asks the
-- server to close the connection once out is sent.
local M = {}

-- ------------------------------------------------------------------ echo

-- The message size of the load generator: LuaSocket's receive(n) calls
-- recv() until it has n bytes or would block, so asking for the message
-- size costs one recv() per message.
local ECHO_READ = 64

local concat = table.concat

-- Pieces of output: the first alone, more in a table (rare: bytes that
-- came together).
local function add(out, more, s)
	if not out then return s, more end
	if not more then more = { out } end
	more[#more + 1] = s
	return out, more
end

local function echo(sock)
	local out, more
	repeat
		local data, err, partial = sock:receive(ECHO_READ)
		if not data then
			if err ~= "timeout" then return nil end -- "closed", or a failure
			data = partial
		end
		out, more = add(out, more, data)
	until err or not sock:dirty()
	return more and concat(more) or out
end

-- ------------------------------------------------------------------ http

-- The one response: a fixed body, the length given, the connection kept.
local BODY = "Hello, world\n"
M.RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #BODY .. "\r\n\r\n" .. BODY

local lower, find, sub = string.lower, string.find, string.sub

-- HTTP/1.1 with keep-alive, requests without a body: a request is its
-- lines up to the first empty one (LuaSocket's "*l" drops the CRs); each
-- gets the response. Requests may come pipelined or split anywhere: a line
-- cut short waits in state.partial for its rest. A request with a body
-- ends the connection; "Connection: close" closes it after the response.
local function http(sock, st)
	local out, more
	repeat
		local line, err, partial = sock:receive("*l", st.partial)
		if not line then
			if err ~= "timeout" then return nil end
			st.partial = partial ~= "" and partial or nil
			break
		end
		st.partial = nil
		if line == "" then
			if st.lines > 0 then -- the end of a request's head
				out, more = add(out, more, M.RESPONSE)
				st.lines = 0
				if st.close then
					st.closing = true
					break
				end
			end -- (empty lines before a request line are ignored)
		else
			st.lines = st.lines + 1
			if st.lines > 1 then -- a header field
				local colon = find(line, ":", 1, true)
				if not colon then return nil end
				local name = lower(sub(line, 1, colon - 1))
				if name == "connection" then
					st.close = find(lower(line), "close", colon + 1, true) ~= nil
				elseif name == "content-length" then
					if not find(line, "^%s*0%s*$", colon + 1) then return nil end
				elseif name == "transfer-encoding" then
					return nil
				end
			end
		end
	until not sock:dirty()
	return more and concat(more) or out or ""
end

local protocols = {
	echo = { serve = echo, state = function() return nil end },
	http = { serve = http, state = function() return { lines = 0, partial = nil, close = false, closing = false } end },
}

-- Sends data. -> "" when all of it went, the unsent rest when the socket
-- would block, nil when the connection failed.
function M.send(sock, data)
	local last, err, sent = sock:send(data)
	if last then return "" end
	if err ~= "timeout" then return nil end
	return data:sub(sent + 1)
end

-- The command line of both servers:
--   lua5.4 server_STYLE.lua PROTOCOL [--pidfile FILE] [--stdin]
-- -> serve, new_state, options. --pidfile: the server writes its process
-- id there once it listens; --stdin: it exits when its standard input
-- reaches its end (so that it dies with the process that started it).
function M.setup(args)
	local proto = protocols[args[1]]
	if not proto then
		io.stderr:write("usage: server.lua echo|http [--pidfile FILE] [--stdin]\n")
		os.exit(2)
	end
	local opts = {}
	local i = 2
	while args[i] do
		if args[i] == "--pidfile" then
			i = i + 1
			opts.pidfile = assert(args[i], "--pidfile FILE")
		elseif args[i] == "--stdin" then
			opts.stdin = true
		else
			error("unknown argument " .. args[i])
		end
		i = i + 1
	end
	return proto.serve, proto.state, opts
end

-- Once listening: the process id to --pidfile (from /proc/self/stat: this
-- process's), then the port, alone on a line, to stdout.
function M.ready(opts, port)
	if opts.pidfile then
		local st = assert(io.open("/proc/self/stat"))
		local pid = st:read("n")
		st:close()
		local f = assert(io.open(opts.pidfile, "w"))
		f:write(("%d\n"):format(pid))
		f:close()
	end
	io.stdout:write(port, "\n")
	io.stdout:flush()
end

return M
