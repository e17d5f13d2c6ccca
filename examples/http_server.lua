-- An HTTP/1.1 server on lepoll.loop's wrapped sockets: a task per
-- connection (l:serve), written as plain blocking code.
--
--     lua examples/http_server.lua [--cert FILE --key FILE] [port [host]]
--
-- (any Lua from 5.1 to 5.4, or LuaJIT; TLS needs LuaSec, Debian lua-sec)
--
-- Listens on host (default 127.0.0.1) and port (default 0: any free port)
-- and prints one line, `listening on http://HOST:PORT` (`https://` with a
-- certificate and its key, PEM files). Serves:
--
--   GET /      200, the body "hello"
--   GET /big   200, 1 MiB (the bytes 0-255 over and over)
--   HEAD       the same heads, no body
--   GET other  404; other methods 405; a bad request 400 (then closes)
--
-- HTTP/1.1 keeps connections open unless the client sends "Connection:
-- close"; HTTP/1.0 closes them unless it sends "Connection: keep-alive".
-- Requests may be pipelined (sent before the answers to the ones before
-- them) and split anywhere. A request head may be 16 KiB at most (431
-- beyond); a request body (Content-Length) is read and dropped, 1 MiB at
-- most (413 beyond); "Transfer-Encoding" gets 501. A connection idle for
-- 30 s is closed, and so is one whose client does not read what it asked
-- for within 30 s: the server holds no more than one answer per
-- connection.
--
-- Ends with status 0 at the end of its standard input (Ctrl-D, or the
-- other end of a pipe closing; what is typed is ignored) or on Ctrl-C
-- (SIGINT); SIGTERM ends it at once (the kernel closes its sockets).
local loop = require "lepoll.loop"
local socket = require "socket"

local MAX_HEAD = 16 * 1024
local MAX_BODY = 1024 * 1024
local IDLE = 30 -- seconds

local BIG
do
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  BIG = table.concat(bytes):rep(4096) -- 1 MiB
end

local REASONS = {
  [200] = "OK", [400] = "Bad Request", [404] = "Not Found", [405] = "Method Not Allowed",
  [413] = "Content Too Large", [431] = "Request Header Fields Too Large", [501] = "Not Implemented",
}

local find, sub, lower, match, format = string.find, string.sub, string.lower, string.match, string.format

local function head(status, length, keep)
  return format("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n",
    status, REASONS[status], length, keep and "keep-alive" or "close")
end

-- What a request gets: status and body.
local function answer(method, target)
  if method ~= "GET" and method ~= "HEAD" then return 405, "method not allowed\n" end
  if target == "/" then return 200, "hello" end
  if target == "/big" then return 200, BIG end
  return 404, "not found\n"
end

