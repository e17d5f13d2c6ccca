-- Signals: a storm of SIGALRM (every millisecond, from a handler installed
-- without SA_RESTART: lepoll_test's alarm) while sets wait. Every ready
-- event is still reported, exactly once where it must be; the waits that a
-- signal interrupts say "interrupted" and carry no event; the storm really
-- interrupted waits (counted).
local lepoll = require "lepoll"
local loop = require "lepoll.loop"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)

local IN = lepoll.IN
local STORM = 0.001   -- a SIGALRM every millisecond
local DEADLINE = 5    -- seconds: a lost event fails the test instead of hanging it

local quote, popen = H.quote, H.popen

-- Starts the storm; it stops when the test ends.
local function storm()
  C.defer(function() T.alarm(0) end)
  local before = T.alarms()
  assert.is_true(T.alarm(STORM, STORM))
  return before
end

-- Timeouts the waits cycle through: blocking, spans, "never".
local TIMEOUTS = { n = 4, nil, 0.05, "never", 1 }

-- Waits on `ep` round after round, during a storm, until `done(last)`
-- (last: the result of the last round, nil before the first); each event
-- goes to on_event(fd, flags). Checks every round: "ok" rounds have
-- events, the others none (an empty ready set, in iter_ready, fold_ready
-- and tostring). Returns the count of rounds by result.
local function wait_through_storm(ep, done, on_event)
  local rounds = { ok = 0, interrupted = 0, timeout = 0 }
  local t0, i, res = T.now(), 0, nil
  while not done(res) do
    assert(T.now() - t0 < DEADLINE, "events lost: still waiting after " .. DEADLINE .. " s")
    i = i + 1
    res = ep:wait(TIMEOUTS[i % TIMEOUTS.n + 1])
    rounds[res] = rounds[res] + 1
    local n = ep:fold_ready(0, function(k) return k + 1 end)
    if res == "ok" then
      assert.is_true(n > 0)
      ep:iter_ready(on_event)
    else
      assert.are.equal(0, n, res .. " round with events")
      assert.are.same({}, H.ready(ep))
      assert.matches(", ready={}}$", tostring(ep))
    end
  end
  return rounds
end

