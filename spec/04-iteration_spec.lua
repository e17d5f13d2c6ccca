local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local IN, OUT, ET = lepoll.IN, lepoll.OUT, lepoll.ET
local CLOSED = "attempt to use a closed epoll set"

-- Flag words are combined with H.bor, not |, which 5.1, 5.2 and LuaJIT
-- lack (H.bor gives an integer on 5.3+, as | would).

-- The calls that fail are never tail calls (`function() f() end`, not
-- `function() return f() end`): LuaJIT drops the caller's frame on a tail
-- call, and with it the error's position and the function's name.
local msg_of = H.msg_of

-- table.pack is 5.2's.
local pack = table.pack or function(...) return { n = select("#", ...), ... } end

-- it(), for the tests of pairs(set): pairs goes through __pairs, which 5.1
-- and LuaJIT do not honour (pairs(set) raises there, as checked below).
local function it_pairs(name, fn)
  H.it_if(it, pending, H.has.pairs_mm, "no __pairs: pairs(set) raises 'table expected, got userdata'")(
    name, fn)
end

-- A set watching five descriptors added out of order: a pipe and copies
-- of its read end at chosen numbers. Returns the set, the fds in ascending
-- order with their flags, and a function closing everything.
local function populated()
  local r, w = T.pipe()
  local d50 = assert(T.dup(r, 50))
  local d40 = assert(T.dup(r, 40))
  local d60 = assert(T.dup(w, 60))
  local ep = lepoll.create(1024)
  ep:set(d60, "out")
  ep:set(d40, "in|et")
  ep:set(w, OUT)
  ep:set(d50, "in")
  ep:set(r, "in|rdhup")
  local expected = {
    { r, H.bor(IN, lepoll.RDHUP) }, { w, OUT }, { d40, H.bor(IN, ET) }, { d50, IN }, { d60, OUT },
  }
  table.sort(expected, function(a, b) return a[1] < b[1] end)
  return ep, expected, function() ep:close(); H.close(r, w, d40, d50, d60) end
end

