-- lepoll.loop and cqueues driving each other through cqueues' protocol for
-- pollable objects (pollfd, events, timeout), with no polling on a short
-- timer: each side waits on the other's descriptor and deadline, and the
-- steps are counted to show that nothing spins. Only pipes and socketpairs;
-- every run has a deadline, so a bug fails a test instead of hanging it.
--
-- Debian's lua-cqueues has a build for each of Lua 5.1, 5.2, 5.3 and 5.4
-- (LuaJIT loads the 5.1 one): nothing here is skipped.
local lepoll = require "lepoll"
local cqueues = require "cqueues"
local csocket = require "cqueues.socket"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)
local defer, pipe, new_loop = C.defer, C.pipe, C.new_loop

local now = lepoll.now
local CLOSED = "attempt to use a closed loop"

-- How late a timer or a sleep may come (the runs are short and the
-- machine may be busy: generous), and the longest any run here may take.
local LATE = 0.15
local LIMIT = 5

-- A new cqueues controller, closed when the test ends (it holds two
-- descriptors).
local function new_cq()
  local cq = assert(cqueues.new())
  defer(function() cq:close() end)
  return cq
end

-- cqueues.socket.pair(), both ends closed when the test ends.
local function cq_pair()
  local a, b = assert(csocket.pair())
  defer(function()
    a:close()
    b:close()
  end)
  return a, b
end

-- Steps cq until none of its coroutines is left, for at most `limit`
-- seconds; a coroutine's error is raised here. Returns the number of steps.
local function run_cq(cq, limit)
  local deadline = now() + (limit or LIMIT)
  local steps = 0
  while not cq:empty() do
    local left = deadline - now()
    assert(left > 0, "the cqueues controller still has work after " .. (limit or LIMIT) .. " s")
    steps = steps + 1
    local ok, err = cq:step(left)
    if not ok then error(err, 0) end
  end
  return steps
end

-- Steps l until it has no work left, for at most `limit` seconds. Returns
-- the number of steps.
local function run_loop(l, limit)
  local deadline = now() + (limit or LIMIT)
  local steps = 0
  while true do
    local left = deadline - now()
    assert(left > 0, "the lepoll loop still has work after " .. (limit or LIMIT) .. " s")
    steps = steps + 1
    if not l:step(left) then return steps end
  end
end

