local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

-- The calls that fail are never tail calls (`function() f() end`, not
-- `function() return f() end`): LuaJIT drops the caller's frame on a tail
-- call, and with it the error's position and the function's name.
local msg_of = H.msg_of

-- Largest max_ready_events that epoll_wait takes: INT_MAX divided by the
-- size of struct epoll_event (packed to 12 bytes on x86_64 only).
local function max_ready()
  local uname = io.popen("uname -m")
  local arch = uname:read("*l") -- ("l" alone is 5.3's; "*l" is read everywhere)
  uname:close()
  return math.floor(0x7fffffff / (arch == "x86_64" and 12 or 16))
end

-- The largest integer a number can hold: math.maxinteger from 5.3; before
-- that numbers are doubles and the largest one with a lua_Integer value is
-- 2^63 - 1024 (2^63 itself is beyond lua_Integer).
local MAXINT, MAXINT_TEXT
if H.has.integers then
  MAXINT, MAXINT_TEXT = math.maxinteger, "9223372036854775807"
else
  MAXINT, MAXINT_TEXT = 2 ^ 63 - 1024, "9223372036854774784"
end

describe("lepoll.create", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("defaults to the soft RLIMIT_NOFILE and 256 ready events", function()
    local expected = H.default_num_file_descrs()
    local ep = lepoll.create()
    finally(function() ep:close() end)
    assert.are.equal(string.format(
      "epoll{fd=%d, num_file_descrs=%d, max_ready_events=256, flags_by_fd={}, ready={}}",
      ep:getfd(), expected), tostring(ep))
    assert.are.equal(0, #ep)
  end)

  it("takes nil for either argument as its default", function()
    local expected = H.default_num_file_descrs()
    local a = lepoll.create(nil, 8)
    local b = lepoll.create(32, nil)
    finally(function() a:close(); b:close() end)
    assert.are.equal(string.format(
      "epoll{fd=%d, num_file_descrs=%d, max_ready_events=8, flags_by_fd={}, ready={}}",
      a:getfd(), expected), tostring(a))
    assert.are.equal(string.format(
      "epoll{fd=%d, num_file_descrs=32, max_ready_events=256, flags_by_fd={}, ready={}}",
      b:getfd()), tostring(b))
  end)

  it("takes explicit values, integral floats included", function()
    local a = lepoll.create(64, 8)
    local b = lepoll.create(1, 1)
    local c = lepoll.create(16.0, 4.0)
    finally(function() a:close(); b:close(); c:close() end)
    assert.are.equal(string.format(
      "epoll{fd=%d, num_file_descrs=64, max_ready_events=8, flags_by_fd={}, ready={}}",
      a:getfd()), tostring(a))
    assert.are.equal(string.format(
      "epoll{fd=%d, num_file_descrs=1, max_ready_events=1, flags_by_fd={}, ready={}}",
      b:getfd()), tostring(b))
    assert.are.equal(string.format(
      "epoll{fd=%d, num_file_descrs=16, max_ready_events=4, flags_by_fd={}, ready={}}",
      c:getfd()), tostring(c))
  end)

  it("takes a range beyond the descriptor limit, up to INT_MAX", function()
    -- The table grows with the fds actually watched, not with the range.
    local ep = lepoll.create(0x7fffffff)
    finally(function() ep:close() end)
    assert.are.equal(string.format(
      "epoll{fd=%d, num_file_descrs=2147483647, max_ready_events=256, flags_by_fd={}, ready={}}",
      ep:getfd()), tostring(ep))
  end)

  it("refuses a num_file_descrs that is not an integer >= 1", function()
    local before = T.fdcount()
    assert.are.equal("bad argument #1 to 'create' (num_file_descrs must be in [1, 2147483647], got 0)",
      msg_of(function() lepoll.create(0) end))
    assert.are.equal("bad argument #1 to 'create' (num_file_descrs must be in [1, 2147483647], got -1)",
      msg_of(function() lepoll.create(-1) end))
    assert.are.equal(
      "bad argument #1 to 'create' (num_file_descrs must be in [1, 2147483647], got 2147483648)",
      msg_of(function() lepoll.create(0x80000000) end))
    assert.are.equal("bad argument #1 to 'create' (num_file_descrs must be an integer)",
      msg_of(function() lepoll.create(1.5) end))
    assert.are.equal("bad argument #1 to 'create' (num_file_descrs must be an integer)",
      msg_of(function() lepoll.create(0 / 0) end))
    assert.are.equal("bad argument #1 to 'create' (num_file_descrs must be an integer)",
      msg_of(function() lepoll.create(math.huge) end))
    assert.are.equal("bad argument #1 to 'create' (num_file_descrs must be an integer, got string)",
      msg_of(function() lepoll.create("10") end))
    assert.are.equal("bad argument #1 to 'create' (num_file_descrs must be an integer, got table)",
      msg_of(function() lepoll.create({}) end))
    assert.are.equal("bad argument #1 to 'create' (num_file_descrs must be an integer, got boolean)",
      msg_of(function() lepoll.create(true) end))
    -- A refused create opens nothing.
    assert.are.equal(before, T.fdcount())
  end)

  it("refuses a max_ready_events that is not an integer >= 1 epoll_wait takes", function()
    local max = max_ready()
    local range = "[1, " .. max .. "]"
    local before = T.fdcount()
    assert.are.equal("bad argument #2 to 'create' (max_ready_events must be in " .. range .. ", got 0)",
      msg_of(function() lepoll.create(64, 0) end))
    assert.are.equal("bad argument #2 to 'create' (max_ready_events must be in " .. range .. ", got -1)",
      msg_of(function() lepoll.create(64, -1) end))
    assert.are.equal("bad argument #2 to 'create' (max_ready_events must be in " .. range
      .. ", got " .. (max + 1) .. ")",
      msg_of(function() lepoll.create(64, max + 1) end))
    assert.are.equal("bad argument #2 to 'create' (max_ready_events must be in " .. range
      .. ", got " .. MAXINT_TEXT .. ")",
      msg_of(function() lepoll.create(64, MAXINT) end))
    -- 2^63: integral, but no integer on any version (shown as Lua shows it).
    assert.are.equal("bad argument #2 to 'create' (max_ready_events must be in " .. range
      .. ", got 9.2233720368548e+18)",
      msg_of(function() lepoll.create(64, 2 ^ 63) end))
    assert.are.equal("bad argument #2 to 'create' (max_ready_events must be an integer)",
      msg_of(function() lepoll.create(64, 1.5) end))
    assert.are.equal("bad argument #2 to 'create' (max_ready_events must be an integer, got string)",
      msg_of(function() lepoll.create(64, "10") end))
    assert.are.equal("bad argument #2 to 'create' (max_ready_events must be an integer, got table)",
      msg_of(function() lepoll.create(64, {}) end))
    assert.are.equal(before, T.fdcount())
  end)

  it("makes the epoll descriptor close-on-exec", function()
    local ep = lepoll.create(64)
    finally(function() ep:close() end)
    assert.is_true(T.cloexec(ep:getfd()))
  end)

  it("returns the epoll descriptor from getfd and pollfd, and 'r' from events", function()
    local before = T.fdcount()
    local ep = lepoll.create(64)
    finally(function() ep:close() end)
    local fd = ep:getfd()
    assert.are.equal("integer", H.numtype(fd))
    assert.are.equal(fd, ep:pollfd())
    assert.are.equal(before + 1, T.fdcount())
    -- It is the descriptor tostring shows, and a real open one.
    assert.are.equal(string.format(
      "epoll{fd=%d, num_file_descrs=64, max_ready_events=256, flags_by_fd={}, ready={}}", fd),
      tostring(ep))
    assert.are.equal("r", ep:events())
    ep:close()
    assert.are.equal(before, T.fdcount())
  end)

  it("refuses getfd, pollfd and events on a closed set", function()
    local ep = lepoll.create(64)
    ep:close()
    assert.are.equal("attempt to use a closed epoll set", msg_of(function() ep:getfd() end))
    assert.are.equal("attempt to use a closed epoll set", msg_of(function() ep:pollfd() end))
    assert.are.equal("attempt to use a closed epoll set", msg_of(function() ep:events() end))
  end)

  it("can be watched by another set, readable when it has a ready event", function()
    local r, w = T.pipe()
    local inner = lepoll.create(64)
    local outer = lepoll.create(64)
    finally(function() outer:close(); inner:close(); H.close(r, w) end)
    local ifd = inner:getfd()
    inner:set(r, "in")
    outer:set(ifd, "in")
    assert.are.equal(lepoll.IN, outer:find(ifd))
    -- Nothing ready inside, so the outer set sees nothing.
    assert.are.equal("timeout", outer:wait(0))
    assert.are.same({}, H.ready(outer))
    assert.are.equal(1, T.write(w, "x"))
    assert.are.equal("ok", outer:wait(0))
    assert.are.same({ { ifd, lepoll.IN } }, H.ready(outer))
    -- The inner set still holds its event for its own wait.
    assert.are.equal("ok", inner:wait(0))
    assert.are.same({ { r, lepoll.IN } }, H.ready(inner))
    -- Drained inside, quiet outside again.
    assert.are.equal("x", T.read(r))
    assert.are.equal("timeout", outer:wait(0))
    outer:invariant()
    inner:invariant()
  end)

  it("refuses, with ELOOP, a set watching a set that watches it", function()
    local a = lepoll.create(64)
    local b = lepoll.create(64)
    finally(function() a:close(); b:close() end)
    a:set(b:getfd(), "in")
    assert.are.equal(string.format("lepoll: set fd %d: Too many levels of symbolic links (ELOOP)",
      a:getfd()), msg_of(function() b:set(a:getfd(), "in") end))
    assert.are.equal(0, #b)
    assert.are.equal(1, #a)
    a:invariant()
    b:invariant()
  end)

  it("can be watched by another set given the set object itself (its getfd)", function()
    local r, w = T.pipe()
    local inner = lepoll.create(64)
    local outer = lepoll.create(64)
    finally(function() outer:close(); inner:close(); H.close(r, w) end)
    inner:set(r, "in")
    outer:set(inner, "in")
    assert.are.equal(lepoll.IN, outer:find(inner:getfd()))
    assert.are.equal(1, T.write(w, "x"))
    assert.are.equal("ok", outer:wait(0))
    assert.are.same({ { inner:getfd(), lepoll.IN } }, H.ready(outer))
    outer:remove(inner)
    assert.is_nil(outer:find(inner:getfd()))
    assert.are.equal(0, #outer)
  end)
end)
