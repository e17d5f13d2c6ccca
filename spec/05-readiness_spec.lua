-- Readiness as the kernel reports it, through real descriptors: pipes,
-- socketpairs, eventfd, timerfd and LuaSocket UDP/TCP sockets on loopback.
local lepoll = require "lepoll"
local socket = require "socket"
local H = require "support.helpers"
local T = H.T

local IN, OUT, ERR, HUP, RDHUP = lepoll.IN, lepoll.OUT, lepoll.ERR, lepoll.HUP, lepoll.RDHUP

-- LuaSocket's getfd() is a float (3.0); the ready set holds integers.
-- Before 5.3 every number is a double: there the float is the integer.
local function fdof(sock)
  local fd = sock:getfd()
  if math.tointeger then return math.tointeger(fd) end
  assert(fd == math.floor(fd), "getfd() is not integral")
  return fd
end

describe("readiness", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  describe("level-triggered", function()
    it("persists across waits until the data is read", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      assert.are.equal("timeout", ep:wait(0))
      assert.are.same({}, H.ready(ep))

      assert.are.equal(3, T.write(w, "abc"))
      for _ = 1, 3 do -- reported again on every wait: nothing consumed it
        assert.are.equal("ok", ep:wait(0))
        assert.are.same({ { r, IN } }, H.ready(ep))
      end

      assert.are.equal("ab", T.read(r, 2))
      assert.are.equal("ok", ep:wait(0)) -- one byte still unread
      assert.are.same({ { r, IN } }, H.ready(ep))
      assert.are.equal("c", T.read(r))
      assert.are.equal("timeout", ep:wait(0))
      assert.are.same({}, H.ready(ep))
    end)
  end)

  describe("ET", function()
    it("reports once per new write", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in|et")
      assert.are.equal(H.bor(IN, lepoll.ET), ep:find(r))

      T.write(w, "a")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep)) -- the event, never the et bit
      -- Data is still there, but no new write: no new edge.
      assert.are.equal("timeout", ep:wait(0))
      assert.are.same({}, H.ready(ep))

      T.write(w, "b") -- a new write is a new edge, even though unread data remains
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
      assert.are.equal("timeout", ep:wait(0))

      assert.are.equal("ab", T.read(r))
      assert.are.equal("timeout", ep:wait(0))
    end)

    it("is re-checked by set with the same flags (EPOLL_CTL_MOD)", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in|et")
      T.write(w, "a")
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal("timeout", ep:wait(0))
      ep:set(r, "in|et") -- MOD polls the descriptor again: still readable
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
    end)
  end)

  describe("ONESHOT", function()
    it("fires once, then stays quiet until set re-arms it", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in|oneshot")
      T.write(w, "a")

      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
      -- Disarmed: readable, yet not reported, not even after a new write.
      assert.are.equal("timeout", ep:wait(0))
      T.write(w, "b")
      assert.are.equal("timeout", ep:wait(0.01))
      assert.are.same({}, H.ready(ep))
      -- Still in the table with its flags: disarming is the kernel's business.
      assert.are.equal(H.bor(IN, lepoll.ONESHOT), ep:find(r))
      ep:invariant()

      ep:set(r, "in|oneshot") -- the same flags: MOD re-arms
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
      assert.are.equal("timeout", ep:wait(0))
    end)
  end)

  describe("OUT", function()
    it("is reported on a fresh pipe's write end", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(w, "out")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { w, OUT } }, H.ready(ep))
    end)

    it("is not reported for the read end watched for out", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "out")
      assert.are.equal("timeout", ep:wait(0))
      assert.are.same({}, H.ready(ep))
    end)
  end)

  describe("HUP", function()
    it("is exactly hup on an empty read end once the writer closes", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      assert.are.equal("timeout", ep:wait(0))
      T.close(w); w = nil
      assert.are.equal("ok", ep:wait(0))
      -- The kernel reports hup even though only in was asked for.
      assert.are.same({ { r, HUP } }, H.ready(ep))
      assert.are.same({ [r] = "hup" }, H.ready_names(ep))
    end)

    it("is exactly in|hup when unread data remains", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      T.write(w, "last words")
      T.close(w); w = nil
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, H.bor(IN, HUP) } }, H.ready(ep))
      assert.are.equal("last words", T.read(r))
      assert.are.equal("ok", ep:wait(0)) -- drained: hup alone, and it stays
      assert.are.same({ { r, HUP } }, H.ready(ep))
    end)
  end)

  describe("RDHUP", function()
    it("is reported on a socketpair after the peer's shutdown('w')", function()
      local ep = lepoll.create()
      local a, b = T.socketpair()
      finally(function() ep:close(); H.close(a, b) end)
      ep:set(a, "in|rdhup")
      assert.are.equal("timeout", ep:wait(0))
      assert.is_true(T.shutdown(b, "w"))
      assert.are.equal("ok", ep:wait(0))
      -- End of stream is readable (read gives ""), hence in with rdhup.
      assert.are.same({ { a, H.bor(IN, RDHUP) } }, H.ready(ep))
      assert.are.equal("", T.read(a))
    end)

    it("is reported alone when only rdhup is watched", function()
      local ep = lepoll.create()
      local a, b = T.socketpair()
      finally(function() ep:close(); H.close(a, b) end)
      ep:set(a, "rdhup")
      T.shutdown(b, "w")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { a, RDHUP } }, H.ready(ep))
    end)
  end)

  describe("eventfd", function()
    it("becomes readable after eventfd_write, and idle once read", function()
      local ep = lepoll.create()
      local efd = T.eventfd()
      finally(function() ep:close(); H.close(efd) end)
      ep:set(efd, "in")
      assert.are.equal("timeout", ep:wait(0))
      assert.is_true(T.eventfd_write(efd, 3))
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { efd, IN } }, H.ready(ep))
      assert.are.equal(3, T.read_u64(efd))
      assert.are.equal("timeout", ep:wait(0))
    end)
  end)

  describe("timerfd", function()
    it("becomes readable when it expires", function()
      local ep = lepoll.create()
      local tfd = T.timerfd(0.02)
      finally(function() ep:close(); H.close(tfd) end)
      ep:set(tfd, "in")
      assert.are.equal("timeout", ep:wait(0)) -- not due yet
      assert.are.equal("ok", ep:wait(2))
      assert.are.same({ { tfd, IN } }, H.ready(ep))
      assert.are.equal(1, T.read_u64(tfd)) -- one expiration
      assert.are.equal("timeout", ep:wait(0))
    end)
  end)

  describe("the reference's tests", function()
    it("two UDP sockets, a datagram to the first: exactly it, exactly in", function()
      local ep = lepoll.create()
      local u1, u2 = socket.udp(), socket.udp()
      finally(function() ep:close(); u1:close(); u2:close() end)
      assert.are.equal(1, u1:setsockname("127.0.0.1", 0))
      assert.are.equal(1, u2:setsockname("127.0.0.1", 0))
      ep:set(u1:getfd(), "in") -- LuaSocket's float fd
      ep:set(u2, "in")         -- the object itself, through getfd
      assert.are.equal("timeout", ep:wait(0))

      local ip, port = u1:getsockname()
      assert.are.equal(5, u2:sendto("hello", ip, port))
      assert.are.equal("ok", ep:wait(1))
      assert.are.same({ { fdof(u1), IN } }, H.ready(ep))
      assert.are.same({ [fdof(u1)] = "in" }, H.ready_names(ep))
      assert.are.equal("hello", u1:receive())
    end)

    it("a pipe's write end after the reader closes post partial read: exactly err", function()
      T.ignore_sigpipe()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      -- Fill the pipe so that the write end is not writable.
      local chunk = string.rep("x", 4096)
      while T.write(w, chunk) do end
      assert.are.equal(100, #T.read(r, 100)) -- a partial read frees no buffer
      T.close(r); r = nil
      ep:set(w, "out")
      assert.are.equal("ok", ep:wait(0))
      -- No reader: err; still full: no out.
      assert.are.same({ { w, ERR } }, H.ready(ep))
      assert.are.same({ [w] = "err" }, H.ready_names(ep))
      -- And writing indeed fails with EPIPE (no SIGPIPE: ignored).
      local ok, _, errname = T.write(w, "x")
      assert.is_nil(ok)
      assert.are.equal("EPIPE", errname)
    end)

    it("clear_ready after a ready UDP socket gives an empty ready set", function()
      local ep = lepoll.create(1024)
      local u1, u2 = socket.udp(), socket.udp()
      finally(function() ep:close(); u1:close(); u2:close() end)
      u1:setsockname("127.0.0.1", 0)
      u2:setsockname("127.0.0.1", 0)
      ep:set(u1, "in")
      local ip, port = u1:getsockname()
      u2:sendto("ping", ip, port)
      assert.are.equal("ok", ep:wait(1))
      assert.are.same({ { fdof(u1), IN } }, H.ready(ep))

      ep:clear_ready()
      assert.are.same({}, H.ready(ep))
      assert.are.equal(42, ep:fold_ready(42, function() error("called") end))
      assert.are.equal(string.format(
        'epoll{fd=%d, num_file_descrs=1024, max_ready_events=256, flags_by_fd={[%d]="in"}, ready={}}',
        ep:getfd(), fdof(u1)), tostring(ep))
      -- Only the ready set was cleared: the datagram is still queued.
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { fdof(u1), IN } }, H.ready(ep))
    end)
  end)

  describe("a loopback TCP pair (LuaSocket)", function()
    it("reports the pending connection, then the accepted socket after send", function()
      local ep = lepoll.create()
      local server = assert(socket.tcp())
      local client, conn
      finally(function()
        ep:close()
        server:close()
        if client then client:close() end
        if conn then conn:close() end
      end)
      assert.are.equal(1, server:bind("127.0.0.1", 0))
      assert.are.equal(1, server:listen(4))
      local ip, port = server:getsockname()
      ep:set(server, "in")
      assert.are.equal("timeout", ep:wait(0))

      client = assert(socket.tcp())
      assert.are.equal(1, client:connect(ip, port))
      assert.are.equal("ok", ep:wait(1)) -- a listening socket is readable with a connection queued
      assert.are.same({ { fdof(server), IN } }, H.ready(ep))
      conn = assert(server:accept())
      assert.are.equal("timeout", ep:wait(0)) -- the queue is empty again

      ep:set(conn, "in")
      ep:set(client, "out")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { fdof(client), OUT } }, H.ready(ep)) -- nothing to read yet

      assert.are.equal(4, client:send("ping"))
      assert.are.equal("ok", ep:wait(1))
      assert.are.same({ [fdof(client)] = "out", [fdof(conn)] = "in" }, H.ready_names(ep))
      assert.are.equal("ping", conn:receive(4))
      ep:remove(client)
      assert.are.equal("timeout", ep:wait(0))
    end)
  end)
end)