-- A coroutine of cq that steps l, waiting with cqueues.poll(l) in between
-- (doc/loop.md's idiom), until l has no work. counts.steps counts l:step
-- calls; counts.done is set at the end.
local function drive_loop_from_cq(cq, l, counts)
  counts.steps, counts.done = 0, false
  cq:wrap(function()
    counts.steps = 1
    while l:step() do
      cqueues.poll(l)
      counts.steps = counts.steps + 1
    end
    counts.done = true
  end)
end

-- A watcher of l on cq's descriptor and a timer re-armed to cq:timeout()
-- after each cq:step(0): l steps cq until cq has no coroutine left, then
-- both stop. counts.steps counts cq:step calls; an error of one of cq's
-- coroutines is raised by the callback (so by l:step).
local function drive_cq_from_loop(l, cq, counts)
  counts.steps = 0
  local watcher, timer
  local function step()
    counts.steps = counts.steps + 1
    local ok, err = cq:step(0)
    if not ok then error(err, 0) end
    if cq:empty() then
      watcher:stop()
      timer:stop()
      return
    end
    local timeout = cq:timeout()
    if timeout then timer:again(timeout) else timer:stop() end
  end
  watcher = l:io(cq:pollfd(), "in", step)
  timer = l:timer(0, step)
  return watcher, timer
end

describe("lepoll.loop with cqueues", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  describe("a lepoll loop driven by a cqueues controller", function()
    it("runs its watchers, timers and tasks on time, with a step per thing to do", function()
      local l, cq = new_loop(), new_cq()
      local r1, w1 = pipe() -- watched; cqueues writes it at 0.15 s
      local r2, w2 = pipe() -- a task reads it; cqueues writes it at 0.05 s and 0.25 s
      local t0 = now()
      local got = {}
      l:io(r1, "in", function(w, fd)
        got.io, got.io_at = T.read(fd), now() - t0
        w:stop()
      end)
      l:timer(0.2, function() got.timer_at = now() - t0 end)
      l:spawn(function()
        l:sleep(0.1)
        got.slept_at = now() - t0
      end)
      l:spawn(function()
        local data = {}
        for i = 1, 2 do
          assert(l:readable(r2, LIMIT))
          data[i] = T.read(r2)
        end
        got.reader, got.reader_at = table.concat(data, ","), now() - t0
      end)
      local counts = {}
      drive_loop_from_cq(cq, l, counts)
      cq:wrap(function()
        cqueues.sleep(0.05)
        T.write(w2, "a")
        cqueues.sleep(0.1)
        got.written_at = now() - t0
        T.write(w1, "x")
        cqueues.sleep(0.1)
        T.write(w2, "b")
      end)
      local cq_steps = run_cq(cq)
      local took = now() - t0

      assert.is_true(counts.done)
      assert.are.equal("x", got.io)
      assert.is_true(got.io_at >= got.written_at and got.io_at < got.written_at + LATE, tostring(got.io_at))
      assert.is_true(got.timer_at >= 0.2 and got.timer_at < 0.2 + LATE, tostring(got.timer_at))
      assert.is_true(got.slept_at >= 0.1 and got.slept_at < 0.1 + LATE, tostring(got.slept_at))
      assert.are.equal("a,b", got.reader)
      assert.is_true(got.reader_at >= 0.25 and got.reader_at < 0.25 + LATE, tostring(got.reader_at))
      assert.is_true(took < 0.25 + 2 * LATE, tostring(took))
      -- Things to do: the start, the sleep's end, the two writes of r2,
      -- the write of r1, the timer (6 steps); a few more at most. Polling
      -- on a short timer would take dozens to hundreds.
      assert.is_true(counts.steps >= 5 and counts.steps < 20, "l:step calls: " .. counts.steps)
      assert.is_true(l:stats().rounds < 20, "rounds: " .. l:stats().rounds)
      assert.is_true(cq_steps < 40, "cq:step calls: " .. cq_steps)
      assert.is_false(l:step())
    end)

    it("waits on the loop's descriptor alone when the loop has no deadline", function()
      local l, cq = new_loop(), new_cq()
      local r, w = pipe()
      local t0 = now()
      local got_at
      l:io(r, "in", function(watcher, fd)
        T.read(fd)
        got_at = now() - t0
        watcher:stop()
      end)
      assert.is_nil(l:timeout())
      local counts = {}
      drive_loop_from_cq(cq, l, counts)
      cq:wrap(function()
        cqueues.sleep(0.2)
        T.write(w, "x")
      end)
      local cq_steps = run_cq(cq)
      assert.is_true(counts.done)
      assert.is_true(got_at >= 0.2 and got_at < 0.2 + LATE, tostring(got_at))
      -- One step before the wait, one for the event.
      assert.are.equal(2, counts.steps)
      assert.is_true(cq_steps < 10, "cq:step calls: " .. cq_steps)
    end)

    it("steps once per tick of a repeating timer, whatever the period's fraction of a millisecond", function()
      for _, period in ipairs({ 0.0317, 0.00349, 0.0005 }) do
        local l, cq = new_loop(), new_cq()
        local ticks, t0, late, early = 0, now(), 0, 0
        l:timer(period, function(timer)
          ticks = ticks + 1
          local behind = now() - (t0 + ticks * period)
          if behind > late then late = behind end
          if behind < early then early = behind end
          if ticks == 10 then timer:stop() end
        end, period)
        local counts = {}
        drive_loop_from_cq(cq, l, counts)
        -- doc/loop.md's example, with a deadline: cq:loop(seconds)
        assert(cq:loop(LIMIT))
        assert.is_true(cq:empty(), "still running after " .. LIMIT .. " s")
        assert.is_true(counts.done)
        assert.are.equal(10, ticks)
        assert.is_true(early >= -1e-6, "a tick came early: " .. early)
        assert.is_true(late < LATE, "a tick came late: " .. late)
        -- A step per tick and the first: a wait cut short by a rounded
        -- timeout would add steps.
        assert.is_true(counts.steps <= 12, "period " .. period .. ": l:step calls " .. counts.steps)
      end
    end)

    it("fails a callback or task that waits with cqueues instead of the loop, and goes on", function()
      local l, cq = new_loop(), new_cq()
      local ran = false
      local task = l:spawn(function() cqueues.sleep(0.01) end)
      l:timer(0, function() cqueues.sleep(0.01) end)
      l:timer(0, function() ran = true end)
      local errs, more = {}, nil
      cq:wrap(function()
        -- cqueues.sleep yields to cqueues' controller; inside l:step that
        -- yield ends at the loop, which refuses it.
        for i = 1, 2 do
          local ok, err = pcall(l.step, l)
          errs[i] = not ok and err
        end
        more = l:step()
      end)
      run_cq(cq)
      assert.is_truthy(tostring(errs[1]):find("yielded to the loop outside its waits", 1, true), tostring(errs[1]))
      assert.are.equal("dead", task:status())
      -- A callback runs under xpcall, which Lua 5.1 cannot yield across.
      local expected = (H.LUA_VERSION == 501 and not H.JIT) and "attempt to yield across metamethod/C-call boundary"
        or "yielded out of the loop's run; callbacks cannot yield (a task can wait instead)"
      assert.is_truthy(tostring(errs[2]):find(expected, 1, true), tostring(errs[2]))
      assert.is_true(ran)
      assert.is_false(more)
      l:invariant()
    end)
  end)

  describe("a cqueues controller driven by a lepoll loop", function()
    it("runs its coroutines' sleeps and socket I/O, with a step per thing to do", function()
      local l, cq = new_loop(), new_cq()
      local a, b = cq_pair()
      local t0 = now()
      local got = {}
      cq:wrap(function()
        cqueues.sleep(0.1)
        got.slept_at = now() - t0
        cqueues.sleep(0.1)
        got.slept2_at = now() - t0
      end)
      cq:wrap(function()
        cqueues.sleep(0.15)
        got.sent_at = now() - t0
        assert(a:write("ping\n"))
        assert(a:flush())
        got.reply, got.reply_at = a:read("*l"), now() - t0
      end)
      cq:wrap(function()
        local line = b:read("*l")
        got.request = line
        assert(b:write(line:upper() .. "\n"))
        assert(b:flush())
      end)
      l:timer(0.12, function() got.timer_at = now() - t0 end)
      local counts = {}
      drive_cq_from_loop(l, cq, counts)
      local l_steps = run_loop(l)
      local took = now() - t0

      assert.is_true(cq:empty())
      assert.is_true(got.slept_at >= 0.1 and got.slept_at < 0.1 + LATE, tostring(got.slept_at))
      assert.is_true(got.slept2_at >= 0.2 and got.slept2_at < 0.2 + LATE, tostring(got.slept2_at))
      assert.is_true(got.timer_at >= 0.12 and got.timer_at < 0.12 + LATE, tostring(got.timer_at))
      assert.are.equal("ping", got.request)
      assert.are.equal("PING", got.reply)
      assert.is_true(got.reply_at >= got.sent_at and got.reply_at < got.sent_at + LATE, tostring(got.reply_at))
      assert.is_true(took < 0.2 + 2 * LATE, tostring(took))
      -- cq's things to do: the start, the ends of the three sleeps, the
      -- request and the reply arriving (6 steps); a few more at most. The
      -- loop also has its own timer.
      assert.is_true(counts.steps >= 4 and counts.steps < 20, "cq:step calls: " .. counts.steps)
      assert.is_true(l_steps < 20, "l:step calls: " .. l_steps)
      assert.is_true(l:stats().rounds < 20, "rounds: " .. l:stats().rounds)
    end)

    it("can be driven by a task waiting on the controller, through 1 MiB of socket I/O", function()
      local l, cq = new_loop(), new_cq()
      local a, b = cq_pair()
      local size = 1024 * 1024
      local data = {}
      for i = 1, size / 1024 do data[i] = string.rep(string.char(65 + i % 26), 1024) end
      data = table.concat(data)
      local received, sent
      cq:wrap(function()
        assert(a:write(data))
        assert(a:flush())
        sent = true
        a:close()
      end)
      cq:wrap(function()
        cqueues.sleep(0.05)
        received = b:read("*a")
      end)
      local cq_steps, waits = 0, 0
      l:spawn(function()
        while not cq:empty() do
          local timeout = cq:timeout()
          if timeout ~= 0 then
            waits = waits + 1
            l:readable(cq, timeout) -- the controller is an object with pollfd
          end
          cq_steps = cq_steps + 1
          local ok, err = cq:step(0)
          if not ok then error(err, 0) end
        end
      end)
      local l_steps = run_loop(l)
      assert.is_true(sent)
      assert.are.equal(size, #received)
      assert.is_true(received == data, "the data came through changed")
      -- A wake-up each time the socket's buffer fills or drains (some 12),
      -- not one per millisecond; the task's waits keep the controller's
      -- descriptor registered: added once, removed when the task ends.
      assert.is_true(cq_steps < 200, "cq:step calls: " .. cq_steps)
      assert.is_true(waits <= cq_steps)
      assert.is_true(l_steps <= waits + 3, "l:step calls: " .. l_steps .. ", waits: " .. waits)
      assert.is_true(l:stats().ctl <= 2, "epoll_ctl calls: " .. l:stats().ctl)
    end)
  end)

  describe("l:timeout()", function()
    it("is nil with only a watcher, or a task waiting without a timeout", function()
      local l = new_loop()
      local r = pipe()
      l:io(r, "in", function() end)
      assert.is_nil(l:timeout())
      local r2 = pipe()
      l:spawn(function() l:readable(r2) end)
      assert.is_true(l:step())
      assert.are.equal(1, l:stats().waiting)
      assert.is_nil(l:timeout())
    end)

    it("is the time to the nearest deadline: a timer, a sleep, a wait's timeout", function()
      local t = 100
      local l = new_loop({ clock = function() return t end })
      local r = pipe()
      l:io(r, "in", function() end)
      local timer = l:timer(5, function() end)
      assert.are.equal(5, l:timeout())
      t = 103
      assert.are.equal(2, l:timeout())
      l:spawn(function() l:sleep(1.5) end)
      assert.is_true(l:step())
      assert.are.equal(1.5, l:timeout())
      local r2 = pipe()
      l:spawn(function() l:readable(r2, 0.5) end)
      assert.is_true(l:step())
      assert.are.equal(0.5, l:timeout())
      t = 110 -- all of them past: 0, never below
      assert.are.equal(0, l:timeout())
      assert.is_true(l:step()) -- runs them: the sleep and the wait end
      assert.is_false(timer:is_active())
      assert.is_nil(l:timeout())
    end)

    it("is the time to the nearest timer with the real clock, never more", function()
      local l = new_loop()
      local before = now()
      l:timer(0.2, function() end)
      local timeout = l:timeout()
      local elapsed = now() - before
      assert.is_true(timeout <= 0.2 and timeout >= 0.2 - elapsed, tostring(timeout))
    end)

    it("is 0 while a task is queued: spawned, or woken by a condition or closing", function()
      local l = new_loop()
      local task = l:spawn(function() end)
      assert.are.equal(0, l:timeout())
      task:cancel() -- a cancelled queued task never starts: nothing left
      assert.is_nil(l:timeout())
      local cond = l:condition()
      l:spawn(function() cond:wait() end)
      assert.are.equal(0, l:timeout())
      assert.is_true(l:step())
      assert.is_nil(l:timeout())
      assert.is_true(cond:signal())
      assert.are.equal(0, l:timeout())
      assert.is_false(l:step())
      assert.is_nil(l:timeout())
      local r = pipe()
      l:spawn(function() l:readable(r) end)
      assert.is_true(l:step())
      assert.is_nil(l:timeout())
      assert.are.equal(1, l:closing(r))
      assert.are.equal(0, l:timeout())
      assert.is_false(l:step())
      assert.is_nil(l:timeout())
    end)

    it("is 0 when an error left events or due timers over", function()
      local l = new_loop()
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      T.write(w1, "x")
      T.write(w2, "x")
      local calls = 0
      local function failing(w)
        calls = calls + 1
        w:stop()
        error("boom", 0)
      end
      l:io(r1, "in", failing)
      l:io(r2, "in", failing)
      assert.are.equal("boom", H.error_of(l.step, l))
      assert.are.equal(1, calls)
      assert.are.equal(0, l:timeout()) -- the other event is left over
      assert.are.equal("boom", H.error_of(l.step, l))
      assert.are.equal(2, calls)
      assert.is_nil(l:timeout())
      l:timer(0, function() error("t1", 0) end)
      l:timer(0, function() error("t2", 0) end)
      assert.are.equal("t1", H.error_of(l.step, l))
      assert.are.equal(0, l:timeout()) -- the second timer is left over
      assert.are.equal("t2", H.error_of(l.step, l))
      assert.is_nil(l:timeout())
      l:spawn(function() error("k1", 0) end)
      l:spawn(function() end)
      assert.are.equal("k1", H.error_of(l.step, l))
      assert.are.equal(0, l:timeout()) -- the second task is still queued
      assert.is_false(l:step())
      assert.is_nil(l:timeout())
    end)

    it("is nil on a closed loop", function()
      local l = new_loop()
      l:timer(1, function() end)
      l:spawn(function() end)
      l:close()
      assert.is_nil(l:timeout())
    end)
  end)

  describe("l:pollfd() and l:events()", function()
    it("are the loop's descriptor and \"r\": cqueues.poll(l) wakes when the loop has something to do", function()
      local l, cq = new_loop(), new_cq()
      assert.are.equal(l:getfd(), l:pollfd())
      assert.are.equal("r", l:events())
      local r, w = pipe()
      l:io(r, "in", function(watcher, fd)
        T.read(fd)
        watcher:stop()
      end)
      local results = {}
      cq:wrap(function()
        -- Nothing to do: the poll's own timeout ends it.
        local t0 = now()
        cqueues.poll(l, 0.05)
        results.idle = now() - t0
        -- An event in the set: at once.
        T.write(w, "x")
        t0 = now()
        results.event = cqueues.poll(l, 1) == l
        results.event_took = now() - t0
        l:step()
        -- A task queued: timeout() is 0, at once.
        l:spawn(function() end)
        t0 = now()
        results.queued = cqueues.poll(l, 1) == l
        results.queued_took = now() - t0
        l:step()
        -- A timer: at its deadline.
        l:timer(0.05, function() end)
        t0 = now()
        results.timer = cqueues.poll(l, 1) == l
        results.timer_took = now() - t0
        l:step()
      end)
      run_cq(cq)
      assert.is_true(results.idle >= 0.05 and results.idle < 0.05 + LATE, tostring(results.idle))
      assert.is_true(results.event)
      assert.is_true(results.event_took < LATE, tostring(results.event_took))
      assert.is_true(results.queued)
      assert.is_true(results.queued_took < LATE, tostring(results.queued_took))
      assert.is_true(results.timer)
      assert.is_true(results.timer_took >= 0.05 and results.timer_took < 0.05 + LATE, tostring(results.timer_took))
      assert.is_false(l:step())
    end)

    it("pollfd raises on a closed loop, as getfd does", function()
      local l = new_loop()
      l:close()
      assert.are.equal(CLOSED, H.msg_of(function() l:pollfd() end))
      assert.are.equal(CLOSED, H.msg_of(function() l:getfd() end))
    end)
  end)
end)
