-- lepoll.signals: signals received on a descriptor (signalfd), with real
-- signals sent to this process (T.kill, T.sigqueue) and to forked
-- children. A watched signal is blocked while some set watches it, so it
-- waits for a read instead of reaching its handler or default action;
-- the calling thread's mask (T.blocked) is back to what it was once the
-- last set watching a signal is closed. The signals used are USR1, USR2,
-- a real-time one and CHLD, whose default actions in this process would
-- end it (USR1, USR2) or do nothing (CHLD): every test drains what it
-- sent before its sets close. Also: the interpreter's own SIGINT handler
-- in a child lua (Ctrl-C), signalfd made to fail (the fault library),
-- and every allocation of signals, add and read made to fail (oom_host).
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)

local quote = H.quote
local unpack = rawget(table, "unpack") or rawget(_G, "unpack")

local PID = T.getpid()
local USR1 = lepoll.signum("USR1")
local USR2 = lepoll.signum("USR2")
local CHLD = lepoll.signum("CHLD")
local TERM = lepoll.signum("TERM")
local DEADLINE = 5 -- seconds: a lost signal fails the test instead of hanging it

local function send(sig)
  assert(T.kill(PID, (lepoll.signum(sig))))
end

local function is_closed(S)
  return tostring(S) == "signals{closed}"
end

-- Reads every signal pending for S; returns their names.
local function drain(S)
  local names = {}
  for _ = 1, 100 do
    local name = S:read()
    if not name then break end
    names[#names + 1] = name
  end
  return names
end

-- lepoll.signals(...), drained and closed when the test ends: a signal
-- left pending at the last close would be delivered to this process.
local function new_signals(...)
  local S = lepoll.signals(...)
  C.defer(function()
    if not is_closed(S) then
      drain(S)
      S:close()
    end
  end)
  return S
end

-- Whether a wait on S (an object with getfd) reports it readable within
-- timeout seconds.
local function readable(S, timeout)
  local ep = lepoll.create()
  ep:set(S, "in")
  local res = ep:wait(timeout)
  ep:close()
  return res == "ok"
end

local function is_blocked(sig)
  for _, s in ipairs(T.blocked()) do
    if s == sig then return true end
  end
  return false
end

-- This process's real user id (the first of /proc/self/status's Uid).
local function uid()
  for line in io.lines("/proc/self/status") do
    local id = line:match("^Uid:%s*(%d+)")
    if id then return tonumber(id) end
  end
end

