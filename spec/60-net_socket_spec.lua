-- Wrapped sockets (l:wrap, lua/lepoll/net/socket.lua): LuaSocket's
-- blocking calls, made in tasks while the rest of the loop runs. Both ends
-- of each connection are real loopback sockets; the peer is another task,
-- or a plain LuaSocket object, as each case needs.
local lepoll = require "lepoll"
local loop = require "lepoll.loop"
local socket = require "socket"
local H = require "support.helpers"

local now = lepoll.now
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or rawget(_G, "unpack")
local HOST = "127.0.0.1"

-- Runs fn(l) as a task of a new loop until it ends (at most `limit`
-- seconds), with the other tasks it starts; an error in any task is
-- raised here. -> what fn returned.
local function in_task(fn, limit)
  local l = loop.new()
  local results, done = nil, false
  l:spawn(function()
    results = pack(fn(l))
    done = true
  end)
  local deadline = now() + (limit or 20)
  while not done and now() < deadline do l:step(0.05) end
  l:close()
  assert(done, "the task did not end in time")
  return unpack(results, 1, results.n)
end

-- A connected pair of wrapped sockets in l: client, server side.
local function pair(l)
  local listener = assert(socket.bind(HOST, 0))
  local port = select(2, listener:getsockname())
  local c = assert(socket.tcp())
  c:settimeout(0)
  c:connect(HOST, port)
  listener:settimeout(5)
  local s = assert(listener:accept())
  listener:close()
  return l:wrap(c), l:wrap(s)
end

-- n bytes of a pattern that changes every byte.
local function bytes(n, seed)
  local t, k = {}, seed or 0
  local chunk = {}
  for i = 1, 256 do chunk[i] = string.char((i * 7 + k) % 256) end
  chunk = table.concat(chunk)
  for i = 1, math.ceil(n / 256) do t[i] = chunk end
  return table.concat(t):sub(1, n)
end

