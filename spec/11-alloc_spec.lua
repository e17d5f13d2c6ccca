local lepoll = require "lepoll"
local H = require "support.helpers"

local IN = lepoll.IN
local ROUNDS = 100000
local WARMUP = 2000

local C = H.cleanups(function(fn) finally(fn) end)

-- A set watching n level-triggered pipes for IN, each with `data` waiting
-- (none when data is nil). Returns the set and the read ends.
local function set_with_pipes(n, data)
  local ep, pipes = C.watched_pipes(n, data)
  local fds = {}
  for i, p in ipairs(pipes) do fds[i] = p.r end
  return ep, fds
end

-- Kilobytes allocated by run(ROUNDS), after run(WARMUP), with the
-- collector stopped so that any allocation shows in the count.
local function growth(run)
  run(WARMUP)
  collectgarbage()
  collectgarbage()
  collectgarbage("stop")
  local before = collectgarbage("count")
  local ok, err = pcall(run, ROUNDS)
  local after = collectgarbage("count")
  collectgarbage("restart")
  assert(ok, err)
  return after - before
end

describe("steady state", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("is measured by a method that sees one allocation", function()
    -- Control: the same measurement notices a round that makes a string.
    local ep = set_with_pipes(1, "x")
    local s
    local kb = growth(function(n)
      for i = 1, n do
        ep:wait(0)
        if i == n then s = tostring(ep) end
      end
    end)
    assert.is_true(kb > 0)
    assert.matches("^epoll{", s)
  end)

  it("allocates nothing in wait(0) + fold_ready + set (MOD) + find", function()
    local ep, fds = set_with_pipes(3, "x")
    local nfds = #fds
    local bad, sum = 0, 0
    local function f(acc, fd, flags) return acc + fd + flags end
    local expected = fds[1] + fds[2] + fds[3] + 3 * IN
    local function run(n)
      for i = 1, n do
        if ep:wait(0) ~= "ok" then bad = bad + 1 end
        sum = ep:fold_ready(0, f)
        if sum ~= expected then bad = bad + 1 end
        local fd = fds[i % nfds + 1]
        ep:set(fd, IN) -- in the table: EPOLL_CTL_MOD
        if ep:find(fd) ~= IN then bad = bad + 1 end
      end
    end
    assert.are.equal(0, growth(run))
    assert.are.equal(0, bad)
    assert.are.equal(expected, sum)
    ep:invariant()
  end)

  it("allocates nothing in wait(0) + iter_ready + set (MOD) + find", function()
    local ep, fds = set_with_pipes(3, "x")
    local nfds = #fds
    local bad, calls, fdsum = 0, 0, 0
    local function g(fd, flags)
      calls = calls + 1
      fdsum = fdsum + fd
      if flags ~= IN then bad = bad + 1 end
    end
    local function run(n)
      for i = 1, n do
        if ep:wait(0) ~= "ok" then bad = bad + 1 end
        ep:iter_ready(g)
        local fd = fds[i % nfds + 1]
        ep:set(fd, IN)
        if ep:find(fd) ~= IN then bad = bad + 1 end
      end
    end
    assert.are.equal(0, growth(run))
    assert.are.equal(0, bad)
    assert.are.equal(3 * (WARMUP + ROUNDS), calls)
    assert.are.equal((fds[1] + fds[2] + fds[3]) * (WARMUP + ROUNDS), fdsum)
  end)

  it("allocates nothing when wait returns timeout", function()
    local ep, fds = set_with_pipes(3, nil)
    local nfds = #fds
    local bad, calls = 0, 0
    local function f(acc) calls = calls + 1 return acc end
    local function g() calls = calls + 1 end
    local init = 17
    local function run(n)
      for i = 1, n do
        if ep:wait(0) ~= "timeout" then bad = bad + 1 end
        if ep:wait("immediately") ~= "timeout" then bad = bad + 1 end
        if ep:wait_timeout_after(0) ~= "timeout" then bad = bad + 1 end
        if ep:fold_ready(init, f) ~= init then bad = bad + 1 end
        ep:iter_ready(g)
        local fd = fds[i % nfds + 1]
        ep:set(fd, IN)
        if ep:find(fd) ~= IN then bad = bad + 1 end
      end
    end
    assert.are.equal(0, growth(run))
    assert.are.equal(0, bad)
    assert.are.equal(0, calls)
  end)
end)

describe("the allocator itself", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)
  local T = H.T

  -- The core allocates through the state's allocator, which the collector's
  -- count does not see: count the allocator's calls instead.
  it("is not called by a steady wait/dispatch/set/find round", function()
    T.count_allocs(true)
    local ok, err = pcall(function()
      local ep, fds = set_with_pipes(4, "x")
      local fd = fds[1]
      local function add(acc, _, flags) return acc + flags end
      local function each() end
      for _ = 1, WARMUP do
        ep:wait(0); ep:fold_ready(0, add); ep:iter_ready(each); ep:set(fd, IN); ep:find(fd)
      end
      collectgarbage("stop")
      local calls = T.count_allocs(true)
      for _ = 1, ROUNDS do
        ep:wait(0); ep:fold_ready(0, add); ep:iter_ready(each); ep:set(fd, IN); ep:find(fd)
      end
      local after = T.count_allocs(true)
      collectgarbage("restart")
      assert.are.equal(calls, after)
    end)
    T.count_allocs(false)
    assert(ok, err)
  end)

  it("holds nothing more after a set of a large, unopened fd was refused", function()
    -- The kernel is asked before the table grows: a stray number costs nothing.
    T.count_allocs(true)
    local ok, err = pcall(function()
      local ep = C.new_set(2147483647)
      local _, net_before = T.count_allocs(true)
      local msg = H.error_of(ep.set, ep, 2147483000, "in")
      assert.are.equal("lepoll: set fd 2147483000: Bad file descriptor (EBADF)", msg)
      local _, net_after = T.count_allocs(true)
      -- Growing the table to that fd would hold 16 GiB; the error and the
      -- test's own bookkeeping hold a few kilobytes.
      assert.is_true(net_after - net_before < 65536, tostring(net_after - net_before))
    end)
    T.count_allocs(false)
    assert(ok, err)
  end)
end)
