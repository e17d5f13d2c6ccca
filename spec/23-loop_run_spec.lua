-- lepoll.loop: run modes, stop, close, <close>, collection, tostring.
-- To-be-closed variables exist on Lua 5.4 only: the tests about them are
-- skipped before, and tasks with one (closing) have none there.
local lepoll = require "lepoll"
local loop = require "lepoll.loop"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)
local defer, pipe, new_loop = C.defer, C.pipe, C.new_loop

local now = lepoll.now
local CLOSED = "attempt to use a closed loop"
local unpack = table.unpack or rawget(_G, "unpack")
local NO_TOCLOSE = "no <close> and no to-be-closed variables before Lua 5.4"

-- fn, run with a to-be-closed variable whose __close calls on_close, on
-- Lua 5.4; before (no <close>), fn itself: a task made of it has nothing
-- for close to close.
local with_close = H.has.toclose and H.load([[
  local on_close, fn = ...
  return function(...)
    local _ <close> = setmetatable({}, { __close = on_close })
    return fn(...)
  end
]], "closing")
local function closing(on_close, fn)
  if with_close then return with_close(on_close, fn) end
  return fn
end

-- Runs inside(l) in a scope where l is a new loop declared <close> (Lua
-- 5.4), then raises `thrown` when given.
local scope = H.has.toclose and H.load([[
  local loop, inside, thrown = ...
  local l <close> = loop.new()
  inside(l)
  if thrown ~= nil then error(thrown) end
]], "scope")

-- Whether fd is an open descriptor of this process.
local is_open = H.is_open

-- A timerfd that expires after `seconds`, closed when the test ends.
local function timerfd(seconds, every)
  local fd = assert(T.timerfd(seconds, every))
  defer(function() H.close(fd) end)
  return fd
end

-- Runs f and returns the seconds it took, then its results.
local function timed(f, ...)
  local t0 = now()
  local results = { f(...) }
  return now() - t0, unpack(results)
end