describe("iterating over the watched table", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  describe("iter", function()
    it("calls f(fd, flags) for every watched fd, ascending", function()
      local ep, expected, done = populated()
      finally(done)
      local seen = {}
      local result = pack(ep:iter(function(...)
        seen[#seen + 1] = pack(...)
      end))
      assert.are.equal(0, result.n)
      assert.are.equal(#expected, #seen)
      for i, e in ipairs(expected) do
        assert.are.same({ e[1], e[2], n = 2 }, seen[i])
      end
    end)

    it("calls nothing on an empty set", function()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      local calls = 0
      ep:iter(function() calls = calls + 1 end)
      assert.are.equal(0, calls)
    end)

    it("takes a callable table", function()
      local ep, expected, done = populated()
      finally(done)
      local seen = {}
      ep:iter(setmetatable({}, { __call = function(_, fd, flags) seen[#seen + 1] = { fd, flags } end }))
      assert.are.same(expected, seen)
    end)

    it("refuses a callback that is not callable", function()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      assert.are.equal("bad argument #1 to 'iter' (function expected, got no value)",
        msg_of(function() ep:iter() end))
      assert.are.equal("bad argument #1 to 'iter' (function expected, got table)",
        msg_of(function() ep:iter({}) end))
    end)
  end)

  describe("fold", function()
    it("threads f(fd, flags, acc) from init in ascending order and returns the result", function()
      local ep, expected, done = populated()
      finally(done)
      local init = {}
      local calls = {}
      local result = pack(ep:fold(init, function(fd, flags, acc)
        calls[#calls + 1] = { fd, flags, acc }
        return { prev = acc, fd = fd }
      end))
      assert.are.equal(1, result.n)
      assert.are.equal(#expected, #calls)
      -- Accumulator last: the first call gets init itself, each next one
      -- what the previous call returned.
      assert.are.equal(init, calls[1][3])
      for i, e in ipairs(expected) do
        assert.are.equal(e[1], calls[i][1])
        assert.are.equal(e[2], calls[i][2])
        if i > 1 then
          assert.are.equal(calls[i - 1][1], calls[i][3].fd)
        end
      end
      assert.are.equal(expected[#expected][1], result[1].fd)
      -- A plain sum, the usual use.
      assert.are.equal(#expected, ep:fold(0, function(_, _, n) return n + 1 end))
    end)

    it("returns init itself on an empty set", function()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      local init = {}
      assert.are.equal(init, ep:fold(init, function() error("not called") end))
      local result = pack(ep:fold(nil, function() error("not called") end))
      assert.are.equal(1, result.n)
      assert.is_nil(result[1])
    end)

    it("keeps a nil returned by the callback as the accumulator", function()
      local ep, expected, done = populated()
      finally(done)
      local accs = {}
      local result = ep:fold("start", function(_, _, acc)
        accs[#accs + 1] = tostring(acc)
        return nil
      end)
      assert.is_nil(result)
      local want = { "start" }
      for _ = 2, #expected do want[#want + 1] = "nil" end
      assert.are.same(want, accs)
    end)

    it("refuses a callback that is not callable", function()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      assert.are.equal("bad argument #2 to 'fold' (function expected, got no value)",
        msg_of(function() ep:fold(0) end))
      assert.are.equal("bad argument #2 to 'fold' (function expected, got number)",
        msg_of(function() ep:fold(0, 1) end))
    end)
  end)

  describe("pairs and #", function()
    it_pairs("pairs(set) gives fd, flags in ascending order", function()
      local ep, expected, done = populated()
      finally(done)
      local seen = {}
      for fd, flags in pairs(ep) do seen[#seen + 1] = { fd, flags } end
      assert.are.same(expected, seen)
    end)

    it_pairs("pairs(set) gives nothing on an empty set", function()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      for _ in pairs(ep) do error("nothing is watched") end
      assert.are.equal(0, #ep)
    end)

    it_pairs("pairs(set) sees removals made during the loop", function()
      local ep, expected, done = populated()
      finally(done)
      local seen = {}
      for fd in pairs(ep) do
        seen[#seen + 1] = fd
        if fd == expected[2][1] then ep:remove(expected[3][1]) end
      end
      assert.are.same({ expected[1][1], expected[2][1], expected[4][1], expected[5][1] }, seen)
    end)

    it_pairs("pairs on a closed set raises the closed-set error", function()
      local ep = lepoll.create(64)
      ep:close()
      assert.are.equal(CLOSED, H.msg_anywhere(function()
        for _ in pairs(ep) do end
      end))
    end)

    it("pairs(set) works through __pairs where the version has it, and raises elsewhere", function()
      local ep, expected, done = populated()
      finally(done)
      if H.has.pairs_mm then
        local f, s, c = pairs(ep)
        assert.are.same(expected[1], { f(s, c) })
      else
        -- 5.1 and LuaJIT: pairs takes tables only.
        local ok, err = pcall(pairs, ep)
        assert.is_false(ok)
        assert.matches("table expected, got userdata", err, 1, true)
        -- The metamethod is there all the same, and works when called.
        local seen = {}
        for fd, flags in getmetatable(ep).__pairs(ep) do seen[#seen + 1] = { fd, flags } end
        assert.are.same(expected, seen)
      end
    end)

    it("# counts the watched fds, and is 0 once closed", function()
      local ep, expected, done = populated()
      finally(done)
      assert.are.equal(5, #expected)
      assert.are.equal(5, #ep)
      ep:remove(expected[1][1])
      assert.are.equal(4, #ep)
      ep:set(expected[2][1], "in|out") -- a modification adds nothing
      assert.are.equal(4, #ep)
      ep:close()
      assert.are.equal(0, #ep)
    end)

    it("iter and fold on a closed set raise the closed-set error", function()
      local ep = lepoll.create(64)
      ep:close()
      assert.are.equal(CLOSED, msg_of(function() ep:iter(function() end) end))
      assert.are.equal(CLOSED, msg_of(function() ep:fold(0, function() end) end))
    end)
  end)

  describe("callbacks changing the set", function()
    it("may remove fds: a removed fd not yet visited is skipped", function()
      local ep, expected, done = populated()
      finally(done)
      local seen = {}
      ep:iter(function(fd)
        seen[#seen + 1] = fd
        if fd == expected[1][1] then
          ep:remove(fd) -- the current one
          ep:remove(expected[3][1]) -- one ahead
        end
      end)
      assert.are.same({ expected[1][1], expected[2][1], expected[4][1], expected[5][1] }, seen)
      assert.are.equal(3, #ep)
      assert.is_nil(ep:find(expected[1][1]))
      assert.is_nil(ep:find(expected[3][1]))
      ep:invariant()
    end)

    it("may set fds: one added ahead is visited, one re-added behind is not", function()
      local ep, expected, done = populated()
      -- Beyond what the table has grown to (64 entries): it grows mid-loop.
      local high = assert(T.dup(expected[1][1], 200))
      -- (busted keeps only the last finally of a test)
      finally(function() done(); H.close(high) end)
      local seen = {}
      ep:iter(function(fd, flags)
        seen[#seen + 1] = { fd, flags }
        if fd == expected[2][1] then
          ep:set(high, "in")
          ep:remove(expected[1][1])
          ep:set(expected[1][1], "in") -- re-added behind the iteration
          ep:set(expected[4][1], "in|et") -- modified ahead of it
        end
      end)
      assert.are.same({
        expected[1], expected[2], expected[3], { expected[4][1], H.bor(IN, ET) }, expected[5], { high, IN },
      }, seen)
      assert.are.equal(6, #ep)
      ep:invariant()
    end)

    it("may call find and iter", function()
      local ep, _, done = populated()
      finally(done)
      local found, inner = {}, 0
      ep:iter(function(fd, flags)
        found[#found + 1] = ep:find(fd) == flags
        ep:iter(function() inner = inner + 1 end)
      end)
      assert.are.same({ true, true, true, true, true }, found)
      assert.are.equal(25, inner)
    end)

    it("may close the set, which ends iter", function()
      local ep, expected, done = populated()
      finally(done)
      local seen = {}
      ep:iter(function(fd)
        seen[#seen + 1] = fd
        if #seen == 2 then ep:close() end
      end)
      assert.are.same({ expected[1][1], expected[2][1] }, seen)
      assert.are.equal("epoll{closed}", tostring(ep))
      assert.are.equal(0, #ep)
    end)

    it("may close the set, which ends fold with the last accumulator", function()
      local ep, _, done = populated()
      finally(done)
      local result = ep:fold(0, function(_, _, n)
        if n == 1 then ep:close() end
        return n + 1
      end)
      assert.are.equal(2, result)
      assert.are.equal("epoll{closed}", tostring(ep))
    end)

    it("may change the set inside fold", function()
      local ep, expected, done = populated()
      finally(done)
      local fds = ep:fold({}, function(fd, _, acc)
        acc[#acc + 1] = fd
        if fd == expected[1][1] then ep:remove(expected[2][1]) end
        return acc
      end)
      assert.are.same({ expected[1][1], expected[3][1], expected[4][1], expected[5][1] }, fds)
      ep:invariant()
    end)
  end)

  describe("errors from callbacks", function()
    it("propagate unchanged from iter, leaving the set usable", function()
      local ep, expected, done = populated()
      finally(done)
      local value = { reason = "stop" }
      local calls = 0
      local ok, err = pcall(ep.iter, ep, function()
        calls = calls + 1
        if calls == 2 then error(value) end
      end)
      assert.is_false(ok)
      assert.are.equal(value, err) -- the very same table
      assert.are.equal(2, calls)
      ok, err = pcall(ep.iter, ep, function() error("plain text", 0) end)
      assert.is_false(ok)
      assert.are.equal("plain text", err)
      -- Fully usable afterwards.
      local seen = {}
      ep:iter(function(fd, flags) seen[#seen + 1] = { fd, flags } end)
      assert.are.same(expected, seen)
      ep:remove(expected[1][1])
      ep:set(expected[1][1], "in")
      assert.are.equal(IN, ep:find(expected[1][1]))
      assert.are.equal("ok", ep:wait(0)) -- the OUT fds are writable
      ep:invariant()
    end)

    it("propagate unchanged from fold, leaving the set usable", function()
      local ep, expected, done = populated()
      finally(done)
      local value = setmetatable({}, { __tostring = function() return "custom" end })
      local ok, err = pcall(ep.fold, ep, 0, function(_, _, n)
        if n == 3 then error(value) end
        return n + 1
      end)
      assert.is_false(ok)
      assert.are.equal(value, err)
      -- (level 0: 5.1, 5.2 and LuaJIT turn error(42) into "file:line: 42"
      -- themselves, as a number is a string to them)
      ok, err = pcall(ep.fold, ep, 0, function() error(42, 0) end)
      assert.is_false(ok)
      assert.are.equal(42, err)
      assert.are.equal(#expected, ep:fold(0, function(_, _, n) return n + 1 end))
      assert.are.equal(#expected, #ep)
      ep:invariant()
    end)

    it_pairs("propagate unchanged from a pairs loop, leaving the set usable", function()
      local ep, expected, done = populated()
      finally(done)
      local value = {}
      local ok, err = pcall(function()
        for _ in pairs(ep) do error(value) end
      end)
      assert.is_false(ok)
      assert.are.equal(value, err)
      local n = 0
      for _ in pairs(ep) do n = n + 1 end
      assert.are.equal(#expected, n)
    end)
  end)
end)
