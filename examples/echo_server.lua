-- A TCP echo server on lepoll.loop and LuaSocket: one I/O watcher for the
-- listening socket, one per client; every socket is non-blocking
-- (settimeout(0)) and is read or written only when the loop says it is
-- ready.
--
-- As a program:
--
--     lua examples/echo_server.lua [port [host]]
--
-- (any Lua from 5.1 to 5.4, or LuaJIT: the loop and the server are closed
-- explicitly where Lua 5.4 alone could declare them `<close>`)
--
-- listens on host (default 127.0.0.1) and port (default 0: any free port),
-- prints `listening on HOST:PORT`, and serves until end of input on stdin
-- (Ctrl-D, or the other end of a pipe closing) or Ctrl-C (SIGINT): then it
-- closes every client and the listening socket and exits with status 0.
-- When stdin cannot be watched (/dev/null, a regular file) it serves until
-- stopped by a signal; SIGTERM ends it at once (the kernel closes its
-- sockets).
--
-- As a module (dofile or require; nothing runs then):
--
--     local echo = dofile("examples/echo_server.lua")
--     local server = echo.start(l, { port = 0 })   -- l: a lepoll.loop
--     print(server.host, server.port)
--     ... l:run() ...
--     server:close()       -- or, on Lua 5.4: local server <close> = ...
--
-- Each client has an output buffer: what was read and not yet sent back.
-- The watcher asks for "out" only while that buffer is not empty, and stops
-- asking for "in" while it holds max_pending bytes or more (a client that
-- sends without reading cannot make the server hold more than that), or
-- once the client has shut down its side. A client that resets or vanishes
-- is dropped: watcher stopped, socket closed.
local loop = require "lepoll.loop"
local socket = require "socket"

local M = {}

local CHUNK = 65536 -- bytes asked of receive at a time
local ACCEPTS = 64 -- connections accepted per event, before others' turn

local Server = {}
Server.__index = Server

local function drop(server, c)
  c.watcher:stop() -- before close: a closed descriptor cannot leave the set
  c.sock:close()
  server.clients[c] = nil
  server.nclients = server.nclients - 1
end

-- Reads what the client sent into its output buffer, until the kernel has
-- no more (LuaSocket's "timeout"), the client closed its side, or the
-- buffer is full. Returns false when the client must be dropped.
local function pump_in(server, c)
  local sock, out, max = c.sock, c.out, server.max_pending
  repeat
    local data, err, partial = sock:receive(CHUNK)
    data = data or partial
    if data ~= "" then
      c.last = c.last + 1
      out[c.last] = data
      c.pending = c.pending + #data
    end
    if err == "timeout" then return true end
    if err == "closed" then -- the end of its input, or a reset: sending tells
      c.eof = true
      return true
    end
    if err then return false end
  until c.pending >= max
  return true
end

-- Sends as much of the output buffer as the kernel takes. The first chunk
-- is sent from c.pos on: send(data, i) sends a slice without copying it
-- and returns the index of the last byte sent, also when it sent only part
-- (nil, "timeout", last). Returns false when the client must be dropped.
local function pump_out(server, c)
  local sock, out = c.sock, c.out
  while c.first <= c.last do
    local data = out[c.first]
    local last, err, partial = sock:send(data, c.pos)
    last = last or partial
    local sent = last - c.pos + 1
    c.pending = c.pending - sent
    server.bytes = server.bytes + sent
    if last < #data then
      c.pos = last + 1
      return err == "timeout" -- anything else: the client is gone
    end
    out[c.first] = nil
    c.first, c.pos = c.first + 1, 1
  end
  c.first, c.last = 1, 0
  return true
end

-- An event on a client's socket: read (unless its buffer is full or it
-- closed its side), send back at once what the kernel takes, then watch for
-- what is needed next. Sending at once succeeds most of the time, so "out"
-- is watched only while the kernel holds output back.
local function serve(server, c)
  local max = server.max_pending
  if not c.eof and c.pending < max and not pump_in(server, c) then return drop(server, c) end
  if c.pending > 0 and not pump_out(server, c) then return drop(server, c) end
  if c.eof and c.pending == 0 then return drop(server, c) end -- all sent back
  local flags
  if c.eof or c.pending >= max then
    flags = "out"
  elseif c.pending > 0 or c.sock:dirty() then
    -- dirty: LuaSocket holds bytes it took from the kernel when the buffer
    -- filled; no "in" event would come for them, "out" comes at once.
    flags = "in|out"
  else
    flags = "in"
  end
  if flags ~= c.flags then
    c.flags = flags
    c.watcher:set(flags)
  end
