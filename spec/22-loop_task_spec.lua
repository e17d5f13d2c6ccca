-- lepoll.loop: tasks (coroutines) waiting for readability, writability and
-- time, through real pipes and socketpairs.
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)
local defer, pipe, socketpair, new_loop = C.defer, C.pipe, C.socketpair, C.new_loop

local now = lepoll.now

-- The set's table as tostring shows it: the inside of flags_by_fd={...}.
local function watched(l)
  return (tostring(l):match("flags_by_fd={(.-)}"))
end

-- Counts of the loop's rendering: watchers, timers, tasks.
local counts = H.loop_counts

-- Writes to fd until the kernel takes no more.
local function fill(fd)
  local chunk = string.rep("x", 65536)
  while T.write(fd, chunk) do end
end

-- Reads fd until it is empty.
local function drain(fd)
  while true do
    local data = T.read(fd)
    if not data or data == "" then return end
  end
end

-- Results of f(...) as a list with its length.
local function pack(...)
  return { n = select("#", ...), ... }
end

-- coroutine.isyieldable (Lua 5.3+, LuaJIT); before, whether this runs in a
-- coroutine rather than the main thread, which is what it tells at the
-- start of a task.
local function yieldable()
  if coroutine.isyieldable then return coroutine.isyieldable() end
  local co, main = coroutine.running() -- 5.1: nil in the main thread; 5.2: it and true
  return co ~= nil and not main
end

-- Whether a task may wait inside a pcall: not on Lua 5.1 (no yield across a
-- C call), on 5.2+ and LuaJIT.
local PCALL_YIELDS = H.LUA_VERSION >= 502 or H.JIT

-- The error of a wait (readable, writable or sleep: `name`) where the task
-- cannot yield. The loop says so where coroutine.isyieldable tells (5.3+,
-- LuaJIT); before, Lua's own error of the yield comes through, positionless.
local function cannot_yield(name)
  if coroutine.isyieldable then
    return name .. " cannot wait here: the task would yield across a C-call boundary"
  end
  return H.LUA_VERSION == 501 and "attempt to yield across metamethod/C-call boundary"
    or "attempt to yield across a C-call boundary"
end