-- Parses the head at the start of buf (up to its empty line, which ends at
-- `stop`). -> method, target, keep (whether the connection stays open),
-- body length; or nil and the status of a refusal.
local function parse(buf, stop)
  local line_end = find(buf, "\r?\n")
  local method, target, major, minor = match(sub(buf, 1, line_end - 1), "^(%u+) (%S+) HTTP/(%d)%.(%d)$")
  if not method then return nil, 400 end
  local keep = major == "1" and minor == "1"
  local length = 0
  local pos = line_end + (sub(buf, line_end, line_end) == "\r" and 2 or 1)
  while pos < stop do
    local e = find(buf, "\n", pos, true)
    local line = sub(buf, pos, (sub(buf, e - 1, e - 1) == "\r") and e - 2 or e - 1)
    pos = e + 1
    if line == "" then break end
    local name, value = match(line, "^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil, 400 end
    name = lower(name)
    if name == "connection" then
      value = lower(value)
      if find(value, "close", 1, true) then
        keep = false
      elseif find(value, "keep-alive", 1, true) then
        keep = true
      end
    elseif name == "content-length" then
      length = match(value, "^%d+$") and tonumber(value)
      if not length then return nil, 400 end
      if length > MAX_BODY then return nil, 413 end
    elseif name == "transfer-encoding" then
      return nil, 501
    end
  end
  return method, target, keep, length
end

-- One connection: requests in, answers out, until either side ends it.
local function serve(conn)
  -- Answers go at once (LuaSec's connections have no setoption).
  if not conn.tls then conn:setoption("tcp-nodelay", true) end
  local buf = ""
  while true do
    -- The head: up to the first empty line; empty lines before a request
    -- line are skipped (RFC 9112, 2.2).
    local stop
    while true do
      local first = find(buf, "[^\r\n]")
      if first then
        if first > 1 then buf = sub(buf, first) end
        stop = select(2, find(buf, "\r?\n\r?\n"))
        if stop and stop <= MAX_HEAD then break end
      else
        buf = ""
      end
      if #buf > MAX_HEAD then
        local body = "request head too large\n"
        conn:send(head(431, #body, false) .. body)
        return
      end
      local data = conn:receivesome(16384)
      if not data then return end -- closed, failed, or idle too long
      buf = buf .. data
    end
    local method, target, keep, length = parse(buf, stop)
    if not method then
      local body = REASONS[target] .. "\n"
      conn:send(head(target, #body, false) .. body)
      return
    end
    buf = sub(buf, stop + 1)
    -- A body is read and dropped.
    while length > 0 do
      if #buf >= length then
        buf = sub(buf, length + 1)
        length = 0
      else
        length = length - #buf
        local data = conn:receivesome(math.min(length, 65536))
        if not data then return end
        buf = data
      end
    end
    local status, body = answer(method, target)
    local h = head(status, #body, keep)
    local ok
    if method == "HEAD" then
      ok = conn:send(h)
    elseif #body < 4096 then
      ok = conn:send(h .. body)
    else
      ok = conn:send(h) and conn:send(body)
    end
    if not ok or not keep then return end
  end
end

local function usage()
  io.stderr:write("usage: lua examples/http_server.lua [--cert FILE --key FILE] [port [host]]\n")
  os.exit(2)
end

local function main(...)
  local args, cert, key = {}, nil, nil
  local argv = { ... }
  local i = 1
  while argv[i] do
    if argv[i] == "--cert" then
      cert, i = argv[i + 1] or usage(), i + 2
    elseif argv[i] == "--key" then
      key, i = argv[i + 1] or usage(), i + 2
    else
      args[#args + 1], i = argv[i], i + 1
    end
  end
  if (cert == nil) ~= (key == nil) or #args > 2 then usage() end
  local port = tonumber(args[1] or "0")
  if not port then usage() end
  local host = args[2] or "127.0.0.1"

  local l = loop.new({
    -- A failing connection is reported and the others go on; Ctrl-C's
    -- "interrupted!" ends the server, wherever it is raised.
    on_error = function(err, where)
      if type(err) == "string" and find(err, "interrupted!$") then error(err, 0) end
      io.stderr:write("http_server: ", tostring(where), "\n")
    end,
  })
  local listener, err = socket.bind(host, port, 1024)
  if not listener then
    io.stderr:write("http_server: ", host, ":", port, ": ", err, "\n")
    os.exit(1)
  end
  local tls = cert and { mode = "server", protocol = "any", certificate = cert, key = key } or nil
  local server = l:serve(listener, serve, { tls = tls, timeout = IDLE, max_connections = 100000 })

  local stdin
  local function stop()
    if stdin then stdin:stop() end
    server:close()
    l:close() -- ends the connections' tasks; run returns
  end
  -- End of input on stdin stops the server (read(1): the watcher runs only
  -- when stdin is readable, so it never blocks; input is ignored).
  local watched = pcall(function()
    stdin = l:io(io.stdin, "in", function()
      if io.stdin:read(1) == nil then stop() end
    end)
  end)
  if not watched then stdin = nil end -- /dev/null, a file: until a signal

  print(format("listening on %s://%s:%d", tls and "https" or "http", host, select(2, listener:getsockname())))
  io.stdout:flush()
  local ran, why = pcall(l.run, l)
  if not ran and (type(why) ~= "string" or not find(why, "interrupted!$")) then
    io.stderr:write("http_server: ", tostring(why), "\n")
    l:close()
    os.exit(1)
  end
  if not l:stats().closed then stop() end
end

main(...)