end

local function accept(server)
  for _ = 1, ACCEPTS do
    local sock, err = server.listener:accept()
    if not sock then
      if err ~= "timeout" then
        -- Out of descriptors, most likely (the listener stays readable):
        -- stop accepting for a moment rather than spin.
        io.stderr:write("echo_server: accept: ", err, "\n")
        server.acceptor:stop()
        server.resume:again()
      end
      return
    end
    sock:settimeout(0)
    sock:setoption("tcp-nodelay", true)
    local c = {
      sock = sock, out = {}, first = 1, last = 0, pos = 1, pending = 0,
      eof = false, flags = "in",
    }
    c.watcher = server.loop:io(sock, "in", function() serve(server, c) end)
    server.clients[c] = true
    server.nclients = server.nclients + 1
    server.accepted = server.accepted + 1
  end
end

-- Starts an echo server on the loop l. opts (all optional): host (default
-- "127.0.0.1"), port (default 0: any free port), backlog (default 4096, as
-- the kernel caps it), max_pending (default 256 KiB: the bytes held for a
-- client before it is no longer read). Returns the server, or nil and a
-- message when the address cannot be bound. server.host and server.port are
-- where it listens; server.nclients, server.accepted and server.bytes
-- (bytes sent back) count.
function M.start(l, opts)
  opts = opts or {}
  local listener, err = socket.bind(opts.host or "127.0.0.1", opts.port or 0, opts.backlog or 4096)
  if not listener then return nil, err end
  listener:settimeout(0)
  local host, port = listener:getsockname()
  local server = setmetatable({
    loop = l, listener = listener, host = host, port = tonumber(port),
    max_pending = opts.max_pending or 256 * 1024,
    clients = {}, nclients = 0, accepted = 0, bytes = 0,
  }, Server)
  server.acceptor = l:io(listener, "in", function() accept(server) end)
  server.resume = l:timer(0.1, function() server.acceptor:start() end)
  server.resume:stop()
  return server
end

-- Stops accepting, drops every client and closes the listening socket.
function Server:close()
  if not self.listener then return end
  self.acceptor:stop()
  self.resume:stop()
  self.listener:close()
  self.listener = nil
  for c in pairs(self.clients) do drop(self, c) end
end

Server.__close = Server.close

local function main(port, host)
  port = tonumber(port or 0)
  if not port then
    -- arg[-1]: the interpreter as it was invoked (lua5.4, luajit, ...)
    io.stderr:write(("usage: %s examples/echo_server.lua [port [host]]\n"):format(arg and arg[-1] or "lua"))
    os.exit(2)
  end
  local l = loop.new()
  local server, err = M.start(l, { host = host, port = port })
  if not server then
    io.stderr:write("echo_server: ", err, "\n")
    l:close()
    os.exit(1)
  end
  local stdin
  local function stop()
    if stdin then stdin:stop() end
    server:close()
  end
  -- End of input on stdin stops the server. read(1) never blocks here: the
  -- watcher is called only when stdin is readable, and a read of one byte
  -- makes at most one read(2), which then returns at once. Input is
  -- ignored; at end of input read returns nil.
  local ok = pcall(function()
    stdin = l:io(io.stdin, "in", function()
      if io.stdin:read(1) == nil then stop() end
    end)
  end)
  if not ok then stdin = nil end -- not pollable: serve until a signal
  print(("listening on %s:%d"):format(server.host, server.port))
  io.stdout:flush()
  -- Ctrl-C makes the interpreter raise "interrupted!" in whatever Lua code
  -- runs next, here within run: a clean stop too.
  local ran, why = pcall(l.run, l)
  if not ran and (type(why) ~= "string" or not why:find("interrupted!$")) then
    server:close()
    l:close()
    error(why, 0)
  end
  stop() -- after Ctrl-C; at the end of input, stopped already
  l:close()
end

-- Run as the program (lua examples/echo_server.lua ...): the chunk was
-- loaded from the script named on the command line. Otherwise a module.
if arg and arg[0] and debug.getinfo(1, "S").source == "@" .. arg[0] then
  main(...)
else
  return M
end
