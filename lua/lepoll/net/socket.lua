-- lepoll.net.socket: wrapped sockets. A LuaSocket TCP or UDP object, or a
-- LuaSec connection, whose calls, made in a task of a lepoll.loop, read
-- like LuaSocket's blocking calls while the rest of the loop runs.
--
-- The object underneath is kept non-blocking (timeout 0); each method
-- calls it, and where LuaSocket would block (it answers "timeout", or
-- LuaSec "wantread"/"wantwrite"), the task waits in l:readable or
-- l:writable and calls again. The wrapped object's own timeouts
-- (settimeout) limit those waits, and an operation that runs out of time
-- returns what LuaSocket returns then: nil, "timeout" and the partial
-- result. Every other method of the object underneath is passed through.
--
-- Uses the loop's public functions (running, closing, now) and the wait
-- of l:readable and l:writable (lepoll.loop.waits: wait_read and
-- wait_write), told the method's name and its caller's level: an error of
-- a wait (a second task reading the socket, a call that cannot yield)
-- names the method and points at the line that called it.
local M = {}

local lepoll = require "lepoll"
local waits = require "lepoll.loop.waits"
local wait_read, wait_write = waits.wait_read, waits.wait_write
local resolve = require "lepoll.net.resolve"
local tls = require "lepoll.net.tls"

local error, type, tostring, setmetatable, getmetatable, rawget, pairs =
  error, type, tostring, setmetatable, getmetatable, rawget, pairs
local concat = table.concat
local rawread = lepoll.read
local format = string.format

local Wrapped = {}

-- A forwarding function per method name of the objects underneath, made
-- once per name (bounded by the methods LuaSocket and LuaSec have).
local forwarders = {}

local function forwarder(key)
  local f = forwarders[key]
  if not f then
    f = function(w, ...)
      local s = w.sock
      return s[key](s, ...)
    end
    forwarders[key] = f
  end
  return f
end

local function tostring_wrapped(self)
  return "wrapped " .. tostring(self.sock)
end

