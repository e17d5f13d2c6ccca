-- lepoll.loop: I/O watchers, through real pipes and socketpairs.
local lepoll = require "lepoll"
local socket = require "socket"
local H = require "support.helpers"
local T = H.T

local IN, OUT, HUP, RDHUP, ET, ONESHOT = lepoll.IN, lepoll.OUT, lepoll.HUP, lepoll.RDHUP, lepoll.ET,
  lepoll.ONESHOT

local tointeger = H.tointeger

local C = H.cleanups(function(fn) finally(fn) end)
local defer, pipe, socketpair = C.defer, C.pipe, C.socketpair
local new_loop = C.new_loop -- a loop closed when the test ends

-- A pipe whose ends the test may close early: it sets p.r or p.w to nil
-- then, so that the cleanup cannot close a reused number.
local function closable_pipe()
  local p = {}
  p.r, p.w = assert(T.pipe())
  defer(function() H.close(p.r, p.w) end)
  return p
end

-- The loop's rendering for the given watched and ready entries (strings
-- as tostring(set) puts them inside flags_by_fd={...} and ready={...}).
local function rendering(l, counts, watched, ready)
  return string.format(
    "loop{watchers=%d, timers=%d, tasks=%d, epoll{fd=%d, num_file_descrs=%d, max_ready_events=256, "
    .. "flags_by_fd={%s}, ready={%s}}}", counts[1], counts[2], counts[3], l:getfd(),
    H.default_num_file_descrs(), watched, ready)
end

