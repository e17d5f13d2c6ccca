-- A round trip through the echo server (examples/echo_server.lua), server
-- and clients in one process on one lepoll.loop; what `make demo` runs after
-- the tour of the core. The clients are tasks: a task writes while another
-- reads the same socket, each waiting with l:writable or l:readable.
--
--     lua examples/roundtrip.lua
--
-- prints what happened and exits 0, or 1 if anything went wrong (or took
-- more than 10 seconds). Any Lua from 5.1 to 5.4, or LuaJIT: the loop and
-- the server are closed explicitly where Lua 5.4 alone could declare them
-- `<close>`. (The tasks wait outside any pcall: Lua 5.1 cannot yield
-- across one.)
local loop = require "lepoll.loop"
local socket = require "socket"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local echo = dofile(here .. "echo_server.lua")

local l = loop.new()
local server = assert(echo.start(l))
print(("echo server listening on %s:%d"):format(server.host, server.port))

local function connect()
  local sock = assert(socket.connect(server.host, server.port))
  sock:settimeout(0)
  return sock
end

-- Sends data whole, waiting while the kernel takes no more.
local function send_all(sock, data)
  local i = 1
  while i <= #data do
    local last, err, partial = sock:send(data, i) -- from byte i on
    i = (last or partial) + 1 -- the last byte sent, whole or partial
    if err == "timeout" then
      assert(l:writable(sock, 5), "the server stopped reading")
    elseif err then
      error("send: " .. err)
    end
  end
end

-- Reads n bytes, or up to the end of input when n is nil.
local function receive(sock, n)
  local parts, got = {}, 0
  while not n or got < n do
    local data, err, partial = sock:receive(n and math.min(n - got, 65536) or 65536)
    data = data or partial
    parts[#parts + 1] = data
    got = got + #data
    if err == "closed" then break end
    if err == "timeout" then
      assert(l:readable(sock, 5), "the server stopped answering")
    elseif err then
      error("receive: " .. err)
    end
  end
  return table.concat(parts)
end

local report = {}

-- 1. A greeting: sent, echoed.
l:spawn(function()
  local sock = connect()
  send_all(sock, "hello, epoll")
  report[1] = ("client 1: sent %q, got %q back"):format("hello, epoll", receive(sock, 12))
  sock:close()
end)

-- 2. Four megabytes at once: more than the kernel buffers, so the sends
-- are partial (the client's and the server's), and the server echoes while
-- the client still sends. The task writes; another task reads meanwhile.
l:spawn(function()
  local sock = connect()
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  local data = string.rep(table.concat(bytes), 4 * 4096) -- 4 MiB
  l:spawn(function()
    local back = receive(sock, #data)
    report[2] = ("client 2: sent %d bytes while reading, got %s"):format(#data,
      back == data and "every byte back, in order" or "something else back")
    sock:close() -- the writer is done: all was sent before all came back
  end)
  send_all(sock, data)
end)

-- 3. Lines, then the end of its input (shutdown): the server sends the
-- rest back and closes.
l:spawn(function()
  local sock = connect()
  send_all(sock, "one\ntwo\nthree\n")
  sock:shutdown("send")
  local back = receive(sock)
  local n = select(2, back:gsub("\n", ""))
  report[3] = ("client 3: sent 3 lines and shut down its side, got %d lines back, then the end"):format(n)
  sock:close()
end)

local function wait_for(cond)
  while not cond() do l:sleep(0.01) end
end

local watchdog = l:timer(10, function() error("the round trip took more than 10 seconds", 0) end)

l:spawn(function()
  wait_for(function() return report[1] and report[2] and report[3] end)
  for i = 1, 3 do print(report[i]) end
  wait_for(function() return server.nclients == 0 end)
  print(("server: %d clients accepted, %d connected"):format(server.accepted, server.nclients))

  -- 4. A client that vanishes: sends what the kernel takes of a megabyte
  -- (without waiting), reads nothing, then resets the connection.
  local sock = connect()
  sock:send(string.rep("x", 1024 * 1024))
  wait_for(function() return server.nclients == 1 end)
  sock:setoption("linger", { on = true, timeout = 0 }) -- close sends a reset
  sock:close()
  wait_for(function() return server.nclients == 0 end)
  print("client 4: sent data, read nothing and reset the connection: the server dropped it")
  print(("server: %d clients accepted, %d connected"):format(server.accepted, server.nclients))
  server:close()
  watchdog:stop()
end)

-- run returns once every task has ended and the watchdog is stopped; an
-- error in a task or the watchdog comes out of it.
local ok, err = pcall(l.run, l)
server:close() -- done already, unless something failed
l:close()
if not ok then
  io.stderr:write("roundtrip: ", tostring(err), "\n")
  os.exit(1)
end
print("done")
