-- Child processes in lepoll.loop: l:process and its on_exit callback, tasks
-- waiting with l:wait_exit, l:closing on a process, the fallback without
-- pidfd; and Ctrl-C (the interpreter's "interrupted!") never taken for a
-- callback's failure.
local lepoll = require "lepoll"
local H = require "support.helpers"

local C = H.cleanups(function(fn) finally(fn) end)


describe("lepoll.loop's child processes", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)
  H.no_child_leaks(lazy_setup, lazy_teardown)

  it("l:process runs a program; its output comes, then on_exit, once", function()
    local l = C.new_loop()
    local out, ends = {}, {}
    local p = assert(l:process({ "sh", "-c", "echo one; sleep 0.1; echo two; exit 5", stdout = "pipe" },
      function(proc, how, code) ends[#ends + 1] = { proc, how, code } end))
    C.defer(function() p:close() end)
    l:io(p.stdout, "in", function(w)
      local s = lepoll.read(p.stdout)
      if s == "" then w:stop() elseif s then out[#out + 1] = s end
    end)
    H.step_until(l, function() return #ends > 0 end)
    assert.are.same({ { p, "exit", 5 } }, ends)
    assert.are.same({ "exit", 5 }, { p:status() })
    for _ = 1, 5 do l:run("nowait") end
    assert.are.equal("one\ntwo\n", table.concat(out))
    assert.are.equal(1, #ends)
  end)

  it("run returns once every process it watches has ended", function()
    local l = C.new_loop()
    local n = 0
    local procs = {}
    for i = 1, 3 do
      procs[i] = assert(l:process({ "sh", "-c", "sleep 0." .. i }, function() n = n + 1 end))
      C.defer(function() procs[i]:close() end)
    end
    l:run()
    assert.are.equal(3, n)
  end)

  it("tasks wait for a process's end, with a timeout", function()
    local l = C.new_loop()
    local results = {}
    local fast = assert(lepoll.spawn { "sh", "-c", "exit 2" }) -- not started by the loop
    local slow = assert(l:process { "sleep", "30" })
    C.defer(function() fast:close() slow:close() end)
    l:spawn(function()
      results.fast = { l:wait_exit(fast) }
      results.timeout = { l:wait_exit(slow, 0.05) }
      slow:kill()
      results.slow = { l:wait_exit(slow) }
      results.again = { l:wait_exit(slow) } -- ended: at once, the same
    end)
    H.step_until(l, function() return results.again ~= nil end)
    assert.are.same({ fast = { "exit", 2 }, timeout = { nil, "timeout" }, slow = { "signal", 15 },
      again = { "signal", 15 } }, results)
  end)

  it("l:closing(p) ends the watch: waiting tasks get nil, 'closed', on_exit does not run", function()
    local l = C.new_loop()
    local ended = false
    local p = assert(l:process({ "sleep", "30" }, function() ended = true end))
    C.defer(function() p:close() end)
    local got
    l:spawn(function() got = { l:wait_exit(p) } end)
    l:run("nowait")
    assert.are.equal(1, l:closing(p))
    p:close() -- safe now: the loop no longer watches its pidfd
    H.step_until(l, function() return got ~= nil end)
    assert.are.same({ nil, "closed" }, got)
    assert.is_false(ended)
  end)

  it("a program that cannot start: nil, message, errname, nothing watched", function()
    local l = C.new_loop()
    local p, msg, name = l:process({ "lepoll-no-such-program" }, function() end)
    assert.are.same({ nil, "ENOENT" }, { p, name })
    assert.matches("lepoll-no-such-program", msg, 1, true)
    assert.are.equal(0, l:stats().watchers)
    assert.is_false(l:run()) -- nothing to do: run returns at once
  end)

  it("runs the example of doc/loop.md's Child processes", function()
    local doc = H.slurp("doc/loop.md")
    local section = doc:match("\n## Child processes\n(.-)\n## ")
    local code = assert(section:match("```lua\n(.-)```"), "no example")
    local out = H.run_lua(code)
    -- the output's end and the child's may come in one round, in either order
    local without_end = out:gsub("ended:\texit\t0\n", "", 1)
    assert.are.equal("one\ntwo\n", without_end, out)
  end)

  it("refuses bad arguments", function()
    local l = C.new_loop()
    assert.matches("bad argument #1 to 'process' %(table expected, got string%)",
      H.msg_of(function() l:process("sh") end))
    assert.matches("bad argument #2 to 'process' %(function expected, got number%)",
      H.msg_of(function() l:process({ "true" }, 1) end))
    assert.matches("bad argument #1 to 'wait_exit' %(open process expected",
      H.msg_of(function() l:wait_exit({}) end))
  end)

  it("an error in on_exit is the loop's: on_error gets it", function()
    local errors = {}
    local l = C.new_loop({ on_error = function(err) errors[#errors + 1] = err end })
    local p = assert(l:process({ "true" }, function() error("boom", 0) end))
    C.defer(function() p:close() end)
    H.step_until(l, function() return #errors > 0 end)
    assert.are.same({ "boom" }, errors)
  end)

  it("without pidfd_open the loop polls, and on_exit and wait_exit still come", function()
    local out = H.run_lua([[
      local T = require "lepoll_test"
      local loop = require "lepoll.loop"
      T.fault("pidfd_open", 1, "ENOSYS", -1)
      local l = loop.new()
      local p = assert(l:process({ "sh", "-c", "exit 6" }, function(_, how, code)
        io.write("on_exit ", how, " ", code, "\n")
      end))
      local q = assert(l:process { "sleep", "30" })
      l:spawn(function()
        local none, why = l:wait_exit(q, 0.1)
        io.write("timeout: ", tostring(none), " ", why, "\n")
        q:kill()
        io.write("wait_exit ", table.concat({ l:wait_exit(q) }, " "), "\n")
      end)
      l:run()
      io.write(tostring(p:getfd()), " ", tostring(q:getfd()), "\n")
      p:close() q:close() l:close()
    ]], true)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    table.sort(lines)
    assert.are.same({ "nil nil", "on_exit exit 6", "timeout: nil timeout", "wait_exit signal 15" }, lines)
  end)
end)

describe("Ctrl-C in a loop", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)
  H.no_child_leaks(lazy_setup, lazy_teardown)

  -- A child interpreter running a loop with on_error, given SIGINT once it
  -- has written "ready" (and `delay` seconds later): the interpreter's
  -- "interrupted!" must leave run at once, not go to on_error.
  local function interrupted_in(body, delay)
    local script = [[
      local loop = require "lepoll.loop"
      local l = loop.new({ on_error = function(err) io.stderr:write("on_error: ", tostring(err), "\n") end })
      local function ready()
        io.stdout:write("ready\n")
        io.stdout:flush()
      end
      local function busy()
        ready()
        local t = os.clock()
        while os.clock() - t < 1 do end
      end
      l:timer(30, function() io.stderr:write("the 30 s timer ran\n") end)
    ]] .. body .. [[
      l:run()
      io.stderr:write("run returned\n")
    ]]
    local p = C.lua_child({ "-e", script }, true)
    assert.are.equal("ready\n", C.read_when_ready(p.stdout))
    if delay then C.new_set():wait(delay) end
    local t0 = lepoll.now()
    assert.is_true(p:kill(2))
    local how, code = p:wait()
    local took = lepoll.now() - t0
    local err = {}
    for _ = 1, 100 do
      local s = lepoll.read(p.stderr)
      if not s or s == "" then break end
      err[#err + 1] = s
    end
    err = table.concat(err)
    assert.are.same({ "exit", 1 }, { how, code }, err)
    assert.matches("interrupted!", err, 1, true)
    assert.is_nil(err:find("on_error", 1, true))
    assert.is_nil(err:find("run returned", 1, true))
    assert.is_true(took < 5, ("it took %.1f s"):format(took))
  end

  -- What the interpreter does on Ctrl-C, in this process: a count hook on
  -- the caller's thread that raises "interrupted!". Swept over every
  -- instruction run makes in the caller's thread, the error leaves run at
  -- each of them, and run works again afterwards: never "already running".
  H.it_if(it, pending, H.LUA_VERSION >= 502 and not H.JIT, "needs the main thread as a value")(
    "an interrupt at any instruction of run's own leaves the loop usable", function()
      local l = C.new_loop()
      l:timer(0, function() end, 0.001)
      local main = coroutine.running()
      local raised = 0
      for k = 1, 200 do
        -- armed and disarmed inside the protected call: wherever it fires,
        -- its error is caught here
        local ok, err = pcall(function()
          debug.sethook(main, function()
            debug.sethook(main)
            error("interrupted!")
          end, "", k)
          l:run("nowait")
          debug.sethook(main)
        end)
        if not ok then
          raised = raised + 1
          assert.matches("interrupted!$", tostring(err))
        end
        local again, why = pcall(l.run, l, "nowait")
        assert(again, ("k=%d: %s"):format(k, tostring(why)))
      end
      assert.is_true(raised > 20, "the hook raised only " .. raised .. " times")
      l:invariant()
    end)

  it("while the loop waits: run raises it", function()
    -- (after a pause, so that the child is in its wait)
    interrupted_in([[ l:timer(0, ready) ]], 0.2)
  end)

  -- A callback or task that is running (1 s of work here) is not cut
  -- short (hooks are per thread; LuaJIT's are global and do cut it short):
  -- run raises the error as soon as the round ends.
  it("while a timer's callback runs: run raises it when the round ends", function()
    interrupted_in([[ l:timer(0, busy) ]])
  end)

  it("while a task runs: run raises it when the round ends", function()
    interrupted_in([[ l:spawn(busy) ]])
  end)
end)
