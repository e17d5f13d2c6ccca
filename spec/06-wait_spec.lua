-- wait: its results, every timeout form and its conversion to epoll_wait
-- milliseconds, signals, the max_ready_events cap and the ready set's life.
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local IN = lepoll.IN
local INT_MAX = 2147483647

-- The extreme integers exist from 5.3 on; before, every number is a
-- double, and the nearest doubles (-2^63, 2^63) are the extreme spans.
local MININT = math.mininteger or -2 ^ 63
local MAXINT = math.maxinteger or 2 ^ 63
-- 2^k as an integer where the integer subtype exists (1 << k), else the
-- double, which is the same number there.
local function pow2(k)
  return math.tointeger and math.tointeger(2 ^ k) or 2 ^ k
end

-- Seconds taken by f(...), and its results.
local function timed(f, ...)
  local t0 = T.now()
  local r = f(...)
  return r, T.now() - t0
end

-- Pipes with one unread byte each, watched level-triggered for in.
local function ready_pipes(ep, n)
  local pipes = {}
  for i = 1, n do
    local r, w = T.pipe()
    pipes[i] = { r, w }
    T.write(w, "x")
    ep:set(r, "in")
  end
  return pipes
end

local function close_pipes(pipes)
  for _, p in ipairs(pipes) do H.close(p[1], p[2]) end
end

