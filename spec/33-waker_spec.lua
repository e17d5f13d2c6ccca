-- Wakers: a queue of values that threads of a C host post to
-- (lepoll_wake), and an eventfd, readable while values wait, that wakes the
-- script's loop to read them (doc/embedding.md, "Waking a script from
-- another thread"). Here: the Lua object itself (lepoll.waker, w:post
-- queues as a host's post would), the example host examples/host/waker.c,
-- the test host test/c/waker_threads.c (threads posting at once, closing
-- under their posts), and memory errors through test/c/oom_host.c. The
-- hosts are built against the Lua under test, into H.BUILD (make test).
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)

local MiB = 1048576
local CLOSED = "attempt to use a closed waker"

-- A waker, closed when the test ends.
local function new_waker()
  local w = lepoll.waker()
  C.defer(function() w:close() end)
  return w
end

-- Every byte value, then more: n bytes.
local function bytes(n)
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  local all = table.concat(t)
  return all:rep(math.floor(n / 256) + 1):sub(1, n)
end

-- Whether w's descriptor is readable now, seen by a set of its own.
local function readable(w)
  local ep = C.new_set()
  ep:set(w, "in")
  return ep:wait(0) == "ok"
end

-- What the shell says this process's descriptor fd is.
local function link_of(fd)
  local out = H.run("readlink /proc/$PPID/fd/" .. fd)
  return (out:gsub("\n$", ""))
end

