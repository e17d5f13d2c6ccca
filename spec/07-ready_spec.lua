local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local IN = lepoll.IN
local unpack = table.unpack or rawget(_G, "unpack") -- 5.1 and LuaJIT: a global

local WAIT_REFUSED = "cannot wait while iter_ready or fold_ready runs on this epoll set"
local CLEAR_REFUSED = "cannot clear the ready set while iter_ready or fold_ready runs on it"

local C = H.cleanups(function(fn) finally(fn) end)
local defer, watched_pipes = C.defer, C.watched_pipes

describe("the ready set", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  -- n pipes, each with one byte waiting, after a wait that saw them all;
  -- the bytes are written in pipe order, so that is the kernel's order.
  local function ready_pipes(n)
    local ep, pipes = watched_pipes(n, "x")
    assert.are.equal("ok", ep:wait(0))
    return ep, pipes
  end

  local function fds_of(pipes, ...)
    local list = {}
    for i = 1, select("#", ...) do list[i] = { pipes[select(i, ...)].r, IN } end
    return list
  end

  describe("iter_ready", function()
    it("calls f(fd, flags) for each event, in the kernel's order", function()
      local ep, p = watched_pipes(3)
      -- Readiness in the order 2, 3, 1: the kernel queues events in the
      -- order the descriptors became ready.
      T.write(p[2].w, "b")
      T.write(p[3].w, "c")
      T.write(p[1].w, "a")
      assert.are.equal("ok", ep:wait(0))
      local seen = {}
      local nret = select("#", ep:iter_ready(function(fd, flags, extra)
        assert.is_nil(extra)
        seen[#seen + 1] = { fd, flags }
      end))
      assert.are.equal(0, nret)
      assert.are.same(fds_of(p, 2, 3, 1), seen)
      -- Iterating consumes nothing: a second pass gives the same events.
      assert.are.same(fds_of(p, 2, 3, 1), H.ready(ep))
    end)

    it("reports the exact flags of each event", function()
      local ep = lepoll.create()
      local r, w = assert(T.pipe())
      local a, b = assert(T.socketpair())
      defer(function()
        ep:close()
        H.close(r, w, a, b)
      end)
      ep:set(r, "in")
      ep:set(a, "in|out")
      T.write(b, "x")
      H.close(w) -- the pipe's reader sees HUP without data
      w = nil
      assert.are.equal("ok", ep:wait(0))
      assert.are.same({ [r] = "hup", [a] = "in|out" }, H.ready_names(ep))
    end)

    it("calls nothing when the last wait timed out", function()
      local ep = watched_pipes(2)
      assert.are.equal("timeout", ep:wait(0))
      local calls = 0
      ep:iter_ready(function() calls = calls + 1 end)
      assert.are.equal(0, calls)
    end)

    it("calls nothing on a new set that never waited", function()
      local ep = watched_pipes(1)
      local calls = 0
      ep:iter_ready(function() calls = calls + 1 end)
      assert.are.equal(0, calls)
    end)
  end)

  describe("fold_ready", function()
    it("threads f(acc, fd, flags) in the kernel's order and returns the result", function()
      local ep, p = watched_pipes(3)
      T.write(p[3].w, "c")
      T.write(p[1].w, "a")
      T.write(p[2].w, "b")
      assert.are.equal("ok", ep:wait(0))
      local init = {}
      local calls = 0
      local result = ep:fold_ready(init, function(acc, fd, flags, extra)
        assert.is_nil(extra)
        calls = calls + 1
        local out = { unpack(acc) }
        out[#out + 1] = { fd, flags }
        return out
      end)
      assert.are.equal(3, calls)
      assert.are.same(fds_of(p, 3, 1, 2), result)
      assert.are.same({}, init) -- a fresh accumulator each step
    end)

    it("returns exactly one value, what the last call returned", function()
      local ep, p = ready_pipes(2)
      local n = select("#", ep:fold_ready(0, function(acc, fd) return acc + fd end))
      assert.are.equal(1, n)
      assert.are.equal(p[1].r + p[2].r, ep:fold_ready(0, function(acc, fd) return acc + fd end))
      -- A callback returning nothing makes the accumulator nil.
      local accs = {}
      local r = ep:fold_ready("init", function(acc) accs[#accs + 1] = tostring(acc) end)
      assert.is_nil(r)
      assert.are.same({ "init", "nil" }, accs)
    end)

    it("returns init untouched when the ready set is empty", function()
      local ep = watched_pipes(2)
      local init = {}
      local calls = 0
      local function f() calls = calls + 1 return "changed" end
      -- Never waited.
      assert.are.equal(init, ep:fold_ready(init, f))
      -- Waited, timed out.
      assert.are.equal("timeout", ep:wait(0))
      assert.are.equal(init, ep:fold_ready(init, f))
      assert.are.equal(42, ep:fold_ready(42, f))
      assert.are.equal(1, select("#", ep:fold_ready(nil, f)))
      assert.is_nil(ep:fold_ready(nil, f))
      assert.are.equal(0, calls)
    end)
  end)

  describe("does not filter against the table", function()
    it("still reports a descriptor removed after the wait", function()
      local ep, p = ready_pipes(2)
      ep:remove(p[1].r)
      assert.is_nil(ep:find(p[1].r))
      assert.are.same(fds_of(p, 1, 2), H.ready(ep))
      assert.are.same(fds_of(p, 1, 2), ep:fold_ready({}, function(acc, fd, flags)
        acc[#acc + 1] = { fd, flags }
        return acc
      end))
      -- The next wait knows only the table.
      assert.are.equal("ok", ep:wait(0))
      assert.are.same(fds_of(p, 2), H.ready(ep))
    end)

    it("reports the flags of the wait, not the table's current ones", function()
      local ep, p = ready_pipes(1)
      ep:set(p[1].r, "out|et")
      assert.are.same(fds_of(p, 1), H.ready(ep))
    end)
  end)

  describe("clear_ready", function()
    it("empties the ready set and nothing else", function()
      local ep, p = ready_pipes(3)
      assert.are.equal(0, select("#", ep:clear_ready()))
      assert.are.same({}, H.ready(ep))
      assert.are.equal("init", ep:fold_ready("init", function() return "changed" end))
      assert.matches("ready={}}$", tostring(ep))
      -- The table is untouched and the data still there: the next wait
      -- reports the level-triggered pipes again.
      assert.are.equal(3, #ep)
      assert.are.equal("ok", ep:wait(0))
      assert.are.same(fds_of(p, 1, 2, 3), H.ready(ep))
    end)

    it("is harmless on an empty ready set, twice", function()
      local ep = watched_pipes(1)
      ep:clear_ready()
      ep:clear_ready()
      assert.are.same({}, H.ready(ep))
    end)
  end)

  describe("callbacks that change the set", function()
    it("may remove every descriptor during iter_ready; all events still come", function()
      local ep, p = ready_pipes(3)
      local seen = {}
      ep:iter_ready(function(fd, flags)
        if #seen == 0 then
          for _, q in ipairs(p) do ep:remove(q.r) end
        end
        seen[#seen + 1] = { fd, flags }
      end)
      assert.are.same(fds_of(p, 1, 2, 3), seen)
      assert.are.equal(0, #ep)
      ep:invariant()
      assert.are.equal("timeout", ep:wait(0))
    end)

    it("may call set, find and iter during iter_ready", function()
      local ep, p = ready_pipes(2)
      local extra_r, extra_w = assert(T.pipe())
      defer(function() H.close(extra_r, extra_w) end)
      local found, listed = {}, {}
      ep:iter_ready(function(fd)
        found[#found + 1] = ep:find(fd)
        if fd == p[1].r then ep:set(extra_r, "in|et") end
        ep:iter(function(wfd) listed[#listed + 1] = wfd end)
      end)
      assert.are.same({ IN, IN }, found)
      local first = { p[1].r, p[2].r, extra_r }
      table.sort(first)
      local expected = {}
      for _, fd in ipairs(first) do expected[#expected + 1] = fd end
      for _, fd in ipairs(first) do expected[#expected + 1] = fd end
      assert.are.same(expected, listed)
      assert.are.equal(lepoll.flags("in|et"), ep:find(extra_r))
      ep:invariant()
    end)

    it("ends iter_ready after the callback that closed the set", function()
      local ep = ready_pipes(3)
      local calls = 0
      ep:iter_ready(function()
        calls = calls + 1
        ep:close()
      end)
      assert.are.equal(1, calls)
      assert.are.equal("epoll{closed}", tostring(ep))
    end)

    it("ends iter_ready after the callback that closed the set, from the second event", function()
      local ep, p = ready_pipes(3)
      local seen = {}
      ep:iter_ready(function(fd)
        seen[#seen + 1] = fd
        if #seen == 2 then ep:close() end
      end)
      assert.are.same({ p[1].r, p[2].r }, seen)
    end)

    it("ends fold_ready after the callback that closed the set, returning its result", function()
      local ep, p = ready_pipes(3)
      local calls = 0
      local result = ep:fold_ready("init", function(acc, fd)
        calls = calls + 1
        ep:close()
        return acc .. ":" .. fd
      end)
      assert.are.equal(1, calls)
      assert.are.equal("init:" .. p[1].r, result)
      assert.are.equal("epoll{closed}", tostring(ep))
    end)
  end)

  describe("wait and clear_ready inside a ready-set iteration", function()
    local function check_usable(ep, p)
      assert.are.equal("ok", ep:wait(0))
      assert.are.same(fds_of(p, 1, 2), H.ready(ep))
      ep:clear_ready()
      assert.are.same({}, H.ready(ep))
      assert.are.equal("ok", ep:wait(0))
      assert.are.same(fds_of(p, 1, 2), H.ready(ep))
    end

    it("refuses wait inside iter_ready with a plain message", function()
      local ep, p = ready_pipes(2)
      local errs = {}
      ep:iter_ready(function()
        local ok, err = pcall(ep.wait, ep, 0)
        assert.is_false(ok)
        errs[#errs + 1] = err
      end)
      assert.are.same({ WAIT_REFUSED, WAIT_REFUSED }, errs)
      -- The refused wait changed nothing: the events are still there.
      assert.are.same(fds_of(p, 1, 2), H.ready(ep))
      check_usable(ep, p)
    end)

    it("refuses every form of wait inside fold_ready", function()
      local ep, p = ready_pipes(2)
      local errs = ep:fold_ready({}, function(acc)
        for _, args in ipairs({ { 0 }, { nil }, { "never" }, { "immediately" }, { 0.001 } }) do
          local ok, err = pcall(ep.wait, ep, args[1])
          assert.is_false(ok)
          acc[#acc + 1] = err
        end
        local ok, err = pcall(ep.wait_timeout_after, ep, 0.001)
        assert.is_false(ok)
        acc[#acc + 1] = err
        return acc
      end)
      assert.are.equal(12, #errs)
      for _, err in ipairs(errs) do assert.are.equal(WAIT_REFUSED, err) end
      check_usable(ep, p)
    end)

    it("refuses clear_ready inside iter_ready and fold_ready", function()
      local ep, p = ready_pipes(2)
      local errs = {}
      ep:iter_ready(function()
        local ok, err = pcall(ep.clear_ready, ep)
        assert.is_false(ok)
        errs[#errs + 1] = err
      end)
      ep:fold_ready(nil, function()
        local ok, err = pcall(ep.clear_ready, ep)
        assert.is_false(ok)
        errs[#errs + 1] = err
      end)
      assert.are.same({ CLEAR_REFUSED, CLEAR_REFUSED, CLEAR_REFUSED, CLEAR_REFUSED }, errs)
      assert.are.same(fds_of(p, 1, 2), H.ready(ep))
      check_usable(ep, p)
    end)

    it("leaves the set usable when the refusal propagates out of the callback", function()
      local ep, p = ready_pipes(2)
      assert.are.equal(WAIT_REFUSED, H.msg_anywhere(function()
        ep:iter_ready(function() ep:wait(0) end)
      end))
      assert.are.equal(CLEAR_REFUSED, H.msg_anywhere(function()
        ep:fold_ready(0, function() ep:clear_ready() end)
      end))
      check_usable(ep, p)
    end)

    it("refuses wait inside a nested iteration and allows it after both", function()
      local ep, p = ready_pipes(2)
      local errs = {}
      ep:iter_ready(function()
        ep:fold_ready(nil, function()
          local ok, err = pcall(ep.wait, ep, 0)
          assert.is_false(ok)
          errs[#errs + 1] = err
        end)
        -- Still inside the outer iteration after the inner one ended.
        local ok, err = pcall(ep.wait, ep, 0)
        assert.is_false(ok)
        errs[#errs + 1] = err
      end)
      assert.are.equal(6, #errs)
      for _, err in ipairs(errs) do assert.are.equal(WAIT_REFUSED, err) end
      check_usable(ep, p)
    end)

    it("allows waiting on another set inside the callback", function()
      local ep, p = ready_pipes(2)
      local other = lepoll.create()
      defer(function() other:close() end)
      other:set(p[2].r, IN)
      local results = {}
      ep:iter_ready(function()
        results[#results + 1] = other:wait(0)
        other:clear_ready()
      end)
      assert.are.same({ "ok", "ok" }, results)
    end)
  end)

  describe("errors thrown by a callback", function()
    local function check_usable(ep, p)
      assert.are.same(fds_of(p, 1, 2), H.ready(ep))
      assert.are.equal("ok", ep:wait(0))
      assert.are.same(fds_of(p, 1, 2), H.ready(ep))
      assert.are.equal(2, ep:fold_ready(0, function(acc) return acc + 1 end))
      ep:clear_ready()
      assert.are.same({}, H.ready(ep))
      assert.are.equal("ok", ep:wait(0))
      assert.are.same(fds_of(p, 1, 2), H.ready(ep))
      ep:invariant()
    end

    it("propagate a string unchanged from iter_ready", function()
      local ep, p = ready_pipes(2)
      local ok, err = pcall(ep.iter_ready, ep, function() error("boom", 0) end)
      assert.is_false(ok)
      assert.are.equal("boom", err)
      check_usable(ep, p)
    end)

    it("leave the set usable when they end a coroutine that is never closed", function()
      local ep, p = ready_pipes(2)
      local thrown = { code = 9 }
      for _, call in ipairs({
        function() ep:iter_ready(function() error(thrown) end) end,
        function() ep:fold_ready(0, function() error(thrown) end) end,
      }) do
        local co = coroutine.create(call)
        local ok, err = coroutine.resume(co)
        assert.is_false(ok)
        assert.is_true(rawequal(thrown, err))
        assert.are.equal("dead", coroutine.status(co))
        -- dropped without coroutine.close: nothing may wait for it
        co = nil -- luacheck: ignore co
        check_usable(ep, p)
      end
    end)

    it("refuse wait in a coroutine resumed by a callback, and leave the set usable", function()
      local ep, p = ready_pipes(2)
      local results = {}
      ep:iter_ready(function()
        -- no tail call: LuaJIT would drop the error's position
        local co = coroutine.create(function() local r = ep:wait(0); return r end)
        local ok, err = coroutine.resume(co)
        assert.is_false(ok)
        results[#results + 1] = err:match("^spec/07%-ready_spec%.lua:%d+: (.*)$")
      end)
      assert.are.same({ WAIT_REFUSED, WAIT_REFUSED }, results)
      check_usable(ep, p)
    end)

    it("propagate a table, the same object, from iter_ready", function()
      local ep, p = ready_pipes(2)
      local thrown = { code = 7 }
      local calls = 0
      local ok, err = pcall(ep.iter_ready, ep, function()
        calls = calls + 1
        error(thrown)
      end)
      assert.is_false(ok)
      assert.is_true(rawequal(thrown, err))
      assert.are.equal(1, calls) -- the iteration stopped at the error
      check_usable(ep, p)
    end)

    it("propagate a string and a table unchanged from fold_ready", function()
      local ep, p = ready_pipes(2)
      local ok, err = pcall(ep.fold_ready, ep, 0, function(acc)
        if acc == 1 then error("second", 0) end
        return acc + 1
      end)
      assert.is_false(ok)
      assert.are.equal("second", err)
      check_usable(ep, p)
      local thrown = setmetatable({}, { __tostring = function() return "custom" end })
      ok, err = pcall(ep.fold_ready, ep, 0, function() error(thrown) end)
      assert.is_false(ok)
      assert.is_true(rawequal(thrown, err))
      check_usable(ep, p)
    end)

    it("keep their position information when raised with a level", function()
      local ep, p = ready_pipes(2)
      local where
      local ok, err = pcall(ep.iter_ready, ep, function()
        local info = debug.getinfo(1, "Sl")
        where = info.short_src .. ":" .. (info.currentline + 2)
        error("located")
      end)
      assert.is_false(ok)
      assert.are.equal(where .. ": located", err)
      check_usable(ep, p)
    end)

    -- Before 5.4 the loop runs in a protected call that ends the busy
    -- state; from 5.4 a to-be-closed guard does. Either way no error may
    -- leave the set busy, however many there are.
    it("leave the set usable after many errors in a row, nested or not", function()
      local ep, p = ready_pipes(2)
      for i = 1, 100 do
        local ok, err = pcall(ep.iter_ready, ep, function() error(i, 0) end)
        assert.is_false(ok)
        assert.are.equal(i, err)
        ok, err = pcall(ep.fold_ready, ep, 0, function() error(-i, 0) end)
        assert.is_false(ok)
        assert.are.equal(-i, err)
        ok, err = pcall(ep.iter_ready, ep, function()
          ep:fold_ready(0, function() error(i + 0.5, 0) end)
        end)
        assert.is_false(ok)
        assert.are.equal(i + 0.5, err)
      end
      check_usable(ep, p)
    end)

    it("propagate from a nested iteration and leave both levels usable", function()
      local ep, p = ready_pipes(2)
      local thrown = {}
      local ok, err = pcall(ep.iter_ready, ep, function()
        ep:fold_ready(0, function() error(thrown) end)
      end)
      assert.is_false(ok)
      assert.is_true(rawequal(thrown, err))
      check_usable(ep, p)
    end)
  end)

  it("supports iter_ready nested in iter_ready", function()
    local ep, p = ready_pipes(2)
    local a, b = p[1].r, p[2].r
    local trace = {}
    ep:iter_ready(function(fd)
      trace[#trace + 1] = "outer " .. fd
      ep:iter_ready(function(inner) trace[#trace + 1] = "inner " .. inner end)
    end)
    assert.are.same({
      "outer " .. a, "inner " .. a, "inner " .. b,
      "outer " .. b, "inner " .. a, "inner " .. b,
    }, trace)
    -- fold_ready nested in fold_ready threads both accumulators.
    local total = ep:fold_ready(0, function(acc)
      return acc + ep:fold_ready(0, function(n) return n + 1 end)
    end)
    assert.are.equal(4, total)
    assert.are.equal("ok", ep:wait(0))
  end)

  it("accepts callables: tables with __call", function()
    local ep, p = ready_pipes(2)
    local seen = {}
    local callable = setmetatable({}, { __call = function(self, fd, flags)
      seen[#seen + 1] = { self, fd, flags }
    end })
    ep:iter_ready(callable)
    assert.are.same({ { callable, p[1].r, IN }, { callable, p[2].r, IN } }, seen)
    assert.is_true(rawequal(callable, seen[1][1]))
    local folder = setmetatable({}, { __call = function(_, acc, fd) return acc + fd end })
    assert.are.equal(p[1].r + p[2].r, ep:fold_ready(0, folder))
  end)

  it("refuses a non-callable with an argument error", function()
    local ep = ready_pipes(1)
    for _, bad in ipairs({ 42, "f", {}, true, setmetatable({}, {}) }) do
      local t = type(bad)
      assert.are.equal("bad argument #1 to 'iter_ready' (function expected, got " .. t .. ")",
        H.msg_anywhere(function() ep:iter_ready(bad) end))
      assert.are.equal("bad argument #2 to 'fold_ready' (function expected, got " .. t .. ")",
        H.msg_anywhere(function() ep:fold_ready(0, bad) end))
    end
    assert.are.equal("bad argument #1 to 'iter_ready' (function expected, got no value)",
      H.msg_anywhere(function() ep:iter_ready() end))
    assert.are.equal("bad argument #2 to 'fold_ready' (function expected, got nil)",
      H.msg_anywhere(function() ep:fold_ready(0, nil) end))
    -- Refused even when the ready set is empty, and the set is unharmed.
    ep:clear_ready()
    assert.are.equal("bad argument #1 to 'iter_ready' (function expected, got number)",
      H.msg_anywhere(function() ep:iter_ready(1) end))
    assert.are.equal("bad argument #2 to 'fold_ready' (function expected, got number)",
      H.msg_anywhere(function() ep:fold_ready(0, 1) end))
    assert.are.equal("ok", ep:wait(0))
  end)
end)
