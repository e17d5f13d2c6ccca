-- The echo server example (examples/echo_server.lua) as a program, in a
-- child process, under load: 200 concurrent loopback clients each sending
-- 200 messages of random sizes up to 64 KiB, every byte checked on its way
-- back; thousands of clients at once; clients that vanish. The server's
-- descriptors are counted in /proc/PID/fd.
--
-- The sizes and the bytes come from a seed, printed with each run; set
-- LEPOLL_SEED to replay one (with the same Lua: math.random differs
-- between versions).
--
-- The server runs under the interpreter that runs the suite (H.LUA).
local lepoll = require "lepoll"
local socket = require "socket"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)
local defer = C.defer

local now = lepoll.now

local LUA = H.LUA
local unpack = table.unpack or rawget(_G, "unpack")
local HOST = "127.0.0.1"

local NCLIENTS, NMESSAGES, MAXLEN = 200, 200, 64 * 1024
local POOL = 1024 * 1024 -- the random bytes messages are cut from
local LOAD_LIMIT = 600 -- seconds the whole load may take (a backstop: STALL catches a hang)
local STALL = 30 -- seconds a client may wait for the server

local quote = H.quote

-- The child finds lepoll where this process does.
local ENV = H.CHILD_ENV

local new_loop = C.new_loop

-- A new path for an exit status, and the shell command that writes it
-- (nothing and "" where file:close tells how the command exited: from Lua
-- 5.2 on, not on 5.1 nor LuaJIT). H.exit_status reads it back.
local function status_file()
  if H.has.popen_status then return nil, "" end
  local path = os.tmpname()
  return path, "; echo $? >" .. quote(path)
end

-- Output and exit of a short-lived command (bounded by `timeout`).
local run = H.run

-- An integer from a string, or nil.
local function integer(s)
  local n = tonumber(s)
  return n and H.tointeger(n)
end

local function random_bytes(n)
  local parts, bytes = {}, {}
  for i = 1, math.floor(n / 256) do
    for k = 1, 256 do bytes[k] = math.random(0, 255) end
    parts[i] = string.char(unpack(bytes))
  end
  return table.concat(parts)
end

------------------------------------------------------------ the server

-- The server as documented: `LUA examples/echo_server.lua PORT` (PORT
-- is `port`, default 0), its stdin a named pipe whose only writer is this
-- process (closing it is the end of input that stops the server) or, with
-- `null`, /dev/null. Its stdout is read raw, with deadlines, through a
-- lepoll set. A shell prints its pid, then becomes the server; on Lua 5.1
-- and LuaJIT, a shell around it writes its exit status to s.status.
local Server = {}
Server.__index = Server

local function start_server(port, null)
  local s = setmetatable({ out = "" }, Server)
  defer(function() s:cleanup() end)
  local stdin = "/dev/null"
  if not null then
    s.fifo = os.tmpname()
    os.remove(s.fifo)
    assert(os.execute("mkfifo " .. quote(s.fifo)))
    -- Read-write: opening does not wait for the reader. Close-on-exec: the
    -- child does not get this end, or its stdin would never end.
    s.ctl = assert(T.open(s.fifo))
    stdin = s.fifo
  end
  local server = ("%s %s examples/echo_server.lua %d <%s"):format(ENV, LUA, port or 0, quote(stdin))
  local write_status
  s.status, write_status = status_file()
  if s.status then
    -- The outer shell waits for the server and writes its status; its own
    -- stderr goes to /dev/null (or it would report a signal there), the
    -- server's stays the suite's (kept as fd 3 until the inner shell execs).
    s.p = assert(io.popen(("exec 3>&2 2>/dev/null; sh -c 'exec 2>&3 3>&-; echo $$; exec \"$@\"' echo_server %s%s")
      :format(server, write_status)))
  else
    s.p = assert(io.popen("echo $$; exec " .. server))
  end
  s.ep = lepoll.create()
  s.fd = s.ep:tofd(s.p)
  s.ep:set(s.fd, "in")
  s.pid = assert(integer(s:line(10)), "no pid")
  local listening = s:line(10)
  s.port = tonumber(listening:match("^listening on 127%.0%.0%.1:(%d+)$"))
  assert(s.port, "unexpected first line: " .. listening)
  if s.fifo then os.remove(s.fifo) end -- the server has it open
  return s
end

-- Reads what the server printed, once it has printed something, into
-- self.out; false when nothing came before `deadline`.
function Server:fill(deadline)
  local left = deadline - now()
  if left <= 0 or self.ep:wait(left) ~= "ok" then return false end
  local data = assert(T.read(self.fd))
  if data == "" then self.eof = true end
  self.out = self.out .. data
  return true