describe("lepoll.loop tasks", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  describe("spawn", function()
    it("runs fn(...) as a coroutine from the next round, in spawn order", function()
      local l = new_loop()
      local log = {}
      local t1 = l:spawn(function(...)
        log[#log + 1] = { "first", pack(...), yieldable() }
      end, "a", nil, 3)
      local t2 = l:spawn(function(...) log[#log + 1] = { "second", pack(...) } end)
      assert.are.same({}, log) -- not run by spawn
      assert.are.equal("queued", t1:status())
      assert.are.equal("task{id=1, queued}", tostring(t1))
      assert.are.same({ 0, 0, 2 }, counts(l))
      assert.is_false(l:run("once"))
      assert.are.same({
        { "first", { n = 3, "a", nil, 3 }, true },
        { "second", { n = 0 } },
      }, log)
      assert.are.equal("dead", t1:status())
      assert.are.equal("dead", t2:status())
      assert.are.equal("task{id=2, dead}", tostring(t2))
      assert.are.same({ 0, 0, 0 }, counts(l))
    end)

    it("from a task starts the new one in the next round", function()
      local l = new_loop()
      local log = {}
      l:spawn(function()
        log[#log + 1] = "parent"
        l:spawn(function() log[#log + 1] = "child" end)
        log[#log + 1] = "parent again"
      end)
      assert.is_true(l:run("nowait")) -- the child is queued: still work
      assert.are.same({ "parent", "parent again" }, log)
      assert.is_false(l:run("nowait"))
      assert.are.same({ "parent", "parent again", "child" }, log)
    end)

    it("refuses what is not a function", function()
      local l = new_loop()
      assert.are.equal("bad argument #1 to 'spawn' (function expected, got number)",
        H.msg_of(function() l:spawn(42) end))
      assert.are.equal("bad argument #1 to 'spawn' (function expected, got no value)",
        H.msg_of(function() l:spawn() end))
      assert.are.equal("bad argument #1 to 'spawn' (function expected, got table)",
        H.msg_of(function() l:spawn(setmetatable({}, { __call = function() end })) end))
      assert.are.same({ 0, 0, 0 }, counts(l))
    end)
  end)

  describe("readable", function()
    it("suspends the task until the descriptor is readable, then returns true alone", function()
      local l = new_loop()
      local r, w = pipe()
      local result, got
      local task = l:spawn(function()
        result = pack(l:readable(r))
        got = T.read(r)
      end)
      assert.is_true(l:run("nowait"))
      assert.are.equal("waiting", task:status())
      assert.are.equal(("[%d]=\"in\""):format(r), watched(l))
      assert.are.same({ 0, 0, 1 }, counts(l))
      assert.is_true(l:run("nowait"))
      assert.is_nil(result)
      T.write(w, "x")
      assert.is_false(l:run("once"))
      assert.are.same({ n = 1, true }, result)
      assert.are.equal("x", got)
      assert.are.equal("", watched(l)) -- out of the set once the wait ended
      l:invariant()
    end)

    it("accepts every descriptor form and waits on the integer fd", function()
      local l = new_loop()
      local r, w = pipe()
      local results = {}
      l:spawn(function()
        results[1] = l:readable(r + 0.0)
        results[2] = l:readable({ getfd = function() return r end })
        local h = assert(io.open("/proc/self/fd/" .. r, "r"))
        results[3] = l:readable(h)
        h:close()
      end)
      T.write(w, "x") -- stays unread: readable every time
      assert.is_false(l:run())
      assert.are.same({ true, true, true }, results)
    end)

    it("asks an object for its descriptor at every wait: a new number, or a new getfd, is followed", function()
      local l = new_loop()
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      local fd, calls = r1, 0
      local obj = {}
      function obj.getfd() calls = calls + 1; return fd end
      local log = {}
      l:spawn(function()
        log[#log + 1] = l:readable(obj) and T.read(r1) -- registers r1
        log[#log + 1] = l:readable(obj) and T.read(r1) -- the same number again
        fd = r2
        log[#log + 1] = l:readable(obj) and T.read(r2) -- followed to r2
        obj.getfd = function() return r1 end
        log[#log + 1] = l:readable(obj) and T.read(r1) -- the new method asked
        obj.getfd = function() return "x" end
        local ok, err = pcall(l.readable, l, obj)
        log[#log + 1] = not ok and err:match("getfd returned string") ~= nil
      end)
      T.write(w1, "a")
      assert.is_true(l:run("nowait"))
      T.write(w1, "b")
      assert.is_true(l:run("nowait"))
      T.write(w2, "c")
      assert.is_true(l:run("nowait"))
      T.write(w1, "d")
      assert.is_false(l:run())
      assert.are.same({ "a", "b", "c", "d", true }, log)
      assert.is_true(calls >= 3)
      l:invariant()
    end)

    it("returns nil, \"timeout\" once the timeout passed, and leaves the set", function()
      local l = new_loop()
      local r = pipe()
      local result, elapsed
      l:spawn(function()
        local t0 = now()
        result = pack(l:readable(r, 0.01))
        elapsed = now() - t0
      end)
      assert.is_true(l:run("nowait"))
      assert.are.same({ 0, 0, 1 }, counts(l)) -- the task's timeout is not a timer
      assert.is_false(l:run())
      assert.are.same({ n = 2, nil, "timeout" }, result)
      assert.is_true(elapsed >= 0.01)
      assert.are.equal("", watched(l))
      l:invariant()
    end)

    it("with a timeout returns true when ready first, and the timeout is cancelled", function()
      local l = new_loop()
      local r, w = pipe()
      local result
      l:spawn(function() result = pack(l:readable(r, 5)) end)
      l:timer(0.005, function() T.write(w, "x") end)
      local t0 = now()
      assert.is_false(l:run()) -- nothing left: the 5 s timeout went with the wait
      assert.is_true(now() - t0 < 1)
      assert.are.same({ n = 1, true }, result)
    end)

    it("with timeout 0 polls: true when ready, else a timeout in the same round", function()
      local l = new_loop()
      local r, w = pipe()
      local results = {}
      l:spawn(function()
        results[1] = pack(l:readable(r, 0))
        T.write(w, "x")
        results[2] = pack(l:readable(r, 0))
      end)
      assert.is_true(l:run("once"))
      assert.are.same({ { n = 2, nil, "timeout" } }, results)
      assert.is_false(l:run("once"))
      assert.are.same({ { n = 2, nil, "timeout" }, { n = 1, true } }, results)
    end)

    it("wakes on hup: the read tells what happened", function()
      local l = new_loop()
      local r, w = assert(T.pipe())
      defer(function() H.close(r) end)
      local result, data
      l:spawn(function()
        result = l:readable(r)
        data = T.read(r)
      end)
      l:run("nowait")
      T.close(w)
      assert.is_false(l:run())
      assert.is_true(result)
      assert.are.equal("", data)
    end)
  end)

  describe("writable", function()
    it("returns true at once on a fresh pipe", function()
      local l = new_loop()
      local _, w = pipe()
      local result
      l:spawn(function() result = pack(l:writable(w)) end)
      assert.is_false(l:run("once"))
      assert.are.same({ n = 1, true }, result)
    end)

    it("waits while the pipe is full, until the reader makes room", function()
      local l = new_loop()
      local r, w = pipe()
      fill(w)
      local result
      local task = l:spawn(function() result = pack(l:writable(w, 0.01)) end)
      assert.is_false(l:run())
      assert.are.same({ n = 2, nil, "timeout" }, result)
      assert.are.equal("dead", task:status())
      l:spawn(function() result = pack(l:writable(w)) end)
      assert.is_true(l:run("nowait"))
      assert.are.equal(("[%d]=\"out\""):format(w), watched(l))
      drain(r)
      assert.is_false(l:run())
      assert.are.same({ n = 1, true }, result)
    end)
  end)

  describe("sleep", function()
    it("suspends the task for the given seconds and returns true alone", function()
      local l = new_loop()
      local result, elapsed
      l:spawn(function()
        local t0 = now()
        result = pack(l:sleep(0.01))
        elapsed = now() - t0
      end)
      assert.is_false(l:run())
      assert.are.same({ n = 1, true }, result)
      assert.is_true(elapsed >= 0.01)
    end)

    it("of 0 (or less) lets the other tasks run for a round", function()
      local l = new_loop()
      local log = {}
      for _, name in ipairs({ "a", "b" }) do
        l:spawn(function()
          for i = 1, 3 do
            log[#log + 1] = name .. i
            if i < 3 then l:sleep(i == 2 and -1 or 0) end
          end
        end)
      end
      -- The first round starts both; their sleeps are due by the time the
      -- round runs its timers: each sleep lets the other task run once.
      assert.is_true(l:run("once"))
      assert.are.same({ "a1", "b1", "a2", "b2" }, log)
      assert.is_false(l:run("once"))
      assert.are.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
    end)

    it("orders many tasks by their deadlines", function()
      local l = new_loop()
      local woke = {}
      for i = 1, 200 do
        l:spawn(function()
          l:sleep((200 - i) % 10 / 1000)
          woke[#woke + 1] = i
        end)
      end
      assert.is_false(l:run())
      assert.are.equal(200, #woke)
      -- Started in one round, in order: equal sleeps wake in start order.
      local rank = {}
      for k, i in ipairs(woke) do rank[i] = k end
      for i = 1, 200 do
        for j = i + 1, 200 do
          if (200 - i) % 10 == (200 - j) % 10 then assert(rank[i] < rank[j]) end
        end
      end
    end)

    it("refuses a bad duration, raised in the task", function()
      local l = new_loop()
      local msgs = {}
      local r = pipe()
      l:spawn(function()
        msgs[1] = H.msg_of(function() l:sleep("x") end)
        msgs[2] = H.msg_of(function() l:sleep() end)
        msgs[3] = H.msg_of(function() l:readable(r, "x") end)
        msgs[4] = H.msg_of(function() l:writable(r, 0 / 0) end)
        msgs[5] = H.msg_of(function() l:readable(-1) end)
      end)
      assert.is_false(l:run())
      assert.are.same({
        "bad argument #1 to 'sleep' (seconds expected, got string)",
        "bad argument #1 to 'sleep' (seconds expected, got no value)",
        "bad argument #2 to 'readable' (timeout (seconds) expected, got string)",
        "bad argument #2 to 'writable' (timeout (seconds) expected, got NaN)",
        ("bad argument #1 to 'readable' (fd -1 out of range [0, %d))"):format(H.default_num_file_descrs()),
      }, msgs)
      assert.are.equal("", watched(l))
    end)
  end)

  describe("waits where the task cannot yield", function()
    it("(a function a C function calls back) raise, leaving nothing behind; the task goes on", function()
      local l = new_loop()
      local r, w = pipe()
      local msgs, result
      l:spawn(function()
        -- A function a C function calls back: no version yields there.
        table.sort({ 2, 1 }, function(a, b)
          msgs = msgs or {
            H.msg_anywhere(function() l:readable(r) end),
            H.msg_anywhere(function() l:writable(w, 1) end),
            H.msg_anywhere(function() l:sleep(1) end),
          }
          return a < b
        end)
        assert.are.equal("", watched(l))
        assert.are.same({ 0, 0, 1 }, counts(l)) -- no timer, no task timeout
        l:invariant()
        result = { l:readable(r, 5), l:sleep(0) }
      end)
      assert.is_true(l:run("nowait"))
      assert.are.same({ cannot_yield("readable"), cannot_yield("writable"), cannot_yield("sleep") }, msgs)
      assert.are.equal(("[%d]=\"in\""):format(r), watched(l))
      T.write(w, "x")
      assert.is_false(l:run())
      assert.are.same({ true, true }, result)
      l:invariant()
    end)

    it("include a pcall on Lua 5.1 only: elsewhere a task waits inside one", function()
      local l = new_loop()
      local r, w = pipe()
      local results
      l:spawn(function()
        results = { pack(pcall(l.readable, l, r)), pack(pcall(l.sleep, l, 0)) }
        l:invariant()
      end)
      if PCALL_YIELDS then
        assert.is_true(l:run("nowait"))
        assert.are.equal(("[%d]=\"in\""):format(r), watched(l))
        T.write(w, "x")
        assert.is_false(l:run())
        assert.are.same({ { n = 2, true, true }, { n = 2, true, true } }, results)
      else
        assert.is_false(l:run()) -- neither wait happened
        assert.are.same({ { n = 2, false, cannot_yield("readable") }, { n = 2, false, cannot_yield("sleep") } },
          results)
      end
      assert.are.equal("", watched(l))
      l:invariant()
    end)
  end)

  describe("outside a task of this loop", function()
    it("readable, writable and sleep are errors that say so", function()
      local l = new_loop()
      local other = new_loop()
      local r, w = pipe()
      local function all_refused()
        return {
          H.msg_of(function() l:readable(r) end),
          H.msg_of(function() l:writable(w, 1) end),
          H.msg_of(function() l:sleep(0) end),
        }
      end
      local expected = {
        "readable must be called from a task of this loop (see spawn)",
        "writable must be called from a task of this loop (see spawn)",
        "sleep must be called from a task of this loop (see spawn)",
      }
      -- The main program.
      assert.are.same(expected, all_refused())
      -- A plain coroutine.
      local co = coroutine.wrap(all_refused)
      assert.are.same(expected, co())
      local seen = {}
      -- A task of another loop.
      other:spawn(function() seen.other = all_refused() end)
      -- A coroutine resumed by a task of this loop.
      l:spawn(function() seen.nested = coroutine.wrap(all_refused)() end)
      -- A watcher callback and a timer callback.
      local watcher = l:io(w, "out", function(wt)
        seen.io = all_refused()
        wt:stop()
      end)
      l:timer(0, function() seen.timer = all_refused() end)
      assert.is_false(other:run())
      assert.is_false(l:run())
      assert.are.same({ other = expected, nested = expected, io = expected, timer = expected }, seen)
      assert.is_false(watcher:is_active())
      assert.are.equal("", watched(l))
    end)
  end)

  describe("sharing descriptors", function()
    it("a reader and a writer task on one socket wake each on its own event", function()
      local l = new_loop()
      local a, b = socketpair()
      fill(a) -- a is not writable until b reads
      local log = {}
      l:spawn(function()
        local ok = l:readable(a)
        log[#log + 1] = { "reader", ok }
      end)
      l:spawn(function()
        local ok = l:writable(a)
        log[#log + 1] = { "writer", ok }
      end)
      assert.is_true(l:run("nowait"))
      assert.are.equal(("[%d]=\"in|out\""):format(a), watched(l))
      l:invariant()
      T.write(b, "x")
      assert.is_true(l:run("once"))
      assert.are.same({ { "reader", true } }, log)
      -- The reader's registration stays while it lives (no system call per
      -- wait), and goes when it ends.
      assert.are.equal(("[%d]=\"in|out\""):format(a), watched(l))
      l:invariant()
      drain(b)
      assert.is_false(l:run())
      assert.are.same({ { "reader", true }, { "writer", true } }, log)
      assert.are.equal("", watched(l))
    end)

    it("a second task waiting to read the same descriptor is an error that says so", function()
      local l = new_loop()
      local r, w = pipe()
      local first, msg
      l:spawn(function() first = l:readable(r) end)
      l:spawn(function() msg = H.msg_of(function() l:readable(r) end) end)
      assert.is_true(l:run("nowait"))
      assert.are.equal(("fd %d already has a task waiting to read"):format(r), msg)
      assert.are.equal(("[%d]=\"in\""):format(r), watched(l))
      T.write(w, "x")
      assert.is_false(l:run())
      assert.is_true(first)
    end)

    it("a task cannot wait on a descriptor with a watcher, nor a watcher take one a task waits on", function()
      local l = new_loop()
      local r = pipe()
      local r2, w2 = pipe()
      local watcher = l:io(r, "in", function() end)
      local msgs = {}
      l:spawn(function()
        msgs.wait = H.msg_of(function() l:readable(r) end)
        msgs.write = H.msg_of(function() l:writable(r) end)
        assert.is_true(l:readable(r2))
      end)
      assert.is_true(l:run("nowait"))
      assert.are.equal(("fd %d has an I/O watcher: a task cannot wait on it"):format(r), msgs.wait)
      assert.are.equal(("fd %d has an I/O watcher: a task cannot wait on it"):format(r), msgs.write)
      assert.are.equal(("fd %d has a task waiting on it"):format(r2),
        H.msg_of(function() l:io(r2, "in", function() end) end))
      assert.are.equal(("fd %d has a task waiting on it"):format(r2),
        H.msg_of(function() l:io(r2 + 0.0, "out", function() end) end))
      l:invariant()
      watcher:stop()
      T.write(w2, "x")
      assert.is_false(l:run())
      assert.are.equal("", watched(l))
    end)
  end)

  it("keep run going while they wait; run returns false when the last one ends", function()
    local l = new_loop()
    local r, w = pipe()
    local done = 0
    for i = 1, 3 do
      l:spawn(function()
        l:sleep(i / 1000)
        if i == 3 then T.write(w, "go") end
        done = done + 1
      end)
    end
    l:spawn(function()
      l:readable(r)
      done = done + T.read(r):len()
    end)
    assert.is_false(l:run())
    assert.are.equal(5, done)
    assert.are.same({ 0, 0, 0 }, counts(l))
    l:invariant()
  end)

  it("allocate nothing in a steady ping-pong between a task and a watcher", function()
    local l = new_loop()
    local a, b = socketpair()
    local bad, rounds_done = 0, 0
    l:io(b, "in", function(_, fd)
      if T.read(fd, 1) ~= "p" or T.write(fd, "p") ~= 1 then bad = bad + 1 end
    end)
    l:spawn(function()
      while true do
        if not l:readable(a, 10) then bad = bad + 1 end
        if T.read(a, 1) ~= "p" then bad = bad + 1 end
        if not l:writable(a) then bad = bad + 1 end
        T.write(a, "p")
        rounds_done = rounds_done + 1
      end
    end)
    T.write(b, "p")
    local function rounds(n)
      for _ = 1, n do
        if not l:run("once") then bad = bad + 1 end
      end
    end
    assert.are.equal(0, H.alloc_growth(rounds, 2000, 10000))
    assert.are.equal(0, bad)
    assert.is_true(rounds_done > 1000)
  end)
end)

describe("lepoll.loop tasks whose clock fails", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("leave no wait behind when the deadline cannot be computed", function()
    local broken = false
    local l = new_loop({ clock = function()
      if broken then error("clock broke", 0) end
      return lepoll.now()
    end })
    local r = pipe()
    l:spawn(function()
      broken = true
      l:readable(r, 1)
    end)
    local ok, err = pcall(l.run, l)
    broken = false
    assert.is_false(ok)
    assert.are.equal("clock broke", err)
    l:invariant()
    -- The descriptor is free: nothing waits on it, the set does not watch it.
    local w = l:io(r, "in", function() end)
    w:stop()
    l:invariant()
  end)
end)

describe("lepoll.loop task waits on descriptors", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("keep the descriptor registered between waits: no epoll_ctl per wait", function()
    local l = new_loop()
    local a, b = socketpair()
    local got = 0
    l:spawn(function()
      while got < 100 do
        assert(l:readable(a, 5))
        got = got + #T.read(a)
      end
    end)
    l:spawn(function()
      for _ = 1, 100 do
        T.write(b, "x")
        l:sleep(0)
      end
    end)
    assert.is_false(l:run())
    assert.are.equal(100, got)
    local st = l:stats()
    assert.is_true(st.waits >= 100, "waits " .. st.waits)
    -- One add for the reader's first wait, one remove when it ended.
    assert.are.equal(2, st.ctl)
    assert.are.equal("", watched(l))
    l:invariant()
  end)

  it("narrow a registration when an event comes that nobody waits for", function()
    local l = new_loop()
    local a, b = socketpair()
    local phase = "read"
    l:spawn(function()
      assert(l:readable(a))
      T.read(a)
      assert(l:writable(a)) -- now in|out
      phase = "sleep"
      l:sleep(0.05)         -- in|out stay registered: out fires with no writer
      phase = "done"
    end)
    T.write(b, "x")
    assert.is_true(l:run("once"))
    assert.is_true(l:run("once"))
    assert.are.equal("sleep", phase)
    assert.are.equal(("[%d]=\"in|out\""):format(a), watched(l))
    assert.is_true(l:run("nowait")) -- the spurious out event: the registration goes
    assert.are.equal("", watched(l))
    l:invariant()
    assert.is_false(l:run())
    assert.are.equal("done", phase)
  end)

  it("start afresh when the number comes back as another object", function()
    local socket = require "socket"
    local l = new_loop()
    local srv = assert(socket.bind("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local served = {}
    l:spawn(function()
      for i = 1, 3 do
        local c1 = assert(socket.connect("127.0.0.1", port))
        local s1 = assert(srv:accept())
        s1:settimeout(0)
        -- the same task waits on each accepted socket, closing it after;
        -- the next accept reuses the number
        c1:send("m" .. i)
        assert(l:readable(s1, 5))
        served[i] = s1:receive(2)
        s1:close()
        c1:close()
      end
    end)
    assert.is_false(l:run())
    assert.are.same({ "m1", "m2", "m3" }, served)
    srv:close()
    l:invariant()
  end)

  it("return at once on input LuaSocket holds in its own buffer (dirty)", function()
    local socket = require "socket"
    local l = new_loop()
    local srv = assert(socket.bind("127.0.0.1", 0))
    local c = assert(socket.connect("127.0.0.1", (select(2, srv:getsockname()))))
    local s = assert(srv:accept())
    srv:close()
    defer(function() c:close() s:close() end)
    s:settimeout(0)
    assert(c:send("line one\nline two\n"))
    local lines = {}
    l:spawn(function()
      while #lines < 2 do
        assert(l:readable(s, 2), "waited on input LuaSocket had already read")
        lines[#lines + 1] = s:receive("*l")
      end
    end)
    assert.is_false(l:run())
    assert.are.same({ "line one", "line two" }, lines)
  end)
end)

-- A task that waits again, with no timeout, on the object and in the
-- direction of its last wait begins the wait without the first wait's
-- checks (the slot's token, waits.lua and slots.lua). Each case here takes
-- the descriptor's registration away between two such waits, in one of the
-- ways the loop knows of, and the second wait must still see its event.
describe("lepoll.loop a task's repeated waits on a descriptor", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  -- Runs l until the task's log has n entries, failing after 2 s: a wait
  -- begun on a registration that is gone would never return.
  local function run_until(l, log, n)
    local deadline = now() + 2
    while #log < n do
      assert(now() < deadline, "a wait was lost: " .. #log .. " of " .. n .. " entries")
      l:step(0.05)
      l:invariant()
    end
  end

  -- In a task: reads a's first byte (to log), waits until a is writable
  -- (its registration in|out from then on), and sends "2" to a.
  local function read_then_write(l, a, b, log)
    assert(l:readable(a))
    log[#log + 1] = T.read(a)
    assert(l:writable(a))
    T.write(b, "2")
  end

  -- A task that reads a's next byte to log three times, waiting before
  -- each read; after the second read it calls between(task), then each
  -- time it sends the next byte from b. It logs "went on" at its end.
  -- The first byte is sent. -> the task
  local function read_three(l, a, b, log, between)
    local task
    task = l:spawn(function()
      for i = 1, 3 do
        assert(l:readable(a))
        log[#log + 1] = T.read(a)
        if i == 2 then between(task) end
        T.write(b, tostring(i + 1))
      end
      log[#log + 1] = "went on"
    end)
    T.write(b, "1")
    return task
  end

  it("see their event after a watcher took the descriptor over and stopped", function()
    local l = new_loop()
    local a, b = socketpair()
    local log = {}
    read_three(l, a, b, log, function() l:io(a, "in", function() end):stop() end)
    run_until(l, log, 4)
    assert.are.same({ "1", "2", "3", "went on" }, log)
    assert.is_false(l:run())
    drain(a)
  end)

  it("see their event after the registration was narrowed and dropped for events nobody waited for", function()
    local l = new_loop()
    local a, b = socketpair()
    local log = {}
    l:spawn(function()
      read_then_write(l, a, b, log)
      l:sleep(0.05) -- in and out fire with nobody waiting: the registration goes
      log[#log + 1] = watched(l)
      assert(l:readable(a))
      log[#log + 1] = T.read(a)
    end)
    T.write(b, "1")
    run_until(l, log, 3)
    assert.are.same({ "1", "", "2" }, log)
    assert.is_false(l:run())
  end)

  it("see their event after the registration was narrowed to the other direction", function()
    local l = new_loop()
    local a, b = socketpair()
    local log = {}
    l:spawn(function()
      read_then_write(l, a, b, log)
      assert(l:readable(a)) -- woken by in|out
      log[#log + 1] = T.read(a)
      l:timer(0.02, function() T.write(b, "3") end)
      -- while this waits, in|out comes again and nobody waits to write:
      -- the registration is narrowed to in
      assert(l:readable(a))
      log[#log + 1] = T.read(a)
      log[#log + 1] = watched(l)
      assert(l:writable(a)) -- a wait begun on the narrowed registration would never return
      log[#log + 1] = "writable"
    end)
    T.write(b, "1")
    run_until(l, log, 5)
    assert.are.same({ "1", "2", "3", ('[%d]="in"'):format(a), "writable" }, log)
    assert.is_false(l:run())
  end)

  it("see their event after l:closing released the descriptor", function()
    local l = new_loop()
    local a, b = socketpair()
    local log = {}
    read_three(l, a, b, log, function() l:closing(a) end)
    run_until(l, log, 4)
    assert.are.same({ "1", "2", "3", "went on" }, log)
    assert.is_false(l:run())
    drain(a)
  end)

  it("share a descriptor with a task that waits on it as another object", function()
    local l = new_loop()
    local a, b = socketpair()
    fill(a) -- a cannot be written to: a writer on it waits
    local as_object = { getfd = function() return a end }
    local log = {}
    l:spawn(function()
      for i = 1, 3 do
        assert(l:readable(a))
        log[#log + 1] = T.read(a)
        if i == 1 then
          -- another task waits on a, given as an object, to write, while
          -- this one waits to read: the slot's object changes under it
          l:spawn(function() log.w = l:writable(as_object) end)
          l:timer(0.01, function() T.write(b, "2") end)
        else
          T.write(b, tostring(i + 1))
        end
      end
    end)
    T.write(b, "1")
    run_until(l, log, 3)
    assert.are.same({ "1", "2", "3" }, log)
    assert.is_nil(log.w)
    drain(b) -- room to write: the writer wakes
    assert.is_false(l:run())
    assert.is_true(log.w)
    drain(a)
  end)

  it("tell objects apart by their descriptors even when their __eq calls them equal", function()
    local l = new_loop()
    local a, a_peer = socketpair()
    local b, b_peer = socketpair()
    local eq_calls = 0
    local class = {
      __index = { getfd = function(self) return self.fd end },
      __eq = function() eq_calls = eq_calls + 1 return true end,
    }
    local obj_a, obj_b = setmetatable({ fd = a }, class), setmetatable({ fd = b }, class)
    local log = {}
    l:spawn(function()
      assert(l:readable(obj_a))
      log[#log + 1] = T.read(a)
      T.write(a_peer, "x") -- a stays readable while the task waits on b
      assert(l:readable(obj_b))
      log[#log + 1] = T.read(b)
    end)
    T.write(a_peer, "1")
    l:timer(0.05, function() T.write(b_peer, "2") end)
    run_until(l, log, 2)
    assert.are.same({ "1", "2" }, log)
    -- where a task's repeated wait begins by itself (not on PUC Lua 5.1),
    -- the objects were compared with ==
    assert.are.equal(coroutine.isyieldable and 1 or 0, eq_calls)
    assert.is_false(l:run())
    drain(a)
  end)

  it("end the task at the next one once it was cancelled, or its loop closed, while it ran", function()
    for _, how in ipairs({ "cancel", "close" }) do
      local l = new_loop()
      local a, b = socketpair()
      local log = {}
      local task = read_three(l, a, b, log, function(t)
        if how == "cancel" then t:cancel() else l:close() end
      end)
      run_until(l, log, 2)
      if how == "cancel" then
        assert.is_false(l:run()) -- nothing left: the task ended at its third wait
        assert.are.equal("dead", task:status())
      end
      assert.are.same({ "1", "2" }, log, how)
      drain(a)
    end
  end)

  it("return at once on buffered input, and follow a closed socket to an error", function()
    local socket = require "socket"
    local l = new_loop()
    local srv = assert(socket.bind("127.0.0.1", 0))
    local c = assert(socket.connect("127.0.0.1", (select(2, srv:getsockname()))))
    local s = assert(srv:accept())
    srv:close()
    defer(function() c:close() s:close() end)
    s:settimeout(0)
    local log = {}
    l:spawn(function()
      assert(l:readable(s))
      log[#log + 1] = s:receive(3)     -- "one" of "one\ntwo\n": the rest is in LuaSocket's buffer
      assert(l:readable(s))            -- at once: dirty
      log[#log + 1] = s:receive("*l")
      log[#log + 1] = s:receive("*l")
      s:close()
      local ok, err = pcall(l.readable, l, s)
      log[#log + 1] = not ok and err
    end)
    assert(c:send("one\ntwo\n"))
    run_until(l, log, 4)
    assert.are.same({ "one", "", "two" }, { log[1], log[2], log[3] })
    assert.is_string(log[4])
    assert.is_false(l:run())
  end)
end)

describe("lepoll.loop l:closing", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("wakes the tasks waiting on a descriptor with nil, 'closed' and frees it", function()
    local l = new_loop()
    local a, b = socketpair()
    fill(a)
    local log = {}
    -- (the wait first: log's index is taken before the right-hand side)
    l:spawn(function() local r = { "reader", l:readable(a) } log[#log + 1] = r end)
    l:spawn(function() local r = { "writer", l:writable(a) } log[#log + 1] = r end)
    assert.is_true(l:run("nowait"))
    assert.are.equal(2, l:stats().waiting)
    assert.are.equal(2, l:closing(a))
    assert.are.equal("", watched(l))
    l:invariant()
    assert.is_false(l:run())
    assert.are.same({ { "reader", nil, "closed" }, { "writer", nil, "closed" } },
      { { log[1][1], log[1][2], log[1][3] }, { log[2][1], log[2][2], log[2][3] } })
    assert.are.equal(0, l:closing(b)) -- nothing on it
  end)

  it("lets a chat server kick a client: the client's task ends, the number is reused", function()
    local socket = require "socket"
    local l = new_loop()
    local srv = assert(socket.bind("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local c1 = assert(socket.connect("127.0.0.1", port))
    local s1 = assert(srv:accept())
    s1:settimeout(0)
    local fd1 = s1:getfd()
    local ended = {}
    l:spawn(function()
      while true do
        local ok, why = l:readable(s1)
        if not ok then ended[#ended + 1] = why break end
        s1:receive(1)
      end
    end)
    assert.is_true(l:run("nowait"))
    -- kick: closing, then close
    assert.are.equal(1, l:closing(s1))
    s1:close()
    assert.is_false(l:run())
    assert.are.same({ "closed" }, ended)
    -- the number comes back (here to a new client socket), and a task can
    -- wait on it
    local c2 = assert(socket.connect("127.0.0.1", port))
    local s2 = assert(srv:accept())
    assert.are.equal(fd1, c2:getfd())
    c2:settimeout(0)
    local got
    l:spawn(function()
      assert(l:readable(c2, 5))
      got = c2:receive(2)
    end)
    s2:send("hi")
    assert.is_false(l:run())
    assert.are.equal("hi", got)
    for _, x in ipairs({ c1, c2, s2, srv }) do x:close() end
    l:invariant()
  end)

  it("stops a watcher on the descriptor", function()
    local l = new_loop()
    local r = pipe()
    local w = l:io(r, "in", function() end)
    assert.are.equal(0, l:closing(r))
    assert.is_false(w:is_active())
    assert.are.equal("", watched(l))
  end)
end)

describe("lepoll.loop task:cancel", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("ends a waiting task at its wait, which never returns", function()
    local l = new_loop()
    local r = pipe()
    local log = {}
    local t = l:spawn(function()
      l:readable(r)
      log[#log + 1] = "resumed"
    end)
    assert.is_true(l:run("nowait"))
    assert.are.equal("waiting", t:status())
    assert.is_true(t:cancel())
    assert.are.equal("dead", t:status())
    assert.is_false(t:cancel())
    assert.are.equal("", watched(l))
    l:invariant()
    assert.is_false(l:run())
    assert.are.same({}, log)
  end)

  it("keeps a queued task from starting, and a sleeping one from waking", function()
    local l = new_loop()
    local log = {}
    local q = l:spawn(function() log[#log + 1] = "queued ran" end)
    local s = l:spawn(function() l:sleep(0.01) log[#log + 1] = "sleeper woke" end)
    assert.is_true(q:cancel())
    assert.is_true(l:run("nowait"))
    assert.is_true(s:cancel())
    assert.are.equal(0, l:stats().tasks)
    assert.is_false(l:run())
    assert.are.same({}, log)
    l:invariant()
  end)

  it("ends a task that cancels itself at its next wait", function()
    local l = new_loop()
    local log = {}
    local t
    t = l:spawn(function()
      assert.is_true(t:cancel())
      log[#log + 1] = "goes on"
      l:sleep(0)
      log[#log + 1] = "after the wait"
    end)
    assert.is_false(l:run())
    assert.are.same({ "goes on" }, log)
    assert.are.equal("dead", t:status())
  end)

  it("is not an error: on_error is not called", function()
    local errors = 0
    local l = new_loop({ on_error = function() errors = errors + 1 end })
    local t = l:spawn(function() l:sleep(10) end)
    assert.is_true(l:run("nowait"))
    t:cancel()
    assert.is_false(l:run())
    assert.are.equal(0, errors)
  end)

  H.it_if(it, pending, H.has.toclose, "to-be-closed variables are Lua 5.4's")(
    "closes the task's to-be-closed variables (Lua 5.4)", function()
      local l = new_loop()
      local closed = {}
      local fn = assert(load([[
        local l, closed = ...
        local x <close> = setmetatable({}, { __close = function() closed[#closed + 1] = "x" end })
        l:sleep(10)
      ]]))
      local t = l:spawn(fn, l, closed)
      assert.is_true(l:run("nowait"))
      t:cancel()
      assert.are.same({ "x" }, closed)
    end)
end)

describe("lepoll.loop task:join", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("waits for a task's end and returns its results, error or cancellation", function()
    local l = new_loop({ on_error = function() end })
    local worker = l:spawn(function(a, b) l:sleep(0.01) return a + b, nil, "three" end, 1, 2)
    local failing = l:spawn(function() l:sleep(0.01) error({ code = 7 }) end)
    local victim = l:spawn(function() l:sleep(10) end)
    local got = {}
    l:spawn(function()
      got.worker = pack(worker:join())
      got.failing = pack(failing:join())
      got.dead = pack(worker:join()) -- a dead task's outcome comes at once
      got.timeout = pack(victim:join(0.01))
      victim:cancel()
      got.victim = pack(victim:join())
    end)
    assert.is_false(l:run())
    assert.are.same({ n = 4, true, 3, nil, "three" }, got.worker)
    assert.are.same({ n = 2, false, { code = 7 } }, got.failing)
    assert.are.same(got.worker, got.dead)
    assert.are.same({ n = 2, nil, "timeout" }, got.timeout)
    assert.are.same({ n = 2, nil, "cancelled" }, got.victim)
  end)

  it("refuses to join itself and outside a task", function()
    local l = new_loop()
    local t
    local msg
    t = l:spawn(function() msg = H.msg_of(function() t:join() end) end)
    assert.is_false(l:run())
    assert.are.equal("a task cannot join itself", msg)
    assert.are.equal("join must be called from a task of this loop (see spawn)", H.msg_of(function() t:join() end))
  end)
end)

describe("lepoll.loop conditions", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("wake waiters in the order they began to wait, in the next round", function()
    local l = new_loop()
    local cond = l:condition()
    local log = {}
    for i = 1, 3 do
      l:spawn(function() local r = { i, cond:wait() } log[#log + 1] = r end)
    end
    assert.is_true(l:run("nowait"))
    assert.are.equal(3, cond:waiting())
    assert.are.equal("condition{id=1, waiting=3}", tostring(cond))
    assert.is_true(cond:signal())
    assert.are.same({}, log) -- not inside signal
    assert.is_true(l:run("nowait"))
    assert.are.same({ { 1, true } }, log)
    assert.are.equal(2, cond:broadcast())
    assert.is_false(cond:signal()) -- nobody waits: not remembered
    assert.is_false(l:run())
    assert.are.same({ { 1, true }, { 2, true }, { 3, true } }, log)
    l:invariant()
  end)

  it("time out, and a timed-out waiter is passed over by signal", function()
    local l = new_loop()
    local cond = l:condition()
    local log = {}
    l:spawn(function() local r = { "short", cond:wait(0.01) } log[#log + 1] = r end)
    l:spawn(function() local r = { "long", cond:wait(5) } log[#log + 1] = r end)
    assert.is_true(l:run("nowait"))
    local deadline = lepoll.now() + 5
    while #log < 1 and lepoll.now() < deadline do l:run("once") end
    assert.are.same({ { "short", nil, "timeout" } }, log)
    assert.are.equal(1, cond:waiting())
    l:invariant()
    assert.is_true(cond:signal())
    assert.is_false(l:run())
    assert.are.same({ "long", true }, log[2])
  end)

  it("can be signalled from a callback, and waited on only in a task", function()
    local l = new_loop()
    local cond = l:condition()
    local woke
    l:spawn(function() woke = cond:wait() end)
    l:timer(0.01, function() cond:signal() end)
    assert.is_false(l:run())
    assert.is_true(woke)
    assert.are.equal("wait must be called from a task of this loop (see spawn)", H.msg_of(function() cond:wait() end))
  end)
end)

describe("lepoll.loop conditions in steady state", function()
  it("allocate nothing per round: a producer and a consumer handing over on two conditions", function()
    local l = new_loop()
    local has_item, has_room = l:condition(), l:condition()
    local items, handed, bad = 0, 0, 0
    l:spawn(function()
      while true do
        while items > 0 do has_room:wait() end
        items = items + 1
        has_item:signal()
      end
    end)
    l:spawn(function()
      while true do
        while items == 0 do if not has_item:wait(10) then bad = bad + 1 end end
        items = items - 1
        handed = handed + 1
        has_room:signal()
      end
    end)
    local function rounds(n)
      for _ = 1, n do
        if not l:step() then bad = bad + 1 end
      end
    end
    assert.are.equal(0, H.alloc_growth(rounds, 2000, 10000))
    assert.are.equal(0, bad)
    assert.is_true(handed > 1000, handed)
    l:invariant()
    l:close()
  end)
end)

describe("lepoll.loop descriptors closed behind the loop's back", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("a watcher takes the number over from a task's stale registration", function()
    local l = new_loop()
    local r, w = T.pipe()
    local stay = true
    local t = l:spawn(function()
      assert(l:readable(r, 5))
      T.read(r)
      while stay do l:sleep(0.001) end -- r stays registered, idle
    end)
    T.write(w, "x")
    assert.is_true(l:run("once"))
    assert.is_true(l:run("once"))
    -- closed without l:closing, the number reused by a new pipe
    T.close(r)
    T.close(w)
    local r2, w2 = T.pipe()
    defer(function() T.close(r2) T.close(w2) end)
    assert.are.equal(r, r2)
    local got
    local watcher = l:io(r2, "in", function(wt, fd) got = T.read(fd) wt:stop() end)
    T.write(w2, "y")
    l:run("once")
    assert.are.equal("y", got)
    assert.is_false(watcher:is_active())
    stay = false
    t:cancel()
    l:invariant()
  end)
end)