describe("lepoll.loop run", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("returns false at once in every mode when there is nothing to wait for", function()
    local l = new_loop()
    for _, mode in ipairs({ "default", "once", "nowait" }) do
      local took, more = timed(l.run, l, mode)
      assert.is_false(more)
      assert.is_true(took < 0.5)
    end
    local took, more = timed(l.run, l)
    assert.is_false(more)
    assert.is_true(took < 0.5)
    -- Stopped watchers and timers are nothing to wait for either.
    local r = pipe()
    l:io(r, "in", function() end):stop()
    l:timer(0, function() end):stop()
    assert.is_false(l:run())
  end)

  it("refuses an unknown mode", function()
    local l = new_loop()
    assert.are.equal("bad argument #1 to 'run' (invalid mode 'forever' (expected 'default', 'once' or 'nowait'))",
      H.msg_of(function() l:run("forever") end))
    assert.are.equal("bad argument #1 to 'run' (invalid mode '1' (expected 'default', 'once' or 'nowait'))",
      H.msg_of(function() l:run(1) end))
  end)

  describe("once", function()
    it("blocks until an event, dispatches it and returns true while work remains", function()
      local l = new_loop()
      local tfd = timerfd(0.01)
      local calls = 0
      l:io(tfd, "in", function(_, fd)
        calls = calls + 1
        assert.are.equal(1, T.read_u64(fd))
      end)
      local took, more = timed(l.run, l, "once")
      assert.is_true(more)
      assert.are.equal(1, calls)
      assert.is_true(took >= 0.009) -- the timerfd's own rounding aside
      assert.is_true(took < 1)
    end)

    it("does not block when an event is pending", function()
      local l = new_loop()
      local r, w = pipe()
      local calls = 0
      l:io(r, "in", function() calls = calls + 1 end)
      T.write(w, "x")
      local took, more = timed(l.run, l, "once")
      assert.is_true(more)
      assert.are.equal(1, calls)
      assert.is_true(took < 0.5)
    end)

    it("returns after an interrupted wait, having dispatched nothing", function()
      local l = new_loop()
      local r = pipe()
      local calls = 0
      l:io(r, "in", function() calls = calls + 1 end)
      local alarms = T.alarms()
      assert.is_true(T.alarm(0.01))
      local took, more = timed(l.run, l, "once")
      T.alarm(0)
      assert.is_true(more)
      assert.are.equal(alarms + 1, T.alarms())
      assert.are.equal(0, calls)
      assert.is_true(took >= 0.009)
    end)
  end)

  describe("nowait", function()
    it("does not block, and returns true while work remains", function()
      local l = new_loop()
      local r, w = pipe()
      local calls = 0
      l:io(r, "in", function() calls = calls + 1 end)
      l:timer(1, function() calls = calls + 100 end)
      local took, more = timed(l.run, l, "nowait")
      assert.is_true(more)
      assert.are.equal(0, calls)
      assert.is_true(took < 0.5)
      T.write(w, "x")
      assert.is_true(l:run("nowait"))
      assert.are.equal(1, calls)
    end)
  end)

  describe("default", function()
    it("runs until no watcher, timer or task is left, and returns false", function()
      local l = new_loop()
      local tfd = timerfd(0.002, 0.002)
      local log = {}
      l:io(tfd, "in", function(w, fd)
        T.read_u64(fd)
        log[#log + 1] = "tick"
        if #log >= 3 then w:stop() end
      end)
      l:timer(0.004, function() log.timer = true end)
      l:spawn(function()
        l:sleep(0.006)
        log.task = true
      end)
      assert.is_false(l:run())
      assert.is_true(#log >= 3)
      assert.is_true(log.timer)
      assert.is_true(log.task)
      assert.are.equal(string.format("loop{watchers=0, timers=0, tasks=0, epoll{fd=%d, num_file_descrs=%d, "
        .. "max_ready_events=256, flags_by_fd={}, ready={}}}", l:getfd(), H.default_num_file_descrs()),
        (tostring(l):gsub("ready={.-}}}$", "ready={}}}")))
    end)

    it("goes on after an interrupted wait", function()
      local l = new_loop()
      local r = pipe()
      local watcher = l:io(r, "in", function() end)
      local alarms = T.alarms()
      assert.is_true(T.alarm(0.005))
      l:timer(0.02, function() watcher:stop() end)
      local took, more = timed(l.run, l)
      T.alarm(0)
      assert.is_false(more)
      assert.are.equal(alarms + 1, T.alarms())
      assert.is_true(took >= 0.02)
    end)
  end)

  it("runs a round in order: new tasks, I/O callbacks, timers", function()
    local l = new_loop()
    local r, w = pipe()
    local log = {}
    l:io(r, "in", function(watcher)
      log[#log + 1] = "io"
      watcher:stop()
    end)
    l:timer(0, function() log[#log + 1] = "timer" end)
    l:spawn(function() log[#log + 1] = "task" end)
    T.write(w, "x")
    assert.is_false(l:run("once"))
    assert.are.same({ "task", "io", "timer" }, log)
  end)

  describe("stop", function()
    it("from a callback makes run return true after the round, which still completes", function()
      local l = new_loop()
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      local log = {}
      l:io(r1, "in", function()
        log[#log + 1] = "first"
        l:stop()
      end)
      l:io(r2, "in", function() log[#log + 1] = "second" end)
      l:timer(0, function() log[#log + 1] = "timer" end)
      T.write(w1, "x")
      T.write(w2, "y")
      assert.is_true(l:run())
      assert.are.same({ "first", "second", "timer" }, log)
      -- A new run goes on: stop is forgotten.
      assert.is_true(l:run())
      assert.are.same({ "first", "second", "timer", "first", "second" }, log)
    end)

    it("from a task works the same", function()
      local l = new_loop()
      local r = pipe()
      local idle = l:io(r, "in", function() end)
      local steps = 0
      l:spawn(function()
        while true do
          steps = steps + 1
          l:stop()
          l:sleep(0)
        end
      end)
      assert.is_true(l:run())
      assert.are.equal(2, steps) -- started, then resumed by the due sleep
      assert.is_true(l:run())
      assert.are.equal(3, steps)
      idle:stop()
    end)

    it("outside run does nothing", function()
      local l = new_loop()
      local fired = 0
      l:timer(0.005, function() fired = fired + 1 end)
      assert.are.equal(0, select("#", l:stop()))
      assert.is_false(l:run())
      assert.are.equal(1, fired)
    end)
  end)

  it("called from a callback or task of the same loop is an error", function()
    local l = new_loop()
    local msgs = {}
    l:timer(0, function() msgs.timer = H.msg_of(function() l:run("nowait") end) end)
    l:spawn(function() msgs.task = H.msg_of(function() l:run() end) end)
    assert.is_false(l:run())
    local msg = "the loop is already running (run called from one of its callbacks or tasks)"
    assert.are.same({ timer = msg, task = msg }, msgs)
    -- run of another loop is fine there.
    local other = new_loop()
    local inner
    l:timer(0, function() inner = other:run() end)
    assert.is_false(l:run())
    assert.is_false(inner)
  end)

  describe("close", function()
    it("stops watchers and timers, ends tasks and closes the set, leaving the descriptors open", function()
      local before = T.fdcount()
      local l = loop.new()
      local epfd = l:getfd()
      local r, w = pipe()
      local r2 = pipe()
      local watcher = l:io(r, "in", function() end)
      local timer = l:timer(10, function() end)
      local closed, resumed = 0, false
      local task = l:spawn(closing(function() closed = closed + 1 end, function()
        l:readable(r2)
        resumed = true
      end))
      assert.is_true(l:run("nowait"))
      local queued = l:spawn(function() resumed = true end)
      assert.are.equal("waiting", task:status())
      assert.are.equal(before + 5, T.fdcount())

      assert.are.equal(0, select("#", l:close()))
      assert.are.equal("loop{closed}", tostring(l))
      assert.is_false(watcher:is_active())
      assert.is_false(timer:is_active())
      assert.are.equal("dead", task:status())
      assert.are.equal("dead", queued:status())
      assert.are.equal(H.has.toclose and 1 or 0, closed) -- the task's to-be-closed variable (5.4)
      assert.is_false(resumed)
      assert.is_false(is_open(epfd))
      assert.is_true(is_open(r))
      assert.is_true(is_open(w))
      assert.is_true(is_open(r2))
      assert.are.equal(before + 4, T.fdcount())
      l:invariant()
      -- A second close does nothing.
      assert.are.equal(0, select("#", l:close()))
      assert.are.equal(H.has.toclose and 1 or 0, closed)
    end)

    it("makes the loop's methods raise, except the harmless ones", function()
      local l = loop.new()
      local r = pipe()
      local watcher = l:io(r, "in", function() end)
      local stopped = l:io(pipe(), "in", function() end)
      stopped:stop()
      local timer = l:timer(1, function() end)
      l:close()
      local calls = {
        function() l:io(r, "in", function() end) end,
        function() l:timer(1, function() end) end,
        function() l:spawn(function() end) end,
        function() l:run() end,
        function() l:run("nowait") end,
        function() l:getfd() end,
        function() l:readable(r) end,
        function() l:writable(r) end,
        function() l:sleep(0) end,
        function() watcher:start() end,
        function() stopped:start() end,
        function() watcher:set("out") end,
        function() timer:again() end,
      }
      for _, f in ipairs(calls) do assert.are.equal(CLOSED, H.msg_of(f)) end
      assert.are.equal(0, select("#", l:stop()))
      assert.are.equal(0, select("#", watcher:stop()))
      assert.are.equal(0, select("#", timer:stop()))
      assert.are.equal(0, select("#", l:close()))
      assert.are.equal(0, select("#", l:invariant()))
      assert.is_number(l:now())
      assert.are.equal("loop{closed}", tostring(l))
    end)

    it("from a callback ends the run, with the rest of the round undispatched", function()
      local l = loop.new()
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      local log = {}
      l:io(r1, "in", function()
        log[#log + 1] = "first"
        l:close()
      end)
      l:io(r2, "in", function() log[#log + 1] = "second" end)
      l:timer(0, function() log[#log + 1] = "timer" end)
      T.write(w1, "x")
      T.write(w2, "y")
      assert.is_false(l:run())
      assert.are.same({ "first" }, log)
      assert.are.equal("loop{closed}", tostring(l))
      assert.are.equal(CLOSED, H.msg_of(function() l:run() end))
    end)

    it("from a task ends the others; the closing task goes on until it waits, and ends there", function()
      local l = loop.new()
      local log = {}
      l:spawn(closing(function() log[#log + 1] = "sleeper closed" end, function()
        l:sleep(10)
        log[#log + 1] = "sleeper resumed"
      end))
      l:spawn(closing(function() log[#log + 1] = "closer closed" end, function()
        l:sleep(0)
        l:close()
        log[#log + 1] = "closer goes on"
        l:sleep(0) -- the task ends here: run returns false, nothing raised
        log[#log + 1] = "closer resumed"
      end))
      assert.is_false(l:run())
      if H.has.toclose then
        assert.are.same({ "sleeper closed", "closer goes on", "closer closed" }, log)
      else -- the sleeper ended all the same, with nothing to close
        assert.are.same({ "closer goes on" }, log)
      end
      assert.are.equal(CLOSED, H.msg_of(function() l:run() end))
    end)

    local it_toclose = H.it_if(it, pending, H.has.toclose, NO_TOCLOSE)

    it_toclose("raises the error of a task's to-be-closed variable, once everything is closed", function()
      local l = loop.new()
      local epfd = l:getfd()
      local thrown = {}
      l:spawn(closing(function() error(thrown) end, function()
        l:sleep(10)
      end))
      assert.is_true(l:run("nowait"))
      local ok, err = pcall(l.close, l)
      assert.is_false(ok)
      assert.is_true(rawequal(thrown, err))
      assert.is_false(is_open(epfd))
      assert.are.equal("loop{closed}", tostring(l))
      assert.are.equal(0, select("#", l:close()))
    end)

    it_toclose("happens for a to-be-closed variable at scope exit, also on error", function()
      local kept, epfd
      scope(loop, function(l)
        kept, epfd = l, l:getfd()
        l:timer(1, function() end)
        assert.is_true(is_open(epfd))
      end)
      assert.are.equal("loop{closed}", tostring(kept))
      assert.is_false(is_open(epfd))
      local thrown = {}
      local ok, err = pcall(scope, loop, function(l)
        kept, epfd = l, l:getfd()
      end, thrown)
      assert.is_false(ok)
      assert.is_true(rawequal(thrown, err))
      assert.are.equal("loop{closed}", tostring(kept))
      assert.is_false(is_open(epfd))
    end)

    it("happens when the loop is collected", function()
      local r = pipe()
      collectgarbage()
      local before = T.fdcount()
      local closed = false
      do
        local l = loop.new()
        l:io(r, "in", function() end)
        l:spawn(closing(function() closed = true end, function()
          l:sleep(10)
        end))
        l:run("nowait")
        assert.are.equal(before + 1, T.fdcount())
      end
      collectgarbage()
      collectgarbage()
      assert.are.equal(before, T.fdcount()) -- before 5.4, by the set's own __gc on 5.1 and LuaJIT
      assert.are.equal(H.has.toclose, closed) -- the task's to-be-closed variable (5.4)
      assert.is_true(is_open(r))
    end)
  end)

  describe("tostring", function()
    it("shows the counts and the set in one line", function()
      local l = new_loop({ num_file_descrs = 1024, max_ready_events = 8 })
      local r1, w1 = pipe()
      local r2 = pipe()
      local _, w3 = pipe()
      l:io(r1, "in", function() end)
      l:io(r2, "in|et", function() end)
      l:timer(10, function() end)
      l:timer(10, function() end):stop()
      l:spawn(function() l:writable(w3) end)
      l:spawn(function() l:sleep(10) end)
      assert.are.equal(string.format("loop{watchers=2, timers=1, tasks=2, epoll{fd=%d, num_file_descrs=1024, "
        .. "max_ready_events=8, flags_by_fd={[%d]=\"in\", [%d]=\"in|et\"}, ready={}}}", l:getfd(), r1, r2),
        tostring(l))
      T.write(w1, "x")
      assert.is_true(l:run("once")) -- the writer task ran; the sleeper waits
      assert.are.equal(string.format("loop{watchers=2, timers=1, tasks=1, epoll{fd=%d, num_file_descrs=1024, "
        .. "max_ready_events=8, flags_by_fd={[%d]=\"in\", [%d]=\"in|et\"}, ready={[%d]=\"in\", [%d]=\"out\"}}}",
        l:getfd(), r1, r2, r1, w3), tostring(l))
      l:close()
      assert.are.equal("loop{closed}", tostring(l))
    end)
  end)

  describe("new", function()
    it("passes the set's sizes to lepoll.create and checks its options", function()
      local l = new_loop({ num_file_descrs = 16, max_ready_events = 1 })
      assert.matches("num_file_descrs=16, max_ready_events=1,", tostring(l))
      assert.are.equal("bad argument #1 to 'new' (options table expected, got number)",
        H.msg_of(function() loop.new(5) end))
      assert.are.equal("bad argument #1 to 'new' (on_error must be a function, got string)",
        H.msg_of(function() loop.new({ on_error = "print" }) end))
      assert.are.equal("bad argument #1 to 'new' (clock must be a function, got number)",
        H.msg_of(function() loop.new({ clock = 1 }) end))
      assert.are.equal("bad argument #1 to 'new' (num_file_descrs must be in [1, 2147483647], got 0)",
        H.msg_of(function() loop.new({ num_file_descrs = 0 }) end))
    end)

    it("delivers max_ready_events per wait, the rest in the next rounds", function()
      local l = new_loop({ max_ready_events = 1 })
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      local calls = {}
      for _, r in ipairs({ r1, r2 }) do
        l:io(r, "in", function(watcher, fd)
          calls[#calls + 1] = fd
          watcher:stop()
        end)
      end
      T.write(w1, "x")
      T.write(w2, "y")
      assert.is_true(l:run("once"))
      assert.are.same({ r1 }, calls)
      assert.is_false(l:run("once"))
      assert.are.same({ r1, r2 }, calls)
    end)

    it("uses opts.clock for timers and now", function()
      local t = 5
      local l = new_loop({ clock = function() return t end })
      assert.are.equal(5, l:now())
      local fired = false
      l:timer(1, function() fired = true end)
      t = 5.5
      assert.is_true(l:run("nowait"))
      assert.is_false(fired)
      t = 6
      assert.is_false(l:run("nowait"))
      assert.is_true(fired)
    end)
  end)

  it("getfd is the set's descriptor: readable for another set when the loop has events", function()
    local l = new_loop()
    local outer = C.new_set()
    local r, w = pipe()
    l:io(r, "in", function() end)
    outer:set(l:getfd(), "in")
    assert.are.equal("timeout", outer:wait(0))
    T.write(w, "x")
    assert.are.equal("ok", outer:wait(0))
    assert.are.same({ { l:getfd(), lepoll.IN } }, H.ready(outer))
    outer:remove(l:getfd())
  end)
end)

describe("lepoll.loop.new", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("names its own options in errors about the set's sizes", function()
    assert.are.equal("bad argument #1 to 'new' (max_ready_events must be an integer, got string)",
      H.msg_of(function() loop.new({ max_ready_events = "x" }) end))
    assert.are.equal("bad argument #1 to 'new' (max_ready_events must be in [1, 178956970], got 0)",
      H.msg_of(function() loop.new({ max_ready_events = 0 }) end))
  end)
end)

describe("lepoll.loop callbacks that yield", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("cannot carry run away: run raises, and the loop is not left running", function()
    local l = loop.new()
    local r, w = H.T.pipe()
    finally(function() l:close() H.T.close(r) H.T.close(w) end)
    H.T.write(w, "x")
    local calls = 0
    local watcher = l:io(r, "in", function()
      calls = calls + 1
      if calls == 1 then coroutine.yield("escape") end
    end)
    -- run inside a coroutine that is dropped after the yield
    local co = coroutine.create(function() return pcall(l.run, l, "once") end)
    local ok, run_ok, err = coroutine.resume(co)
    assert.is_true(ok)
    if H.LUA_VERSION >= 502 or H.JIT then
      assert.is_false(run_ok)
      assert.matches("^io watcher on fd %d+ %(callback .-%) yielded out of the loop's run; callbacks cannot yield",
        err)
    end -- on 5.1 the yield fails inside the callback: a callback error
    assert.are.equal("dead", coroutine.status(co))
    -- the loop runs again, and the event counted as delivered once
    assert.is_true(l:run("nowait"))
    assert.are.equal(2, calls)
    watcher:stop()
    l:invariant()
  end)

  it("leave nothing alive behind when the last timer's callback yields: run returns false at once", function()
    local t = 100
    local l = loop.new({ clock = function() return t end })
    finally(function() l:close() end)
    local calls = 0
    l:timer(1, function()
      calls = calls + 1
      coroutine.yield("escape")
    end)
    t = 102
    local co = coroutine.create(function() return pcall(l.run, l, "once") end)
    assert.is_true((coroutine.resume(co)))
    assert.are.equal(1, calls)
    -- the due timer was taken; nothing is left: a step does not wait (the
    -- step's limit only bounds this spec when that fails)
    local t0 = lepoll.now()
    assert.is_false(l:step(1))
    assert.is_true(lepoll.now() - t0 < 0.5)
    assert.is_false(l:run())
    assert.are.same({ 0, 0, 0 }, { l:stats().watchers, l:stats().timers, l:stats().tasks })
    l:invariant()
  end)
end)

describe("lepoll.loop step, timeout and stats", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("step runs one round, waiting at most its timeout", function()
    local l = loop.new()
    finally(function() l:close() end)
    local fired = false
    l:timer(10, function() fired = true end)
    local t0 = lepoll.now()
    assert.is_true(l:step())
    assert.is_true(lepoll.now() - t0 < 0.5)
    t0 = lepoll.now()
    assert.is_true(l:step(0.05))
    local took = lepoll.now() - t0
    assert.is_true(took >= 0.04 and took < 1, took)
    assert.is_false(fired)
    assert.are.equal("bad argument #1 to 'step' (timeout (seconds) expected, got string)",
      H.msg_of(function() l:step("x") end))
  end)

  it("timeout is nil with no deadline, the time to the nearest timer, 0 with work queued", function()
    local t = 100
    local l = loop.new({ clock = function() return t end })
    local r, w = H.T.pipe()
    finally(function() l:close() H.T.close(r) H.T.close(w) end)
    local watcher = l:io(r, "in", function() end)
    assert.is_nil(l:timeout())
    local timer = l:timer(2.5, function() end)
    assert.are.equal(2.5, l:timeout())
    t = 101
    assert.are.equal(1.5, l:timeout())
    t = 103
    assert.are.equal(0, l:timeout())
    local task = l:spawn(function() end)
    assert.are.equal(0, l:timeout())
    assert.are.equal(l:getfd(), l:pollfd())
    assert.are.equal("r", l:events())
    task:cancel()
    timer:stop()
    watcher:stop()
    assert.is_nil(l:timeout())
  end)

  it("stats counts watchers, timers, tasks, waits, events and set changes", function()
    local l = loop.new()
    local r, w = H.T.pipe()
    finally(function() l:close() H.T.close(r) H.T.close(w) end)
    local st = l:stats()
    assert.are.same({ watchers = 0, timers = 0, tasks = 0, waiting = 0, descriptors = 0, rounds = 0,
      events = 0, waits = 0, ctl = 0, closed = false }, st)
    local watcher = l:io(r, "in", function() end)
    local timer = l:timer(10, function() end)
    l:spawn(function() l:writable(w) l:sleep(10) end)
    H.T.write(w, "x")
    assert.is_true(l:run("nowait"))
    local into = {}
    assert.are.equal(into, l:stats(into))
    -- the writer waited, woke in the same round and went to sleep
    assert.are.same({ watchers = 1, timers = 1, tasks = 1, waiting = 1, descriptors = 2, rounds = 1,
      events = 2, waits = 2, ctl = 2, closed = false }, into)
    -- w stays registered for the sleeping writer until its event comes
    -- with nobody waiting: then it leaves the set
    assert.is_true(l:run("nowait"))
    l:stats(into)
    assert.are.same({ 2, 4, 3, 1 }, { into.rounds, into.events, into.ctl, into.descriptors })
    -- steady state: filling a given table allocates nothing
    assert.are.equal(0, H.alloc_growth(function() l:stats(into) end, 200))
    watcher:stop()
    timer:stop()
    l:close()
    assert.is_true(l:stats().closed)
  end)
end)
