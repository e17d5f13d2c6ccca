local lepoll = require "lepoll"
local socket = require "socket"
local H = require "support.helpers"
local T = H.T

local IN, OUT, ET, ONESHOT, EXCLUSIVE = lepoll.IN, lepoll.OUT, lepoll.ET, lepoll.ONESHOT,
  lepoll.EXCLUSIVE
local FD_KINDS = "file descriptor (integer, file handle or object with getfd/pollfd/fileno)"
local FLAGS_KINDS = "flags (integer, string of names or list of names)"

-- Flag words are combined with H.bor, not |, which 5.1, 5.2 and LuaJIT
-- lack (H.bor gives an integer on 5.3+, as | would).

-- The calls that fail are never tail calls (`function() f() end`, not
-- `function() return f() end`): LuaJIT drops the caller's frame on a tail
-- call, and with it the error's position and the function's name.
local msg_of = H.msg_of

local tointeger = H.tointeger

-- The watched table as a list of {fd, flags}, ascending.
local function entries(ep)
  local list = {}
  ep:iter(function(fd, flags) list[#list + 1] = { fd, flags } end)
  return list
end

-- The number the next descriptor will get (the lowest free one).
local function next_fd()
  local fd = assert(T.dup(0))
  T.close(fd)
  return fd
end

describe("the watched table", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  describe("set and find", function()
    it("adds an fd, and find returns its flags", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      assert.is_nil(ep:find(r))
      ep:set(r, "in")
      assert.are.equal(IN, ep:find(r))
      assert.is_nil(ep:find(w))
      assert.are.equal(1, #ep)
      ep:set(w, OUT)
      assert.are.equal(OUT, ep:find(w))
      assert.are.equal(2, #ep)
      assert.are.same({ { r, IN }, { w, OUT } }, entries(ep))
      ep:invariant()
    end)

    it("watches an fd with no flags at all (find gives 0, not nil)", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, 0)
      assert.are.equal(0, ep:find(r))
      assert.are.equal(1, #ep)
      ep:invariant()
    end)

    it("takes flags as integers, strings and lists", function()
      local r, w = T.pipe()
      local r2, w2 = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w, r2, w2) end)
      ep:set(r, H.bor(IN, ET))
      ep:set(w, "OUT, oneshot")
      ep:set(r2, { "in", "RDHUP" })
      ep:set(w2, 4.0)
      assert.are.equal(H.bor(IN, ET), ep:find(r))
      assert.are.equal(H.bor(OUT, ONESHOT), ep:find(w))
      assert.are.equal(H.bor(IN, lepoll.RDHUP), ep:find(r2))
      assert.are.equal(OUT, ep:find(w2))
      -- (H.numtype: math.type from 5.3; before it, an integral double)
      assert.are.equal("integer", H.numtype(ep:find(w2)))
      ep:invariant()
    end)

    it("modifies a watched fd (EPOLL_CTL_MOD), the kernel agreeing", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      ep:set(r, "in|et")
      assert.are.equal(H.bor(IN, ET), ep:find(r))
      assert.are.equal(1, #ep)
      ep:invariant()
      ep:set(r, "in|et") -- unchanged flags: still MOD, no EEXIST
      assert.are.equal(H.bor(IN, ET), ep:find(r))
      ep:set(r, 0)
      assert.are.equal(0, ep:find(r))
      assert.are.equal(1, #ep)
      ep:invariant()
    end)

    it("re-arms a ONESHOT that fired when set again with the same flags", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      assert.are.equal(1, T.write(w, "x"))
      ep:set(r, "in|oneshot")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
      -- Fired: disarmed although the byte is still there.
      assert.are.equal("timeout", ep:wait(0))
      ep:invariant()
      ep:set(r, "in|oneshot")
      assert.are.equal(H.bor(IN, ONESHOT), ep:find(r))
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
      assert.are.equal("timeout", ep:wait(0))
    end)

    it("makes the kernel check an ET fd again when set with the same flags", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      assert.are.equal(1, T.write(w, "x"))
      ep:set(r, "in|et")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
      assert.are.equal("timeout", ep:wait(0)) -- no new write, no new edge
      ep:set(r, "in|et")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
    end)

    it("refuses a regular file with EPERM and leaves the table unchanged", function()
      local path = os.tmpname()
      local file = assert(T.open(path))
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(file, r, w); os.remove(path) end)
      ep:set(r, "in")
      local before = tostring(ep)
      assert.are.equal(string.format("lepoll: set fd %d: Operation not permitted (EPERM)", file),
        msg_of(function() ep:set(file, "in") end))
      assert.is_nil(ep:find(file))
      assert.are.equal(1, #ep)
      assert.are.equal(before, tostring(ep))
      ep:invariant()
      -- And the set goes on working.
      ep:set(w, "out")
      assert.are.equal(OUT, ep:find(w))
      assert.are.equal(2, #ep)
    end)

    it("keeps the old flags when the kernel refuses a modification", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(w) end)
      ep:set(r, "in")
      T.close(r) -- behind the table's back: the kernel drops its entry
      assert.are.equal(string.format("lepoll: set fd %d: Bad file descriptor (EBADF)", r),
        msg_of(function() ep:set(r, "in|out") end))
      assert.are.equal(IN, ep:find(r))
      assert.are.equal(1, #ep)
      assert.are.equal(string.format("lepoll: remove fd %d: Bad file descriptor (EBADF)", r),
        msg_of(function() ep:remove(r) end))
      assert.are.equal(0, #ep)
    end)
  end)

  describe("remove", function()
    it("drops a watched fd from the table and the kernel's set", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      ep:set(w, "out")
      ep:remove(r)
      assert.is_nil(ep:find(r))
      assert.are.equal(OUT, ep:find(w))
      assert.are.equal(1, #ep)
      assert.are.same({ { w, OUT } }, entries(ep))
      ep:invariant()
      -- Readable data on the removed fd no longer wakes the set.
      assert.are.equal(1, T.write(w, "x"))
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { w, OUT } }, H.ready(ep))
    end)

    it("does nothing for an fd that is not watched, making no system call", function()
      local r, w = T.pipe()
      local gone_r, gone_w = T.pipe()
      T.close(gone_r)
      T.close(gone_w)
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(w, "out")
      ep:remove(r)
      -- Closed numbers: a system call would fail with EBADF.
      ep:remove(gone_r)
      ep:remove(gone_w)
      ep:remove(63) -- beyond anything the table has grown to
      assert.are.equal(1, #ep)
      assert.are.equal(OUT, ep:find(w))
      ep:invariant()
    end)

    it("raises EBADF after both pipe ends were closed, dropping the entries for reuse", function()
      local r, w = T.pipe()
      local r2, w2
      local ep = lepoll.create(64)
      -- (busted keeps only the last finally of a test)
      finally(function() ep:close(); H.close(r2, w2) end)
      ep:set(r, "in")
      ep:set(w, "out")
      T.close(r)
      T.close(w)
      assert.are.equal(string.format("lepoll: remove fd %d: Bad file descriptor (EBADF)", r),
        msg_of(function() ep:remove(r) end))
      assert.is_nil(ep:find(r))
      assert.are.equal(1, #ep)
      assert.are.equal(string.format("lepoll: remove fd %d: Bad file descriptor (EBADF)", w),
        msg_of(function() ep:remove(w) end))
      assert.is_nil(ep:find(w))
      assert.are.equal(0, #ep)
      ep:invariant()
      -- The numbers come back with the next pipe and can be watched again.
      r2, w2 = T.pipe()
      assert.are.same({ r, w }, { r2, w2 })
      ep:set(r2, "in")
      ep:set(w2, "out")
      assert.are.equal(2, #ep)
      ep:invariant()
      assert.are.equal(1, T.write(w2, "x"))
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ [r2] = "in", [w2] = "out" }, H.ready_names(ep))
      ep:remove(r2)
      ep:remove(w2)
      assert.are.equal(0, #ep)
      ep:invariant()
    end)
  end)

  it("raises ENOENT when the fd number was reused behind the table's back, dropping the entry",
    function()
      local r, w = T.pipe()
      local reused
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(w, reused) end)
      ep:set(r, "in")
      T.close(r)
      reused = assert(T.dup(w, r)) -- the lowest free number: r's
      assert.are.equal(r, reused)
      assert.are.equal(string.format("lepoll: remove fd %d: No such file or directory (ENOENT)", r),
        msg_of(function() ep:remove(r) end))
      assert.is_nil(ep:find(r))
      assert.are.equal(0, #ep)
      ep:invariant()
      ep:set(reused, "out")
      assert.are.equal(OUT, ep:find(r))
      -- The pipe lost its only reader, so its write end also reports err.
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, H.bor(OUT, lepoll.ERR) } }, H.ready(ep))
    end)

  it("refuses the set's own descriptor (EINVAL), leaving the table unchanged", function()
    local ep = lepoll.create(64)
    finally(function() ep:close() end)
    assert.are.equal(string.format("lepoll: set fd %d: Invalid argument (EINVAL)", ep:getfd()),
      msg_of(function() ep:set(ep, "in") end))
    assert.is_nil(ep:find(ep))
    assert.are.equal(0, #ep)
    ep:invariant()
  end)

  describe("EXCLUSIVE", function()
    it("can be given when an fd is added", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in|exclusive")
      assert.are.equal(H.bor(IN, EXCLUSIVE), ep:find(r))
      ep:invariant()
      assert.are.equal(1, T.write(w, "x"))
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
    end)

    it("cannot be set on a watched fd: an argument error said plainly", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      assert.are.equal(string.format("bad argument #2 to 'set' (exclusive can only be set when fd %d "
        .. "is added; remove it first)", r),
        msg_of(function() ep:set(r, "in|exclusive") end))
      assert.are.equal(IN, ep:find(r))
      ep:invariant()
      -- Removing first is the way.
      ep:remove(r)
      ep:set(r, "in|exclusive")
      assert.are.equal(H.bor(IN, EXCLUSIVE), ep:find(r))
      ep:invariant()
    end)

    it("makes an fd added with it unmodifiable: an argument error said plainly", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in|exclusive")
      local plain = string.format("bad argument #2 to 'set' (fd %d was added with exclusive, which "
        .. "the kernel never modifies; remove it first)", r)
      assert.are.equal(plain, msg_of(function() ep:set(r, "in") end))
      assert.are.equal(plain, msg_of(function() ep:set(r, "in|out") end))
      assert.are.equal(string.format("bad argument #2 to 'set' (exclusive can only be set when fd %d "
        .. "is added; remove it first)", r),
        msg_of(function() ep:set(r, "in|exclusive") end))
      assert.are.equal(H.bor(IN, EXCLUSIVE), ep:find(r))
      assert.are.equal(1, #ep)
      ep:invariant()
      ep:remove(r)
      ep:set(r, "in")
      assert.are.equal(IN, ep:find(r))
      ep:invariant()
    end)
  end)

  describe("descriptor arguments", function()
    it("take an integral float as its integer", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r + 0.0, "in")
      assert.are.equal(IN, ep:find(r))
      assert.are.equal(IN, ep:find(r + 0.0))
      assert.are.same({ { r, IN } }, entries(ep))
      ep:remove(r + 0.0)
      assert.are.equal(0, #ep)
    end)

    it("take a Lua file handle (io.popen)", function()
      local fh = assert(io.popen("cat >/dev/null", "w"))
      local ep = lepoll.create(64)
      finally(function() ep:close(); fh:close() end)
      ep:set(fh, "out")
      assert.are.equal(OUT, ep:find(fh))
      assert.are.equal(1, #ep)
      local fd = entries(ep)[1][1]
      assert.are.equal("integer", H.numtype(fd))
      -- The pipe to cat is writable.
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { fd, OUT } }, H.ready(ep))
      ep:invariant()
      ep:remove(fh)
      assert.are.equal(0, #ep)
      assert.is_nil(ep:find(fh))
    end)

    it("take a Lua file handle on a regular file, which the kernel refuses (EPERM)", function()
      local expected = next_fd()
      local fh = assert(io.tmpfile())
      local ep = lepoll.create(64)
      finally(function() ep:close(); fh:close() end)
      assert.are.equal(string.format("lepoll: set fd %d: Operation not permitted (EPERM)", expected),
        msg_of(function() ep:set(fh, "in") end))
      assert.is_nil(ep:find(fh))
      assert.are.equal(0, #ep)
    end)

    it("refuse a closed file handle, naming the range", function()
      local fh = assert(io.tmpfile())
      fh:close()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      assert.are.equal("bad argument #1 to 'set' (closed file handle (valid range [0, 64)))",
        msg_of(function() ep:set(fh, "in") end))
      assert.are.equal("bad argument #1 to 'find' (closed file handle (valid range [0, 64)))",
        msg_of(function() ep:find(fh) end))
      assert.are.equal("bad argument #1 to 'remove' (closed file handle (valid range [0, 64)))",
        msg_of(function() ep:remove(fh) end))
      assert.are.equal(0, #ep)
    end)

    it("take objects with a getfd, pollfd or fileno method", function()
      local r, w = T.pipe()
      local r2, w2 = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w, r2, w2) end)
      local by_getfd = { getfd = function(self) return self.fd end, fd = r }
      local by_pollfd = { pollfd = function() return w end }
      local by_fileno = { fileno = function() return r2 end }
      -- A method found through __index, returning a float as LuaSocket does.
      local class = { __index = { getfd = function() return w2 + 0.0 end } }
      local by_class = setmetatable({}, class)
      ep:set(by_getfd, "in")
      ep:set(by_pollfd, "out")
      ep:set(by_fileno, "in|et")
      ep:set(by_class, "out|et")
      assert.are.same({ { r, IN }, { w, OUT }, { r2, H.bor(IN, ET) }, { w2, H.bor(OUT, ET) } }, entries(ep))
      assert.are.equal(IN, ep:find(by_getfd))
      assert.are.equal(OUT, ep:find(by_pollfd))
      assert.are.equal(H.bor(IN, ET), ep:find(by_fileno))
      assert.are.equal(H.bor(OUT, ET), ep:find(by_class))
      ep:invariant()
      ep:remove(by_getfd)
      ep:remove(by_pollfd)
      ep:remove(by_fileno)
      ep:remove(by_class)
      assert.are.equal(0, #ep)
    end)

    it("ask getfd first, then pollfd, then fileno", function()
      local r, w = T.pipe()
      local r2, w2 = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w, r2, w2) end)
      ep:set({ getfd = function() return r end, pollfd = function() return w end,
        fileno = function() return r2 end }, "in")
      ep:set({ pollfd = function() return w end, fileno = function() return r2 end }, "out")
      assert.are.same({ { r, IN }, { w, OUT } }, entries(ep))
    end)

    it("refuse an object whose method returns no number, or a bad one", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      assert.are.equal("bad argument #1 to 'set' (getfd returned string, not an fd)",
        msg_of(function() ep:set({ getfd = function() return tostring(r) end }, "in") end))
      assert.are.equal("bad argument #1 to 'set' (fileno returned nil, not an fd)",
        msg_of(function() ep:set({ fileno = function() end }, "in") end))
      assert.are.equal("bad argument #1 to 'set' (fd -1 out of range [0, 64))",
        msg_of(function() ep:set({ pollfd = function() return -1 end }, "in") end))
      assert.are.equal(string.format("bad argument #1 to 'set' (fd %d.5 is not an integer "
        .. "(valid range [0, 64)))", r),
        msg_of(function() ep:set({ getfd = function() return r + 0.5 end }, "in") end))
      -- A field of that name that cannot be called is not a method.
      assert.are.equal("bad argument #1 to 'set' (getfd is number, not a method)",
        msg_of(function() ep:set({ getfd = r }, "in") end))
      assert.are.equal(0, #ep)
    end)

    it("take LuaSocket TCP and UDP sockets on loopback", function()
      local server = assert(socket.tcp())
      local client = assert(socket.tcp())
      local u1 = assert(socket.udp())
      local u2 = assert(socket.udp())
      local conn
      local ep = lepoll.create()
      finally(function()
        ep:close()
        if conn then conn:close() end
        server:close(); client:close(); u1:close(); u2:close()
      end)
      assert(server:bind("127.0.0.1", 0))
      assert(server:listen(4))
      assert(u1:setsockname("127.0.0.1", 0))
      assert(u2:setsockname("127.0.0.1", 0))
      -- LuaSocket's getfd gives a float: it counts as the integer.
      if H.has.integers then
        assert.are.equal("float", math.type(server:getfd()))
      else
        -- Before 5.3 every number is a double: nothing more to tell.
        assert.are.equal("number", type(server:getfd()))
      end
      local sfd, ufd = tointeger(server:getfd()), tointeger(u1:getfd())
      ep:set(server, "in")
      ep:set(u1, "in")
      assert.are.equal(IN, ep:find(sfd))
      assert.are.equal(IN, ep:find(u1))
      assert.are.equal("timeout", ep:wait(0))
      local _, tcp_port = server:getsockname()
      local _, udp_port = u1:getsockname()
      assert(client:connect("127.0.0.1", tcp_port))
      assert(u2:sendto("x", "127.0.0.1", udp_port))
      assert.are.equal("ok", ep:wait(1))
      -- Both are on loopback, but wait once more if only one was ready yet.
      local ready = H.ready_names(ep)
      if not (ready[sfd] and ready[ufd]) then
        assert.are.equal("ok", ep:wait(1))
        for fd, names in pairs(H.ready_names(ep)) do ready[fd] = names end
      end
      assert.are.same({ [sfd] = "in", [ufd] = "in" }, ready)
      conn = assert(server:accept())
      ep:set(conn, "in|rdhup")
      assert.are.equal(H.bor(IN, lepoll.RDHUP), ep:find(tointeger(conn:getfd())))
      ep:invariant()
      ep:remove(server)
      ep:remove(u1)
      ep:remove(conn)
      assert.are.equal(0, #ep)
    end)

    it("refuse a closed LuaSocket socket (its getfd gives -1)", function()
      local sock = assert(socket.udp())
      sock:close()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      assert.are.equal("bad argument #1 to 'set' (fd -1 out of range [0, 64))",
        msg_of(function() ep:set(sock, "in") end))
    end)

    it("accept the last fd of the range and refuse the one after it", function()
      local r, w = T.pipe()
      local last = assert(T.dup(r, 63))
      local past = assert(T.dup(r, 64))
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w, last, past) end)
      assert.are.same({ 63, 64 }, { last, past })
      ep:set(63, "in")
      assert.are.equal(IN, ep:find(63))
      assert.are.equal("bad argument #1 to 'set' (fd 64 out of range [0, 64))",
        msg_of(function() ep:set(64, "in") end))
      assert.are.equal("bad argument #1 to 'set' (fd 64 out of range [0, 64))",
        msg_of(function() ep:set(64.0, "in") end))
      assert.are.equal("bad argument #1 to 'set' (fd 64 out of range [0, 64))",
        msg_of(function() ep:set({ fileno = function() return past end }, "in") end))
      assert.are.equal("bad argument #1 to 'find' (fd 64 out of range [0, 64))",
        msg_of(function() ep:find(64) end))
      assert.are.equal("bad argument #1 to 'remove' (fd 64 out of range [0, 64))",
        msg_of(function() ep:remove(64) end))
      assert.are.same({ { 63, IN } }, entries(ep))
      ep:invariant()
      assert.are.equal(1, T.write(w, "x"))
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { 63, IN } }, H.ready(ep))
      ep:remove(63)
      assert.are.equal(0, #ep)
    end)

    it("accept fd == num_file_descrs - 1 for any range, refuse fd == num_file_descrs", function()
      local r, w = T.pipe()
      local fd = assert(T.dup(r, 200))
      local wide = lepoll.create(fd + 1)
      local narrow = lepoll.create(fd)
      finally(function() wide:close(); narrow:close(); H.close(r, w, fd) end)
      wide:set(fd, "in")
      assert.are.equal(IN, wide:find(fd))
      wide:invariant()
      assert.are.equal(string.format("bad argument #1 to 'set' (fd %d out of range [0, %d))", fd, fd),
        msg_of(function() narrow:set(fd, "in") end))
      assert.are.equal(0, #narrow)
    end)

    it("accept fd 0, the first of the range", function()
      -- fd 0 is this process's stdin, which may be anything: a child Lua
      -- takes it over with a pipe and reports back.
      local script_path = os.tmpname()
      finally(function() os.remove(script_path) end)
      local script = assert(io.open(script_path, "w"))
      script:write(string.format("package.cpath = %q\n", package.cpath), [[
        local T = require "lepoll_test"
        local lepoll = require "lepoll"
        assert(T.close(0))
        local r, w = T.pipe()
        assert(r == 0, "pipe did not take fd 0")
        io.write(w, " ")
        local ep = lepoll.create(1)
        ep:set(0, "in")
        io.write(ep:find(0), " ", #ep, " ")
        T.write(w, "x")
        io.write(ep:wait(0), " ")
        ep:iter_ready(function(fd, flags) io.write(fd, "=", lepoll.flagnames(flags), " ") end)
        local ok, err = pcall(function() ep:set(w, "out") end)
        io.write(err:gsub("^.-:%d+: ", ""), "|")
        ep:remove(0)
        io.write(#ep)
        ep:close()
      ]])
      script:close()
      -- The shell reports the exit status: close() gives it only from 5.2
      -- (not on 5.1 nor LuaJIT).
      local child = assert(io.popen(H.LUA .. " " .. script_path .. " </dev/null 2>&1; echo \"[exit $?]\"",
        "r"))
      local all = child:read("*a") -- ("a" alone is 5.3's; "*a" is read everywhere)
      child:close()
      local out, status = all:match("^(.-)%[exit (%d+)%]\n$")
      assert.are.equal("0", status, all)
      local w = out:match("^%d+") or "?" -- the child's write end
      assert.are.equal(w .. " 1 1 ok 0=in bad argument #1 to 'set' (fd " .. w
        .. " out of range [0, 1))|0", out)
    end)

    it("refuse negative and non-integer numbers, naming the fd and the range", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      assert.are.equal("bad argument #1 to 'set' (fd -1 out of range [0, 64))",
        msg_of(function() ep:set(-1, "in") end))
      -- The smallest integer; before 5.3, -2^63 is that same value as a
      -- double, which lepoll takes as the integer (and prints as one).
      local min = H.has.integers and math.mininteger or -2 ^ 63
      assert.are.equal("bad argument #1 to 'set' (fd -9223372036854775808 out of range [0, 64))",
        msg_of(function() ep:set(min, "in") end))
      assert.are.equal("bad argument #1 to 'set' (fd -1 out of range [0, 64))",
        msg_of(function() ep:set(-1.0, "in") end))
      assert.are.equal(string.format("bad argument #1 to 'set' (fd %d.5 is not an integer "
        .. "(valid range [0, 64)))", r),
        msg_of(function() ep:set(r + 0.5, "in") end))
      assert.are.equal("bad argument #1 to 'find' (fd inf is not an integer (valid range [0, 64)))",
        msg_of(function() ep:find(math.huge) end))
      assert.matches("^bad argument #1 to 'remove' %(fd %-?nan is not an integer %(valid range "
        .. "%[0, 64%)%)%)$", msg_of(function() ep:remove(0 / 0) end))
      assert.are.equal(0, #ep)
    end)

    it("refuse an fd beyond the int range instead of truncating it", function()
      local r, w = T.pipe()
      local ep = lepoll.create(0x7fffffff)
      finally(function() ep:close(); H.close(r, w) end)
      -- 2^32 + r would be r if cut to 32 bits. (0x100000000 is 1 << 32: an
      -- integer on 5.3+, a double before.)
      assert.are.equal(string.format("bad argument #1 to 'set' (fd %d out of range "
        .. "[0, 2147483647))", 0x100000000 + r),
        msg_of(function() ep:set(0x100000000 + r, "in") end))
      assert.are.equal("bad argument #1 to 'set' (fd 2147483647 out of range [0, 2147483647))",
        msg_of(function() ep:set(0x7fffffff, "in") end))
      assert.are.equal(0, #ep)
    end)

    it("refuse other types", function()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      -- (a thread of a Lua function: 5.1 makes none of a C function)
      for _, case in ipairs({
        { "3", "string" }, { true, "boolean" }, { {}, "table" }, { print, "function" },
        { coroutine.create(function() end), "thread" }, { nil, "nil" },
      }) do
        assert.are.equal("bad argument #1 to 'set' (" .. FD_KINDS .. " expected, got " .. case[2] .. ")",
          msg_of(function() ep:set(case[1], "in") end))
        assert.are.equal("bad argument #1 to 'find' (" .. FD_KINDS .. " expected, got " .. case[2] .. ")",
          msg_of(function() ep:find(case[1]) end))
        assert.are.equal("bad argument #1 to 'remove' (" .. FD_KINDS .. " expected, got "
          .. case[2] .. ")", msg_of(function() ep:remove(case[1]) end))
      end
      assert.are.equal("bad argument #1 to 'find' (" .. FD_KINDS .. " expected, got no value)",
        msg_of(function() ep:find() end))
      assert.are.equal(0, #ep)
    end)

    it("refuse bad flags in set, leaving the table unchanged", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      assert.are.equal("bad argument #2 to 'set' (unknown flag name 'bogus')",
        msg_of(function() ep:set(r, "in|bogus") end))
      assert.are.equal("bad argument #2 to 'set' (flags -1 out of range [0, 0xffffffff])",
        msg_of(function() ep:set(r, -1) end))
      assert.are.equal("bad argument #2 to 'set' (flags 1.5 are not an integer)",
        msg_of(function() ep:set(w, 1.5) end))
      assert.are.equal("bad argument #2 to 'set' (" .. FLAGS_KINDS .. " expected, got no value)",
        msg_of(function() ep:set(w) end))
      assert.are.equal("bad argument #2 to 'set' (" .. FLAGS_KINDS .. " expected, got boolean)",
        msg_of(function() ep:set(w, true) end))
      assert.are.same({ { r, IN } }, entries(ep))
      ep:invariant()
    end)
  end)

  it("refuses set, find and remove on a closed set", function()
    local r, w = T.pipe()
    local ep = lepoll.create(64)
    finally(function() H.close(r, w) end)
    ep:set(r, "in")
    ep:close()
    assert.are.equal("attempt to use a closed epoll set", msg_of(function() ep:set(r, "in") end))
    assert.are.equal("attempt to use a closed epoll set", msg_of(function() ep:find(r) end))
    assert.are.equal("attempt to use a closed epoll set", msg_of(function() ep:remove(r) end))
    assert.are.equal(0, #ep)
  end)
end)

describe("tofd", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("gives the integer that set, remove and find use, from every form", function()
    local r, w = T.pipe()
    local ep = lepoll.create(64)
    local u = assert(socket.udp())
    finally(function() ep:close(); u:close(); H.close(r, w) end)
    assert(u:setsockname("127.0.0.1", 0))
    assert.are.equal(r, ep:tofd(r))
    assert.are.equal("integer", H.numtype(ep:tofd(r + 0.0)))
    assert.are.equal(r, ep:tofd(r + 0.0))
    assert.are.equal(w, ep:tofd({ fileno = function() return w end }))
    assert.are.equal(tointeger(u:getfd()), ep:tofd(u))
    local p = assert(io.popen("true", "r"))
    local pfd = ep:tofd(p)
    ep:set(p, "in")
    assert.are.equal(lepoll.IN, ep:find(pfd))
    ep:remove(pfd)
    p:close()
    -- Nothing was watched by asking.
    assert.are.equal(0, #ep)
  end)

  it("raises the same argument errors as set", function()
    local ep = lepoll.create(64)
    finally(function() ep:close() end)
    assert.are.equal("bad argument #1 to 'tofd' (fd 64 out of range [0, 64))",
      msg_of(function() ep:tofd(64) end))
    assert.are.equal("bad argument #1 to 'tofd' (fd 1.5 is not an integer (valid range [0, 64)))",
      msg_of(function() ep:tofd(1.5) end))
    ep:close()
    assert.are.equal("attempt to use a closed epoll set", msg_of(function() ep:tofd(3) end))
  end)
end)