describe("signals", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("a SIGALRM storm loses no timerfd expiry, whatever the flags (level, et, oneshot)", function()
    local N = 45
    local ep = C.new_set(nil, 4) -- at most 4 events a wait: the others wait their turn
    local timers, by_fd = {}, {}
    local modes = { "in", "in|et", "in|oneshot" }
    C.defer(function() for _, fd in ipairs(timers) do H.close(fd) end end)
    for i = 1, N do
      -- Due every 2 ms from 2 ms on; some at once, as a batch of 3.
      local fd = assert(T.timerfd(0.002 * (i - i % 3 + 1)))
      timers[i] = fd
      by_fd[fd] = { mode = modes[i % 3 + 1], reported = 0 }
      ep:set(fd, modes[i % 3 + 1])
    end
    -- One more, due well after the others, so that waits block through the
    -- storm even where the rest fire before the first wait (under valgrind).
    local late = assert(T.timerfd(0.3))
    timers[N + 1] = late
    by_fd[late] = { mode = "in", reported = 0 }
    ep:set(late, "in")
    local alarms = storm()
    local seen = 0
    local rounds = wait_through_storm(ep, function() return seen == N + 1 end, function(fd, flags)
      local t = by_fd[fd]
      assert.is_truthy(t, "event for an unknown fd " .. fd)
      assert.are.equal(IN, flags)
      t.reported = t.reported + 1
      assert.are.equal(1, t.reported, "fd " .. fd .. " (" .. t.mode .. ") reported again")
      assert.are.equal(1, T.read_u64(fd)) -- one expiry, read: not ready again
      seen = seen + 1
    end)
    T.alarm(0)
    assert.are.equal(N + 1, seen)
    assert.is_true(rounds.interrupted > 0, "no wait was interrupted")
    assert.is_true(T.alarms() - alarms >= rounds.interrupted)
    -- Nothing is left to report.
    assert.are.equal("timeout", ep:wait(0))
    ep:invariant()
  end)

  it("a SIGALRM storm loses no byte a child process writes to a pipe", function()
    local LINES = 60
    -- The child writes a line every millisecond (lepoll's wait as a sleep),
    -- unbuffered, then exits: end of file.
    local script = ([[
      local ep = require("lepoll").create()
      io.stdout:setvbuf("no")
      for i = 1, %d do io.write(i, "\n") ep:wait(0.001) end
      ep:close()
    ]]):format(LINES)
    local cmd = ("%s timeout 20 %s -e %s"):format(H.CHILD_ENV, H.LUA, quote(script))
    local p, close = popen(cmd, "r")
    local closed = false
    C.defer(function() if not closed then close() end end)
    local ep = C.new_set()
    ep:set(p, "in")
    local fd = ep:tofd(p)
    local chunks, eof = {}, false
    local alarms = storm()
    local rounds = wait_through_storm(ep, function() return eof end, function(rfd, flags)
      assert.are.equal(fd, rfd)
      assert.is_true(lepoll.has(flags, "in|hup"))
      local data = assert(T.read(fd)) -- ready: does not block
      if data == "" then eof = true else chunks[#chunks + 1] = data end
    end)
    T.alarm(0)
    ep:remove(fd)
    closed = true
    assert.are.same({ true, "exit", 0 }, { close() })
    local want = {}
    for i = 1, LINES do want[i] = i .. "\n" end
    assert.are.equal(table.concat(want), table.concat(chunks))
    assert.is_true(rounds.interrupted > 0, "no wait was interrupted")
    assert.is_true(T.alarms() - alarms >= rounds.interrupted)
  end)

  it("an event arriving after an interrupted wait comes with the next: none lost, none twice",
    function()
      -- Ten pipes, edge-triggered (a lost event would never come back),
      -- each made readable right after a wait the storm interrupted.
      local ep = C.new_set(nil, 2)
      local pipes = {}
      for i = 1, 10 do
        local r, w = C.pipe()
        pipes[i] = { r = r, w = w }
        ep:set(r, "in|et")
      end
      local alarms = storm()
      local written, got, by_fd = 0, {}, {}
      local rounds = wait_through_storm(ep, function(last)
        if #got == 10 then return true end
        if last == "interrupted" and written == #got then -- one at a time, once the last was seen
          written = written + 1
          assert.are.equal(1, T.write(pipes[written].w, "x"))
        end
        return false
      end, function(fd, flags)
        assert.are.equal(IN, flags)
        assert.is_nil(by_fd[fd], "fd " .. fd .. " reported twice")
        by_fd[fd] = true
        got[#got + 1] = fd
      end)
      T.alarm(0)
      local want = {}
      for i = 1, 10 do want[i] = pipes[i].r end
      assert.are.same(want, got)
      assert.is_true(rounds.interrupted >= 10)
      assert.is_true(T.alarms() - alarms >= rounds.interrupted)
      assert.are.equal("timeout", ep:wait(0)) -- et: nothing new
      ep:invariant()
    end)

  it("lepoll.loop runs every timer, watcher and task through a storm", function()
    local l = loop.new()
    C.defer(function() l:close() end)
    local fired, order = {}, {}
    for i = 1, 20 do
      l:timer(0.001 * i, function() fired[#fired + 1] = i end)
    end
    local tfd = assert(T.timerfd(0.015))
    C.defer(function() H.close(tfd) end)
    l:io(tfd, "in", function(w, fd)
      order[#order + 1] = "io " .. T.read_u64(fd)
      w:stop()
    end)
    local r, w = C.pipe()
    l:spawn(function()
      for k = 1, 3 do
        l:sleep(0.005)
        T.write(w, tostring(k))
      end
    end)
    l:spawn(function()
      local data = ""
      while #data < 3 do
        assert(l:readable(r, 2))
        data = data .. T.read(r)
      end
      order[#order + 1] = "read " .. data
    end)
    local alarms = storm()
    local t0 = T.now()
    assert.is_false(l:run())
    T.alarm(0)
    assert.is_true(T.now() - t0 < DEADLINE)
    local want = {}
    for i = 1, 20 do want[i] = i end
    assert.are.same(want, fired)
    table.sort(order)
    assert.are.same({ "io 1", "read 123" }, order)
    assert.is_true(T.alarms() - alarms > 0, "no SIGALRM arrived")
    l:invariant()
  end)
end)
