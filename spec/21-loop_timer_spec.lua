-- lepoll.loop: timers. Ordering is checked exactly on a fake clock
-- (opts.clock) driven by the spec with run("nowait"); waiting is checked on
-- the real monotonic clock, in tens of milliseconds.
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)
local defer, pipe, new_loop = C.defer, C.pipe, C.new_loop

local now = lepoll.now

-- A loop on a fake clock at `start` (default 100); returns it and a function
-- that sets the time.
local function fake_loop(start)
  local t = start or 100
  local l = new_loop({ clock = function() return t end })
  return l, function(v) t = v end
end

-- Busy-waits until `seconds` have passed on the real clock.
local function busy(seconds)
  local deadline = now() + seconds
  while now() < deadline do end
end

-- Counts of the loop's rendering: watchers, timers, tasks.
local counts = H.loop_counts

describe("lepoll.loop timers", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("fire once after `after` seconds, called with the timer alone", function()
    local l = new_loop()
    local calls = {}
    local t0 = now()
    local timer = l:timer(0.01, function(...)
      calls[#calls + 1] = { n = select("#", ...), t = ..., at = now() }
    end)
    assert.is_true(timer:is_active())
    assert.are.same({ 0, 1, 0 }, counts(l))
    assert.is_false(l:run()) -- it fired: nothing left
    assert.are.equal(1, #calls)
    assert.are.equal(1, calls[1].n)
    assert.is_true(rawequal(timer, calls[1].t))
    assert.is_true(calls[1].at - t0 >= 0.01)
    assert.is_false(timer:is_active())
    assert.are.same({ 0, 0, 0 }, counts(l))
    assert.is_false(l:run("nowait"))
    assert.are.equal(1, #calls)
  end)

  it("fire in deadline order on the real clock", function()
    local l = new_loop()
    local order = {}
    for _, ms in ipairs({ 12, 4, 8 }) do
      l:timer(ms / 1000, function() order[#order + 1] = ms end)
    end
    assert.is_false(l:run())
    assert.are.same({ 4, 8, 12 }, order)
  end)

  describe("on a fake clock", function()
    it("fire in deadline order, exactly when due (deadline <= now)", function()
      local l, set = fake_loop(100)
      local order = {}
      for i, after in ipairs({ 3, 1, 2, 5, 4 }) do
        l:timer(after, function() order[#order + 1] = i end)
      end
      assert.are.equal(100, l:now())
      set(101.999)
      assert.is_true(l:run("nowait"))
      assert.are.same({ 2 }, order)
      set(103)
      assert.is_true(l:run("nowait"))
      assert.are.same({ 2, 3, 1 }, order)
      set(110)
      assert.is_false(l:run("nowait"))
      assert.are.same({ 2, 3, 1, 5, 4 }, order)
    end)

    it("fire equal deadlines in creation order", function()
      local l, set = fake_loop(100)
      local order = {}
      for i = 1, 100 do
        l:timer(i % 2 == 0 and 2 or 1, function() order[#order + 1] = i end)
      end
      set(102)
      assert.is_false(l:run("nowait"))
      local expected = {}
      for i = 1, 99, 2 do expected[#expected + 1] = i end
      for i = 2, 100, 2 do expected[#expected + 1] = i end
      assert.are.same(expected, order)
    end)

    it("treat a negative `after` as 0", function()
      local l = fake_loop(100)
      local fired = 0
      l:timer(-5, function() fired = fired + 1 end)
      l:timer(0, function() fired = fired + 10 end)
      assert.is_false(l:run("nowait")) -- both due at once, the clock unchanged
      assert.are.equal(11, fired)
    end)

    describe("stop", function()
      it("cancels a pending timer; a second stop does nothing", function()
        local l, set = fake_loop(100)
        local fired = {}
        local a = l:timer(1, function() fired[#fired + 1] = "a" end)
        local b = l:timer(2, function() fired[#fired + 1] = "b" end)
        assert.are.same({ 0, 2, 0 }, counts(l))
        a:stop()
        assert.is_false(a:is_active())
        assert.are.same({ 0, 1, 0 }, counts(l))
        assert.are.equal(0, select("#", a:stop()))
        assert.are.same({ 0, 1, 0 }, counts(l))
        set(105)
        assert.is_false(l:run("nowait"))
        assert.are.same({ "b" }, fired)
        assert.are.equal(0, select("#", b:stop())) -- after it fired: nothing
        l:invariant()
      end)

      it("from a callback cancels a timer due in the same round", function()
        local l, set = fake_loop(100)
        local fired = {}
        local b
        l:timer(1, function()
          fired[#fired + 1] = "a"
          b:stop()
        end)
        b = l:timer(2, function() fired[#fired + 1] = "b" end)
        set(110)
        assert.is_false(l:run("nowait"))
        assert.are.same({ "a" }, fired)
      end)

      it("from its own callback ends a repeating timer", function()
        local l, set = fake_loop(100)
        local ticks = 0
        l:timer(1, function(t)
          ticks = ticks + 1
          if ticks == 3 then t:stop() end
        end, 1)
        for i = 1, 6 do
          set(100 + i)
          l:run("nowait")
        end
        assert.are.equal(3, ticks)
        assert.are.same({ 0, 0, 0 }, counts(l))
      end)
    end)

    describe("again", function()
      it("postpones a pending timer to `after` from now", function()
        local l, set = fake_loop(100)
        local fired = 0
        local t = l:timer(5, function() fired = fired + 1 end)
        set(104)
        assert.are.equal(0, select("#", t:again()))
        set(108.999)
        assert.is_true(l:run("nowait"))
        assert.are.equal(0, fired)
        set(109)
        assert.is_false(l:run("nowait"))
        assert.are.equal(1, fired)
        assert.are.same({ 0, 0, 0 }, counts(l))
      end)

      it("with an argument sets a new `after`, kept for the next again", function()
        local l, set = fake_loop(100)
        local fired = 0
        local t = l:timer(5, function() fired = fired + 1 end)
        t:again(2)
        set(102)
        assert.is_false(l:run("nowait"))
        assert.are.equal(1, fired)
        t:again() -- restarts a fired timer, with after = 2
        assert.is_true(t:is_active())
        assert.are.same({ 0, 1, 0 }, counts(l))
        set(103.5)
        l:run("nowait")
        assert.are.equal(1, fired)
        set(104)
        assert.is_false(l:run("nowait"))
        assert.are.equal(2, fired)
      end)

      it("restarts a stopped timer", function()
        local l, set = fake_loop(100)
        local fired = 0
        local t = l:timer(1, function() fired = fired + 1 end)
        t:stop()
        set(101)
        assert.is_false(l:run("nowait"))
        t:again()
        assert.are.same({ 0, 1, 0 }, counts(l))
        set(102)
        assert.is_false(l:run("nowait"))
        assert.are.equal(1, fired)
      end)

      it("puts a restarted timer after the others with the same deadline", function()
        local l, set = fake_loop(100)
        local order = {}
        local timers = {}
        for i = 1, 3 do timers[i] = l:timer(1, function() order[#order + 1] = i end) end
        timers[1]:again()
        set(101)
        l:run("nowait")
        assert.are.same({ 2, 3, 1 }, order)
      end)

      it("from its own callback fires again in the next round, not the same", function()
        local l = fake_loop(100)
        local fired = 0
        l:timer(0, function(t)
          fired = fired + 1
          t:again(0)
        end)
        for i = 1, 3 do
          assert.is_true(l:run("nowait"))
          assert.are.equal(i, fired)
        end
      end)

      it("of a repeating timer starts again at `after`, then every period", function()
        local l, set = fake_loop(100)
        local at = {}
        local t = l:timer(10, function() at[#at + 1] = l:now() end, 3)
        set(101)
        t:again(1)
        for _, v in ipairs({ 102, 104, 105, 107, 108 }) do
          set(v)
          l:run("nowait")
        end
        assert.are.same({ 102, 105, 108 }, at)
      end)
    end)

    describe("repeating", function()
      it("fire every period on their original schedule, whatever the callbacks take", function()
        local l, set = fake_loop(100)
        local at = {}
        local clock = 100
        l:timer(1, function()
          at[#at + 1] = clock
          clock = clock + 0.7 -- a slow callback
          set(clock)
        end, 2)
        for _, v in ipairs({ 101, 102.9, 103, 104, 104.99, 105 }) do
          clock = v
          set(v)
          l:run("nowait")
        end
        assert.are.same({ 101, 103, 105 }, at)
      end)

      it("skip the ticks missed by more than a period", function()
        local l, set = fake_loop(100)
        local at = {}
        l:timer(1, function() at[#at + 1] = l:now() end, 1)
        set(104.5) -- ticks 101, 102, 103 and 104 are all past
        l:run("nowait") -- 101 fires; the next is 104, the last tick not after now
        assert.are.same({ 104.5 }, at)
        l:run("nowait") -- 104 fires at once (less than a period late)
        assert.are.same({ 104.5, 104.5 }, at)
        l:run("nowait") -- then 105: not yet
        assert.are.equal(2, #at)
        set(105)
        l:run("nowait")
        assert.are.same({ 104.5, 104.5, 105 }, at)
      end)
    end)

    it("handle thousands of timers: exact order, cancellations, a consistent heap", function()
      local l, set = fake_loop(1000)
      local n = 5000
      local fired = {}
      local timers, after = {}, {}
      for i = 1, n do
        after[i] = (i * 7919 % 1000) / 100 -- 0 to 9.99 s, five timers per value
        timers[i] = l:timer(after[i], function() fired[#fired + 1] = i end)
      end
      local cancelled = {}
      for i = 3, n, 3 do
        timers[i]:stop()
        cancelled[i] = true
      end
      l:invariant()
      assert.are.same({ 0, n - #fired - math.floor(n / 3), 0 }, counts(l))
      local expected = {}
      for i = 1, n do if not cancelled[i] then expected[#expected + 1] = i end end
      table.sort(expected, function(a, b)
        if after[a] ~= after[b] then return after[a] < after[b] end
        return a < b
      end)
      -- Advance the clock in steps; each step fires exactly the timers due.
      for step = 1, 20 do
        local t = 1000 + step / 2
        set(t)
        l:run("nowait")
        for k = 1, #fired do assert(fired[k] == expected[k], "fired out of order") end
        local due = 0
        for _, i in ipairs(expected) do if 1000 + after[i] <= t then due = due + 1 end end
        assert.are.equal(due, #fired)
        l:invariant()
      end
      assert.are.equal(#expected, #fired)
      assert.are.same({ 0, 0, 0 }, counts(l))
    end)
  end)

  it("thousands of timers on the real clock all fire, none early", function()
    local l = new_loop()
    local early, fired = 0, 0
    for i = 1, 2000 do
      local due = now() + (i % 20) / 1000
      l:timer((i % 20) / 1000, function()
        fired = fired + 1
        if now() < due then early = early + 1 end
      end)
    end
    assert.is_false(l:run())
    assert.are.equal(2000, fired)
    assert.are.equal(0, early)
  end)

  describe("falling due while callbacks run", function()
    it("fire in the same round after an I/O callback that outlasted them", function()
      local l = new_loop()
      local r, w = pipe()
      local order = {}
      l:io(r, "in", function(watcher)
        order[#order + 1] = "io"
        busy(0.015)
        watcher:stop()
      end)
      l:timer(0.005, function() order[#order + 1] = "timer" end)
      T.write(w, "x")
      assert.is_false(l:run("once"))
      assert.are.same({ "io", "timer" }, order)
    end)

    it("fire in the next round after a timer callback, which then does not block", function()
      local l, set = fake_loop(100)
      -- The loop stays alive on a descriptor; should the next wait block, a
      -- timerfd ends it after a second, and the time taken tells.
      local tfd = assert(T.timerfd(1))
      defer(function() H.close(tfd) end)
      local idle = l:io(tfd, "in", function() end)
      local order = {}
      l:timer(1, function()
        order[#order + 1] = "a"
        set(103) -- a slow callback: b falls due meanwhile
      end)
      l:timer(2, function() order[#order + 1] = "b" end)
      set(101.5)
      assert.is_true(l:run("once"))
      assert.are.same({ "a" }, order) -- b was not due when the timers' turn began
      local t0 = now()
      assert.is_true(l:run("once"))
      assert.is_true(now() - t0 < 0.5)
      assert.are.same({ "a", "b" }, order)
      idle:stop()
    end)

    it("started by a callback with after 0 fire in the next round", function()
      local l, set = fake_loop(100)
      local order = {}
      l:timer(1, function()
        order[#order + 1] = "first"
        l:timer(0, function() order[#order + 1] = "new" end)
      end)
      set(101)
      assert.is_true(l:run("nowait"))
      assert.are.same({ "first" }, order)
      assert.is_false(l:run("nowait"))
      assert.are.same({ "first", "new" }, order)
    end)
  end)

  describe("the nearest deadline", function()
    it("is the wait's timeout", function()
      local l = new_loop()
      local r = pipe()
      local idle = l:io(r, "in", function() end)
      local fired = {}
      local t0 = now()
      l:timer(0.06, function() fired[#fired + 1] = 60 end)
      l:timer(0.01, function() fired[#fired + 1] = 10 end)
      assert.is_true(l:run("once"))
      local t1 = now() - t0
      assert.are.same({ 10 }, fired) -- woken for it, never early
      assert.is_true(t1 >= 0.01)
      assert.is_true(t1 < 0.06)
      assert.is_true(l:run("once"))
      assert.are.same({ 10, 60 }, fired)
      assert.is_true(now() - t0 >= 0.06)
      idle:stop()
      assert.is_false(l:run())
    end)

    it("is the next one once the nearest is stopped", function()
      local l = new_loop()
      local fired = {}
      local t0 = now()
      local near = l:timer(0.005, function() fired[#fired + 1] = "near" end)
      l:timer(0.02, function() fired[#fired + 1] = "far" end)
      near:stop()
      assert.is_false(l:run("once"))
      assert.are.same({ "far" }, fired)
      assert.is_true(now() - t0 >= 0.02)
    end)

    it("is not waited for in nowait mode", function()
      local l = new_loop()
      local fired = 0
      l:timer(1, function() fired = fired + 1 end)
      local t0 = now()
      assert.is_true(l:run("nowait"))
      assert.is_true(now() - t0 < 0.5)
      assert.are.equal(0, fired)
    end)
  end)

  it("refuse bad arguments with errors naming timer and again", function()
    local l = new_loop()
    local cb = function() end
    local cases = {
      { function() l:timer() end, "bad argument #1 to 'timer' (seconds expected, got no value)" },
      { function() l:timer("1", cb) end, "bad argument #1 to 'timer' (seconds expected, got string)" },
      { function() l:timer(0 / 0, cb) end, "bad argument #1 to 'timer' (seconds expected, got NaN)" },
      { function() l:timer(1) end, "bad argument #2 to 'timer' (function expected, got no value)" },
      { function() l:timer(1, 2) end, "bad argument #2 to 'timer' (function expected, got number)" },
      { function() l:timer(1, cb, 0) end, "bad argument #3 to 'timer' (the period must be > 0)" },
      { function() l:timer(1, cb, -1) end, "bad argument #3 to 'timer' (the period must be > 0)" },
      { function() l:timer(1, cb, 0 / 0) end, "bad argument #3 to 'timer' (seconds expected, got NaN)" },
      { function() l:timer(1, cb, "1") end, "bad argument #3 to 'timer' (seconds expected, got string)" },
    }
    for _, case in ipairs(cases) do assert.are.equal(case[2], H.msg_of(case[1])) end
    assert.are.same({ 0, 0, 0 }, counts(l))
    local t = l:timer(1, cb)
    assert.are.equal("bad argument #1 to 'again' (seconds expected, got string)",
      H.msg_of(function() t:again("x") end))
    assert.are.same({ 0, 1, 0 }, counts(l))
    l:invariant()
  end)

  it("render as timer{id=N}", function()
    local l = new_loop()
    local a = l:timer(1, function() end)
    local b = l:timer(1, function() end, 1)
    assert.are.equal("timer{id=1}", tostring(a))
    assert.are.equal("timer{id=2}", tostring(b))
    b:stop()
    assert.are.equal("timer{id=2, stopped}", tostring(b))
    assert.are.equal(string.format("loop{watchers=0, timers=1, tasks=0, epoll{fd=%d, num_file_descrs=%d, "
      .. "max_ready_events=256, flags_by_fd={}, ready={}}}", l:getfd(), H.default_num_file_descrs()),
      tostring(l))
  end)

  it("allocate nothing when a repeating timer fires round after round", function()
    local l = new_loop()
    local ticks = 0
    l:timer(0, function() ticks = ticks + 1 end, 1e-9) -- always behind: due every round
    local bad = 0
    local function rounds(n)
      for _ = 1, n do
        if not l:run("nowait") then bad = bad + 1 end
      end
    end
    assert.are.equal(0, H.alloc_growth(rounds, 1000, 10000))
    assert.are.equal(0, bad)
    assert.are.equal(11010, ticks)
  end)
end)

describe("lepoll.loop repeating timers that fall behind", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("fire once for the missed ticks, also when now is exactly a tick", function()
    local l, set_time = fake_loop(0)
    local fired = 0
    local t = l:timer(1, function() fired = fired + 1 end, 1)
    set_time(3) -- ticks at 1, 2 and 3 are due: the one at 1, then the last (3)
    l:run("nowait")
    l:run("nowait")
    assert.are.equal(2, fired)
    set_time(3.5)
    l:run("nowait")
    assert.are.equal(2, fired) -- back on schedule: next at 4
    set_time(4)
    l:run("nowait")
    assert.are.equal(3, fired)
    t:stop()
  end)
end)

describe("lepoll.loop timers behind a lagging repeating timer", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("all run in the round they are due in", function()
    local l, set = fake_loop(0)
    local log = {}
    local f = l:timer(1, function() log[#log + 1] = "f" end, 1)
    l:timer(3.5, function() log[#log + 1] = "g" end)
    set(3.7) -- f is 2.7 s late: rescheduled to 3, before g's 3.5
    assert.is_true(l:run("nowait"))
    assert.are.same({ "f", "g" }, log)
    l:invariant()
    f:stop()
  end)

  it("do not delay sleeping tasks or task timeouts due in the same round", function()
    local l, set = fake_loop(0)
    local r = pipe()
    local log = {}
    local f = l:timer(1, function() log[#log + 1] = "f" end, 1)
    l:spawn(function() l:sleep(3.5) log[#log + 1] = "sleeper" end)
    l:spawn(function() local r1, r2 = l:readable(r, 3.6) log[#log + 1] = tostring(r1) .. " " .. r2 end)
    assert.is_true(l:run("nowait")) -- the tasks start and wait
    set(3.7)
    assert.is_true(l:run("nowait"))
    assert.are.same({ "f", "sleeper", "nil timeout" }, log)
    l:invariant()
    f:stop()
    assert.is_false(l:run())
  end)
end)
