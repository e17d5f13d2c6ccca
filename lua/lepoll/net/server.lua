-- lepoll.net.server: l:serve, a listening socket whose connections each
-- get a task running the handler with the connection wrapped (copas'
-- addserver). One task accepts; at the limit of concurrent connections it
-- waits for one to end (new connections wait in the kernel's backlog).
local wrapped = require "lepoll.net.socket"
local tls = require "lepoll.net.tls"

local M = {}

local type, error, tostring, setmetatable = type, error, tostring, setmetatable
local format = string.format

local Server = {}
Server.__index = Server

-- A failed accept that the socket's readiness would repeat at once (out
-- of descriptors, most often) waits this long before the next try.
local ACCEPT_BACKOFF = 0.05

local function check_options(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(format("bad argument #3 to 'serve' (table of options expected, got %s)", type(opts)), 4)
  end
  local max = opts.max_connections
  if max ~= nil and (type(max) ~= "number" or max < 1 or max ~= max) then
    error(format("bad argument #3 to 'serve' (max_connections must be a number >= 1, got %s)", tostring(max)), 4)
  end
  local timeout = opts.timeout
  if timeout ~= nil and type(timeout) ~= "number" then
    error(format("bad argument #3 to 'serve' (timeout must be a number of seconds, got %s)", type(timeout)), 4)
  end
  return opts
end

-- A connection's own task: TLS first when asked, then the handler. An
-- error in either is the task's, reported as the loop reports them.
local function handle(self, conn)
  if self.tls_context then
    local ok = conn:starttls(self.tls_context)
    if not ok then
      self.tls_failures = self.tls_failures + 1
      return
    end
  end
  self.handler(conn)
end

-- One connection: its task joined (so that yields work on every Lua, 5.1's
-- pcall included), then the connection closed however the task ended,
-- and its place given to the next.
local function connection(self, conn)
  self.loop:spawn(handle, self, conn):join()
  conn:close()
  self.active = self.active - 1
  self.done:signal()
end

local function accept_loop(self)
  local l, listener = self.loop, self.listener
  while not self.closed do
    while self.max and self.active >= self.max and not self.closed do
      self.done:wait()
    end
    if self.closed then break end
    local conn, err = listener:accept()
    if conn then
      if self.timeout then conn:settimeout(self.timeout) end
      self.active, self.accepted = self.active + 1, self.accepted + 1
      l:spawn(connection, self, conn)
    elseif err == "closed" then
      break
    else
      self.accept_errors = self.accept_errors + 1
      self.last_error = err
      l:sleep(ACCEPT_BACKOFF)
    end
  end
end

-- l:serve(sock, handler [, opts]) -> server
function M.serve(l, sock, handler, opts)
  local t = type(sock)
  local name = (t == "userdata" or t == "table") and tostring(sock) or ""
  if not (name:match("^tcp{server}") or name:match("^wrapped tcp{server}")) then
    error(format("bad argument #1 to 'serve' (listening LuaSocket TCP socket expected (socket.bind), got %s)",
      name ~= "" and name:match("^[^:]*") or t), 3)
  end
  if type(handler) ~= "function" then
    error(format("bad argument #2 to 'serve' (function expected, got %s)", type(handler)), 3)
  end
  opts = check_options(opts)
  local context = nil
  if opts.tls ~= nil then
    local err
    context, err = tls.context(opts.tls)
    if not context then error("serve: TLS parameters refused by LuaSec: " .. tostring(err), 3) end
  end
  local listener = wrapped.wrap(l, sock, 3)
  local self = setmetatable({
    loop = l, listener = listener, handler = handler,
    max = opts.max_connections, timeout = opts.timeout, tls_context = context,
    active = 0, accepted = 0, accept_errors = 0, tls_failures = 0, last_error = nil,
    closed = false, done = l:condition(), task = false,
  }, Server)
  self.task = l:spawn(accept_loop, self)
  return self
end

-- Stops accepting and closes the listening socket; connections being
-- served go on to their end.
function Server:close()
  if self.closed then return end
  self.closed = true
  self.done:broadcast()
  self.listener:close()
end

-- -> a table of counts: active, accepted, accept_errors, tls_failures.
function Server:stats()
  return {
    active = self.active, accepted = self.accepted,
    accept_errors = self.accept_errors, tls_failures = self.tls_failures,
  }
end

function Server:__tostring()
  return format("server{%s, active=%d%s}", tostring(self.listener:unwrap()), self.active,
    self.closed and ", closed" or "")
end

return M