describe("wait", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  describe("results", function()
    it("is 'ok' with events, 'timeout' without", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      assert.are.equal("timeout", ep:wait(0))
      T.write(w, "x")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
    end)

    it("is 'timeout' on a set that watches nothing", function()
      local ep = lepoll.create()
      finally(function() ep:close() end)
      assert.are.equal("timeout", ep:wait(0))
      assert.are.equal("timeout", ep:wait(0.001))
    end)
  end)

  describe("timeout forms", function()
    it("nil blocks until an event: a timerfd due in 20 ms", function()
      local ep = lepoll.create()
      local tfd = T.timerfd(0.02)
      finally(function() ep:close(); H.close(tfd) end)
      ep:set(tfd, "in")
      local r, took = timed(ep.wait, ep, nil)
      assert.are.equal("ok", r)
      assert.is_true(took >= 0.015, "returned after " .. took .. " s")
      assert.are.same({ { tfd, IN } }, H.ready(ep))
    end)

    it("no argument and 'never' block too", function()
      local ep = lepoll.create()
      local t1, t2 = T.timerfd(0.02), nil
      finally(function() ep:close(); H.close(t1, t2) end)
      ep:set(t1, "in")
      local r, took = timed(ep.wait, ep)
      assert.are.equal("ok", r)
      assert.is_true(took >= 0.015, "returned after " .. took .. " s")
      ep:remove(t1)

      t2 = T.timerfd(0.02)
      ep:set(t2, "in")
      r, took = timed(ep.wait, ep, "never")
      assert.are.equal("ok", r)
      assert.is_true(took >= 0.015, "returned after " .. took .. " s")
      assert.are.same({ { t2, IN } }, H.ready(ep))
    end)

    it("0 and 'immediately' poll: a pending timer is not waited for", function()
      local ep = lepoll.create()
      local tfd = T.timerfd(0.5)
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(tfd, r, w) end)
      ep:set(tfd, "in")
      ep:set(r, "in")
      assert.are.equal("timeout", ep:wait(0))
      assert.are.equal("timeout", ep:wait(0.0))
      assert.are.equal("timeout", ep:wait("immediately"))
      T.write(w, "x")
      assert.are.equal("ok", ep:wait("immediately"))
      assert.are.same({ { r, IN } }, H.ready(ep))
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
    end)

    it("a number of seconds waits that long on an idle set", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      local res, took = timed(ep.wait, ep, 0.05)
      assert.are.equal("timeout", res)
      assert.is_true(took >= 0.045, "timed out after " .. took .. " s")
      assert.are.same({}, H.ready(ep))
    end)

    it("a number of seconds returns early on an event", function()
      local ep = lepoll.create()
      local tfd = T.timerfd(0.02)
      finally(function() ep:close(); H.close(tfd) end)
      ep:set(tfd, "in")
      local res, took = timed(ep.wait, ep, 5) -- an integer span
      assert.are.equal("ok", res)
      assert.is_true(took >= 0.015 and took < 4, "returned after " .. took .. " s")
    end)

    it("a span <= 0 polls", function()
      local ep = lepoll.create()
      local tfd = T.timerfd(0.5)
      finally(function() ep:close(); H.close(tfd) end)
      ep:set(tfd, "in")
      assert.are.equal("timeout", ep:wait(-5))
      assert.are.equal("timeout", ep:wait(-0.5))
      assert.are.equal("timeout", ep:wait(-math.huge))
      assert.are.equal("timeout", ep:wait(MININT))
    end)

    it("huge spans block, clamped rather than wrapped to a short wait", function()
      local ep = lepoll.create()
      finally(function() ep:close() end)
      -- A wrap to 0 or to a few ms would return 'timeout' before the timer.
      for _, span in ipairs { math.huge, 1e300, pow2(40), 2.0 ^ 40, MAXINT } do
        local tfd = T.timerfd(0.02)
        ep:set(tfd, "in")
        local ok, res, took = pcall(timed, ep.wait, ep, span)
        ep:remove(tfd)
        H.close(tfd)
        assert(ok, res)
        assert.are.equal("ok", res, "span " .. tostring(span))
        assert.is_true(took >= 0.015, "span " .. tostring(span) .. " returned after " .. took .. " s")
      end
    end)
  end)

  -- The calls whose messages are checked are plain calls, not tail calls
  -- (no `return`): LuaJIT keeps no frame for a tail call, and there the
  -- message would name the function '?' and, for a method, count the set
  -- among the arguments (the timeout as #2).
  describe("lepoll.timeout_ms, the conversion wait uses", function()
    it("gives 0 for spans <= 0", function()
      assert.are.equal(0, lepoll.timeout_ms(0))
      assert.are.equal(0, lepoll.timeout_ms(0.0))
      assert.are.equal(0, lepoll.timeout_ms(-0.0))
      assert.are.equal(0, lepoll.timeout_ms(-5))
      assert.are.equal(0, lepoll.timeout_ms(-0.5))
      assert.are.equal(0, lepoll.timeout_ms(-math.huge))
      assert.are.equal(0, lepoll.timeout_ms(MININT))
    end)

    it("rounds to the nearest millisecond, at least 1", function()
      local cases = {
        { 0.0003, 1 },     -- below 1 ms: the minimum
        { 5e-324, 1 },     -- the smallest positive double
        { 0.0005, 1 },
        { 0.001, 1 },
        { 0.0014999, 1 },
        { 0.0015, 2 },     -- half rounds up
        { 0.0025, 3 },     -- half rounds up, not to even
        { 0.25, 250 },
        { 1, 1000 },
        { 1.0, 1000 },
        { 2147483, 2147483000 }, -- the largest whole-second span that fits
      }
      for _, c in ipairs(cases) do
        local got = lepoll.timeout_ms(c[1])
        assert.are.equal(c[2], got, "timeout_ms(" .. tostring(c[1]) .. ")")
        assert.are.equal("integer", H.numtype(got))
      end
    end)

    it("gives -1 (never) for nil, 'never' and math.huge; 0 for 'immediately'", function()
      assert.are.equal(-1, lepoll.timeout_ms(nil))
      assert.are.equal(-1, lepoll.timeout_ms())
      assert.are.equal(-1, lepoll.timeout_ms("never"))
      assert.are.equal(-1, lepoll.timeout_ms(math.huge))
      assert.are.equal(0, lepoll.timeout_ms("immediately"))
    end)

    it("clamps spans beyond epoll_wait's range, never wraps", function()
      assert.are.equal(INT_MAX, lepoll.timeout_ms(1e300))
      assert.are.equal(INT_MAX, lepoll.timeout_ms(pow2(40)))
      assert.are.equal(INT_MAX, lepoll.timeout_ms(2.0 ^ 40))
      assert.are.equal(INT_MAX, lepoll.timeout_ms(2147484))   -- just past INT_MAX ms
      assert.are.equal(INT_MAX, lepoll.timeout_ms(2147483.648))
      assert.are.equal(INT_MAX, lepoll.timeout_ms(pow2(32)))   -- 2^32 * 1000 would wrap
      assert.are.equal(INT_MAX, lepoll.timeout_ms(MAXINT))
      assert.are.equal(INT_MAX, lepoll.timeout_ms(1.7976931348623157e308)) -- the largest double
    end)

    it("refuses NaN and other types", function()
      assert.are.equal("bad argument #1 to 'timeout_ms' (timeout is NaN)",
        H.msg_anywhere(function() lepoll.timeout_ms(0 / 0) end))
      for _, v in ipairs { {}, true, "soon", "1", "Never", print } do
        assert.matches("^bad argument #1 to 'timeout_ms' %(.*timeout",
          H.msg_anywhere(function() lepoll.timeout_ms(v) end))
      end
    end)
  end)

  describe("argument errors", function()
    it("refuses NaN and other types, leaving the set usable", function()
      local ep = lepoll.create()
      finally(function() ep:close() end)
      assert.are.equal("bad argument #1 to 'wait' (timeout is NaN)",
        H.msg_anywhere(function() ep:wait(0 / 0) end))
      assert.are.equal("bad argument #1 to 'wait' (timeout (seconds, 'never', 'immediately' or nil) "
        .. "expected, got table)", H.msg_anywhere(function() ep:wait({}) end))
      assert.are.equal("bad argument #1 to 'wait' (timeout (seconds, 'never', 'immediately' or nil) "
        .. "expected, got boolean)", H.msg_anywhere(function() ep:wait(true) end))
      assert.are.equal("bad argument #1 to 'wait' (invalid timeout 'soon' "
        .. "(expected seconds, 'never' or 'immediately'))",
        H.msg_anywhere(function() ep:wait("soon") end))
      -- The string shown is the whole string, control bytes escaped: a NUL
      -- does not cut it short into a valid-looking 'never'.
      assert.are.equal("bad argument #1 to 'wait' (invalid timeout 'never\\0junk' "
        .. "(expected seconds, 'never' or 'immediately'))",
        H.msg_anywhere(function() ep:wait("never\0junk") end))
      assert.are.equal("bad argument #1 to 'timeout_ms' (invalid timeout 'immediately\\10' "
        .. "(expected seconds, 'never' or 'immediately'))",
        H.msg_anywhere(function() lepoll.timeout_ms("immediately\n") end))
      -- A numeric string is not a number of seconds.
      assert.matches("^bad argument #1 to 'wait' %(invalid timeout '0'",
        H.msg_anywhere(function() ep:wait("0") end))
      assert.are.equal("timeout", ep:wait(0))
    end)
  end)

  describe("wait_timeout_after", function()
    it("behaves like wait(span)", function()
      local ep = lepoll.create()
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      assert.are.equal("timeout", ep:wait_timeout_after(0))
      assert.are.equal("timeout", ep:wait_timeout_after(-1))
      local res, took = timed(ep.wait_timeout_after, ep, 0.05)
      assert.are.equal("timeout", res)
      assert.is_true(took >= 0.045, "timed out after " .. took .. " s")
      T.write(w, "x")
      assert.are.equal("ok", ep:wait_timeout_after(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
      assert.are.equal("ok", ep:wait_timeout_after(1))
      assert.are.same({ { r, IN } }, H.ready(ep))
    end)

    it("blocks on math.huge", function()
      local ep = lepoll.create()
      local tfd = T.timerfd(0.02)
      finally(function() ep:close(); H.close(tfd) end)
      ep:set(tfd, "in")
      local res, took = timed(ep.wait_timeout_after, ep, math.huge)
      assert.are.equal("ok", res)
      assert.is_true(took >= 0.015, "returned after " .. took .. " s")
    end)

    it("accepts only numbers", function()
      local ep = lepoll.create()
      finally(function() ep:close() end)
      assert.are.equal("bad argument #1 to 'wait_timeout_after' (number expected, got no value)",
        H.msg_anywhere(function() ep:wait_timeout_after() end))
      assert.are.equal("bad argument #1 to 'wait_timeout_after' (number expected, got nil)",
        H.msg_anywhere(function() ep:wait_timeout_after(nil) end))
      for _, v in ipairs { "never", "immediately", "0" } do
        assert.are.equal("bad argument #1 to 'wait_timeout_after' (number expected, got string)",
          H.msg_anywhere(function() ep:wait_timeout_after(v) end))
      end
      assert.are.equal("bad argument #1 to 'wait_timeout_after' (number expected, got table)",
        H.msg_anywhere(function() ep:wait_timeout_after({}) end))
      assert.are.equal("bad argument #1 to 'wait_timeout_after' (timeout is NaN)",
        H.msg_anywhere(function() ep:wait_timeout_after(0 / 0) end))
    end)
  end)

  describe("signals", function()
    -- A timer as a backstop: should the signal not interrupt the wait, it
    -- returns 'ok' after 2 s instead of hanging the run.
    local function interrupted_wait(timeout)
      local ep = lepoll.create()
      local r, w = T.pipe()
      local backstop = T.timerfd(2)
      finally(function()
        T.alarm(0)
        ep:close()
        H.close(r, w, backstop)
      end)
      ep:set(r, "in")
      ep:set(backstop, "in")
      -- Fill the ready set first, to see the interrupted wait empty it.
      T.write(w, "x")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
      assert.are.equal("x", T.read(r))

      local alarms = T.alarms()
      assert.is_true(T.alarm(0.02))
      local res, took = timed(ep.wait, ep, timeout)
      assert.are.equal("interrupted", res)
      assert.are.equal(alarms + 1, T.alarms()) -- the handler ran
      assert.is_true(took >= 0.015 and took < 1.5, "returned after " .. took .. " s")
      assert.are.equal(0, #H.ready(ep))
      assert.are.equal(0, ep:fold_ready(0, function(n) return n + 1 end))
      assert.matches(", ready={}}$", tostring(ep))
      -- The set goes on working.
      T.write(w, "y")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
    end

    it("give 'interrupted' when a signal arrives during wait(nil)", function()
      interrupted_wait(nil)
    end)

    it("give 'interrupted' during a wait with a span too", function()
      interrupted_wait(1.5)
    end)
  end)

  describe("max_ready_events", function()
    it("caps each wait; the rest arrive on the next waits", function()
      local ep = lepoll.create(nil, 2)
      local pipes = ready_pipes(ep, 5)
      finally(function() ep:close(); close_pipes(pipes) end)
      local seen, counts = {}, {}
      for _ = 1, 3 do
        assert.are.equal("ok", ep:wait(0))
        local ready = H.ready(ep)
        counts[#counts + 1] = #ready
        for _, e in ipairs(ready) do
          assert.are.equal(IN, e[2])
          assert.is_nil(seen[e[1]], "fd " .. e[1] .. " reported twice")
          seen[e[1]] = true
          assert.are.equal("x", T.read(e[1])) -- consumed: not reported again
        end
      end
      assert.are.same({ 2, 2, 1 }, counts)
      for _, p in ipairs(pipes) do assert.is_true(seen[p[1]], "fd " .. p[1] .. " never reported") end
      assert.are.equal("timeout", ep:wait(0))
    end)

    it("caps each wait at 2 while all 5 stay ready, and every fd comes in turn", function()
      local ep = lepoll.create(nil, 2)
      local pipes = ready_pipes(ep, 5)
      finally(function() ep:close(); close_pipes(pipes) end)
      local seen, nseen = {}, 0
      for _ = 1, 3 do -- nothing read: the kernel rotates level-triggered events
        assert.are.equal("ok", ep:wait(0))
        local ready = H.ready(ep)
        assert.are.equal(2, #ready)
        for _, e in ipairs(ready) do
          assert.are.equal(IN, e[2])
          if not seen[e[1]] then seen[e[1]], nseen = true, nseen + 1 end
        end
      end
      assert.are.equal(5, nseen)
    end)
  end)

  describe("the ready set", function()
    it("is replaced by each wait", function()
      local ep = lepoll.create()
      local r1, w1 = T.pipe()
      local r2, w2 = T.pipe()
      finally(function() ep:close(); H.close(r1, w1, r2, w2) end)
      ep:set(r1, "in")
      ep:set(r2, "in")
      T.write(w1, "a")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r1, IN } }, H.ready(ep))
      T.read(r1)
      T.write(w2, "b")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r2, IN } }, H.ready(ep)) -- r1 is gone, not kept
    end)

    it("is left empty by a wait that times out", function()
      local ep = lepoll.create(1024)
      local r, w = T.pipe()
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      T.write(w, "a")
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ { r, IN } }, H.ready(ep))
      T.read(r)
      assert.are.equal("timeout", ep:wait(0.001))
      assert.are.same({}, H.ready(ep))
      assert.are.equal(string.format(
        'epoll{fd=%d, num_file_descrs=1024, max_ready_events=256, flags_by_fd={[%d]="in"}, ready={}}',
        ep:getfd(), r), tostring(ep))
    end)
  end)
end)
