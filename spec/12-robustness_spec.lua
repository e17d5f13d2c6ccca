-- Odd but possible uses: descriptors closed behind the set's back, methods
-- with side effects, extreme numbers, running out of descriptors.
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)

describe("robustness", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("invariant reports a set whose own epoll descriptor was closed behind its back", function()
    local ep = lepoll.create(64)
    local epfd = ep:getfd()
    assert(T.close(epfd))
    assert.are.equal(string.format("lepoll: invariant: the epoll descriptor %d is not open", epfd),
      H.error_of(ep.invariant, ep))
    -- Closing it again is the kernel's EBADF, and the set is closed anyway.
    assert.are.equal(string.format("lepoll: close fd %d: Bad file descriptor (EBADF)", epfd),
      H.error_of(ep.close, ep))
    assert.are.equal("epoll{closed}", tostring(ep))
  end)

  it("rejects a set closed by the getfd method of its own argument", function()
    local ep = lepoll.create(64)
    local r, w = C.pipe()
    local sneaky = { getfd = function() ep:close() return r end }
    assert.are.equal("attempt to use a closed epoll set", H.msg_of(function() ep:set(sneaky, "in") end))
    assert.are.equal("attempt to use a closed epoll set", H.msg_of(function() ep:find(sneaky) end))
    assert.are.equal(0, #ep)
    H.close(w)
  end)

  -- pairs(ep) needs __pairs (5.2 to 5.4, not LuaJIT); its step function is
  -- the same everywhere, so elsewhere it is taken from the metatable.
  -- Before 5.3 numbers are doubles: the extremes are the largest double
  -- below 2^63 and -2^63, both integers there too.
  it("ends pairs for keys beyond the table, however large", function()
    local ep = C.new_set(64)
    local r = C.pipe()
    ep:set(r, "in")
    local step, state = (H.has.pairs_mm and pairs or getmetatable(ep).__pairs)(ep)
    assert.are.same({ r, lepoll.IN }, { step(state, nil) })
    assert.are.same({}, { step(state, r) })
    assert.are.same({}, { step(state, 2147483647) })
    assert.are.same({}, { step(state, math.maxinteger or 2 ^ 63 - 1024) })
    assert.are.same({ r, lepoll.IN }, { step(state, math.mininteger or -2 ^ 63) })
  end)

  it("refuses a key with no integer representation in pairs", function()
    local ep = C.new_set(64)
    local r = C.pipe()
    ep:set(r, "in")
    local step, state = getmetatable(ep).__pairs(ep)
    for _, key in ipairs({ 3.5, 2 ^ 63, 1e100, -1e100 }) do
      local ok, err = pcall(step, state, key)
      assert.is_false(ok, tostring(key))
      assert.matches("number has no integer representation", err, 1, true)
    end
  end)

  it("keeps an error from iter_ready or fold_ready for a message handler, frames from 5.4 on", function()
    local ep = C.new_set(64)
    local r, w = C.pipe()
    T.write(w, "x")
    ep:set(r, "in")
    assert.are.equal("ok", ep:wait(0))
    local here = debug.getinfo(1, "S").short_src:gsub("%p", "%%%0")
    local calls = {
      iter_ready = function(f) ep:iter_ready(f) end,
      fold_ready = function(f) ep:fold_ready(0, f) end,
    }
    for _, name in ipairs({ "iter_ready", "fold_ready" }) do
      local line
      local ok, trace = xpcall(function()
        calls[name](function() line = debug.getinfo(1, "l").currentline; error("boom") end)
      end, debug.traceback)
      assert.is_false(ok)
      -- The value itself, positioned at the raising line in the callback.
      assert.matches("^" .. here .. ":" .. line .. ": boom\nstack traceback:\n", trace)
      if H.has.toclose then
        -- The callback's frames are kept: the traceback starts at the
        -- raising line inside the callback.
        assert.matches("stack traceback:\n%s*%[C%]: in function 'error'\n%s*" .. here
          .. ":" .. line .. ":", trace)
      else
        -- Before 5.4 the loop runs in a protected call and the error is
        -- raised again from iter_ready or fold_ready: there the traceback
        -- starts, without the callback's frames.
        assert.matches("stack traceback:\n%s*%[C%]: in [%w ]*'" .. name .. "'\n", trace)
        assert.is_nil(trace:find("'error'", 1, true), trace)
      end
      -- And the set is not left busy.
      assert.are.equal("ok", ep:wait(0))
    end
  end)

  it("says out of range, not 'not an integer', for huge integral numbers", function()
    local ep = C.new_set(64)
    assert.are.equal("bad argument #1 to 'set' (fd 9.2233720368548e+18 out of range [0, 64))",
      H.msg_of(function() ep:set(2.0 ^ 63, "in") end))
    assert.are.equal("bad argument #1 to 'find' (fd 1e+100 out of range [0, 64))",
      H.msg_of(function() ep:find(1e100) end))
    assert.are.equal("bad argument #1 to 'create' (num_file_descrs must be in [1, 2147483647], "
      .. "got 1e+100)", H.msg_of(function() lepoll.create(1e100) end))
  end)

  it("collects unreachable sets and tries again when descriptors run out", function()
    collectgarbage()
    local old = assert(T.setnofile(assert(T.fdcount()) + 4))
    local ok, err = pcall(function()
      collectgarbage("stop") -- only the retry may collect
      for _ = 1, 50 do
        lepoll.create(16) -- dropped at once: held only until collected
      end
    end)
    collectgarbage("restart")
    assert(T.setnofile(old))
    assert(ok, err)
  end)

  it("names EMFILE when descriptors run out for good", function()
    local sets = {}
    collectgarbage()
    local old = assert(T.setnofile(assert(T.fdcount()) + 4))
    local ok, err = pcall(function()
      for i = 1, 50 do sets[i] = lepoll.create(16) end
    end)
    assert(T.setnofile(old))
    for _, s in ipairs(sets) do s:close() end
    assert.is_false(ok)
    assert.matches("lepoll: create: Too many open files %(EMFILE%)$", err)
    assert.is_true(#sets >= 1 and #sets < 50)
  end)
end)
