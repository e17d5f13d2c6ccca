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

  it("ends pairs for keys beyond the table, however large", function()
    local ep = C.new_set(64)
    local r = C.pipe()
    ep:set(r, "in")
    local step, state = pairs(ep)
    assert.are.same({ r, lepoll.IN }, { step(state, nil) })
    assert.are.same({}, { step(state, r) })
    assert.are.same({}, { step(state, 2147483647) })
    assert.are.same({}, { step(state, math.maxinteger) })
    assert.are.same({ r, lepoll.IN }, { step(state, math.mininteger) })
  end)

  it("keeps the callback's frames in the traceback of an error from iter_ready", function()
    local ep = C.new_set(64)
    local r, w = C.pipe()
    T.write(w, "x")
    ep:set(r, "in")
    assert.are.equal("ok", ep:wait(0))
    local line
    local ok, trace = xpcall(function()
      ep:iter_ready(function() line = debug.getinfo(1, "l").currentline; error("boom") end)
    end, debug.traceback)
    assert.is_false(ok)
    local here = debug.getinfo(1, "S").short_src
    -- The traceback starts at the raising line inside the callback.
    assert.matches(here:gsub("%p", "%%%0") .. ":" .. line .. ": boom", trace)
    assert.matches("stack traceback:\n%s*%[C%]: in function 'error'\n%s*" .. here:gsub("%p", "%%%0")
      .. ":" .. line .. ":", trace)
    -- And the set is not left busy.
    assert.are.equal("ok", ep:wait(0))
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
