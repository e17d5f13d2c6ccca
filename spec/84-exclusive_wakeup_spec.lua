-- Wakeups, measured: K processes wait in epoll_wait on one listening
-- socket, one connection arrives, and each process reports over a pipe
-- whether its wait brought the connection's event. Level-triggered and
-- edge-triggered sets each get it (every set watching the socket is told);
-- with `exclusive` one set is, or a few; one set shared by the K
-- processes (after fork) wakes one of them for an edge. doc/cores.md
-- states the results, what the kernel promises and the kernel they were
-- measured on.
--
-- The count does not depend on timing: every process is seen asleep in
-- epoll_wait (/proc/PID/wchan) before the connection is made; afterwards
-- a byte on a stop pipe that every set watches ends every wait, and a
-- process counts as told when the listening socket is in its ready set.
-- The kernel puts it there only when the connection's wakeup reached that
-- set, whenever the process then runs.
local lepoll = require "lepoll"
local socket = require "socket"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)

local K = 4 -- processes
local WAIT = 10 -- seconds: the longest wait of a child, and of the parent for each step
local SETTLE = 0.2 -- seconds after the connection before the stop byte

-- Whether process pid is asleep in epoll_wait: state S, in one of epoll's
-- kernel functions (do_epoll_wait, ep_poll: the name varies by version).
-- -> that, and its wchan for the message
local function asleep_in_epoll(pid)
  local state = H.slurp("/proc/" .. pid .. "/stat"):match("^%d+ %b() (%a)")
  local wchan = H.slurp("/proc/" .. pid .. "/wchan")
  return state == "S" and (wchan:find("epoll") or wchan:find("ep_poll")) ~= nil, wchan
end

-- Reads child i's report pipe until its output holds `pattern`, WAIT
-- seconds at most. -> the capture
local function await(child, pattern)
  local deadline = lepoll.now() + WAIT
  while true do
    local data = T.read(child.r)
    if data then child.out = child.out .. data end
    local got = child.out:match(pattern)
    if got then return got end
    assert(data ~= "", "child " .. child.n .. " ended its report early: " .. child.out)
    assert(lepoll.now() < deadline, "child " .. child.n .. " did not report in time: " .. child.out)
    socket.sleep(0.005)
  end
end

-- In a forked child: waits in `set` (its own when nil: a new set watching
-- fd for flags) and the stop pipe, then reports "told" when fd is in the
-- ready set, else "not told". With `go`, it first blocks reading that pipe
-- (it does not wait in epoll meanwhile), then waits without blocking.
-- Ends with _exit: busted's state, copied, never runs on.
local function child_body(o)
  local ok, err = pcall(function()
    local set = o.set
    if not set then
      set = lepoll.create()
      set:set(o.fd, o.flags)
      set:set(o.stop, "in")
    end
    T.write(o.w, "set\n")
    if o.go then T.read(o.go, 1) end
    local told = false
    if set:wait(o.go and 0 or WAIT) == "ok" then
      set:iter_ready(function(fd) told = told or fd == o.fd end)
    end
    T.write(o.w, told and "told\n" or "not told\n")
  end)
  if not ok then T.write(o.w, "error: " .. tostring(err) .. "\n") end
  T._exit(ok and 0 or 1)
end

-- K children wait on a listening socket; one connection arrives. opts:
-- flags (each child's own set watches the socket for them), or shared (a
-- set made here, before the children, that they all wait in); busy_first:
-- child 1 does not wait in epoll when the connection comes, only after.
-- -> the numbers of the children told, in order
local function measure(opts)
  local listener = assert(socket.bind("127.0.0.1", 0))
  C.defer(function() listener:close() end)
  local fd, port = math.floor(listener:getfd()), select(2, listener:getsockname())
  local stop_r, stop_w = C.pipe()
  local go_r, go_w = assert(T.pipe(true))
  C.defer(function() H.close(go_r, go_w) end)
  local shared
  if opts.shared then
    shared = C.new_set() -- shared across fork on purpose: what epoll(7) describes
    shared:set(fd, opts.shared)
    shared:set(stop_r, "in")
  end

  local children = {}
  C.defer(function() -- a child left running (a failed test) is ended and reaped
    for _, c in ipairs(children) do
      if not c.reaped then
        T.kill(c.pid, 9)
        T.waitpid(c.pid)
      end
      H.close(c.r)
    end
  end)
  -- One at a time: each child's set is added before the next child's, the
  -- order the kernel tries them in.
  for n = 1, K do
    local r, w = assert(T.pipe())
    local pid = assert(T.fork())
    if pid == 0 then
      child_body({ fd = fd, flags = opts.flags, set = shared, stop = stop_r, w = w,
        go = opts.busy_first and n == 1 and go_r or nil })
    end
    T.close(w)
    children[n] = { n = n, pid = pid, r = r, out = "" }
    await(children[n], "^set\n")
  end
  local deadline = lepoll.now() + WAIT
  for _, c in ipairs(children) do
    if not (opts.busy_first and c.n == 1) then
      local asleep, wchan = asleep_in_epoll(c.pid)
      while not asleep do
        assert(lepoll.now() < deadline, ("child %d is not asleep in epoll_wait (wchan %s)"):format(c.n, wchan))
        socket.sleep(0.002)
        asleep, wchan = asleep_in_epoll(c.pid)
      end
    end
  end

  local client = socket.tcp()
  C.defer(function() client:close() end)
  client:settimeout(WAIT)
  assert(client:connect("127.0.0.1", port))
  socket.sleep(SETTLE)
  if opts.busy_first then T.write(go_w, "g") end
  T.write(stop_w, "x")

  local told = {}
  for _, c in ipairs(children) do
    local report = await(c, "^set\n([^\n]*)\n")
    assert.are.same({ "exit", 0 }, { T.waitpid(c.pid) }, report)
    c.reaped = true
    assert(report == "told" or report == "not told", "child " .. c.n .. ": " .. report)
    if report == "told" then told[#told + 1] = c.n end
  end
  return told
end

local ALL = {}
for n = 1, K do ALL[n] = n end

describe("one connection, " .. K .. " processes waiting on its listening socket", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)
  H.no_child_leaks(lazy_setup, lazy_teardown)

  describe("each process with its own set", function()
    it("level-triggered: every process is told", function()
      assert.are.same(ALL, measure({ flags = "in" }))
    end)

    it("edge-triggered: every process is told too (each set has its own edge)", function()
      assert.are.same(ALL, measure({ flags = "in|et" }))
    end)

    -- epoll_ctl(2) promises "one or more" sets get the event. The kernel
    -- tries the sets in the order they were added, and stops at the first
    -- that has a process waiting in it: every set tried is told.
    for _, flags in ipairs({ "in|exclusive", "in|et|exclusive" }) do
      it(flags .. ": one process is told, the first whose set was added, when all wait", function()
        local told = measure({ flags = flags })
        assert.is_true(#told >= 1) -- the promise
        assert.are.same({ 1 }, told) -- what the kernel does
      end)
    end

    it("in|exclusive: the first set, its process busy, is told and the next one too", function()
      local told = measure({ flags = "in|exclusive", busy_first = true })
      assert.is_true(#told >= 1)
      assert.are.same({ 1, 2 }, told)
    end)
  end)

  describe("one set shared by the processes (made before fork)", function()
    it("level-triggered: every process is told, each waking the next while the socket stays ready", function()
      assert.are.same(ALL, measure({ shared = "in" }))
    end)

    it("edge-triggered: one process is told, as epoll(7) says", function()
      assert.are.equal(1, #measure({ shared = "in|et" }))
    end)
  end)
end)
