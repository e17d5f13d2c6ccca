-- bench/http/work.lua: the user code of the HTTP servers of bench/http.lua,
-- one per event library (server_*.lua): each reads what has come on a
-- connection, in whatever chunks its library gives, and calls feed; they
-- differ only in how they wait and read. Requests are HTTP/1.1 keep-alive
-- without a body, pipelined or split anywhere; each gets the one response.
local M = {}

local BODY = "Hello, world\n"
M.RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #BODY .. "\r\n\r\n" .. BODY

local find, sub, lower, rep = string.find, string.sub, string.lower, string.rep

local MAX_PENDING = 65536 -- bytes of an unfinished head held at most

function M.new_state()
	return { buf = "", closing = false }
end

-- feed(st, chunk) -> the responses to the requests that chunk completes
-- ("" when none), or nil: a request this server does not take (a body, an
-- overlong head). st.closing: close once they are sent ("Connection:
-- close").
function M.feed(st, chunk)
	local buf = st.buf
	if buf ~= "" then buf = buf .. chunk else buf = chunk end
	local pos, n = 1, 0
	while not st.closing do
		local s, e = find(buf, "\r\n\r\n", pos, true)
		if not s then break end
		local head = lower(sub(buf, pos, s + 1))
		if find(head, "\ncontent-length:", 1, true) then
			if not find(head, "\ncontent%-length:%s*0\r\n") then return nil end
		end
		if find(head, "\ntransfer-encoding:", 1, true) then return nil end
		if find(head, "\nconnection:%s*close") then st.closing = true end
		n = n + 1
		pos = e + 1
	end
	st.buf = pos > #buf and "" or sub(buf, pos)
	if #st.buf > MAX_PENDING then return nil end
	if n == 0 then return "" end
	if n == 1 then return M.RESPONSE end
	return rep(M.RESPONSE, n)
end

-- The command line of every server: `LUA server_STYLE.lua [--stdin]`.
-- --stdin: exit at the end of standard input (so that it dies with the
-- process that started it). Once listening it prints its port.
function M.options(args)
	return { stdin = args[1] == "--stdin" }
end

function M.ready(port)
	io.stdout:write(port, "\n")
	io.stdout:flush()
end

return M