describe("lepoll.waker", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("is an eventfd, non-blocking and close-on-exec, readable exactly while values wait", function()
    local w = new_waker()
    local fd = w:getfd()
    assert.are.equal("anon_inode:[eventfd]", link_of(fd))
    assert.is_true(T.cloexec(fd))
    assert.are.equal(("waker{fd=%d, queued=0}"):format(fd), tostring(w))
    assert.is_false(readable(w))
    assert.are.same({ nil, "again" }, { w:read() })
    assert.is_true(w:post("one"))
    assert.is_true(w:post("two"))
    assert.are.equal(("waker{fd=%d, queued=2}"):format(fd), tostring(w))
    assert.is_true(readable(w))
    assert.are.equal("one", w:read())
    assert.is_true(readable(w)) -- one more waits
    assert.are.equal("two", w:read())
    assert.is_false(readable(w)) -- quiet as soon as the last one is taken
    assert.are.same({ nil, "again" }, { w:read() })
    assert.is_true(w:post("three"))
    assert.is_true(readable(w))
    assert.are.equal("three", w:read())
    assert.is_false(readable(w))
  end)

  it("copies values of any bytes: empty, with zero bytes, 1 MiB", function()
    local w = new_waker()
    local big, zeros = bytes(MiB), "a\0b\0\0"
    local s = { "", zeros, big, "", "end" }
    for _, v in ipairs(s) do assert.is_true(w:post(v)) end
    for _, v in ipairs(s) do
      local got = w:read()
      assert.are.equal(#v, #got)
      assert.is_true(got == v, "a value changed")
    end
    assert.are.same({ nil, "again" }, { w:read() })
    assert.are.equal("12", (function() w:post(12) return w:read() end)()) -- a number, as Lua converts it
  end)

  it("takes an eventfd's counter written from outside back to 0 when it finds nothing", function()
    local w = new_waker()
    assert.is_true(T.eventfd_write(w:getfd(), 5))
    assert.is_true(readable(w))
    assert.are.same({ nil, "again" }, { w:read() })
    assert.is_false(readable(w))
  end)

  it("closes once: close twice is allowed, then read and post raise", function()
    local w = lepoll.waker()
    local fd = w:getfd()
    assert.is_true(w:post("dropped with the waker"))
    w:close()
    assert.is_false(H.is_open(fd))
    w:close()
    assert.are.equal(-1, w:getfd())
    assert.are.equal("waker{closed}", tostring(w))
    assert.are.equal(CLOSED, H.msg_of(function() w:read() end))
    assert.are.equal(CLOSED, H.msg_of(function() w:post("x") end))
    -- The closed check comes before the arguments are looked at.
    assert.are.equal(CLOSED, H.msg_of(function() w:post({}) end))
  end)

  it("is closed when collected", function()
    local fd = lepoll.waker():getfd()
    assert.is_true(H.is_open(fd))
    collectgarbage()
    collectgarbage()
    assert.is_false(H.is_open(fd))
    -- __gc handed anything else does nothing
    getmetatable(new_waker()).__gc({})
  end)

  H.it_if(it, pending, H.has.toclose, "needs <close>")("is closed by <close> at the end of its scope", function()
    local fd = H.load([[
      local lepoll = ...
      local w <close> = lepoll.waker()
      w:post("x")
      return w:getfd()
    ]])(lepoll)
    assert.is_false(H.is_open(fd))
  end)

  it("refuses bad arguments with a clear error", function()
    local w = new_waker()
    local ep = C.new_set()
    assert.are.equal("bad argument #1 to 'post' (string expected, got no value)",
      H.msg_of(function() w:post() end))
    assert.are.equal("bad argument #1 to 'post' (string expected, got table)",
      H.msg_of(function() w:post({}) end))
    assert.are.equal("bad argument #1 to 'read' (lepoll.waker expected, got number)",
      H.msg_of(function() w.read(42) end))
    assert.are.equal("bad argument #1 to 'read' (lepoll.waker expected, got lepoll.set)",
      H.msg_of(function() w.read(ep) end))
    assert.are.equal("bad argument #1 to 'getfd' (lepoll.waker expected, got no value)",
      H.msg_of(function() w.getfd() end))
    assert.are.equal("bad argument #1 to 'close' (lepoll.waker expected, got table)",
      H.msg_of(function() w.close({}) end))
    assert.are.equal(("waker{fd=%d, queued=0}"):format(w:getfd()), tostring(w)) -- unchanged
  end)

  it("names EMFILE when no descriptor is left (the describe checks none leaks)", function()
    local wakers = {}
    collectgarbage()
    local old = assert(T.setnofile(assert(T.fdcount()) + 4))
    local ok, err = pcall(function()
      for i = 1, 50 do wakers[i] = lepoll.waker() end
    end)
    assert(T.setnofile(old))
    for _, w in ipairs(wakers) do w:close() end
    assert.is_false(ok)
    assert.matches("lepoll: waker: Too many open files %(EMFILE%)$", err)
    assert.is_true(#wakers >= 1 and #wakers < 50)
  end)

  it("belongs to the process that made it: a forked child's read and post are refused", function()
    local w = new_waker()
    assert.is_true(w:post("the parent's"))
    local out, how, code = H.in_child(function()
      local r = { w:read() }
      local p = { w:post("the child's") }
      local queued = tostring(w):match("queued=(%d+)")
      w:close() -- the child's copy of the descriptor only
      return table.concat({ tostring(r[1]), r[3], tostring(p[1]), p[3], queued, tostring(w) }, " ")
    end)
    assert.are.same({ "nil ECHILD nil ECHILD 0 waker{closed}", "exit", 0 }, { out, how, code })
    assert.is_true(readable(w))
    assert.are.equal("the parent's", w:read())
    assert.are.same({ nil, "again" }, { w:read() })
  end)

  it("is watched by lepoll.loop as any descriptor: l:io and l:readable", function()
    local w = new_waker()
    local l = C.new_loop()
    local got = {}
    local watcher = l:io(w, "in", function(watcher)
      for value in w.read, w do
        got[#got + 1] = value
        if value == "stop" then watcher:stop() end
      end
    end)
    l:timer(0.001, function()
      w:post("a")
      w:post("b")
    end)
    l:timer(0.002, function() w:post("stop") end)
    l:run()
    assert.is_false(watcher:is_active())
    assert.are.same({ "a", "b", "stop" }, got)
    -- a task waits for the next value
    local task_got
    l:spawn(function()
      assert.is_true(l:readable(w, 5))
      task_got = w:read()
    end)
    l:timer(0.001, function() w:post("for the task") end)
    l:run()
    assert.are.equal("for the task", task_got)
  end)
end)

describe("the example waker host (examples/host/waker.c)", function()
  local HOST = H.BUILD .. "/waker_host"

  local function run_host(script, messages)
    return H.run(("%s %s %s %s"):format(H.CHILD_ENV, HOST, script, messages or ""))
  end

  it("prints what its thread posted, in order, and then finds the closed waker refusing with EPIPE", function()
    local out, ok, how, code = run_host("examples/host/waker.lua", 3)
    assert.are.same({ true, "exit", 0 }, { ok, how, code }, out)
    assert.are.equal(table.concat({
      "script: message 1",
      "script: message 2",
      "script: message 3",
      "script: done after 3 messages",
      'host: posted 3 messages and "done"',
      "host: a post after the script closed the waker: EPIPE",
    }, "\n") .. "\n", out)
  end)

  it("passes thousands of messages, each once", function()
    local out, ok, how, code = run_host("examples/host/waker.lua", 5000)
    assert.are.same({ true, "exit", 0 }, { ok, how, code }, out)
    local n = 0
    for i in out:gmatch("script: message (%d+)\n") do
      n = n + 1
      assert.are.equal(n, tonumber(i))
    end
    assert.are.equal(5000, n)
    assert.matches("\nscript: done after 5000 messages\n", out, 1, true)
  end)

  it("reports a failed script and still ends its thread", function()
    local script = C.tmpname()
    local f = assert(io.open(script, "w"))
    f:write("local w = ...\nerror('no ' .. tostring(w):match('^waker{') .. ' wanted', 0)\n")
    f:close()
    local out, ok, how, code = run_host(script, 100)
    assert.are.same({ nil, "exit", 1 }, { ok, how, code }, out)
    assert.are.equal("waker_host: script: no waker{ wanted\n", out)
  end)
end)

describe("host threads posting at once (test/c/waker_threads.c)", function()
  it("deliver every value once, in each thread's order; closing under their posts refuses them", function()
    local out, ok, how, code = H.run(("%s %s/waker_threads test/c/waker_threads.lua 3 3000"):format(H.CHILD_ENV,
      H.BUILD))
    assert.are.same({ true, "exit", 0 }, { ok, how, code }, out)
    assert.matches("\n9 passed, 0 failed\n$", out)
    assert.matches("waker: ok   in order: 9003 values %(9 empty, %d+ bytes%) from 3 threads, each once and "
      .. "in order; the queue ran empty %d+ times\n", out)
    for _, line in ipairs({ "a value of SIZE_MAX bytes: Cannot allocate memory", "NULL data of 1 byte: Invalid",
      "a post once the script closed the waker: Broken pipe", "close under posts: 300 values read in order",
      "lua_close under posts: ", "a state without lepoll opened: lepoll_newwaker, then waker:read() gives bare",
      "a state without lepoll opened: lua_close closes the waker: Broken pipe", "descriptors: " }) do
      assert.matches("waker: ok   [^\n]*" .. line:gsub("%p", "%%%0"), out)
    end
  end)
end)

describe("memory errors (test/c/oom_host.c)", function()
  -- Each allocation of w:read and lepoll.waker() made to fail in turn:
  -- the value read stays first in the queue; a waker that could not be
  -- made leaves no descriptor.
  local SWEEP = [[
local lepoll = require "lepoll"
local w = lepoll.waker()
local raised, k = 0, 0
repeat
  k = k + 1
  local value = ("value %d "):format(k) .. ("x"):rep(100) -- long: never interned
  assert(w:post(value) and w:post("next"))
  oom.arm(k)
  local ok, got = pcall(w.read, w)
  local failed = oom.disarm()
  if not ok then
    assert(got == "not enough memory", tostring(got))
    raised = raised + 1
    got = w:read()
  end
  assert(got == value, "value " .. k .. " lost")
  assert(w:read() == "next" and w:read() == nil)
until not failed
local lowest = lepoll.waker()
local fd = lowest:getfd()
lowest:close()
local made, j = 0, 0
repeat
  j = j + 1
  oom.arm(j)
  local ok, x = pcall(lepoll.waker)
  local failed = oom.disarm()
  if ok then x:close() made = made + 1 end
  collectgarbage()
  local probe = lepoll.waker()
  assert(probe:getfd() == fd, "a descriptor left by a failed lepoll.waker()")
  probe:close()
until not failed
w:close()
print(("sweep: read %d points, %d raised; waker %d points"):format(k, raised, j))
return 0
]]

  it("w:read keeps the value it could not push; lepoll.waker leaks no descriptor", function()
    local script = C.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(SWEEP)
    f:close()
    local out, ok, how, code = H.run(("%s %s/oom_host %s"):format(H.CHILD_ENV, H.BUILD, script))
    assert.are.same({ true, "exit", 0 }, { ok, how, code }, out)
    local points, raised = out:match("sweep: read (%d+) points, (%d+) raised; waker %d+ points")
    assert.is_truthy(points, out)
    assert.is_true(tonumber(raised) >= 1, out) -- the failure met the push
  end)
end)