-- Records the calls of a watcher callback as {watcher, fd, flags, nargs}.
local function recorder()
  local calls = {}
  local function cb(...)
    local w, fd, flags = ...
    calls[#calls + 1] = { w = w, fd = fd, flags = flags, n = select("#", ...) }
  end
  return calls, cb
end

describe("lepoll.loop I/O watchers", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("call callback(watcher, fd, flags) with the integer fd and the kernel's flags", function()
    local l = new_loop()
    local r, w = pipe()
    local calls, cb = recorder()
    local watcher = l:io(r, "in", cb)
    assert.is_true(watcher:is_active())
    assert.are.equal(r, watcher.fd)
    assert.are.equal(IN, watcher.flags)
    assert.are.equal(rendering(l, { 1, 0, 0 }, ('[%d]="in"'):format(r), ""), tostring(l))

    assert.is_true(l:run("nowait")) -- nothing ready: no call, the watcher is still work
    assert.are.equal(0, #calls)
    assert.are.equal(1, T.write(w, "x"))
    assert.is_true(l:run("once"))
    assert.are.equal(1, #calls)
    local c = calls[1]
    assert.are.equal(3, c.n)
    assert.is_true(rawequal(watcher, c.w))
    assert.are.equal(r, c.fd)
    assert.are.equal("integer", H.numtype(c.fd))
    assert.are.equal(IN, c.flags)
    l:invariant()
  end)

  it("are level-triggered by default: called on every round until the data is read", function()
    local l = new_loop()
    local r, w = pipe()
    local got = {}
    l:io(r, "in", function(_, fd) got[#got + 1] = T.read(fd, 1) end)
    T.write(w, "abc")
    for _ = 1, 4 do assert.is_true(l:run("nowait")) end
    assert.are.same({ "a", "b", "c" }, got)
  end)

  it("report the exact events: hup when the writer of a pipe closes", function()
    local l = new_loop()
    local p = closable_pipe()
    local calls, cb = recorder()
    l:io(p.r, "in", cb)
    T.close(p.w)
    p.w = nil
    assert.is_true(l:run("once"))
    assert.are.equal(1, #calls)
    assert.are.equal(HUP, calls[1].flags)
  end)

  it("take flags as integers, strings or lists of names", function()
    local l = new_loop()
    local a, b = socketpair()
    local r, w = pipe()
    local calls, cb = recorder()
    local wa = l:io(a, { "in", "rdhup" }, cb)
    local ww = l:io(w, OUT, cb)
    local wr = l:io(r, "in|et", cb)
    assert.are.equal(IN + RDHUP, wa.flags)
    assert.are.equal(OUT, ww.flags)
    assert.are.equal(IN + ET, wr.flags)
    ww:stop()
    T.shutdown(b, "w")
    assert.is_true(l:run("once"))
    assert.are.equal(1, #calls)
    assert.are.equal(a, calls[1].fd)
    assert.are.equal(IN + RDHUP, calls[1].flags)
  end)

  it("dispatch the events of a round in the kernel's order", function()
    local l = new_loop()
    local pipes, order = {}, {}
    for i = 1, 3 do
      local r, w = pipe()
      pipes[i] = { r = r, w = w }
      l:io(r, "in", function(_, fd)
        order[#order + 1] = i
        T.read(fd)
        assert.are.equal(r, fd)
      end)
    end
    T.write(pipes[2].w, "b")
    T.write(pipes[3].w, "c")
    T.write(pipes[1].w, "a")
    assert.is_true(l:run("once"))
    assert.are.same({ 2, 3, 1 }, order)
  end)

  it("accept callable objects as callbacks", function()
    local l = new_loop()
    local r, w = pipe()
    local seen = {}
    local callable = setmetatable({}, { __call = function(self, watcher, fd, flags)
      seen[#seen + 1] = { self, watcher, fd, flags }
    end })
    local watcher = l:io(r, "in", callable)
    T.write(w, "x")
    l:run("once")
    assert.are.equal(1, #seen)
    assert.is_true(rawequal(callable, seen[1][1]))
    assert.is_true(rawequal(watcher, seen[1][2]))
    assert.are.equal(r, seen[1][3])
    assert.are.equal(IN, seen[1][4])
  end)

  describe("stop", function()
    it("ends the callbacks and takes the descriptor out of the set; a second stop does nothing", function()
      local l = new_loop()
      local r, w = pipe()
      local calls, cb = recorder()
      local watcher = l:io(r, "in", cb)
      T.write(w, "x")
      watcher:stop()
      assert.is_false(watcher:is_active())
      assert.are.equal(rendering(l, { 0, 0, 0 }, "", ""), tostring(l))
      assert.are.equal(0, select("#", watcher:stop()))
      assert.is_false(watcher:is_active())
      -- Nothing left to wait for: run returns false at once, with no call.
      assert.is_false(l:run("once"))
      assert.is_false(l:run())
      assert.are.equal(0, #calls)
      l:invariant()
    end)

    it("works from the watcher's own callback, with data still unread", function()
      local l = new_loop()
      local r, w = pipe()
      local calls = 0
      l:io(r, "in", function(watcher)
        calls = calls + 1
        watcher:stop()
      end)
      T.write(w, "unread")
      assert.is_false(l:run()) -- the watcher stopped: nothing left
      assert.are.equal(1, calls)
      assert.is_false(l:run("nowait"))
      assert.are.equal(1, calls)
    end)

    it("drops the watcher's event still pending in the same round", function()
      local l = new_loop()
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      local calls = {}
      local watchers = {}
      local function cb(watcher, fd)
        calls[#calls + 1] = fd
        for _, other in ipairs(watchers) do
          if other ~= watcher then other:stop() end
        end
      end
      watchers[1] = l:io(r1, "in", cb)
      watchers[2] = l:io(r2, "in", cb)
      T.write(w1, "x")
      T.write(w2, "y")
      assert.is_true(l:run("once"))
      assert.are.same({ r1 }, calls) -- r2's event was in the same round
      assert.is_true(l:run("nowait"))
      assert.are.same({ r1, r1 }, calls)
      assert.is_false(watchers[2]:is_active())
    end)

    it("is not an error after the descriptor was closed", function()
      local l = new_loop()
      local p = closable_pipe()
      local watcher = l:io(p.r, "in", function() end)
      T.close(p.r)
      p.r = nil
      assert.are.equal(0, select("#", watcher:stop()))
      assert.is_false(watcher:is_active())
      assert.are.equal(rendering(l, { 0, 0, 0 }, "", ""), tostring(l))
      l:invariant()
    end)
  end)

  describe("start", function()
    it("resumes the callbacks with the watcher's flags; a second start does nothing", function()
      local l = new_loop()
      local r, w = pipe()
      local calls, cb = recorder()
      local watcher = l:io(r, "in", cb)
      watcher:stop()
      T.write(w, "x")
      assert.is_false(l:run("nowait"))
      assert.are.equal(0, #calls)
      watcher:start()
      assert.is_true(watcher:is_active())
      assert.are.equal(0, select("#", watcher:start()))
      assert.are.equal(rendering(l, { 1, 0, 0 }, ('[%d]="in"'):format(r), ""), tostring(l))
      assert.is_true(l:run("once"))
      assert.are.equal(1, #calls)
      assert.is_true(rawequal(watcher, calls[1].w))
      l:invariant()
    end)

    it("of a watcher made during a round does not deliver that round's event for its fd", function()
      local l = new_loop()
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      local calls = {}
      local second, replaced
      l:io(r1, "in", function()
        calls[#calls + 1] = "first"
        if not replaced then
          replaced = true
          second:stop()
          -- r2 is ready in this round, for `second`, and watched for out by nobody.
          l:io(r2, "in|out", function(_, _, flags) calls[#calls + 1] = lepoll.flagnames(flags) end)
        end
      end)
      second = l:io(r2, "in", function() calls[#calls + 1] = "second" end)
      T.write(w1, "x")
      T.write(w2, "y")
      assert.is_true(l:run("once"))
      assert.are.same({ "first" }, calls)
      assert.is_true(l:run("nowait"))
      table.sort(calls)
      assert.are.same({ "first", "first", "in" }, calls)
      l:invariant()
    end)
  end)

  describe("set", function()
    it("changes the flags of a started watcher", function()
      local l = new_loop()
      local a = socketpair()
      local calls, cb = recorder()
      local watcher = l:io(a, "in", cb)
      assert.is_true(l:run("nowait"))
      assert.are.equal(0, #calls)
      watcher:set("out")
      assert.are.equal(OUT, watcher.flags)
      assert.is_true(l:run("once"))
      assert.are.equal(1, #calls)
      assert.are.equal(OUT, calls[1].flags)
      assert.are.equal(rendering(l, { 1, 0, 0 }, ('[%d]="out"'):format(a), ('[%d]="out"'):format(a)),
        tostring(l))
    end)

    it("of a stopped watcher applies at start", function()
      local l = new_loop()
      local a, b = socketpair()
      local calls, cb = recorder()
      local watcher = l:io(a, "out", cb)
      watcher:stop()
      watcher:set({ "in" })
      assert.are.equal(IN, watcher.flags)
      assert.are.equal(rendering(l, { 0, 0, 0 }, "", ""), tostring(l))
      watcher:start()
      assert.is_true(l:run("nowait"))
      assert.are.equal(0, #calls) -- in only: nothing to read
      T.write(b, "x")
      assert.is_true(l:run("once"))
      assert.are.equal(IN, calls[1].flags)
    end)

    it("re-arms a oneshot watcher with the same flags", function()
      local l = new_loop()
      local r, w = pipe()
      local calls, cb = recorder()
      local watcher = l:io(r, "in|oneshot", cb)
      assert.are.equal(IN + ONESHOT, watcher.flags)
      T.write(w, "x")
      assert.is_true(l:run("nowait"))
      assert.is_true(l:run("nowait"))
      assert.are.equal(1, #calls) -- disarmed, though still readable
      watcher:set("in|oneshot")
      assert.is_true(l:run("nowait"))
      assert.are.equal(2, #calls)
      l:invariant()
    end)

    it("refuses a bad flag spec and keeps the flags", function()
      local l = new_loop()
      local r = pipe()
      local watcher = l:io(r, "in", function() end)
      assert.are.equal("bad argument #1 to 'set' (unknown flag name 'inn')",
        H.msg_of(function() watcher:set("inn") end))
      assert.are.equal(IN, watcher.flags)
      l:invariant()
    end)
  end)

  it("on an edge-triggered watcher are called once per new write", function()
    local l = new_loop()
    local r, w = pipe()
    local calls, cb = recorder()
    l:io(r, "in|et", cb)
    T.write(w, "a")
    for _ = 1, 3 do l:run("nowait") end
    assert.are.equal(1, #calls)
    T.write(w, "b")
    for _ = 1, 3 do l:run("nowait") end
    assert.are.equal(2, #calls)
  end)

  describe("one per descriptor", function()
    it("a second watcher on the same fd is an error that says so", function()
      local l = new_loop()
      local r = pipe()
      local first = l:io(r, "in", function() end)
      local msg = ("fd %d already has an I/O watcher"):format(r)
      assert.are.equal(msg, H.msg_of(function() l:io(r, "out", function() end) end))
      assert.are.equal(msg, H.msg_of(function() l:io(r + 0.0, "in", function() end) end))
      assert.are.equal(msg, H.msg_of(function()
        l:io({ getfd = function() return r end }, "in", function() end)
      end))
      -- The first one is untouched.
      assert.is_true(first:is_active())
      assert.are.equal(rendering(l, { 1, 0, 0 }, ('[%d]="in"'):format(r), ""), tostring(l))
      l:invariant()
    end)

    it("a stopped watcher frees its fd; starting it while another has it is an error", function()
      local l = new_loop()
      local r, w = pipe()
      local calls = {}
      local first = l:io(r, "in", function() calls[#calls + 1] = "first" end)
      first:stop()
      local second = l:io(r, "in", function(watcher)
        calls[#calls + 1] = "second"
        watcher:stop()
      end)
      assert.are.equal(("fd %d already has an I/O watcher"):format(r), H.msg_of(function() first:start() end))
      assert.is_false(first:is_active())
      T.write(w, "x")
      assert.is_false(l:run())
      assert.are.same({ "second" }, calls)
      assert.is_false(second:is_active())
      first:start()
      assert.is_true(l:run("once"))
      assert.are.same({ "second", "first" }, calls)
      l:invariant()
    end)
  end)

  describe("descriptors", function()
    it("may be integral floats, objects with getfd/pollfd/fileno, or LuaSocket sockets", function()
      local l = new_loop()
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      local r3, w3 = pipe()
      local r4, w4 = pipe()
      local u1, u2 = socket.udp(), socket.udp()
      defer(function() u1:close() u2:close() end)
      assert.are.equal(1, u1:setsockname("127.0.0.1", 0))
      local seen = {}
      local function cb(watcher, fd)
        seen[#seen + 1] = fd
        assert.are.equal("integer", H.numtype(fd))
        assert.are.equal(watcher.fd, fd)
        watcher:stop()
      end
      local ws = {
        l:io(r1 + 0.0, "in", cb),
        l:io({ getfd = function() return r2 end }, "in", cb),
        l:io(setmetatable({}, { __index = { pollfd = function() return r3 + 0.0 end } }), "in", cb),
        l:io({ fileno = function(self) return self.fd end, fd = r4 }, "in", cb),
        l:io(u1, "in", cb),
      }
      local ufd = tointeger(u1:getfd())
      for i, fd in ipairs({ r1, r2, r3, r4, ufd }) do
        assert.are.equal(fd, ws[i].fd)
        assert.are.equal("integer", H.numtype(ws[i].fd))
      end
      for _, w in ipairs({ w1, w2, w3, w4 }) do T.write(w, "x") end
      local ip, port = u1:getsockname()
      assert.are.equal(2, u2:sendto("hi", ip, port))
      -- Everything is ready; the datagram may take a moment on loopback.
      assert.is_false(l:run())
      table.sort(seen)
      local expected = { r1, r2, r3, r4, ufd }
      table.sort(expected)
      assert.are.same(expected, seen)
    end)

    it("may be Lua file handles, resolved to their integer fd", function()
      local l = new_loop()
      local r, w = pipe()
      local h = assert(io.open("/proc/self/fd/" .. r, "r")) -- a new descriptor on the pipe
      local got = {}
      local watcher = l:io(h, "in", function(wt, fd, flags)
        got[#got + 1] = { fd, flags, T.read(fd) }
        wt:stop()
      end)
      defer(function() watcher:stop() h:close() end)
      assert.are.equal("integer", H.numtype(watcher.fd))
      assert.are_not.equal(r, watcher.fd)
      assert.are.equal(rendering(l, { 1, 0, 0 }, ('[%d]="in"'):format(watcher.fd), ""), tostring(l))
      T.write(w, "through the handle")
      assert.is_false(l:run())
      assert.are.same({ { watcher.fd, IN, "through the handle" } }, got)
      -- The same handle again: the same descriptor, remembered.
      local again = l:io(h, "in", function() end)
      assert.are.equal(watcher.fd, again.fd)
      again:stop()
      l:invariant()
    end)

    it("that are invalid are argument errors naming io and the range", function()
      local l = new_loop({ num_file_descrs = 64 })
      local cb = function() end
      local h = assert(io.open("/proc/self/fd/0", "r"))
      h:close()
      local cases = {
        { -1, "fd -1 out of range [0, 64)" },
        { 64, "fd 64 out of range [0, 64)" },
        { 1.5, "fd 1.5 is not an integer (valid range [0, 64))" },
        { "3", "file descriptor (integer, file handle or object with getfd/pollfd/fileno) expected, got string" },
        { {}, "file descriptor (integer, file handle or object with getfd/pollfd/fileno) expected, got table" },
        { { getfd = 3 }, "getfd is number, not a method" },
        { { getfd = function() return "3" end }, "getfd returned string, not an fd" },
        { { fileno = function() return 70 end }, "fd 70 out of range [0, 64)" },
        { h, "closed file handle (valid range [0, 64))" },
      }
      for _, case in ipairs(cases) do
        assert.are.equal("bad argument #1 to 'io' (" .. case[2] .. ")",
          H.msg_of(function() l:io(case[1], "in", cb) end))
      end
      assert.are.equal("bad argument #1 to 'io' (file descriptor (integer, file handle or object with "
        .. "getfd/pollfd/fileno) expected, got nil)", H.msg_of(function() l:io() end))
      assert.are.equal(string.format("loop{watchers=0, timers=0, tasks=0, epoll{fd=%d, num_file_descrs=64, "
        .. "max_ready_events=256, flags_by_fd={}, ready={}}}", l:getfd()), tostring(l))
    end)

    it("that the kernel refuses (a regular file) raise lepoll's error and make no watcher", function()
      local l = new_loop()
      local path = os.tmpname()
      local fd = assert(T.open(path))
      defer(function() H.close(fd) os.remove(path) end)
      assert.are.equal(("lepoll: set fd %d: Operation not permitted (EPERM)"):format(fd),
        H.msg_of(function() l:io(fd, "in", function() end) end))
      assert.are.equal(rendering(l, { 0, 0, 0 }, "", ""), tostring(l))
      assert.is_false(l:run())
      l:invariant()
    end)
  end)

  it("refuse bad flags and callbacks with argument errors naming io", function()
    local l = new_loop()
    local r = pipe()
    assert.are.equal("bad argument #2 to 'io' (unknown flag name 'inn')",
      H.msg_of(function() l:io(r, "inn", function() end) end))
    assert.are.equal("bad argument #2 to 'io' (flags (integer, string of names or list of names) "
      .. "expected, got boolean)", H.msg_of(function() l:io(r, true, function() end) end))
    assert.are.equal("bad argument #3 to 'io' (function expected, got no value)",
      H.msg_of(function() l:io(r, "in") end))
    assert.are.equal("bad argument #3 to 'io' (function expected, got table)",
      H.msg_of(function() l:io(r, "in", {}) end))
    assert.are.equal(rendering(l, { 0, 0, 0 }, "", ""), tostring(l))
    l:invariant()
  end)

  it("render as io{fd=N, flags=...}", function()
    local l = new_loop()
    local r = pipe()
    local watcher = l:io(r, "in|et", function() end)
    assert.are.equal(('io{fd=%d, flags="in|et"}'):format(r), tostring(watcher))
    watcher:stop()
    assert.are.equal(('io{fd=%d, flags="in|et", stopped}'):format(r), tostring(watcher))
  end)

  it("allocate nothing in a steady echo between two watchers", function()
    local l = new_loop()
    local a, b = socketpair()
    local bad, calls = 0, 0
    local function echo(_, fd, flags)
      calls = calls + 1
      if flags ~= IN or T.read(fd, 1) ~= "x" or T.write(fd, "x") ~= 1 then bad = bad + 1 end
    end
    l:io(a, "in", echo)
    l:io(b, "in", echo)
    T.write(a, "x")
    local function rounds(n)
      for _ = 1, n do
        if not l:run("once") then bad = bad + 1 end
      end
    end
    assert.are.equal(0, H.alloc_growth(rounds, 2000, 10000))
    assert.are.equal(0, bad)
    assert.are.equal(12010, calls)
  end)
end)

describe("lepoll.loop I/O watchers on objects", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("keep a handle given only to io alive, so its descriptor stays open", function()
    local l = new_loop()
    local got
    local w = l:io(io.popen("sleep 0.05; echo hi", "r"), "in", function(w, _, flags)
      got = flags
      w:stop()
      w.handle:close()
    end)
    collectgarbage()
    collectgarbage()
    l:invariant()
    assert.is_false(l:run())
    -- The line, and the child's exit if it came first.
    assert.is_true(got == IN or got == H.bor(IN, HUP), lepoll.flagnames(got or 0))
    assert.is_false(w:is_active())
  end)

  it("name set's own argument when the kernel refuses the flags", function()
    local l = new_loop()
    local r = pipe()
    local w = l:io(r, "in", function() end)
    assert.are.equal(string.format("bad argument #1 to 'set' (exclusive can only be set when fd %d "
      .. "is added; remove it first)", r), H.msg_of(function() w:set("in|exclusive") end))
    w:stop()
    local w2 = l:io(r, "in|exclusive", function() end)
    assert.are.equal(string.format("bad argument #1 to 'set' (fd %d was added with exclusive, which "
      .. "the kernel never modifies; remove it first)", r), H.msg_of(function() w2:set("in") end))
    w2:stop()
  end)
end)