describe("a wrapped socket", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("receives a line that comes in pieces, and the lines that come together", function()
    local got = { in_task(function(l)
      local a, b = pair(l)
      l:spawn(function()
        a:send("hel")
        l:sleep(0.02)
        a:send("lo\r\nsecond\nthird")
        l:sleep(0.02)
        a:send("\n")
        a:close()
      end)
      local r1 = b:receive()
      local r2 = b:receive("l")
      local r3 = b:receive("*l")
      local r4, err, partial = b:receive()
      b:close()
      return r1, r2, r3, r4, err, partial
    end) }
    assert.are.same({ "hello", "second", "third", nil, "closed", "" }, got)
  end)

  it("receives a byte count of 1 byte to 1 MiB across as many pieces as it takes", function()
    for _, n in ipairs({ 1, 100, 65536, 1024 * 1024 }) do
      local data = bytes(n, n)
      local got = in_task(function(l)
        local a, b = pair(l)
        l:spawn(function()
          local step = math.max(1, math.floor(n / 7))
          for i = 1, n, step do
            a:send(data, i, math.min(n, i + step - 1))
            l:sleep(0)
          end
        end)
        local r = b:receive(n)
        a:close()
        b:close()
        return r
      end)
      assert.are.equal(n, #got)
      assert.is_true(got == data, "the bytes differ for n = " .. n)
    end
  end)

  it("counts a prefix in the byte count, as LuaSocket does", function()
    local r = in_task(function(l)
      local a, b = pair(l)
      l:spawn(function() a:send("123") l:sleep(0.02) a:send("4567") end)
      local got = b:receive(6, "ab")
      a:close()
      b:close()
      return got
    end)
    assert.are.equal("ab1234", r)
  end)

  it("receives everything up to the end with '*a' and 'a'", function()
    local data = bytes(300000)
    local r1, r2 = in_task(function(l)
      local a, b = pair(l)
      l:spawn(function() a:send(data) a:close() end)
      local all = b:receive("*a")
      b:close()
      local c, d = pair(l)
      l:spawn(function() c:send("tail") c:close() end)
      local all2 = d:receive("a", "pre-")
      d:close()
      return all, all2
    end)
    assert.is_true(r1 == data)
    assert.are.equal("pre-tail", r2)
  end)

  it("receives what has come with receivesome, up to its limit, then the end", function()
    local r = { in_task(function(l)
      local a, b = pair(l)
      l:spawn(function()
        l:sleep(0.02)
        a:send("abcdef")
        l:sleep(0.02)
        a:send("gh")
        a:close()
      end)
      local x = b:receivesome(4)       -- waits for the first bytes
      local y = b:receivesome()        -- the rest of what came
      local z = b:receivesome(100)     -- waits again
      local e1, e2 = b:receivesome()
      local ok, err = pcall(function() return b:receivesome(0) end)
      b:close()
      return x, y, z, e1, e2, ok, err
    end) }
    assert.are.same({ "abcd", "ef", "gh", nil, "closed", false }, { r[1], r[2], r[3], r[4], r[5], r[6] })
    assert.matches("bad argument #1 to 'receivesome' (a byte count >= 1 expected, got 0)", r[7], 1, true)
  end)

  it("sends all of a 4 MiB string to a slow reader, and i..j pieces", function()
    local data = bytes(4 * 1024 * 1024, 3)
    local sent, got, piece = in_task(function(l)
      local a, b = pair(l)
      local received
      l:spawn(function()
        local parts = {}
        while true do
          l:sleep(0.001)
          local d, err, partial = b:receive(256 * 1024)
          parts[#parts + 1] = d or partial
          if err == "closed" then break end
        end
        received = table.concat(parts)
      end)
      local n = a:send(data)
      local last = a:send("0123456789", 3, 5)
      a:close()
      while not received do l:sleep(0.01) end
      b:close()
      return n, received, last
    end)
    assert.are.equal(#data, sent)
    assert.are.equal(5, piece)
    assert.is_true(got == data .. "234")
  end)

  describe("timeouts", function()
    it("returns nil, 'timeout' and the partial data, as LuaSocket does", function()
      local r = { in_task(function(l)
        local a, b = pair(l)
        b:settimeout(0.1)
        a:send("partial line")
        local t0 = l:now()
        local line, err, partial = b:receive()
        local waited = l:now() - t0
        a:close()
        b:close()
        return line, err, partial, waited
      end) }
      assert.is_nil(r[1])
      assert.are.equal("timeout", r[2])
      assert.are.equal("partial line", r[3])
      assert.is_true(r[4] >= 0.09 and r[4] < 2, "waited " .. r[4])
    end)

    it("limits each wait with mode 'b' and the whole call with mode 't'", function()
      local block_line, total_err, total_partial = in_task(function(l)
        local a, b = pair(l)
        -- a byte every 30 ms: each wait is short, the whole call long
        l:spawn(function()
          for _, ch in ipairs({ "a", "b", "c", "d", "e", "\n" }) do
            l:sleep(0.03)
            a:send(ch)
          end
          for _, ch in ipairs({ "f", "g", "h", "i", "j", "k", "\n" }) do
            l:sleep(0.03)
            a:send(ch)
          end
        end)
        b:settimeout(0.5)
        local line = b:receive()
        b:settimeout(nil)
        b:settimeout(0.1, "t")
        local _, err, partial = b:receive()
        a:close()
        b:close()
        return line, err, partial
      end)
      assert.are.equal("abcde", block_line)
      assert.are.equal("timeout", total_err)
      assert.is_true(#total_partial >= 1 and #total_partial < 6, "partial: " .. total_partial)
    end)

    it("returns at once with timeout 0 when nothing is there", function()
      local err, rounds = in_task(function(l)
        local a, b = pair(l)
        b:settimeout(0)
        local before = l:stats().rounds
        local _, e = b:receive(10)
        local after = l:stats().rounds
        a:close()
        b:close()
        return e, after - before
      end)
      assert.are.equal("timeout", err)
      assert.are.equal(0, rounds)
    end)

    it("reports how much a send that timed out sent, and the peer got exactly that", function()
      local data = bytes(16 * 1024 * 1024)
      local last, err, received = in_task(function(l)
        local a, b = pair(l)
        a:settimeout(0.2)
        local ok, e, sent = a:send(data)
        assert.is_nil(ok)
        a:close()
        local got = b:receive("*a")
        b:close()
        return sent, e, got
      end)
      assert.are.equal("timeout", err)
      assert.is_true(last > 0 and last < #data)
      assert.are.equal(last, #received)
      assert.is_true(received == data:sub(1, last))
    end)

    it("times out an accept, a UDP receivefrom and a connect's wait alike", function()
      local r = { in_task(function(l)
        local listener = l:wrap(assert(socket.bind(HOST, 0)))
        listener:settimeout(0.05)
        local c, e1 = listener:accept()
        local u = l:wrap(assert(socket.udp()))
        assert(u:setsockname(HOST, 0))
        u:settimeout(0.05)
        local d, e2 = u:receivefrom()
        listener:close()
        u:close()
        return c, e1, d, e2
      end) }
      assert.are.same({ nil, "timeout", nil, "timeout" }, { r[1], r[2], r[3], r[4] })
    end)

    it("gives the timeouts back as LuaSocket's gettimeout does", function()
      local b1, t1, b2, t2 = in_task(function(l)
        local a, b = pair(l)
        local x, y = a:gettimeout()
        a:settimeout(1.5)
        a:settimeout(3, "t")
        local z, w = a:gettimeout()
        a:close()
        b:close()
        return x, y, z, w
      end)
      assert.are.same({ -1, -1, 1.5, 3 }, { b1, t1, b2, t2 })
    end)
  end)

  it("wakes a task waiting on it when another task closes it: nil, 'closed'", function()
    local r = { in_task(function(l)
      local a, b = pair(l)
      local result
      l:spawn(function() result = { b:receive() } end)
      l:sleep(0.02)
      b:close()
      while not result do l:sleep(0.01) end
      a:close()
      return result[1], result[2], b:close()
    end) }
    assert.are.same({ nil, "closed", 1 }, { r[1], r[2], r[3] })
  end)

  it("raises outside a task, and says so", function()
    local l = loop.new()
    local a = socket.tcp()
    local w = l:wrap(a)
    local ok, err = pcall(w.receive, w)
    assert.is_false(ok)
    assert.matches("receive must be called from a task of the loop", err, 1, true)
    ok, err = pcall(function() return w:send("x") end)
    assert.is_false(ok)
    assert.matches("send must be called from a task of the loop", err, 1, true)
    w:close()
    l:close()
  end)

  it("raises on bad arguments at the caller's line, naming the method", function()
    -- (not tail calls: a tail call leaves no caller's line to point at)
    local errs = { in_task(function(l)
      local a, b = pair(l)
      local e = {}
      e[1] = select(2, pcall(function() local r = b:receive("x") return r end))
      e[2] = select(2, pcall(function() local r = b:receive(-1) return r end))
      e[3] = select(2, pcall(function() local r = a:send({}) return r end))
      e[4] = select(2, pcall(function() local r = a:send("abc", "x") return r end))
      local other = loop.new()
      e[5] = select(2, pcall(function() local r = other:wrap(a) return r end))
      other:close()
      a:close()
      b:close()
      return unpack(e)
    end) }
    local here = "60%-net_socket_spec%.lua:%d+: "
    assert.matches(here .. "bad argument #1 to 'receive' %(invalid receive pattern%)", errs[1])
    assert.matches(here .. "bad argument #1 to 'receive' %(invalid receive pattern%)", errs[2])
    assert.matches(here .. "bad argument #1 to 'send' %(string expected, got table%)", errs[3])
    assert.matches(here .. "bad argument #2 to 'send' %(number expected, got string%)", errs[4])
    assert.matches(here .. "bad argument #1 to 'wrap' %(socket wrapped by another loop%)", errs[5])
  end)

  it("raises a second task's wait at the caller's line, naming the method", function()
    -- (not tail calls: a tail call leaves no caller's line to point at)
    local errs = { in_task(function(l)
      local a, b = pair(l)
      local u = l:wrap(assert(socket.udp()))
      assert(u:setsockname(HOST, 0))
      local listener = l:wrap(assert(socket.bind(HOST, 0)))
      l:spawn(function() b:receive() end)
      l:spawn(function() u:receivefrom() end)
      l:spawn(function() listener:accept() end)
      l:sleep(0.02) -- they wait
      local e = {}
      e[1] = select(2, pcall(function() local r = b:receive() return r end))
      e[2] = select(2, pcall(function() local r = b:receivesome() return r end))
      e[3] = select(2, pcall(function() local r = u:receivefrom() return r end))
      e[4] = select(2, pcall(function() local r = listener:accept() return r end))
      for _, w in ipairs({ a, b, u, listener }) do w:close() end
      return unpack(e)
    end) }
    local here = "60%-net_socket_spec%.lua:%d+: "
    assert.matches(here .. "receive: fd %d+ already has a task waiting to read$", errs[1])
    assert.matches(here .. "receivesome: fd %d+ already has a task waiting to read$", errs[2])
    assert.matches(here .. "receivefrom: fd %d+ already has a task waiting to read$", errs[3])
    assert.matches(here .. "accept: fd %d+ already has a task waiting to read$", errs[4])
  end)

  H.it_if(it, pending, coroutine.isyieldable ~= nil, "no coroutine.isyieldable: Lua's own positionless error")(
    "raises a wait where the task cannot yield at the caller's line, naming the method", function()
      local err = in_task(function(l)
        local a, b = pair(l)
        local e = select(2, pcall(table.sort, { 1, 2 }, function() local r = b:receive() return r end))
        a:close()
        b:close()
        return e
      end)
      assert.matches("60%-net_socket_spec%.lua:%d+: receive cannot wait here: the task would yield across a C%-call "
        .. "boundary$", err)
    end)

  it("refuses what is not a socket", function()
    local l = loop.new()
    local ok, err = pcall(function() return l:wrap(42) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'wrap' (LuaSocket or LuaSec object expected, got number)", err, 1, true)
    l:close()
  end)

  it("accepts wrapped connections, passes other methods through, and wraps once", function()
    local r = { in_task(function(l)
      local listener = l:wrap(assert(socket.bind(HOST, 0)))
      local port = select(2, listener:getsockname())
      local accepted
      l:spawn(function() accepted = listener:accept() end)
      local c = assert(l:connect(HOST, port))
      while not accepted do l:sleep(0.01) end
      local same = l:wrap(accepted) == accepted
      local peer_port = select(2, accepted:getpeername())
      local local_port = select(2, c:getsockname())
      local is_wrapped = tostring(accepted):match("^wrapped tcp{client}") ~= nil
      accepted:setoption("tcp-nodelay", true)
      local fd_ok = c:getfd() == c:unwrap():getfd()
      c:close()
      accepted:close()
      listener:close()
      return same, tonumber(peer_port) == tonumber(local_port), is_wrapped, fd_ok
    end) }
    assert.are.same({ true, true, true, true }, r)
  end)

  it("leaves no buffered input behind: two messages in one segment, read as two", function()
    local r1, r2 = in_task(function(l)
      local a, b = pair(l)
      a:send("one\ntwo\n")
      local x = b:receive()
      -- LuaSocket read both lines from the kernel; epoll sees nothing more
      local y = b:receive()
      a:close()
      b:close()
      return x, y
    end, 5)
    assert.are.equal("one", r1)
    assert.are.equal("two", r2)
  end)

  it("returns a reset peer's error", function()
    local line, err = in_task(function(l)
      local a, b = pair(l)
      a:setoption("linger", { on = true, timeout = 0 })
      l:spawn(function() l:sleep(0.02) a:close() end) -- linger 0: RST
      local x, e = b:receive()
      b:close()
      return x, e
    end)
    assert.is_nil(line)
    assert.is_true(err == "closed" or err == "connection reset by peer", err)
  end)

  it("sends and receives UDP datagrams", function()
    local r = { in_task(function(l)
      local u1 = l:wrap(assert(socket.udp()))
      local u2 = l:wrap(assert(socket.udp()))
      assert(u1:setsockname(HOST, 0))
      assert(u2:setsockname(HOST, 0))
      local _, p1 = u1:getsockname()
      local _, p2 = u2:getsockname()
      local got
      l:spawn(function() got = { u2:receivefrom() } end)
      l:sleep(0.02)
      assert(u1:sendto("datagram", HOST, p2))
      while not got do l:sleep(0.01) end
      assert(u2:setpeername(HOST, p1))
      u2:send("reply")
      local reply = u1:receive()
      u1:settimeout(0.05)
      local none, err = u1:receive()
      u1:close()
      u2:close()
      return got[1], got[2], tonumber(got[3]) == tonumber(p1), reply, none, err
    end) }
    assert.are.same({ "datagram", HOST, true, "reply", nil, "timeout" }, { r[1], r[2], r[3], r[4], r[5], r[6] })
  end)

  H.it_if(it, pending, H.has.toclose, "needs Lua 5.4: <close>")("closes with <close>", function()
    local chunk = H.load([[
      local l, socket = ...
      local fd
      do
        local w <close> = l:wrap(assert(socket.bind("127.0.0.1", 0))) -- (socket.tcp() has no descriptor yet)
        fd = w:getfd()
      end
      return fd
    ]])
    local l = loop.new()
    local fd = chunk(l, socket)
    assert.is_true(fd >= 0)
    assert.is_false(H.is_open(fd))
    l:close()
  end)
end)