-- A wrapped object closes the object underneath when it goes out of
-- scope (5.4's <close>), as the object itself would.
local function close_wrapped(self)
  self:close()
end

-- The metatables of wrapped objects, one per metatable of the objects
-- underneath (LuaSocket's classes, LuaSec's): its __index is a plain table
-- of this file's methods and a forwarder for each method of that class, so
-- that a method costs one table lookup and a missing one is nil. An object
-- whose class keeps its methods elsewhere (an __index function) gets the
-- generic metatable, which asks the object at each lookup.
local classes = setmetatable({}, { __mode = "k" }) -- class of the object -> metatable
local is_wrapped = setmetatable({}, { __mode = "k" }) -- the metatables above

local GENERIC = { __name = "lepoll.wrapped", __tostring = tostring_wrapped, __close = close_wrapped }
function GENERIC.__index(self, key)
  local m = Wrapped[key]
  if m ~= nil then return m end
  local sock = rawget(self, "sock")
  if type(key) ~= "string" or type(sock[key]) ~= "function" then return nil end
  return forwarder(key)
end
is_wrapped[GENERIC] = true

local function class_of(sock)
  local class = getmetatable(sock)
  local mt = type(class) == "table" and classes[class]
  if mt then return mt end
  local methods = type(class) == "table" and rawget(class, "__index")
  if type(methods) ~= "table" then return GENERIC end
  local index = {}
  for k, v in pairs(methods) do
    if type(k) == "string" and type(v) == "function" then index[k] = forwarder(k) end
  end
  for k, v in pairs(Wrapped) do index[k] = v end
  mt = { __name = "lepoll.wrapped", __index = index, __tostring = tostring_wrapped, __close = close_wrapped }
  classes[class] = mt
  is_wrapped[mt] = true
  return mt
end

-- The error for a call outside the loop's tasks: only a task can wait.
-- level: the caller's, counted from here.
local function outside(name, level)
  error(format("%s must be called from a task of the loop (see spawn): a wrapped socket waits as a blocking one does",
    name), level or 3)
end

-- Whether the caller runs in a task of the wrapped object's loop. The
-- coroutine that passed last is remembered: the same coroutine is the
-- same task, until it ends (a task's coroutine is never another's).
local co_running = coroutine.running

local function in_task(self)
  local co = co_running()
  if co and co == self.co then return true end
  if not self.loop:running() then return false end
  self.co = co
  return true
end

-- The limit of the next wait of an operation that began at `start` (nil
-- when there is no total timeout): the block timeout for each wait, the
-- total timeout for the whole call, whichever ends first; nil, no limit.
local function wait_limit(self, start)
  local block, total = self.block, self.total
  if not total then return block or nil end
  local left = start + total - self.loop:now()
  if block and block < left then return block end
  return left
end

-- Waits until the object underneath is readable (reading) or writable,
-- for the method `name`, whose errors go to `level` as the function that
-- calls wait would pass it to error. -> true, or nil and "timeout" or
-- "closed".
local function wait(self, reading, start, name, level)
  local limit = self.block or nil
  if self.total then limit = wait_limit(self, start) end
  if limit and limit <= 0 then return nil, "timeout" end
  local ok, why
  if reading then -- levels count wait
    ok, why = wait_read(self.loop, self.sock, limit, name, level + 1)
  else
    ok, why = wait_write(self.loop, self.sock, limit, name, level + 1)
  end
  return ok, why
end
M.wait = wait

-- The retry answers: LuaSocket's "timeout" and LuaSec's "wantread" wait
-- to read (a TLS write may need to read first), "wantwrite" to write.
local READ_AGAIN = { timeout = true, wantread = true }
local AGAIN = { timeout = true, wantread = true, wantwrite = true }

local PATTERNS = { l = "*l", a = "*a" } -- Lua 5.4 io's names, as LuaSocket's

-- receive([pattern [, prefix]]): LuaSocket's patterns ("*l", "*a", a byte
-- count; "l", "a" too) and prefix. -> the data, or nil, the error and the
-- partial result ("timeout" or "closed" included).
function Wrapped:receive(pattern, prefix)
  local l = self.loop
  if not in_task(self) then outside("receive") end
  pattern = PATTERNS[pattern] or pattern
  if pattern ~= nil and pattern ~= "*l" and pattern ~= "*a" and (type(pattern) ~= "number" or pattern < 0) then
    error("bad argument #1 to 'receive' (invalid receive pattern)", 2)
  end
  local sock = self.sock
  local start = self.total and l:now()
  local count = type(pattern) == "number" and pattern
  -- What the earlier calls gave, kept in pieces rather than passed back as
  -- the next prefix (which would copy it again each time): `first` alone,
  -- or all of them in `more`; `have` bytes in all.
  local first, more, have = nil, nil, 0
  local pat, part = pattern, prefix
  while true do
    local data, err, partial = sock:receive(pat, part)
    if data then
      if not first then return data, err, partial end
      if more then
        more[#more + 1] = data
        return concat(more), nil, nil
      end
      return first .. data, nil, nil
    end
    if partial and partial ~= "" then
      if not first then
        first = partial
      elseif more then
        more[#more + 1] = partial
      else
        more = { first, partial }
      end
      have = have + #partial
    end
    if not AGAIN[err] then
      return nil, err, more and concat(more) or first or partial
    end
    part = nil
    if count then pat = count - have end
    local ok, why = wait(self, READ_AGAIN[err], start, "receive", 2)
    if not ok then return nil, why, more and concat(more) or first or "" end
  end
end

-- receivesome([max]): what has come, 1 to max bytes (default 65536),
-- waiting only while nothing has; for relays and echoes, which LuaSocket's
-- patterns (a line, everything, exactly n bytes) do not serve. -> the
-- data, or nil and the error ("closed" at the end, once what came before
-- it was returned).
local SOME = 65536

function Wrapped:receivesome(max)
  local l = self.loop
  if not in_task(self) then outside("receivesome") end
  if max == nil then
    max = SOME
  elseif type(max) ~= "number" or max < 1 or max ~= max then
    error(format("bad argument #1 to 'receivesome' (a byte count >= 1 expected, got %s)", tostring(max)), 2)
  end
  local sock = self.sock
  local start = self.total and l:now()
  -- When the last call emptied the socket (it ended in "timeout": the
  -- kernel had no more), the peer has most likely not written since: wait
  -- first rather than make a read bound to find nothing (a request and
  -- response protocol, every time). l:readable returns at once while
  -- LuaSocket or LuaSec hold input, and epoll reports what came meanwhile.
  if self.drained then
    self.drained = false
    local ok, why = wait(self, true, start, "receivesome", 2)
    if not ok then return nil, why end
  end
  while true do
    local data, err, partial
    local fd = self.tcp and not self.tls and sock:getfd()
    if fd and fd >= 0 and not sock:dirty() then
      -- LuaSocket's buffer is empty: one read(2) of the descriptor, where
      -- LuaSocket's receive would make a second one to learn that nothing
      -- more is there. A read that ends short of max has most likely
      -- emptied the socket (as libuv reasons too).
      data, err = rawread(fd, max)
      if data and data ~= "" then
        self.drained = #data < max
        return data
      elseif err == "again" then
        data, err = nil, "timeout"
      else -- the end, or a failure: LuaSocket's receive says it in its words
        data, err, partial = sock:receive(max)
      end
    else
      data, err, partial = sock:receive(max)
    end
    if data then return data end
    if partial and partial ~= "" then
      self.drained = err == "timeout"
      return partial
    end
    if not AGAIN[err] then return nil, err end
    local ok, why = wait(self, READ_AGAIN[err], start, "receivesome", 2)
    if not ok then return nil, why end
  end
end

-- send(data [, i [, j]]): all of data[i..j]. -> the index of the last
-- byte sent, or nil, the error and the index of the last byte sent.
function Wrapped:send(data, i, j)
  local l = self.loop
  if not in_task(self) then outside("send") end
  -- LuaSocket's own checks would name neither send nor the caller's line
  local t = type(data)
  if t ~= "string" and t ~= "number" then
    error(format("bad argument #1 to 'send' (string expected, got %s)", t), 2)
  elseif i ~= nil and type(i) ~= "number" then
    error(format("bad argument #2 to 'send' (number expected, got %s)", type(i)), 2)
  elseif j ~= nil and type(j) ~= "number" then
    error(format("bad argument #3 to 'send' (number expected, got %s)", type(j)), 2)
  end
  local sock = self.sock
  local start = self.total and l:now()
  while true do
    local last, err, sent = sock:send(data, i, j)
    if last then return last, err, sent end
    if not AGAIN[err] then return nil, err, sent end
    i = sent + 1
    local ok, why = wait(self, err == "wantread", start, "send", 2)
    if not ok then return nil, why, sent end
  end
end

-- Calls the object's `method` with a, b, c until it gives a result or an
-- error other than "timeout", waiting to read (reading) or to write in
-- between. -> what the method returned last, or nil and the wait's error.
local function retry(self, name, method, reading, a, b, c)
  local l = self.loop
  if not in_task(self) then outside(name, 4) end
  local sock = self.sock
  local start = self.total and l:now()
  while true do
    local r1, r2, r3 = sock[method](sock, a, b, c)
    if r1 or r2 ~= "timeout" then return r1, r2, r3 end
    local ok, why = wait(self, reading, start, name, 3)
    if not ok then return nil, why end
  end
end

-- UDP: receivefrom([size]) -> datagram, ip, port; or nil and the error.
-- (Not tail calls: error levels count these frames.)
function Wrapped:receivefrom(size)
  local data, ip, port = retry(self, "receivefrom", "receivefrom", true, size)
  return data, ip, port
end

-- UDP: sendto(datagram, ip, port) -> bytes sent, or nil and the error.
function Wrapped:sendto(data, ip, port)
  local n, err = retry(self, "sendto", "sendto", false, data, ip, port)
  return n, err
end

-- accept() -> the accepted socket, wrapped (no timeout of its own), or
-- nil and the error.
function Wrapped:accept()
  local c, err = retry(self, "accept", "accept", true)
  if c then return M.wrap(self.loop, c) end
  return nil, err
end

-- Connects to one numeric address, for connect. -> 1, or nil and the
-- error.
local function connect_address(self, address, port, start)
  local sock = self.sock
  local ok, err = sock:connect(address, port)
  if ok then return ok end
  if err ~= "timeout" then return nil, err end
  -- In progress: writable once it succeeded or failed; connect again
  -- tells which (the kernel reports the pending error there).
  local done, why = wait(self, false, start, "connect", 3)
  if not done then return nil, why end
  ok, err = sock:connect(address, port)
  if ok or err == "already connected" then return 1 end
  return nil, err
end

-- connect(host, port): host a name (resolved without blocking the loop,
-- lepoll.net.resolve) or an address; each address of a name is tried in
-- turn. -> 1, or nil and the error.
function Wrapped:connect(host, port)
  local l = self.loop
  if not in_task(self) then outside("connect") end
  local start = self.total and l:now()
  local addresses, err = resolve.addresses(l, host, self.family)
  if not addresses then return nil, err end
  for k = 1, #addresses do
    local ok
    ok, err = connect_address(self, addresses[k].address, port, start)
    if ok then return ok end
    if err == "timeout" or err == "closed" then break end
  end
  return nil, err
end

-- The TLS handshake, for the method `name` (dohandshake, starttls).
local function handshake(self, name)
  local l = self.loop
  local sock = self.sock
  local start = self.total and l:now()
  while true do
    local ok, err = sock:dohandshake()
    if ok then return ok end
    if err ~= "wantread" and err ~= "wantwrite" and err ~= "timeout" then return nil, err end
    local done, why = wait(self, err ~= "wantwrite", start, name, 3)
    if not done then return nil, why end
  end
end

-- dohandshake(): a LuaSec connection's TLS handshake. -> true, or nil and
-- LuaSec's error (a certificate that does not verify, among others).
function Wrapped:dohandshake()
  if not in_task(self) then outside("dohandshake") end
  local ok, err = handshake(self, "dohandshake") -- not a tail call: levels count this frame
  return ok, err
end

-- starttls(params [, servername]): TLS over the connection, as LuaSec's
-- ssl.wrap(sock, params) (a params table or a context from
-- ssl.newcontext), then the handshake; servername for SNI (client).
-- -> true, or nil and the error. The wrapped object then reads and writes
-- through TLS.
function Wrapped:starttls(params, servername)
  if not in_task(self) then outside("starttls") end
  if self.tls then error("starttls: the connection already uses TLS", 2) end
  local ssl = tls.luasec()
  local conn, err = ssl.wrap(self.sock, params)
  if not conn then return nil, err end
  -- From here the TCP object is LuaSec's (ssl.wrap took its descriptor).
  conn:settimeout(0)
  self.sock, self.tls = conn, true
  setmetatable(self, class_of(conn))
  if servername then conn:sni(servername) end
  local ok, why = handshake(self, "starttls") -- not a tail call: levels count this frame
  return ok, why
end

-- settimeout(value [, mode]): LuaSocket's: mode "b" (the default) limits
-- each wait, "t" the whole call; nil or a negative value, no limit.
function Wrapped:settimeout(value, mode)
  if value ~= nil and type(value) ~= "number" then
    error(format("bad argument #1 to 'settimeout' (number expected, got %s)", type(value)), 2)
  end
  if value == nil or value < 0 or value ~= value then value = false end
  if mode == nil or mode == "b" or mode == "r" then
    self.block = value
  elseif mode == "t" then
    self.total = value
  else
    error(format("bad argument #2 to 'settimeout' (invalid timeout mode '%s')", tostring(mode)), 2)
  end
  return 1
end

-- gettimeout() -> the block and the total timeout, -1 for none (LuaSocket's).
function Wrapped:gettimeout()
  return self.block or -1, self.total or -1
end

-- close(): wakes the tasks waiting on the socket (their waits return nil,
-- "closed"; l:closing), then closes it. Closing twice is allowed.
function Wrapped:close()
  if self.closed then return 1 end
  self.closed = true
  local sock, l = self.sock, self.loop
  local fd = sock:getfd()
  if fd and fd >= 0 then l:closing(sock) end
  return sock:close()
end

-- The object underneath (after starttls, LuaSec's connection).
function Wrapped:unwrap()
  return self.sock
end

-- wrap(l, sock) -> the wrapped socket; a wrapped one is returned as it is.
-- The object is set non-blocking, and stays so.
function M.wrap(l, sock, level)
  level = level or 1
  if is_wrapped[getmetatable(sock)] then
    if sock.loop ~= l then error("bad argument #1 to 'wrap' (socket wrapped by another loop)", level + 1) end
    return sock
  end
  local t = type(sock)
  if (t ~= "userdata" and t ~= "table") or type(sock.getfd) ~= "function" or type(sock.settimeout) ~= "function" then
    error(format("bad argument #1 to 'wrap' (LuaSocket or LuaSec object expected, got %s)", t), level + 1)
  end
  sock:settimeout(0)
  local name = tostring(sock)
  local family = name:match("^tcp6") and "inet6" or name:match("^tcp4") and "inet" or nil
  return setmetatable({
    loop = l, sock = sock, block = false, total = false, closed = false, drained = false, co = false,
    tls = name:match("^SSL") ~= nil, family = family, tcp = name:match("^tcp") ~= nil,
  }, class_of(sock))
end

return M
