-- lepoll.loop: errors raised by watcher callbacks, timer callbacks and
-- tasks; run re-raising them unchanged, tracebacks, on_error.
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)
local pipe, new_loop = C.pipe, C.new_loop

local SRC = debug.getinfo(1, "S").short_src

-- Lua 5.1, 5.2 and LuaJIT give error(42) a position, as a string (error
-- adds one to a number there); 5.3 and later raise the number itself.
local NUMBERS_KEPT = H.LUA_VERSION >= 503

-- "file:line" of the function f's definition.
local function defined(f)
  return SRC .. ":" .. debug.getinfo(f, "S").linedefined
end

-- The error value of l:run(mode), which must fail.
local function run_error(l, mode)
  local ok, err = pcall(l.run, l, mode)
  assert(not ok, "run did not fail")
  return err
end

-- The first line of a traceback, and whether it goes on with the stack.
local function first_line(trace)
  local line, rest = trace:match("^([^\n]*)\n(.*)$")
  assert.are.equal("string", type(rest), trace)
  assert.matches("^stack traceback:\n", rest)
  return line, rest
end

describe("lepoll.loop errors", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  describe("in an I/O callback", function()
    it("leave run with the original string, position included, and a traceback naming the callback", function()
      local l = new_loop()
      local r, w = pipe()
      assert.is_nil(l:last_traceback())
      local line
      local function cb()
        line = debug.getinfo(1, "l").currentline + 1
        error("boom")
      end
      l:io(r, "in", cb)
      T.write(w, "x")
      local err = run_error(l, "once")
      local msg = SRC .. ":" .. line .. ": boom"
      assert.are.equal(msg, err)
      local trace = l:last_traceback()
      local first, stack = first_line(trace)
      assert.are.equal(("io watcher on fd %d (callback %s): %s"):format(r, defined(cb), msg), first)
      assert.is_truthy(stack:find("\n\t[C]: in function 'error'\n", 1, true))
      assert.is_truthy(stack:find("\n\t" .. SRC .. ":" .. line .. ": in ", 1, true))
    end)

    it("leave run with the same table, and other values unchanged", function()
      local l = new_loop()
      local r, w = pipe()
      local thrown = { code = 7 }
      local value = thrown
      local function raising() error(value) end
      l:io(r, "in", raising)
      T.write(w, "x")
      assert.is_true(rawequal(thrown, run_error(l, "once")))
      assert.matches("^io watcher on fd %d+ %(callback .-%): %(error object is a table value%)\n",
        l:last_traceback())
      local named = setmetatable({}, { __tostring = function() return "a named error" end })
      value = named
      assert.is_true(rawequal(named, run_error(l, "once")))
      assert.matches("^io watcher on fd %d+ %(callback .-%): a named error\n", l:last_traceback())
      value = 42
      local text = NUMBERS_KEPT and "42" or defined(raising) .. ": 42" -- defined on the line of its error
      assert.are.equal(NUMBERS_KEPT and 42 or text, run_error(l, "nowait"))
      assert.matches("^io watcher on fd %d+ %(callback .-%): " .. text:gsub("%p", "%%%0") .. "\n", l:last_traceback())
      value = nil
      assert.is_nil(run_error(l, "nowait"))
      assert.matches("%(error object is a nil value%)\n", l:last_traceback())
      l:invariant()
    end)

    it("leave the loop consistent: the rest of the round is dispatched by the next run", function()
      local l = new_loop()
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      local log = {}
      local thrown = {}
      local first = l:io(r1, "in|et", function()
        log[#log + 1] = "first"
        error(thrown)
      end)
      l:io(r2, "in|et", function() log[#log + 1] = "second" end)
      l:timer(0, function() log[#log + 1] = "timer" end)
      T.write(w1, "x")
      T.write(w2, "y")
      assert.is_true(rawequal(thrown, run_error(l, "once")))
      assert.are.same({ "first" }, log)
      l:invariant()
      assert.is_true(first:is_active()) -- what failed stays as it was
      -- Edge-triggered: the kernel will not report r2 again, yet its event
      -- is not lost; the timer due runs too. run works again.
      assert.is_true(l:run("nowait"))
      assert.are.same({ "first", "second", "timer" }, log)
      assert.is_true(l:run("nowait"))
      assert.are.same({ "first", "second", "timer" }, log)
      l:invariant()
    end)

    it("let run be called again at once (it is not left running)", function()
      local l = new_loop()
      local r, w = pipe()
      local calls = 0
      l:io(r, "in", function(watcher)
        calls = calls + 1
        if calls == 1 then error("first call fails", 0) end
        watcher:stop()
      end)
      T.write(w, "x")
      assert.are.equal("first call fails", run_error(l))
      assert.is_false(l:run())
      assert.are.equal(2, calls)
    end)
  end)

  describe("in a timer callback", function()
    it("leave run with the original value and a traceback naming the timer", function()
      local l = new_loop()
      local line
      local function cb()
        line = debug.getinfo(1, "l").currentline + 1
        error("tick failed")
      end
      local timer = l:timer(0, cb)
      local err = run_error(l)
      local msg = SRC .. ":" .. line .. ": tick failed"
      assert.are.equal(msg, err)
      local first, stack = first_line(l:last_traceback())
      assert.are.equal(("timer #1 (callback %s): %s"):format(defined(cb), msg), first)
      assert.is_truthy(stack:find("\n\t" .. SRC .. ":" .. line .. ": in ", 1, true))
      assert.is_false(timer:is_active()) -- a one-shot timer is done
      assert.is_false(l:run())
    end)

    it("keep a repeating timer scheduled, and the timers due after it run next", function()
      local l = new_loop()
      local log = {}
      local thrown = {}
      local repeating = l:timer(0, function()
        log[#log + 1] = "repeating"
        error(thrown)
      end, 10)
      l:timer(0, function() log[#log + 1] = "second" end)
      assert.is_true(rawequal(thrown, run_error(l, "nowait")))
      assert.are.same({ "repeating" }, log)
      assert.is_true(repeating:is_active())
      l:invariant()
      assert.is_true(l:run("nowait"))
      assert.are.same({ "repeating", "second" }, log)
      repeating:stop()
      assert.is_false(l:run())
    end)
  end)

  describe("in a task", function()
    it("leave run with the original value and a traceback of the task, which is dead", function()
      local l = new_loop()
      local r, w = pipe()
      local line
      local function body(fd)
        l:readable(fd)
        line = debug.getinfo(1, "l").currentline + 1
        error("task failed")
      end
      local task = l:spawn(body, r)
      assert.is_true(l:run("nowait"))
      T.write(w, "x")
      local err = run_error(l, "once")
      local msg = SRC .. ":" .. line .. ": task failed"
      assert.are.equal(msg, err)
      local first, stack = first_line(l:last_traceback())
      assert.are.equal(("task #1 (function %s): %s"):format(defined(body), msg), first)
      assert.is_truthy(stack:find("\n\t" .. SRC .. ":" .. line .. ": in ", 1, true))
      assert.are.equal("dead", task:status())
      assert.matches("flags_by_fd={}", tostring(l))
      l:invariant()
      assert.is_false(l:run())
    end)

    H.it_if(it, pending, H.has.toclose, "no to-be-closed variables before Lua 5.4")(
      "close the to-be-closed variables of the failed task", function()
        local l = new_loop()
        local r, w = pipe()
        local closed = {}
        -- The task of the test above, with a to-be-closed variable.
        local body = H.load([[
          local l, fd, closed = ...
          local _ <close> = setmetatable({}, { __close = function(_, err) closed[#closed + 1] = err end })
          l:readable(fd)
          error("task failed", 0)
        ]], "body")
        local task = l:spawn(body, l, r, closed)
        assert.is_true(l:run("nowait"))
        assert.are.same({}, closed)
        T.write(w, "x")
        assert.are.equal("task failed", run_error(l, "once"))
        assert.are.same({ "task failed" }, closed) -- closed by the loop, with the error
        assert.are.equal("dead", task:status())
        l:invariant()
      end)

    it("at start leave the other tasks to start in the next run", function()
      local l = new_loop()
      local log = {}
      local thrown = {}
      l:spawn(function() log[#log + 1] = "a" end)
      l:spawn(function() error(thrown) end)
      l:spawn(function() log[#log + 1] = "c" end)
      assert.is_true(rawequal(thrown, run_error(l)))
      assert.are.same({ "a" }, log)
      assert.matches("tasks=1,", tostring(l))
      l:invariant()
      assert.is_false(l:run())
      assert.are.same({ "a", "c" }, log)
    end)

    it("that yield to the loop by themselves fail, saying so", function()
      local l = new_loop()
      local body = function() coroutine.yield("hello") end
      local task = l:spawn(body)
      local expected = ("task #1 (function %s) yielded to the loop outside its waits")
        :format(defined(body))
      assert.are.equal(expected, run_error(l))
      assert.are.equal("dead", task:status())
      assert.are.equal(expected, (first_line(l:last_traceback()):match("^task #1 %(function .-%): (.*)$")))
      assert.is_false(l:run())
    end)
  end)

  describe("whose coroutine other code resumed while they waited on a descriptor", function()
    it("fail when the descriptor's event resumes them at a yield of their own and they yield to the loop", function()
      local l = new_loop()
      local r, w = pipe()
      local co
      local log = {}
      local task = l:spawn(function()
        co = coroutine.running()
        log[#log + 1] = l:readable(r) -- returns what the other code resumed it with
        coroutine.yield("to the other code")
        log[#log + 1] = "woken by the event"
        coroutine.yield("to the loop")
        log[#log + 1] = "resumed again"
      end)
      assert.is_true(l:run("nowait"))
      assert.are.same({ true, "to the other code" }, { coroutine.resume(co, "other") })
      T.write(w, "x")
      local err = run_error(l)
      assert.is_truthy(err:find("yielded to the loop outside its waits", 1, true), err)
      assert.are.same({ "other", "woken by the event" }, log)
      assert.are.equal("dead", task:status())
      l:invariant()
      assert.is_false(l:run())
    end)
  end)

  describe("with opts.on_error", function()
    it("go to on_error(err, where, obj) at once, and the loop goes on", function()
      local handled = {}
      local l = new_loop({ on_error = function(...) handled[#handled + 1] = { n = select("#", ...), ... } end })
      local r1, w1 = pipe()
      local r2, w2 = pipe()
      local thrown = { "io" }
      local log = {}
      local watcher = l:io(r1, "in", function(wt)
        log[#log + 1] = "first"
        wt:stop()
        error(thrown)
      end)
      l:io(r2, "in", function(wt)
        log[#log + 1] = "second"
        wt:stop()
      end)
      local timer = l:timer(0, function() error("timer", 0) end)
      local task = l:spawn(function() error("task", 0) end)
      T.write(w1, "x")
      T.write(w2, "y")
      assert.is_false(l:run())
      assert.are.same({ "first", "second" }, log)
      assert.are.equal(3, #handled)
      -- The task failed first (round step 2), then the watcher, then the timer.
      local h1, h2, h3 = handled[1], handled[2], handled[3]
      assert.are.equal(3, h1.n)
      assert.are.equal("task", h1[1])
      assert.matches("^task #1 %(function .-%): task\nstack traceback:\n", h1[2])
      assert.is_true(rawequal(task, h1[3]))
      assert.is_true(rawequal(thrown, h2[1]))
      assert.matches(("^io watcher on fd %d %%(callback .-%%): %%(error object is a table value%%)\nstack traceback:\n")
        :format(r1), h2[2])
      assert.is_true(rawequal(watcher, h2[3]))
      assert.are.equal("timer", h3[1])
      assert.matches("^timer #1 %(callback .-%): timer\nstack traceback:\n", h3[2])
      assert.is_true(rawequal(timer, h3[3]))
      -- last_traceback is the last one handled.
      assert.are.equal(h3[2], l:last_traceback())
      l:invariant()
    end)

    it("that raise themselves leave run with that error, the loop consistent", function()
      local rethrown = {}
      local l = new_loop({ on_error = function() error(rethrown) end })
      local r, w = pipe()
      local log = {}
      l:io(r, "in", function(wt)
        log[#log + 1] = "failing"
        wt:stop()
        error("original")
      end)
      l:timer(0, function() log[#log + 1] = "timer" end)
      T.write(w, "x")
      assert.is_true(rawequal(rethrown, run_error(l)))
      assert.are.same({ "failing" }, log)
      l:invariant()
      assert.is_false(l:run())
      assert.are.same({ "failing", "timer" }, log)
    end)
  end)
end)

describe("lepoll.loop errors of unusual values", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  -- A class that raises on any field it lacks ("strict"), __tostring included.
  local Strict = setmetatable({}, { __index = function(_, k) error("strict: no field " .. tostring(k)) end })
  Strict.__index = Strict

  it("come out of run unchanged when their class raises on unknown fields", function()
    local err = setmetatable({ code = 3 }, Strict)
    for _, make in ipairs({
      function(l) l:timer(0, function() error(err) end) end,
      function(l) l:spawn(function() error(err) end) end,
    }) do
      local l = new_loop()
      make(l)
      assert.are.equal(err, run_error(l))
      assert.matches("%(error object is a table value%)", l:last_traceback())
    end
  end)

  it("of a task reach on_error, after its to-be-closed variables are closed", function()
    local log = {}
    local l = new_loop({ on_error = function(e, where, obj)
      log[#log + 1] = { e, obj.kind, where:match("^task #1") ~= nil }
    end })
    local fn
    if H.has.toclose then
      fn = assert(load([[
        local log = ...
        local x <close> = setmetatable({}, { __close = function() log[#log + 1] = "closed" end })
        error("boom", 0)
      ]]))
    else
      fn = function() error("boom", 0) end
    end
    l:spawn(fn, log)
    assert.is_false(l:run())
    if H.has.toclose then
      assert.are.same({ "closed", { "boom", "task", true } }, log)
    else
      assert.are.same({ { "boom", "task", true } }, log)
    end
  end)
end)
