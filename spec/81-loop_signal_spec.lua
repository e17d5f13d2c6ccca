-- Signals in lepoll.loop: l:signal's callbacks and l:wait_signal's tasks,
-- with real signals sent to this process; what is blocked while the loop
-- watches and after; Ctrl-C as an event; children not inheriting the mask.
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)

local PID = T.getpid()

local function send(sig)
  assert(T.kill(PID, (lepoll.signum(sig))))
end

local function is_blocked(sig)
  local num = lepoll.signum(sig)
  for _, s in ipairs(T.blocked()) do
    if s == num then return true end
  end
  return false
end

describe("lepoll.loop's signals", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)
  H.no_child_leaks(lazy_setup, lazy_teardown)
  lazy_teardown(function() assert.are.same({}, T.blocked()) end)

  it("l:signal calls its callbacks for each delivery, in the order they were started", function()
    local l = C.new_loop()
    local calls = {}
    local w1 = l:signal("USR1", function(w, name, info) calls[#calls + 1] = { "first", w, name, info.pid } end)
    local w2 = l:signal(lepoll.signum("USR1"), function(w, name) calls[#calls + 1] = { "second", w, name } end)
    assert.is_true(is_blocked("USR1"))
    send("USR1")
    H.step_until(l, function() return #calls == 2 end)
    assert.are.same({ { "first", w1, "USR1", PID }, { "second", w2, "USR1" } }, calls)
    w1:stop()
    assert.is_true(is_blocked("USR1")) -- w2 still watches it
    send("USR1")
    H.step_until(l, function() return #calls == 3 end)
    assert.are.equal("second", calls[3][1])
    w2:stop()
    assert.is_false(is_blocked("USR1")) -- nobody watches: back to what it was
    assert.are.equal("signal watcher{USR1, stopped}", tostring(w2))
    w2:start()
    assert.is_true(w2:is_active() and is_blocked("USR1"))
    w2:stop()
  end)

  it("run returns once the signal watchers are stopped", function()
    local l = C.new_loop()
    local n = 0
    local w
    w = l:signal("USR2", function()
      n = n + 1
      w:stop()
    end)
    l:timer(0.01, function() send("USR2") end)
    assert.is_false(l:run())
    assert.are.equal(1, n)
  end)

  it("tasks wait for a signal; one that comes between two waits is kept for the next", function()
    local l = C.new_loop()
    local got = {}
    l:spawn(function()
      got[1] = { l:wait_signal("HUP", 0.05) }
      got[2] = { (l:wait_signal("HUP")) }
      send("HUP") -- while no task waits: kept, neither lost nor fatal
      got[3] = { (l:wait_signal("SIGHUP")) }
    end)
    l:timer(0.1, function() send("HUP") end)
    H.step_until(l, function() return got[3] ~= nil end)
    assert.are.same({ { nil, "timeout" }, { "HUP" }, { "HUP" } }, got)
    assert.is_true(is_blocked("HUP")) -- a signal a task waited for stays the loop's until it closes
    l:close()
    assert.is_false(is_blocked("HUP"))
  end)

  it("a task waiting in a loop gets every delivery of a queued signal, none dropped", function()
    local l = C.new_loop()
    local got = {}
    l:spawn(function()
      while true do
        local name = l:wait_signal("RTMIN+1", 0.5)
        if not name then break end
        got[#got + 1] = name
      end
    end)
    l:timer(0.05, function()
      for _ = 1, 3 do send("RTMIN+1") end -- real-time signals queue: three deliveries
    end)
    H.step_until(l, function() return l:stats().tasks == 0 end)
    assert.are.same({ "RTMIN+1", "RTMIN+1", "RTMIN+1" }, got)
    l:close()
    assert.is_false(is_blocked("RTMIN+1"))
  end)

  it("an error in a signal callback is the loop's, naming the watcher", function()
    local seen = {}
    local l = C.new_loop({ on_error = function(err, where, obj) seen[#seen + 1] = { err, where, obj } end })
    local w = l:signal("USR1", function() error("boom", 0) end)
    send("USR1")
    H.step_until(l, function() return #seen > 0 end)
    assert.are.equal("boom", seen[1][1])
    assert.matches("^signal watcher for USR1 %(callback spec/81%-loop_signal_spec.lua:%d+%): boom", seen[1][2])
    assert.are.equal(w, seen[1][3])
    w:stop()
  end)

  it("refuses what it cannot watch, and waiting outside a task", function()
    local l = C.new_loop()
    assert.matches("bad argument #1 to 'signal' %(unknown signal 'NOPE'%)",
      H.msg_of(function() l:signal("NOPE", function() end) end))
    assert.matches("bad argument #1 to 'signal' %(SIGKILL cannot be caught or blocked%)",
      H.msg_of(function() l:signal("KILL", function() end) end))
    assert.matches("bad argument #2 to 'signal' %(function expected, got no value%)",
      H.msg_of(function() l:signal("USR1") end))
    assert.matches("wait_signal", H.msg_of(function() l:wait_signal("USR1") end))
    assert.are.same({}, T.blocked())
  end)

  it("children the loop starts do not inherit the signals it blocks", function()
    local l = C.new_loop()
    local w = l:signal("USR1", function() end)
    local out
    local p = assert(l:process({ "grep", "SigBlk", "/proc/self/status", stdout = "pipe" }, function(p)
      out = lepoll.read(p.stdout)
    end))
    C.defer(function() p:close() end)
    H.step_until(l, function() return out ~= nil end)
    assert.are.equal("SigBlk:\t0000000000000000\n", out)
    w:stop()
  end)

  it("runs the example of doc/loop.md's Signals: a server that stops on SIGTERM", function()
    local doc = H.slurp("doc/loop.md")
    local code = assert(doc:match("\n## Signals\n.-```lua\n(.-)```"), "no example")
    local p = C.lua_child { "-e", code }
    local port = tonumber(C.read_when_ready(p.stdout):match("^listening on port (%d+)\n$"))
    local socket = require "socket"
    local c = assert(socket.connect("127.0.0.1", port))
    c:settimeout(10)
    c:send("echo me\n")
    assert.are.equal("echo me", c:receive())
    c:close()
    assert.is_true(p:kill("TERM"))
    assert.are.same({ "exit", 0 }, { p:wait() })
    assert.are.equal("SIGTERM: closing\ndone\n", lepoll.read(p.stdout))
  end)

  it("Ctrl-C as an event: a script watching SIGINT handles it and exits as it chooses", function()
    local script = [[
      local loop = require "lepoll.loop"
      local l = loop.new()
      local w
      w = l:signal("INT", function(_, name)
        io.write("got ", name, "\n")
        w:stop()
      end)
      l:timer(0, function() io.write("ready\n") io.stdout:flush() end)
      l:run()
      io.write("run returned\n")
      l:close()
    ]]
    local p = C.lua_child { "-e", script }
    assert.are.equal("ready\n", C.read_when_ready(p.stdout))
    assert.is_true(p:kill("INT"))
    assert.are.same({ "exit", 0 }, { p:wait() })
    assert.are.equal("got INT\nrun returned\n", lepoll.read(p.stdout))
  end)
end)