end

-- The next line the server prints; fails after `seconds`.
function Server:line(seconds)
  local deadline = now() + seconds
  while true do
    local line, rest = self.out:match("^([^\n]*)\n(.*)$")
    if line then
      self.out = rest
      return line
    end
    assert(not self.eof, "the server ended its output early: " .. self.out)
    assert(self:fill(deadline), ("the server printed no line for %g s (so far: %q)"):format(seconds, self.out))
  end
end

-- Descriptors the server has open.
function Server:fdcount()
  local ls = assert(io.popen("ls /proc/" .. self.pid .. "/fd 2>/dev/null"))
  local n = 0
  for _ in ls:lines() do n = n + 1 end
  ls:close()
  return n
end

-- Waits until the server has `n` descriptors open; fails after `seconds`.
function Server:await_fdcount(n, seconds)
  local deadline, count = now() + seconds
  repeat
    count = self:fdcount()
    if count == n then return end
    socket.sleep(0.01)
  until now() > deadline
  assert.are.equal(n, count, "the server's descriptors")
end

-- Ends the server's input, or sends it `signal` (a name for kill); returns
-- what it printed after its first line and how it exited (as file:close
-- does). Fails when it does not exit within `seconds`.
function Server:stop(seconds, signal)
  if signal then
    assert(os.execute(("kill -%s %d"):format(signal, self.pid)))
  else
    T.close(self.ctl)
    self.ctl = nil
  end
  local deadline = now() + (seconds or 10)
  while not self.eof do
    assert(self:fill(deadline), "the server did not exit at the end of its input")
  end
  local ok, how, code = self.p:close()
  self.p = nil
  if self.status then ok, how, code = H.exit_status(self.status) end
  self.status = nil
  return self.out, ok, how, code
end

-- Whatever the test did: no child, pipe or set left behind.
function Server:cleanup()
  if self.ctl then T.close(self.ctl) end
  if self.p then
    local deadline = now() + 5
    while not self.eof and self:fill(deadline) do end
    if not self.eof and self.pid then os.execute("kill -9 " .. self.pid) end
    self.p:close()
  end
  if self.ep then self.ep:close() end
  if self.fifo then os.remove(self.fifo) end
  if self.status then os.remove(self.status) end
end

------------------------------------------------------------ the clients

