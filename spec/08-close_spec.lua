local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local CLOSED = "attempt to use a closed epoll set"

local C = H.cleanups(function(fn) finally(fn) end)
local defer, pipe = C.defer, C.pipe

-- Whether fd is an open descriptor of this process.
local is_open = H.is_open

describe("closing an epoll set", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  -- A set that watched a ready pipe and waited, then closed: every piece
  -- of state existed before the close. Valid arguments for each method.
  local function closed_set()
    local r, w = pipe()
    local ep = lepoll.create()
    ep:set(r, "in")
    T.write(w, "x")
    assert.are.equal("ok", ep:wait(0))
    ep:close()
    return ep, r
  end

  local methods = {
    { "set", function(ep, fd) return ep:set(fd, "in") end },
    { "remove", function(ep, fd) return ep:remove(fd) end },
    { "find", function(ep, fd) return ep:find(fd) end },
    { "tofd", function(ep, fd) return ep:tofd(fd) end },
    { "iter", function(ep) return ep:iter(function() end) end },
    { "fold", function(ep) return ep:fold(0, function(_, _, acc) return acc end) end },
    { "wait", function(ep) return ep:wait(0) end },
    { "wait_timeout_after", function(ep) return ep:wait_timeout_after(0) end },
    { "iter_ready", function(ep) return ep:iter_ready(function() end) end },
    { "fold_ready", function(ep) return ep:fold_ready(0, function(acc) return acc end) end },
    { "clear_ready", function(ep) return ep:clear_ready() end },
    { "ready_into", function(ep) return ep:ready_into({}, {}) end },
    { "getfd", function(ep) return ep:getfd() end },
    { "pollfd", function(ep) return ep:pollfd() end },
    { "events", function(ep) return ep:events() end },
  }
  -- pairs goes through __pairs, which exists from 5.2 on, and not in
  -- LuaJIT: there pairs(ep) refuses the userdata before lepoll is asked.
  local function pairs_call(ep) for _ in pairs(ep) do end end
  local it_pairs = H.it_if(it, pending, H.has.pairs_mm, "needs __pairs (Lua 5.2 to 5.4)")

  describe("raises the closed-set error from", function()
    -- raw: the function that raises, called straight from pcall.
    local function check(name, call, raw)
      local ep, fd = closed_set()
      assert.are.equal(CLOSED, H.msg_anywhere(call, ep, fd))
      -- Raised by the method itself: the exact text, nothing added.
      local ok, err = pcall(raw or ep[name], ep, fd, fd)
      assert.is_false(ok)
      assert.are.equal(CLOSED, err)
      -- And again: the set stays closed, nothing reopened it.
      assert.are.equal(CLOSED, H.msg_anywhere(call, ep, fd), name)
      assert.are.equal("epoll{closed}", tostring(ep))
    end

    for _, m in ipairs(methods) do
      local name, call = m[1], m[2]
      it(name, function()
        check(name, call)
      end)
    end

    it_pairs("pairs", function()
      check("pairs", pairs_call, pairs)
    end)

    it("a set closed before it watched anything", function()
      local ep = lepoll.create()
      ep:close()
      local r = pipe()
      for _, m in ipairs(methods) do
        assert.are.equal(CLOSED, H.msg_anywhere(m[2], ep, r))
      end
    end)

    it_pairs("pairs on a set closed before it watched anything", function()
      local ep = lepoll.create()
      ep:close()
      assert.are.equal(CLOSED, H.msg_anywhere(pairs_call, ep))
    end)
  end)

  describe("still allows on a closed set", function()
    it("close, which does nothing more", function()
      local ep = closed_set()
      assert.are.equal(0, select("#", ep:close()))
      assert.are.equal(0, select("#", ep:close()))
    end)

    it("invariant, which passes", function()
      local ep = closed_set()
      assert.are.equal(0, select("#", ep:invariant()))
    end)

    it("tostring, which gives epoll{closed}", function()
      local ep = closed_set()
      assert.are.equal("epoll{closed}", tostring(ep))
    end)

    it("#, which gives 0", function()
      local r1 = pipe()
      local r2 = pipe()
      local ep = lepoll.create()
      ep:set(r1, "in")
      ep:set(r2, "out")
      assert.are.equal(2, #ep)
      ep:close()
      assert.are.equal(0, #ep)
    end)
  end)

  it("closes the epoll descriptor exactly once", function()
    local r, w = pipe() -- made first, so it cannot take the freed number
    local before = T.fdcount()
    local ep = lepoll.create()
    local epfd = ep:getfd()
    assert.are.equal(before + 1, T.fdcount())
    assert.is_true(is_open(epfd))
    ep:close()
    assert.are.equal(before, T.fdcount())
    assert.is_false(is_open(epfd))
    -- The number is free again; a new descriptor takes it. A second close
    -- must not close that one.
    local reuse = assert(T.dup(w, epfd))
    defer(function() H.close(reuse) end)
    assert.are.equal(epfd, reuse)
    ep:close()
    assert.is_true(is_open(reuse))
    assert.are.equal(3, T.write(reuse, "abc"))
    assert.are.equal("abc", T.read(r))
  end)

  describe("as a to-be-closed variable", function()
    -- <close> is Lua 5.4 syntax: these chunks are compiled (H.load) only
    -- where it exists, and get what they use as arguments.
    local it_toclose = H.it_if(it, pending, H.has.toclose, "needs Lua 5.4: <close>")

    it_toclose("closes at scope exit", function()
      local before = T.fdcount()
      local kept, epfd = H.load([[
        local lepoll, T, assert, before = ...
        local kept, epfd
        do
          local ep <close> = lepoll.create()
          kept, epfd = ep, ep:getfd()
          assert.are.equal(before + 1, T.fdcount())
          assert.matches("^epoll{fd=" .. epfd .. ", ", tostring(ep))
        end
        return kept, epfd
      ]], "closes at scope exit")(lepoll, T, assert, before)
      assert.are.equal(before, T.fdcount())
      assert.is_false(is_open(epfd))
      assert.are.equal("epoll{closed}", tostring(kept))
      assert.are.equal(CLOSED, H.msg_anywhere(function() kept:wait(0) end))
    end)

    it_toclose("closes when an error leaves the scope", function()
      local before = T.fdcount()
      local kept
      local thrown = {}
      local ok, err = pcall(H.load([[
        local lepoll, keep, thrown = ...
        local ep <close> = lepoll.create()
        keep(ep)
        error(thrown)
      ]], "closes when an error leaves the scope"), lepoll, function(ep) kept = ep end, thrown)
      assert.is_false(ok)
      assert.is_true(rawequal(thrown, err))
      assert.are.equal(before, T.fdcount())
      assert.are.equal("epoll{closed}", tostring(kept))
    end)

    it_toclose("does nothing at scope exit when already closed", function()
      local r, w = pipe()
      local reuse = H.load([[
        local lepoll, T, assert, w = ...
        local reuse
        do
          local ep <close> = lepoll.create()
          local epfd = ep:getfd()
          ep:close()
          reuse = assert(T.dup(w, epfd))
          assert.are.equal(epfd, reuse)
        end
        return reuse
      ]], "does nothing at scope exit when already closed")(lepoll, T, assert, w)
      defer(function() H.close(reuse) end)
      assert.is_true(is_open(reuse))
      assert.are.equal(1, T.write(reuse, "z"))
      assert.are.equal("z", T.read(r))
    end)

    -- What <close> calls exists on every version, and closes like close.
    it("has a __close metamethod that closes, once, on every version", function()
      local r, w = pipe()
      local before = T.fdcount()
      local ep = lepoll.create()
      local epfd = ep:getfd()
      local close = getmetatable(ep).__close
      assert.are.equal("function", type(close))
      -- As 5.4 calls it: the set, then the error object or nil.
      assert.are.equal(0, select("#", close(ep, nil)))
      assert.are.equal(before, T.fdcount())
      assert.is_false(is_open(epfd))
      assert.are.equal("epoll{closed}", tostring(ep))
      local reuse = assert(T.dup(w, epfd))
      defer(function() H.close(reuse) end)
      assert.are.equal(epfd, reuse)
      close(ep, "an error leaving the scope")
      ep:close()
      assert.is_true(is_open(reuse))
      assert.are.equal(1, T.write(reuse, "c"))
      assert.are.equal("c", T.read(r))
    end)
  end)

  describe("by the garbage collector", function()
    it("closes an unreachable set", function()
      local r = pipe()
      collectgarbage()
      local before = T.fdcount()
      -- No collection may run before the count is taken.
      collectgarbage("stop")
      local ok, err = pcall(function()
        local epfd
        do
          local ep = lepoll.create()
          ep:set(r, "in") -- with a table and a watched fd to free too
          epfd = ep:getfd()
        end
        assert.are.equal(before + 1, T.fdcount())
        assert.is_true(is_open(epfd))
      end)
      collectgarbage("restart")
      assert(ok, err)
      collectgarbage()
      collectgarbage()
      assert.are.equal(before, T.fdcount())
      assert.is_true(is_open(r)) -- the watched pipe is not the set's
    end)

    it("does not close again a set that was closed", function()
      local r, w = pipe()
      local reuse
      do
        local ep = lepoll.create()
        local epfd = ep:getfd()
        ep:close()
        reuse = assert(T.dup(w, epfd))
        assert.are.equal(epfd, reuse)
      end
      defer(function() H.close(reuse) end)
      collectgarbage()
      collectgarbage()
      assert.is_true(is_open(reuse))
      assert.are.equal(1, T.write(reuse, "g"))
      assert.are.equal("g", T.read(r))
    end)
  end)

  it("leaves the watched descriptors open and usable", function()
    local r, w = pipe()
    local a, b = assert(T.socketpair())
    defer(function() H.close(a, b) end)
    local ep = lepoll.create()
    ep:set(r, "in")
    ep:set(w, "out")
    ep:set(a, "in|out|et")
    T.write(w, "before")
    assert.are.equal("ok", ep:wait(0))
    ep:close()
    for _, fd in ipairs({ r, w, a, b }) do assert.is_true(is_open(fd)) end
    assert.are.equal("before", T.read(r))
    assert.are.equal(5, T.write(w, "after"))
    assert.are.equal("after", T.read(r))
    assert.are.equal(2, T.write(b, "hi"))
    assert.are.equal("hi", T.read(a))
    -- A new set can watch them: the old registrations are gone with the set.
    local ep2 = lepoll.create()
    defer(function() ep2:close() end)
    ep2:set(r, "in")
    ep2:set(a, "in")
    T.write(b, "x")
    assert.are.equal("ok", ep2:wait(0))
    assert.are.same({ [a] = "in" }, H.ready_names(ep2))
    ep2:invariant()
  end)

  describe("with a wrong self", function()
    -- Plain calls, not tail calls: LuaJIT keeps no frame for a tail call,
    -- and its message would name the function '?'.
    it("raises an argument error naming lepoll.set", function()
      local ep = lepoll.create()
      defer(function() ep:close() end)
      assert.are.equal("bad argument #1 to 'wait' (lepoll.set expected, got table)",
        H.msg_anywhere(function() ep.wait({}) end))
      assert.are.equal("bad argument #1 to 'wait' (lepoll.set expected, got nil)",
        H.msg_anywhere(function() ep.wait(nil) end))
      assert.are.equal("bad argument #1 to 'wait' (lepoll.set expected, got no value)",
        H.msg_anywhere(function() ep.wait() end))
      -- io's handles name their type (__name) from 5.3 on.
      assert.are.equal("bad argument #1 to 'close' (lepoll.set expected, got "
        .. (H.LUA_VERSION >= 503 and "FILE*" or "userdata") .. ")",
        H.msg_anywhere(function() ep.close(io.stdout) end))
      assert.are.equal("bad argument #1 to 'invariant' (lepoll.set expected, got number)",
        H.msg_anywhere(function() ep.invariant(3) end))
    end)

    it("is refused by every method and metamethod, the set unharmed", function()
      local ep = lepoll.create()
      defer(function() ep:close() end)
      local mt = getmetatable(ep)
      local names = {}
      for name in pairs(mt.__index) do names[#names + 1] = name end
      table.sort(names)
      assert.are.same({ "clear_ready", "close", "events", "find", "fold", "fold_ready",
        "getfd", "invariant", "iter", "iter_ready", "pollfd", "ready_into", "remove", "set", "tofd",
        "try_remove", "try_set", "try_tofd", "wait", "wait_timeout_after" }, names)
      -- A table, even with the set's metatable; from 5.2 on that makes it
      -- finalizable, and the collector calls the set's __gc on it.
      local fake = setmetatable({}, mt)
      for _, name in ipairs(names) do
        for _, bad in ipairs({ {}, "x", 1, io.stdout, fake }) do
          local err = H.error_of(mt.__index[name], bad, 0, 0)
          assert.matches("lepoll.set expected", err, 1, true)
        end
        -- The fake is a table, whatever its metatable's __name says.
        assert.matches("lepoll.set expected, got table", H.error_of(mt.__index[name], fake, 0, 0),
          1, true)
      end
      for _, name in ipairs({ "__tostring", "__len", "__pairs", "__close" }) do
        for _, bad in ipairs({ {}, io.stdout, fake }) do
          local err = H.error_of(mt[name], bad)
          assert.matches("lepoll.set expected", err, 1, true)
        end
      end
      -- __gc has nobody to tell: it closes sets and ignores anything else.
      for _, bad in ipairs({ {}, io.stdout, fake }) do
        assert.are.same({ true }, { pcall(mt.__gc, bad) })
      end
      collectgarbage()
      assert.are.equal(0, #ep)
      assert.are.equal("timeout", ep:wait(0))
      ep:invariant()
    end)
  end)
end)