-- Runs fn() in a forked child, which then ends with _exit. Returns what
-- fn wrote on its pipe through put(text), and how the child ended.
local function in_child(fn)
  local r, w = assert(T.pipe(true))
  local pid = assert(T.fork())
  if pid == 0 then
    T.close(r)
    local ok, err = pcall(fn, function(text) T.write(w, text .. "\n") end)
    if not ok then T.write(w, "error: " .. tostring(err) .. "\n") end
    T._exit(ok and 0 or 1)
  end
  T.close(w)
  local how, code = T.waitpid(pid)
  local out = {}
  for _ = 1, 100 do
    local s = T.read(r)
    if not s or s == "" then break end
    out[#out + 1] = s
  end
  T.close(r)
  return table.concat(out), how, code
end

describe("lepoll.signals", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  local mask_before
  lazy_setup(function() mask_before = T.blocked() end)
  after_each(function()
    assert.are.same(mask_before, T.blocked(), "the signal mask is not what it was")
  end)

  it("a watched signal makes the set readable; read gives its name, number and sender", function()
    local S = new_signals("USR1")
    assert.is_true(T.cloexec(S:getfd()))
    assert.is_false(readable(S, 0))
    assert.are.same({ nil, "again" }, { S:read() })
    send("USR1")
    assert.is_true(readable(S, DEADLINE))
    local name, num, details = S:read()
    assert.are.equal("USR1", name)
    assert.are.equal(USR1, num)
    assert.are.same({ pid = PID, uid = uid(), code = 0 }, details) -- 0: SI_USER, sent by kill
    assert.are.same({ nil, "again" }, { S:read() })
    assert.is_false(readable(S, 0))
  end)

  it("a real-time signal is queued: each one read in turn with the value sigqueue gave it", function()
    local S = new_signals("RTMIN+3")
    local rt = lepoll.signum("RTMIN+3")
    assert(T.sigqueue(PID, rt, 7))
    assert(T.sigqueue(PID, rt, -8))
    local got = {}
    for i = 1, 2 do
      local name, num, details = S:read()
      got[i] = { name, num, details.value, details.pid, details.code < 0 } -- SI_QUEUE is negative
    end
    assert.are.same({ { "RTMIN+3", rt, 7, PID, true }, { "RTMIN+3", rt, -8, PID, true } }, got)
    assert.are.same({ nil, "again" }, { S:read() })
  end)

  it("a standard signal sent twice before a read is pending once", function()
    local S = new_signals("USR1", "USR2")
    send("USR2")
    send("USR1")
    send("USR2")
    local names = drain(S)
    table.sort(names)
    assert.are.same({ "USR1", "USR2" }, names)
  end)

  it("SIGCHLD tells how a child ended: exited with its status, killed by a signal", function()
    local S = new_signals("CHLD")
    local function child_end(body)
      local pid = assert(T.fork())
      if pid == 0 then
        body()
        T._exit(99)
      end
      local t0, found = T.now(), nil
      while not found and T.now() - t0 < DEADLINE do
        readable(S, 0.1)
        for _ = 1, 100 do
          local name, _, d = S:read()
          if not name then break end
          if d.pid == pid then found = { name, d.how, d.status } end
        end
      end
      T.waitpid(pid)
      return found
    end
    assert.are.same({ "CHLD", "exited", 3 }, child_end(function() T._exit(3) end))
    assert.are.same({ "CHLD", "killed", TERM }, child_end(function() T.kill(T.getpid(), TERM) end))
  end)

  it("works in the loop: an I/O watcher on the set, and a task waiting until it is readable", function()
    local S = new_signals("USR1")
    local l = C.new_loop()
    local got = {}
    local w
    w = l:io(S, "in", function()
      got[#got + 1] = (S:read())
      w:stop()
    end)
    l:timer(0, function() send("USR1") end)
    l:run()
    assert.are.same({ "USR1" }, got)
    l:spawn(function()
      assert.is_true(l:readable(S, DEADLINE))
      got[#got + 1] = (S:read())
    end)
    l:timer(0.01, function() send("USR1") end)
    l:run()
    assert.are.same({ "USR1", "USR1" }, got)
  end)

  it("blocks what it watches while open, and unblocks it when closed", function()
    assert.is_false(is_blocked(USR1))
    local S = new_signals("USR1", "USR2")
    assert.is_true(is_blocked(USR1))
    assert.is_true(is_blocked(USR2))
    S:close()
    assert.is_false(is_blocked(USR1))
    assert.is_false(is_blocked(USR2))
  end)

  it("add and remove change what the same descriptor watches, and what is blocked", function()
    local S = new_signals()
    local fd = S:getfd()
    assert.are.same({}, S:signals())
    assert.are.equal(S, S:add("USR2", "USR1"))
    assert.are.same({ "USR1", "USR2" }, S:signals())
    assert.is_true(is_blocked(USR1) and is_blocked(USR2))
    send("USR2")
    assert.are.same({ "USR2" }, drain(S))
    assert.are.equal(S, S:remove("USR2"))
    assert.are.same({ "USR1" }, S:signals())
    assert.is_true(is_blocked(USR1))
    assert.is_false(is_blocked(USR2))
    assert.are.equal(S, S:remove("USR2"):add("USR1"):add()) -- nothing to change: no error
    assert.are.same({ "USR1" }, S:signals())
    assert.are.equal(fd, S:getfd())
    send("USR1")
    assert.are.same({ "USR1" }, drain(S))
  end)

  it("a signal removed no longer makes the set readable; one blocked before stays blocked", function()
    T.block(USR2, true) -- blocked by this process before any set watched it
    C.defer(function() T.block(USR2, false) end)
    local S = new_signals("USR1", "USR2")
    S:remove("USR2")
    assert.is_true(is_blocked(USR2))
    send("USR2") -- stays pending: blocked, and watched by no set
    assert.is_false(readable(S, 0))
    assert.are.same({ nil, "again" }, { S:read() })
    S:close()
    assert.is_true(is_blocked(USR2))
    -- A set made now finds the pending signal and takes it.
    local S2 = new_signals("USR2")
    assert.are.same({ "USR2" }, drain(S2))
    S2:close()
    assert.is_true(is_blocked(USR2))
  end)

  it("two sets on one signal: closing one leaves the other watching, the signal blocked", function()
    local A = new_signals("USR1")
    local B = new_signals("USR1", "USR2")
    A:close()
    assert.is_true(is_blocked(USR1))
    send("USR1")
    assert.is_true(readable(B, DEADLINE))
    assert.are.equal("USR1", (B:read()))
    B:remove("USR1")
    assert.is_false(is_blocked(USR1))
    assert.is_true(is_blocked(USR2))
    -- A signal pending once is read once, by whichever set reads it first.
    local D = new_signals("USR2")
    send("USR2")
    assert.is_true(readable(B, 0) and readable(D, 0))
    assert.are.same({ "USR2" }, drain(D))
    assert.are.same({}, drain(B))
  end)

  it("after the last close a signal has its disposition back: USR1's default action ends a child", function()
    local out, how, code = in_child(function(put)
      local S = lepoll.signals("USR1")
      T.kill(T.getpid(), USR1)
      put("read " .. tostring(S:read()))
      S:close()
      put("closed")
      T.kill(T.getpid(), USR1)
      put("survived")
    end)
    assert.are.same({ "read USR1\nclosed\n", "signal", USR1 }, { out, how, code })
  end)

  it("close does not discard a pending signal: it is delivered as the signal is unblocked", function()
    local out, how, code = in_child(function(put)
      local S = lepoll.signals("USR1")
      T.kill(T.getpid(), USR1)
      put("pending")
      S:close()
      put("survived")
    end)
    assert.are.same({ "pending\n", "signal", USR1 }, { out, how, code })
    -- While another set still watches it, the signal stays for that one.
    out, how, code = in_child(function(put)
      local A, B = lepoll.signals("USR1"), lepoll.signals("USR1")
      T.kill(T.getpid(), USR1)
      A:close()
      put("read " .. tostring(B:read()))
      B:close()
      put("survived")
    end)
    assert.are.same({ "read USR1\nsurvived\n", "exit", 0 }, { out, how, code })
  end)

  it("a fresh process has its signal mask back after its sets are closed", function()
    local script = [[
      local lepoll, T = require "lepoll", require "lepoll_test"
      local function mask()
        for line in io.lines("/proc/self/status") do
          local m = line:match("^SigBlk:%s*(%x+)")
          if m then return m end
        end
      end
      local before = mask()
      local A = lepoll.signals("USR1", "TERM")
      local B = lepoll.signals("USR1"):add("HUP", "RTMIN+2")
      local during = mask()
      A:remove("TERM")
      B:close()
      A:close()
      print(before, during ~= before, mask())
    ]]
    local out, ok = H.run(("%s %s -e %s"):format(H.CHILD_ENV, H.LUA, quote(script)))
    local before, changed, after = out:match("^(%x+)\t(%a+)\t(%x+)\n$")
    assert.is_true(ok, out)
    assert.are.same({ before, "true" }, { after, changed }, out)
  end)

  it("names and numbers: with or without SIG, in any case, real-time ones from RTMIN or RTMAX", function()
    local rtmin, rtmax = lepoll.signum("RTMIN"), lepoll.signum("RTMAX")
    assert.are.same({ 1, "HUP" }, { lepoll.signum("HUP") })
    assert.are.same({ 2, "INT" }, { lepoll.signum(2) })
    assert.are.same({ 9, "KILL" }, { lepoll.signum("SIGKILL") }) -- a name for kill(), not to watch
    assert.are.same({ TERM, "TERM" }, { lepoll.signum("sigterm") })
    assert.are.same({ CHLD, "CHLD" }, { lepoll.signum("Cld") })
    assert.are.same({ lepoll.signum("ABRT"), "ABRT" }, { lepoll.signum("IOT") })
    assert.are.same({ rtmin + 3, "RTMIN+3" }, { lepoll.signum("RTMIN+3") })
    assert.are.same({ rtmax - 1, "RTMAX-1" }, { lepoll.signum("SIGRTMAX-1") })
    assert.are.same({ rtmax, "RTMAX" }, { lepoll.signum(rtmax) })
    assert.are.same({ rtmin, "RTMIN" }, { lepoll.signum("rtmin+0") })
    -- kill -l's names: the lower half counts up from RTMIN, the upper down from RTMAX.
    local half = rtmin + math.floor((rtmax - rtmin) / 2)
    assert.are.equal("RTMIN+" .. (half - rtmin), select(2, lepoll.signum(half)))
    assert.are.equal("RTMAX-" .. (rtmax - half - 1), select(2, lepoll.signum(half + 1)))
    -- Every number but the C library's own has a name that gives it back.
    local named = 0
    for sig = 1, rtmax do
      local ok, num, name = pcall(lepoll.signum, sig)
      if ok then
        named = named + 1
        assert.are.same({ sig, sig, name }, { num, lepoll.signum(name) })
      end
    end
    assert.are.equal(rtmax - (rtmin - 32), named)
    local S = new_signals("SIGUSR2", "usr1", TERM, "RTMAX", "RTMIN+1")
    assert.are.same({ "USR1", "USR2", "TERM", "RTMIN+1", "RTMAX" }, S:signals())
    assert.are.equal(('signals{fd=%d, watched={"USR1", "USR2", "TERM", "RTMIN+1", "RTMAX"}}')
      :format(S:getfd()), tostring(S))
    S:close()
    assert.are.equal("signals{closed}", tostring(S))
  end)

  it("refuses unknown signals, SIGKILL and SIGSTOP, and the synchronous ones, naming them", function()
    local function reason(...)
      local n, args = select("#", ...), { ... }
      local msg = H.msg_of(function() lepoll.signals(unpack(args, 1, n)) end)
      return msg:match("^bad argument #%d+ to '[%w.]+' %((.*)%)$") or msg
    end
    local function signum_reason(sig)
      local msg = H.msg_of(function() lepoll.signum(sig) end)
      return msg:match("^bad argument #1 to '[%w.]+' %((.*)%)$") or msg
    end
    assert.are.equal("unknown signal 'SIGFOO'", reason("SIGFOO"))
    assert.are.equal("unknown signal 'RTMIN+999'", reason("USR1", "RTMIN+999"))
    assert.are.equal("unknown signal 'RTMAX+1'", reason("RTMAX+1"))
    assert.are.equal("unknown signal ''", reason(""))
    assert.are.equal("unknown signal 'USR1 '", reason("USR1 "))
    assert.are.equal("unknown signal 0", reason(0))
    assert.are.equal("unknown signal -1", reason(-1))
    assert.are.equal("unknown signal 1000", reason(1000))
    assert.are.equal("unknown signal 1.5", reason(1.5))
    assert.are.equal("signal (number or name) expected, got table", reason({}))
    assert.are.equal("signal (number or name) expected, got nil", reason(nil))
    assert.are.equal("SIGKILL cannot be caught or blocked", reason("KILL"))
    assert.are.equal("SIGSTOP cannot be caught or blocked", reason("sigstop"))
    for _, name in ipairs({ "SEGV", "BUS", "FPE", "ILL" }) do
      assert.are.equal(("SIG%s cannot be watched: a faulting instruction raises it in its thread, "
        .. "and blocking it is undefined"):format(name), reason(name))
    end
    -- Between the standard and the real-time signals: the C library's own.
    for sig = 32, lepoll.signum("RTMIN") - 1 do
      assert.are.equal(("signal %d is reserved by the C library"):format(sig), reason(sig))
      assert.are.equal(("signal %d is reserved by the C library"):format(sig), signum_reason(sig))
    end
    assert.are.equal("unknown signal 'FOO'", signum_reason("FOO"))
    assert.are.equal("unknown signal 65536", signum_reason(65536))
    assert.are.same(mask_before, T.blocked())
  end)

  it("add and remove refuse the same, naming the argument, and leave the set as it was", function()
    local S = new_signals("USR1")
    local before = tostring(S)
    assert.are.equal("bad argument #2 to 'add' (unknown signal 'NOPE')",
      H.msg_of(function() S:add("USR2", "NOPE") end))
    assert.are.equal("bad argument #1 to 'add' (SIGKILL cannot be caught or blocked)",
      H.msg_of(function() S:add("KILL") end))
    assert.are.equal("bad argument #1 to 'remove' (unknown signal 99)",
      H.msg_of(function() S:remove(99) end))
    assert.are.equal(before, tostring(S))
    assert.is_false(is_blocked(USR2))
  end)

  it("close is idempotent; a closed set's methods raise; the collector and <close> close", function()
    local S = lepoll.signals("USR1")
    local fd = S:getfd()
    S:close()
    S:close()
    assert.is_false(H.is_open(fd))
    assert.is_false(is_blocked(USR1))
    for _, call in ipairs({
      function() S:getfd() end,
      function() S:read() end,
      function() S:add("USR2") end,
      function() S:remove("USR1") end,
      function() S:signals() end,
    }) do
      assert.are.equal("attempt to use a closed signal set", H.msg_of(call))
    end
    assert.are.equal("bad argument #1 to 'close' (lepoll.signals expected, got table)",
      H.msg_of(function() S.close({}) end))
    -- Collected: closed, unblocked.
    fd = lepoll.signals("USR2"):getfd()
    assert.is_true(is_blocked(USR2))
    collectgarbage()
    collectgarbage()
    assert.is_false(H.is_open(fd))
    assert.is_false(is_blocked(USR2))
    -- __gc given a table with the metatable: nothing happens.
    setmetatable({}, getmetatable(S))
    collectgarbage()
  end)

  H.it_if(it, pending, H.has.toclose, "needs <close>")("<close> closes the set at the end of its block", function()
    local chunk = assert(H.load([[
      local lepoll = require "lepoll"
      local fd
      do
        local S <close> = lepoll.signals("USR1")
        fd = S:getfd()
      end
      return fd
    ]]))
    local fd = chunk()
    assert.is_false(H.is_open(fd))
    assert.is_false(is_blocked(USR1))
  end)
end)

describe("lepoll.signals and the standalone interpreter", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  -- The interpreter handles SIGINT (Ctrl-C) while it runs a chunk: the
  -- next hook raises "interrupted!". A watched SIGINT is blocked instead,
  -- and the script reads it.
  local function run(script)
    return H.run(("%s %s -e %s"):format(H.CHILD_ENV, H.LUA, quote(script)))
  end

  it("without lepoll, a SIGINT interrupts the script", function()
    local out, ok = run([[
      local T = require "lepoll_test"
      T.kill(T.getpid(), 2)
      for _ = 1, 1e6 do end
      print("not interrupted")
    ]])
    assert.is_nil(ok)
    assert.is_truthy(out:find("interrupted!", 1, true), out)
    assert.is_nil(out:find("not interrupted", 1, true), out)
  end)

  it("watched, it is read by the script, which goes on", function()
    local out, ok = run([[
      local lepoll, T = require "lepoll", require "lepoll_test"
      local S = lepoll.signals("INT")
      T.kill(T.getpid(), 2)
      for _ = 1, 1e6 do end
      local name, num, d = S:read()
      print(name, num, d.pid == T.getpid())
      S:close()
      print("still running")
    ]])
    assert.are.same({ true, "INT\t2\ttrue\nstill running\n" }, { ok, out })
  end)
end)

describe("lepoll.signals when signalfd fails", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  -- Runs script in a child interpreter with the fault library preloaded;
  -- returns its output's lines as a list.
  local function with_faults(script)
    local out, ok = H.run(("%s %s timeout 20 %s -e %s"):format(H.CHILD_ENV,
      H.preload(H.BUILD .. "/spec/libfaults.so"), H.LUA, quote([[
        lepoll, T = require "lepoll", require "lepoll_test"
        function fault(...) assert(T.fault(...)) end
        function blocked() return table.concat(T.blocked(), ",") end
        function err_of(f, ...)
          local ok, err = pcall(f, ...)
          return ok and "no error" or (tostring(err):gsub("^.-:%d+: ", ""))
        end
        collectgarbage()
        local fds = T.fdcount()
      ]] .. script .. [[
        collectgarbage()
        print("descriptors left", T.fdcount() - fds)
        print("blocked at the end", blocked())
      ]])))
    assert.is_true(ok, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    return lines
  end

  local USR = ("%d,%d"):format(USR1, USR2)

  it("lepoll.signals: nothing stays blocked, no descriptor is left", function()
    assert.are.same({
      "ENOMEM\tlepoll: signals: Cannot allocate memory (ENOMEM)\t1\t",
      "after the kernel made it\tlepoll: signals: No space left on device (ENOSPC)\t1\t",
      "EMFILE once: collected, then tried again\t2\t" .. USR1,
      "descriptors left\t0",
      "blocked at the end\t",
    }, with_faults([[
      fault("signalfd", 1, "ENOMEM")
      print("ENOMEM", err_of(lepoll.signals, "USR1", "USR2"), T.fault_calls("signalfd"), blocked())
      fault("signalfd", 1, "ENOSPC", 1, true)
      print("after the kernel made it", err_of(lepoll.signals, "USR1"), T.fault_calls("signalfd"), blocked())
      fault("signalfd", 1, "EMFILE")
      local S = lepoll.signals("USR1")
      print("EMFILE once: collected, then tried again", T.fault_calls("signalfd"), blocked())
      S:close()
    ]]))
  end)

  it("add and remove: the set watches and blocks what it did before", function()
    assert.are.same({
      "add\tlepoll: add fd FD: Cannot allocate memory (ENOMEM)\tUSR1\t" .. USR1,
      "remove\tlepoll: remove fd FD: Cannot allocate memory (ENOMEM)\tUSR1,USR2\t" .. USR,
      "still works\tUSR2",
      "descriptors left\t0",
      "blocked at the end\t",
    }, with_faults([[
      local S = lepoll.signals("USR1")
      local function fd_err(...) return (err_of(...):gsub("fd " .. S:getfd() .. ":", "fd FD:")) end
      fault("signalfd", 1, "ENOMEM")
      print("add", fd_err(S.add, S, "USR2"), table.concat(S:signals(), ","), blocked())
      S:add("USR2")
      fault("signalfd", 1, "ENOMEM")
      print("remove", fd_err(S.remove, S, "USR1"), table.concat(S:signals(), ","), blocked())
      T.kill(T.getpid(), lepoll.signum("USR2"))
      print("still works", (S:read()))
      S:close()
    ]]))
  end)
end)

describe("lepoll.signals under memory errors", function()
  -- build/oom_host (test/c/oom_host.c) fails exactly the k-th allocation
  -- after oom.arm(k). For k = 1, 2, ... until the operation meets no
  -- failure: lepoll.signals leaves nothing blocked, add leaves the set as
  -- it was, read leaves the signal pending.
  local SCRIPT = [[
    local jit = rawget(_G, "jit")
    if jit then jit.off() end -- as test/c/oom_loop.lua: interpreted
    local lepoll, T = require "lepoll", require "lepoll_test"
    local USR1 = lepoll.signum("USR1")
    local function blocked() return table.concat(T.blocked(), ",") end
    local bad, points = 0, {}
    local function sweep(name, setup, op, check)
      points[name] = 0
      for k = 1, 10000 do
        local fixture = setup()
        collectgarbage()
        oom.arm(k)
        local ok, a, b = pcall(op, fixture)
        local failed = oom.disarm()
        local problem = check(fixture, failed, ok, a, b)
        if problem then
          bad = bad + 1
          print(("oom: %s, allocation %d: %s"):format(name, k, problem))
        end
        if not failed then break end
        points[name] = k
      end
    end
    collectgarbage()
    local fds, mask = T.fdcount(), blocked()
    sweep("lepoll.signals", function() end, function() return lepoll.signals("USR1", "USR2") end,
      function(_, failed, ok, S)
        if not failed then
          if not ok then return "raised: " .. tostring(S) end
          S:close()
        elseif ok then return "no error"
        elseif blocked() ~= mask then return "blocked " .. blocked()
        end
      end)
    sweep("sigs:add", function() return lepoll.signals("USR1") end, function(S) S:add("USR2", "HUP") end,
      function(S, failed, ok)
        local seen = table.concat(S:signals(), ",") .. " " .. blocked()
        S:close()
        if failed and seen ~= "USR1 " .. USR1 then return "left " .. seen end
        if not failed and not ok then return "raised" end
      end)
    sweep("sigs:read", function()
        local S = lepoll.signals("USR1")
        T.kill(T.getpid(), USR1)
        return S
      end, function(S) return S:read() end,
      function(S, failed, ok, name)
        local again = S:read()
        S:close()
        if failed and again ~= "USR1" then return "the signal was lost" end
        if not failed and not (ok and name == "USR1" and again == nil) then return "read " .. tostring(name) end
      end)
    collectgarbage()
    if T.fdcount() ~= fds then bad = bad + 1 print("oom: descriptors leaked") end
    if blocked() ~= mask then bad = bad + 1 print("oom: left blocked: " .. blocked()) end
    print(("oom: points signals=%d add=%d read=%d"):format(points["lepoll.signals"], points["sigs:add"],
      points["sigs:read"]))
    return bad
  ]]

  it("every failed allocation leaves the process and the set as they were", function()
    local path = C.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(SCRIPT)
    f:close()
    local out, ok = H.run(("env LUA_CPATH=%s %s %s"):format(quote(H.BUILD .. "/spec/?.so"),
      H.BUILD .. "/oom_host", quote(path)))
    assert.is_true(ok, out)
    local s, a, r = out:match("oom: points signals=(%d+) add=(%d+) read=(%d+)")
    assert.is_truthy(s, out)
    -- The userdata, and read's table of details, are allocations that fail.
    assert.is_true(tonumber(s) >= 1 and tonumber(r) >= 1, out)
    assert.is_number(tonumber(a))
  end)
end)
