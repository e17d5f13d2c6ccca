local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local IN = lepoll.IN
local CLOSED = "attempt to use a closed epoll set"
local PROXY = "table with __newindex/__index metamethods; ready_into writes raw"

local C = H.cleanups(function(fn) finally(fn) end)
local defer, watched_pipes = C.defer, C.watched_pipes

-- The argument error ready_into raises for argument #n.
local function bad(n, reason)
  return "bad argument #" .. n .. " to 'ready_into' (" .. reason .. ")"
end

-- The ready set as iter_ready gives it: two lists, fds and flags.
local function iter_lists(ep)
  local fds, flags = {}, {}
  ep:iter_ready(function(fd, fl)
    fds[#fds + 1] = fd
    flags[#flags + 1] = fl
  end)
  return fds, flags
end

-- A shallow copy, to compare a table with what it was.
local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

describe("set:ready_into", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  -- n pipes, each with one byte waiting, after a wait that saw them all,
  -- in pipe order.
  local function ready_pipes(n)
    local ep, pipes = watched_pipes(n, "x")
    assert.are.equal("ok", ep:wait(0))
    return ep, pipes
  end

  describe("stores the ready set", function()
    it("in the same order as iter_ready, fds and flags, and returns n", function()
      local ep, p = watched_pipes(3)
      -- Ready in the order 2, 3, 1: the kernel's order is not fd order.
      T.write(p[2].w, "b")
      T.write(p[3].w, "c")
      T.write(p[1].w, "a")
      assert.are.equal("ok", ep:wait(0))
      local fds, flags = {}, {}
      local nret = { ep:ready_into(fds, flags) }
      assert.are.same({ 3 }, nret) -- exactly one result
      assert.are.same({ p[2].r, p[3].r, p[1].r }, fds)
      assert.are.same({ IN, IN, IN }, flags)
      local ifds, iflags = iter_lists(ep)
      assert.are.same(ifds, fds)
      assert.are.same(iflags, flags)
    end)

    it("stores the exact flags of each event, as iter_ready passes them", function()
      local ep = C.new_set()
      local r, w = assert(T.pipe())
      local a, b = C.socketpair()
      defer(function() H.close(r, w) end)
      ep:set(r, "in")
      ep:set(a, "in|out")
      T.write(b, "x")
      H.close(w) -- the pipe's reader sees HUP without data
      w = nil
      assert.are.equal("ok", ep:wait(0))
      local fds, flags = {}, {}
      assert.are.equal(2, ep:ready_into(fds, flags))
      local ifds, iflags = iter_lists(ep)
      assert.are.same(ifds, fds)
      assert.are.same(iflags, flags)
      local names = {}
      for i = 1, 2 do names[fds[i]] = lepoll.flagnames(flags[i]) end
      assert.are.same({ [r] = "hup", [a] = "in|out" }, names)
    end)

    it("stores integers", function()
      local ep = ready_pipes(2)
      local fds, flags = {}, {}
      assert.are.equal("integer", H.numtype(ep:ready_into(fds, flags)))
      for i = 1, 2 do
        assert.are.equal("integer", H.numtype(fds[i]))
        assert.are.equal("integer", H.numtype(flags[i]))
      end
    end)

    it("stores only the fds when flags is omitted or nil", function()
      local ep, p = ready_pipes(2)
      local fds = {}
      assert.are.equal(2, ep:ready_into(fds))
      assert.are.same({ p[1].r, p[2].r }, fds)
      fds = {}
      assert.are.equal(2, ep:ready_into(fds, nil))
      assert.are.same({ p[1].r, p[2].r }, fds)
    end)

    it("works on eventfds as on pipes", function()
      local ep = C.new_set()
      local efd = T.eventfd()
      local r, w = C.pipe()
      defer(function() H.close(efd) end)
      ep:set(efd, "in")
      ep:set(r, "in")
      T.write(w, "x")
      assert.is_true(T.eventfd_write(efd, 5))
      assert.are.equal("ok", ep:wait(0))
      local fds, flags = {}, {}
      assert.are.equal(2, ep:ready_into(fds, flags))
      assert.are.same({ r, efd }, fds)
      assert.are.same({ IN, IN }, flags)
      assert.are.equal(5, T.read_u64(efd))
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal(1, ep:ready_into(fds, flags))
      assert.are.equal(r, fds[1])
    end)

    it("stores at most max_ready_events, the rest on the next waits", function()
      local _, p = watched_pipes(5, "x")
      local small = C.new_set(nil, 2)
      for i = 1, 5 do small:set(p[i].r, "in|et") end
      local seen, fds, counts = {}, {}, {}
      for _ = 1, 3 do
        assert.are.equal("ok", small:wait(0))
        local n = small:ready_into(fds)
        counts[#counts + 1] = n
        for i = 1, n do seen[#seen + 1] = fds[i] end
      end
      assert.are.same({ 2, 2, 1 }, counts)
      assert.are.equal("timeout", small:wait(0))
      assert.are.equal(0, small:ready_into(fds))
      table.sort(seen)
      local all = {}
      for i = 1, 5 do all[i] = p[i].r end
      table.sort(all)
      assert.are.same(all, seen)
    end)

    it("does not filter against the table, as iter_ready", function()
      local ep, p = ready_pipes(2)
      ep:remove(p[1].r)
      ep:set(p[2].r, "out|et")
      local fds, flags = {}, {}
      assert.are.equal(2, ep:ready_into(fds, flags))
      assert.are.same({ p[1].r, p[2].r }, fds)
      assert.are.same({ IN, IN }, flags)
    end)
  end)

  describe("treats the tables as buffers", function()
    it("leaves every entry past n untouched, and every other key", function()
      local ep, p = ready_pipes(2)
      local fds = { 101, 102, 103, 104, 105, x = "keep", [0] = "zero" }
      local flags = { -1, -2, -3, [7] = -7, name = true }
      assert.are.equal(2, ep:ready_into(fds, flags))
      assert.are.same({ p[1].r, p[2].r, 103, 104, 105, x = "keep", [0] = "zero" }, fds)
      assert.are.same({ IN, IN, -3, [7] = -7, name = true }, flags)
    end)

    it("is reusable across waits of different sizes: n is the count", function()
      local ep, p = watched_pipes(3)
      local fds, flags = {}, {}
      T.write(p[1].w, "a")
      T.write(p[2].w, "b")
      T.write(p[3].w, "c")
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal(3, ep:ready_into(fds, flags))
      assert.are.equal("b", T.read(p[2].r, 1))
      assert.are.equal("c", T.read(p[3].r, 1))
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal(1, ep:ready_into(fds, flags))
      -- The first entry is new; the two after it are the last wait's.
      assert.are.same({ p[1].r, p[2].r, p[3].r }, fds)
      assert.are.same({ IN, IN, IN }, flags)
    end)

    it("writes raw, reading the metatable's fields raw too", function()
      local ep, p = ready_pipes(2)
      -- A metatable with other metamethods is fine; none of them runs.
      local calls = 0
      local function count() calls = calls + 1 end
      local mt = { __len = function() count() return 0 end, __call = count, __eq = count }
      -- The metatable's own metatable would answer a non-raw read of
      -- __index or __newindex: ready_into must not ask it.
      setmetatable(mt, { __index = function() count() return count end })
      local fds = setmetatable({}, mt)
      local flags = setmetatable({}, mt)
      assert.are.equal(2, ep:ready_into(fds, flags))
      assert.are.equal(0, calls)
      assert.are.equal(p[1].r, rawget(fds, 1))
      assert.are.equal(p[2].r, rawget(fds, 2))
      assert.are.equal(IN, rawget(flags, 1))
      assert.are.equal(IN, rawget(flags, 2))
    end)
  end)

  describe("returns 0 and writes nothing", function()
    local function check_empty(ep)
      local fds, flags = { 1, 2, 3 }, { 4, 5, [9] = 6 }
      local before_fds, before_flags = copy(fds), copy(flags)
      assert.are.equal(0, ep:ready_into(fds, flags))
      assert.are.equal(0, ep:ready_into(fds))
      assert.are.same(before_fds, fds)
      assert.are.same(before_flags, flags)
    end

    it("on a new set that never waited", function()
      check_empty(watched_pipes(2, "x"))
    end)

    it("after clear_ready", function()
      local ep = ready_pipes(3)
      assert.are.equal(3, ep:ready_into({}))
      ep:clear_ready()
      check_empty(ep)
      -- The table is untouched: the next wait reports the pipes again.
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal(3, ep:ready_into({}))
    end)

    it("after a wait that timed out", function()
      local ep = ready_pipes(2)
      assert.are.equal(2, ep:ready_into({}))
      local idle = C.new_set()
      local r = C.pipe()
      idle:set(r, "in")
      assert.are.equal("timeout", idle:wait(0))
      check_empty(idle)
      assert.are.equal("timeout", idle:wait(0.001))
      check_empty(idle)
    end)
  end)

  describe("does not consume the ready set", function()
    it("iter_ready, fold_ready, tostring and itself see the same events after", function()
      local ep, p = ready_pipes(3)
      local shown = tostring(ep)
      local fds, flags = {}, {}
      assert.are.equal(3, ep:ready_into(fds, flags))
      assert.are.equal(3, ep:ready_into(fds, flags))
      local ifds, iflags = iter_lists(ep)
      assert.are.same(fds, ifds)
      assert.are.same(flags, iflags)
      assert.are.equal(p[1].r + p[2].r + p[3].r, ep:fold_ready(0, function(acc, fd) return acc + fd end))
      assert.are.equal(shown, tostring(ep))
      local again = {}
      assert.are.equal(3, ep:ready_into(again))
      assert.are.same(fds, again)
      ep:clear_ready()
      assert.are.same({}, H.ready(ep))
      assert.are.equal(0, ep:ready_into(again))
    end)

    it("may be called inside iter_ready and fold_ready callbacks", function()
      local ep, p = ready_pipes(2)
      local expected = { p[1].r, p[2].r }
      local seen, counts = {}, {}
      ep:iter_ready(function(fd)
        local fds = {}
        counts[#counts + 1] = ep:ready_into(fds)
        assert.are.same(expected, fds)
        seen[#seen + 1] = fd
      end)
      assert.are.same({ 2, 2 }, counts)
      assert.are.same(expected, seen) -- the iteration went on unharmed
      local total = ep:fold_ready(0, function(acc)
        local fds, flags = {}, {}
        return acc + ep:ready_into(fds, flags)
      end)
      assert.are.equal(4, total)
      -- Nothing was left busy.
      assert.are.equal("ok", ep:wait(0))
      ep:clear_ready()
    end)

    it("hands over a copy: the loop over it may wait, clear_ready and close the set", function()
      local ep, p = ready_pipes(3)
      local fds, flags = {}, {}
      local n = ep:ready_into(fds, flags)
      assert.are.equal(3, n)
      local seen, results = {}, {}
      for i = 1, n do
        -- No call into lepoll is running here, unlike in an iter_ready
        -- callback: the set is not busy.
        ep:clear_ready()
        results[#results + 1] = ep:wait(0)
        if i == 2 then assert.are.equal("x", T.read(p[1].r, 1)) end
        if i == n then ep:close() end
        seen[i] = { fds[i], flags[i] }
      end
      assert.are.same({ "ok", "ok", "ok" }, results)
      assert.are.same({ { p[1].r, IN }, { p[2].r, IN }, { p[3].r, IN } }, seen)
      assert.are.equal(CLOSED, H.msg_of(function() ep:ready_into(fds) end))
    end)

    it("raises the closed-set error after a callback closed the set", function()
      local ep = ready_pipes(2)
      local errs = {}
      ep:iter_ready(function()
        ep:close()
        local ok, err = pcall(ep.ready_into, ep, {})
        assert.is_false(ok)
        errs[#errs + 1] = err
      end)
      assert.are.same({ CLOSED }, errs)
    end)
  end)

  describe("level- and edge-triggered descriptors", function()
    it("report level-triggered pipes on every wait, edge-triggered ones once per edge", function()
      local ep = C.new_set()
      local lt, et = {}, {}
      for i = 1, 2 do
        local r, w = C.pipe()
        lt[i] = { r = r, w = w }
        ep:set(r, "in")
        r, w = C.pipe()
        et[i] = { r = r, w = w }
        ep:set(r, "in|et")
      end
      for i = 1, 2 do
        T.write(lt[i].w, "x")
        T.write(et[i].w, "x")
      end
      local fds, flags = {}, {}
      local function sorted_fds(n)
        local l = {}
        for i = 1, n do l[i] = fds[i] end
        table.sort(l)
        return l
      end
      local function sorted(...)
        local l = { ... }
        table.sort(l)
        return l
      end
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal(4, ep:ready_into(fds, flags))
      assert.are.same(sorted(lt[1].r, lt[2].r, et[1].r, et[2].r), sorted_fds(4))
      -- The data is still there: only the level-triggered ones again.
      for _ = 1, 3 do
        assert.are.equal("ok", ep:wait(0))
        assert.are.equal(2, ep:ready_into(fds, flags))
        assert.are.same(sorted(lt[1].r, lt[2].r), sorted_fds(2))
        assert.are.same({ IN, IN }, { flags[1], flags[2] })
      end
      -- A new edge on one edge-triggered pipe: it comes back, once.
      T.write(et[2].w, "y")
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal(3, ep:ready_into(fds, flags))
      assert.are.same(sorted(lt[1].r, lt[2].r, et[2].r), sorted_fds(3))
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal(2, ep:ready_into(fds, flags))
      -- Drained, the level-triggered ones go quiet too.
      for i = 1, 2 do T.read(lt[i].r, 16) end
      assert.are.equal("timeout", ep:wait(0))
      assert.are.equal(0, ep:ready_into(fds, flags))
    end)

    it("report an edge-triggered eventfd once per write", function()
      local ep = C.new_set()
      local efd = T.eventfd()
      defer(function() H.close(efd) end)
      ep:set(efd, "in|et")
      local fds, flags = {}, {}
      assert.is_true(T.eventfd_write(efd, 1))
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal(1, ep:ready_into(fds, flags))
      assert.are.same({ efd }, fds)
      assert.are.same({ IN }, flags)
      assert.are.equal("timeout", ep:wait(0))
      assert.are.equal(0, ep:ready_into(fds, flags))
      assert.is_true(T.eventfd_write(efd, 1))
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal(1, ep:ready_into(fds, flags))
    end)
  end)

  describe("argument errors", function()
    it("refuse a fds that is no table", function()
      local ep = ready_pipes(1)
      for _, v in ipairs({ 42, "t", true, print }) do
        assert.are.equal(bad(1, "table expected, got " .. type(v)),
          H.msg_of(function() ep:ready_into(v) end))
        assert.are.equal(bad(1, "table expected, got " .. type(v)),
          H.msg_of(function() ep:ready_into(v, {}) end))
      end
      assert.are.equal(bad(1, "table expected, got nil"),
        H.msg_of(function() ep:ready_into(nil) end))
      assert.are.equal(bad(1, "table expected, got no value"),
        H.msg_of(function() ep:ready_into() end))
      -- A full userdata is named by its __name (io's handles have one from 5.3).
      assert.are.equal(bad(1, "table expected, got " .. (H.LUA_VERSION >= 503 and "FILE*" or "userdata")),
        H.msg_of(function() ep:ready_into(io.stdout) end))
      assert.are.equal(bad(1, "table expected, got lepoll.set"),
        H.msg_of(function() ep:ready_into(ep) end))
    end)

    it("refuse a flags given that is no table", function()
      local ep = ready_pipes(1)
      local fds = { "untouched" }
      for _, v in ipairs({ 42, "t", false, print }) do
        assert.are.equal(bad(2, "table expected, got " .. type(v)),
          H.msg_of(function() ep:ready_into(fds, v) end))
      end
      assert.are.same({ "untouched" }, fds) -- refused before anything is written
    end)

    it("refuse a table whose metatable has __index or __newindex", function()
      local ep = ready_pipes(1)
      local proxies = {
        setmetatable({}, { __index = {} }),
        setmetatable({}, { __index = function() end }),
        setmetatable({}, { __newindex = {} }),
        setmetatable({}, { __newindex = function() end }),
        setmetatable({}, { __index = {}, __newindex = rawset }),
        setmetatable({}, { __index = false }),
        -- __metatable hides the metatable from getmetatable, not from C.
        setmetatable({}, { __index = {}, __metatable = "locked" }),
      }
      for _, proxy in ipairs(proxies) do
        assert.are.equal(bad(1, PROXY), H.msg_of(function() ep:ready_into(proxy) end))
        assert.are.equal(bad(1, PROXY), H.msg_of(function() ep:ready_into(proxy, {}) end))
        assert.are.equal(bad(2, PROXY), H.msg_of(function() ep:ready_into({}, proxy) end))
        assert.is_nil(rawget(proxy, 1))
      end
      -- The class idiom, a metatable that is its own __index, is a proxy too.
      local Class = {}
      Class.__index = Class
      assert.are.equal(bad(1, PROXY), H.msg_of(function() ep:ready_into(setmetatable({}, Class)) end))
      -- An empty metatable is fine.
      assert.are.equal(1, ep:ready_into(setmetatable({}, {}), setmetatable({}, {})))
    end)

    it("refuse the same table for fds and flags", function()
      local ep = ready_pipes(1)
      local t = { "untouched" }
      local msg = H.msg_of(function() ep:ready_into(t, t) end)
      assert.are.equal(bad(2, "flags must be another table than fds"), msg)
      assert.are.same({ "untouched" }, t)
    end)

    it("are raised on an empty ready set too", function()
      local ep = watched_pipes(1)
      assert.are.equal(bad(1, "table expected, got number"),
        H.msg_of(function() ep:ready_into(1) end))
      local t = {}
      assert.are.equal(bad(2, "flags must be another table than fds"),
        H.msg_of(function() ep:ready_into(t, t) end))
    end)

    it("refuse a receiver that is no set", function()
      local ep = ready_pipes(1)
      for _, v in ipairs({ {}, 1, io.stdout, setmetatable({}, getmetatable(ep)) }) do
        assert.matches("lepoll.set expected", H.error_of(ep.ready_into, v, {}), 1, true)
      end
      assert.are.equal("bad argument #1 to 'ready_into' (lepoll.set expected, got table)",
        H.msg_of(function() ep.ready_into({}, {}) end))
    end)
  end)

  describe("on a closed set", function()
    it("raises the closed-set error, before looking at its arguments", function()
      local ep = ready_pipes(2)
      ep:close()
      local fds, flags = { "untouched" }, {}
      assert.are.equal(CLOSED, H.msg_of(function() ep:ready_into(fds, flags) end))
      assert.are.equal(CLOSED, H.msg_of(function() ep:ready_into(1) end))
      local ok, err = pcall(ep.ready_into, ep, fds)
      assert.is_false(ok)
      assert.are.equal(CLOSED, err) -- the exact text, nothing added
      assert.are.same({ "untouched" }, fds)
      assert.are.equal("epoll{closed}", tostring(ep))
    end)
  end)

  -- Under LuaJIT ready_into is a Lua function reading the ready buffer
  -- through the FFI, for plain tables; a table with a metatable, a closed
  -- set or a bad argument goes to the C function. Elsewhere it is C alone.
  describe("its two paths", function()
    it("are the FFI path under LuaJIT, C elsewhere", function()
      local ep = C.new_set()
      assert.are.equal(H.JIT and "Lua" or "C", debug.getinfo(ep.ready_into, "S").what)
    end)

    -- ready_into on plain tables and on tables with an empty metatable,
    -- with and without flags: the same results, or the same error.
    local function both_paths(ep)
      local function run(make)
        local fds, flags, only = make(), make(), make()
        local ok, n = pcall(ep.ready_into, ep, fds, flags)
        if not ok then return { err = n } end
        local n2 = ep:ready_into(only)
        local out = { n = n, n2 = n2, fds = {}, flags = {}, only = {} }
        for k, v in pairs(fds) do out.fds[k] = v end
        for k, v in pairs(flags) do out.flags[k] = v end
        for k, v in pairs(only) do out.only[k] = v end
        return out
      end
      local plain = run(function() return {} end)
      local with_mt = run(function() return setmetatable({}, {}) end)
      assert.are.same(with_mt, plain)
      return plain
    end

    it("store the same events and flags, or raise the same error", function()
      local ep = C.new_set()
      local r, w = assert(T.pipe())
      local a, b = C.socketpair()
      local efd = T.eventfd()
      defer(function() H.close(r, w, efd) end)
      assert.are.same({ n = 0, n2 = 0, fds = {}, flags = {}, only = {} }, both_paths(ep))
      ep:set(r, "in")
      ep:set(a, "in|out")
      ep:set(efd, "in|et")
      T.write(b, "x")
      H.close(w) -- the pipe's reader sees HUP without data
      w = nil
      assert.is_true(T.eventfd_write(efd, 1))
      assert.are.equal("ok", ep:wait(0))
      local got = both_paths(ep)
      assert.are.equal(3, got.n)
      local ifds, iflags = iter_lists(ep)
      assert.are.same(ifds, got.fds)
      assert.are.same(iflags, got.flags)
      assert.are.same(ifds, got.only)
      ep:clear_ready()
      assert.are.equal(0, both_paths(ep).n)
      assert.are.equal("ok", ep:wait(0))
      ep:close()
      assert.are.same({ err = CLOSED }, both_paths(ep))
    end)

    it("stay right in a hot loop (the JIT compiles it under LuaJIT), n changing", function()
      local ep = C.new_set()
      local expected = 0
      for _ = 1, 3 do
        local r, w = C.pipe()
        ep:set(r, "in")
        T.write(w, "x")
        expected = expected + r
      end
      local efd = T.eventfd()
      defer(function() H.close(efd) end)
      ep:set(efd, "in|et")
      local fds, flags, only = {}, {}, {}
      local wrong, counts = 0, { [3] = 0, [4] = 0 }
      for round = 1, 1000 do
        if round % 3 == 0 then T.eventfd_write(efd, 1) end
        ep:wait(0)
        local n = ep:ready_into(fds, flags)
        local sum, fsum = 0, 0
        for i = 1, n do sum, fsum = sum + fds[i], fsum + flags[i] end
        if ep:ready_into(only) ~= n then wrong = wrong + 1 end
        for i = 1, n do if only[i] ~= fds[i] then wrong = wrong + 1 end end
        local want = n == 4 and expected + efd or expected
        if sum ~= want or fsum ~= n * IN then wrong = wrong + 1 end
        counts[n] = (counts[n] or 0) + 1
      end
      assert.are.equal(0, wrong)
      assert.is_true(counts[3] > 0 and counts[4] > 0)
      assert.are.equal(1000, counts[3] + counts[4])
    end)

    it("read each set's own buffer, sets collected and made anew in between", function()
      for round = 1, 40 do
        local ep = lepoll.create(nil, 1 + round % 4)
        local r, w = C.pipe()
        ep:set(r, "in")
        T.write(w, "x")
        assert.are.equal("ok", ep:wait(0))
        local fds, flags = {}, {}
        assert.are.equal(1, ep:ready_into(fds, flags))
        assert.are.same({ r }, fds)
        assert.are.same({ IN }, flags)
        if round % 2 == 0 then ep:close() end
        ep = nil -- luacheck: ignore ep
        collectgarbage()
        collectgarbage()
      end
    end)
  end)

  describe("allocates nothing", function()
    it("in wait(0) + ready_into once the tables have grown", function()
      local ep, p = ready_pipes(3)
      local expected = p[1].r + p[2].r + p[3].r
      local fds, flags = {}, {}
      local bad_rounds, sum = 0, 0
      local function run(n)
        for _ = 1, n do
          if ep:wait(0) ~= "ok" then bad_rounds = bad_rounds + 1 end
          local k = ep:ready_into(fds, flags)
          if k ~= 3 then bad_rounds = bad_rounds + 1 end
          sum = 0
          for i = 1, k do sum = sum + fds[i] + flags[i] end
          ep:ready_into(fds)
        end
      end
      assert.are.equal(0, H.alloc_growth(run, 2000, 50000))
      assert.are.equal(0, bad_rounds)
      assert.are.equal(expected + 3 * IN, sum)
    end)

    it("when the count changes from wait to wait, up to the largest n", function()
      local ep = C.new_set()
      for _ = 1, 3 do
        local r, w = C.pipe()
        ep:set(r, "in")
        T.write(w, "x")
      end
      local efd = T.eventfd()
      defer(function() H.close(efd) end)
      ep:set(efd, "in|et")
      local fds, flags = {}, {}
      local counts = { 0, 0, 0, 0 }
      -- Each write to the eventfd is a new edge: it is reported on the
      -- wait after it only, so n is 4, then 3, then 4, ...
      local function run(n)
        for round = 1, n do
          if round % 2 == 0 then T.eventfd_write(efd, 1) end
          ep:wait(0)
          local k = ep:ready_into(fds, flags)
          counts[k] = counts[k] + 1
        end
      end
      assert.is_true(T.eventfd_write(efd, 1))
      assert.are.equal("ok", ep:wait(0))
      assert.are.equal(4, ep:ready_into(fds, flags))
      assert.are.equal(0, H.alloc_growth(run, 200, 20000))
      assert.is_true(counts[3] > 0)
      assert.is_true(counts[4] > 0)
      assert.are.equal(0, counts[1] + counts[2])
    end)

    it("in the argument checks, on a plain table and one with a harmless metatable", function()
      local ep = ready_pipes(2)
      local fds = setmetatable({}, { __len = function() return 0 end })
      local flags = {}
      local function run(n)
        for _ = 1, n do
          ep:ready_into(fds, flags)
          ep:ready_into(flags, fds)
          ep:ready_into(fds, nil)
        end
      end
      assert.are.equal(0, H.alloc_growth(run, 200, 20000))
    end)

    it("after a timeout", function()
      local ep = watched_pipes(2)
      local fds = {}
      local function run(n)
        for _ = 1, n do
          ep:wait(0)
          if ep:ready_into(fds) ~= 0 then error("not empty") end
        end
      end
      assert.are.equal(0, H.alloc_growth(run, 200, 20000))
    end)
  end)
end)