local function connect(port, clients)
  local sock = assert(socket.tcp())
  clients[#clients + 1] = sock
  sock:settimeout(5)
  assert(sock:connect(HOST, port))
  sock:settimeout(0)
  return sock
end

local function close_all(clients)
  for _, sock in ipairs(clients) do sock:close() end
end

-- The client's side after it sent everything and got it all back: it ends
-- its input, and the server closes with nothing more to send.
local function finish(sock)
  sock:settimeout(5)
  assert(sock:shutdown("send"))
  assert.are.same({ nil, "closed", "" }, { sock:receive("*a") }) -- nothing more, then the end
end

-- Sends data[i..j] whole from a task, waiting for writability.
local function send_all(l, sock, data, i, j, what)
  while i <= j do
    local last, err, partial = sock:send(data, i, j)
    i = (last or partial) + 1
    if err == "timeout" then
      if not l:writable(sock, STALL) then error(what .. ": the server read nothing for " .. STALL .. " s", 0) end
    elseif err then
      error(what .. ": send: " .. err, 0)
    end
  end
end

-- Receives n bytes from a task, waiting for readability.
local function receive_n(l, sock, n, what)
  local parts, got = {}, 0
  while got < n do
    local data, err, partial = sock:receive(n - got)
    data = data or partial
    parts[#parts + 1] = data
    got = got + #data
    if err == "timeout" then
      if not l:readable(sock, STALL) then error(what .. ": nothing came back for " .. STALL .. " s", 0) end
    elseif err then
      error(("%s: receive after %d of %d bytes: %s"):format(what, got, n, err), 0)
    end
  end
  return table.concat(parts)
end

describe("the echo server example as a program", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("prints where it listens, serves, and exits 0 at the end of its input", function()
    local s = start_server()
    local base = s:fdcount()
    local clients = {}
    defer(function() close_all(clients) end)
    local sock = connect(s.port, clients)
    sock:settimeout(5)
    assert.are.equal(5, sock:send("hello"))
    assert.are.equal("hello", sock:receive(5))
    s:await_fdcount(base + 1, 10)
    finish(sock)
    s:await_fdcount(base, 10)
    assert.are.same({ "", true, "exit", 0 }, { s:stop() })
  end)

  it("listens on the port asked for, and fails with a message when it is taken", function()
    local taken = assert(socket.bind(HOST, 0))
    defer(function() taken:close() end)
    local _, port = taken:getsockname()
    port = tonumber(port)
    local cmd = ("%s timeout 20 %s examples/echo_server.lua %d %s </dev/null"):format(ENV, LUA, port, HOST)
    assert.are.same({ "echo_server: address already in use\n", nil, "exit", 1 }, { run(cmd) })
    taken:close()
    -- Now free (unless someone else took the number meanwhile: unlikely).
    local s = start_server(port)
    assert.are.equal(port, s.port)
    assert.are.same({ "", true, "exit", 0 }, { s:stop() })
  end)

  it("serves until a signal when stdin cannot be watched (/dev/null)", function()
    local s = start_server(0, true)
    local clients = {}
    defer(function() close_all(clients) end)
    local sock = connect(s.port, clients)
    sock:settimeout(5)
    assert.are.equal(4, sock:send("ping"))
    assert.are.equal("ping", sock:receive(4))
    assert.are.same({ "", nil, "signal", 15 }, { s:stop(10, "TERM") })
    assert.are.same({ nil, "closed", "" }, { sock:receive("*a") }) -- the kernel closed its side
  end)

  it("refuses a port that is not a number", function()
    local cmd = ("%s timeout 20 %s examples/echo_server.lua eighty </dev/null"):format(ENV, LUA)
    assert.are.same({ ("usage: %s examples/echo_server.lua [port [host]]\n"):format(LUA), nil, "exit", 2 },
      { run(cmd) })
  end)

  it("echoes every byte, in order, to 200 concurrent clients sending 200 messages of up to 64 KiB", function()
    local seed = H.seed()
    print(("\n26-loop_load: seed %d (LEPOLL_SEED=%d replays it on %s)"):format(seed, seed, LUA))
    math.randomseed(seed)
    local pool = random_bytes(POOL)
    local s = start_server()
    local base = s:fdcount()
    local l = new_loop()
    local socks = {}
    defer(function() close_all(socks) end)
    local clients, total = {}, 0
    for c = 1, NCLIENTS do
      local msgs, bytes = {}, 0
      for m = 1, NMESSAGES do
        local len = math.random(1, MAXLEN)
        msgs[m] = { math.random(1, POOL - len + 1), len }
        bytes = bytes + len
      end
      total = total + bytes
      clients[c] = { sock = connect(s.port, socks), msgs = msgs, bytes = bytes, received = 0 }
    end
    local done = 0
    local watchdog = l:timer(LOAD_LIMIT, function()
      error(("the load took more than %d s, %d of %d clients done (seed %d)")
        :format(LOAD_LIMIT, done, NCLIENTS, seed), 0)
    end)
    for c, client in ipairs(clients) do
      local sock, msgs, what = client.sock, client.msgs, ("client %d (seed %d)"):format(c, seed)
      l:spawn(function() -- writes the messages, slices of the pool
        for m = 1, NMESSAGES do
          local off, len = msgs[m][1], msgs[m][2]
          send_all(l, sock, pool, off, off + len - 1, what)
        end
      end)
      l:spawn(function() -- reads them back, checking each byte
        local m, pos = 1, 0 -- message m, pos bytes of it back
        while m <= NMESSAGES do
          local data, err, partial = sock:receive(65536)
          data = data or partial
          local p = 1
          while p <= #data do
            if m > NMESSAGES then error(what .. ": more bytes came back than were sent", 0) end
            local off, len = msgs[m][1], msgs[m][2]
            local n = math.min(len - pos, #data - p + 1)
            if data:sub(p, p + n - 1) ~= pool:sub(off + pos, off + pos + n - 1) then
              error(("%s: message %d differs from byte %d on"):format(what, m, pos + 1), 0)
            end
            p, pos = p + n, pos + n
            client.received = client.received + n
            if pos == len then m, pos = m + 1, 0 end
          end
          if m <= NMESSAGES then
            if err == "timeout" then
              if not l:readable(sock, STALL) then error(what .. ": nothing came back for " .. STALL .. " s", 0) end
            elseif err then
              error(("%s: receive after %d bytes: %s"):format(what, client.received, err), 0)
            end
          end
        end
        done = done + 1
        if done == NCLIENTS then watchdog:stop() end
      end)
    end
    local t0 = now()
    assert.is_false(l:run())
    local elapsed = now() - t0
    print(("26-loop_load: %d clients x %d messages, %.1f MiB each way in %.2f s: %.1f MiB/s echoed"):format(
      NCLIENTS, NMESSAGES, total / 2 ^ 20, elapsed, total / 2 ^ 20 / elapsed))
    local received = 0
    for _, client in ipairs(clients) do
      assert.are.equal(client.bytes, client.received)
      received = received + client.received
    end
    assert.are.equal(total, received)
    -- All connected at once, none dropped, nothing else open.
    assert.are.equal(base + NCLIENTS, s:fdcount())
    for _, client in ipairs(clients) do finish(client.sock) end
    close_all(socks)
    s:await_fdcount(base, 10)
    assert.are.same({ "", true, "exit", 0 }, { s:stop() })
  end)

  it("serves thousands of clients at once", function()
    local n = 2000
    local need = n + 64
    local soft, hard = T.nofile()
    if soft >= 0 and soft < need then
      assert(hard < 0 or hard >= need, ("%d clients need %d descriptors; the hard limit is %d"):format(n, need, hard))
      T.setnofile(need)
      defer(function() T.setnofile(soft) end)
    end
    local s = start_server() -- inherits the limit
    local base = s:fdcount()
    local l = new_loop()
    local socks = {}
    defer(function() close_all(socks) end)
    local back, nback = {}, 0
    for c = 1, n do
      local sock = connect(s.port, socks)
      local msg = ("client %d of %d\n"):format(c, n)
      l:spawn(function()
        local what = "client " .. c
        send_all(l, sock, msg, 1, #msg, what)
        back[c] = receive_n(l, sock, #msg, what) == msg
        nback = nback + 1
      end)
    end
    local watchdog = l:timer(60, function() error("thousands of clients: more than 60 s", 0) end)
    l:spawn(function()
      while nback < n do l:sleep(0.01) end
      watchdog:stop()
    end)
    assert.is_false(l:run())
    for c = 1, n do assert(back[c] == true, "client " .. c) end
    assert.are.equal(base + n, s:fdcount())
    close_all(socks)
    s:await_fdcount(base, 10)
    assert.are.same({ "", true, "exit", 0 }, { s:stop() })
  end)

  it("drops clients that vanish, and keeps serving the others", function()
    local s = start_server()
    local base = s:fdcount()
    local l = new_loop()
    local socks = {}
    defer(function() close_all(socks) end)
    local mib = string.rep("v", 1024 * 1024)
    local kinds = {
      -- connects and closes at once
      function(sock) sock:close() end,
      -- sends a megabyte (what the kernel takes), reads nothing, closes
      function(sock)
        sock:send(mib)
        l:sleep(0.01)
        sock:close()
      end,
      -- sends, then resets the connection while the echo is under way
      function(sock)
        sock:send(mib)
        l:sleep(0.01)
        sock:setoption("linger", { on = true, timeout = 0 })
        sock:close()
      end,
      -- reads part of the echo of a large message, then resets
      function(sock)
        local data = string.rep("p", 300000)
        sock:send(data)
        receive_n(l, sock, 1000, "partial reader")
        sock:setoption("linger", { on = true, timeout = 0 })
        sock:close()
      end,
      -- ends its input at once: the server closes
      function(sock)
        sock:shutdown("send")
        assert(l:readable(sock, STALL))
        assert.are.same({ nil, "closed", "" }, { sock:receive(1) })
        sock:close()
      end,
    }
    local ended = 0
    for c = 1, 50 * #kinds do
      local sock = connect(s.port, socks)
      local kind = kinds[(c - 1) % #kinds + 1]
      l:spawn(function()
        kind(sock)
        ended = ended + 1
      end)
    end
    -- Meanwhile, a client that stays gets its bytes back.
    local steady = connect(s.port, socks)
    local echoed = {}
    l:spawn(function()
      for i = 1, 20 do
        local msg = ("message %d\n"):format(i)
        send_all(l, steady, msg, 1, #msg, "steady client")
        echoed[i] = receive_n(l, steady, #msg, "steady client")
        l:sleep(0.005)
      end
    end)
    local watchdog = l:timer(60, function() error("vanishing clients: more than 60 s", 0) end)
    l:spawn(function()
      while ended < 50 * #kinds or #echoed < 20 do l:sleep(0.01) end
      watchdog:stop()
    end)
    assert.is_false(l:run())
    local expected = {}
    for i = 1, 20 do expected[i] = ("message %d\n"):format(i) end
    assert.are.same(expected, echoed)
    s:await_fdcount(base + 1, 10) -- the steady client alone
    finish(steady)
    close_all(socks)
    s:await_fdcount(base, 10)
    assert.are.same({ "", true, "exit", 0 }, { s:stop() })
  end)
end)
