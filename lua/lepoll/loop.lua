-- lepoll.loop: an event loop written on the public API of lepoll.
--
-- One epoll set per loop; I/O watchers (callbacks per descriptor), timers
-- in a binary min-heap, and tasks (coroutines) that wait for readability,
-- writability or time.
--
-- Lua versions. Written for Lua 5.4; runs on 5.1, 5.2, 5.3 and LuaJIT 2.1
-- too (no attributes, no integer division, no bit operators, no goto; the
-- set is walked with ep:iter, not pairs). What differs before 5.4:
--   - a loop closes at scope exit as `local l <close> = loop.new()`, and
--     l:close() closes the to-be-closed variables of the tasks it ends,
--     on Lua 5.4 only (<close>, __close and coroutine.close are 5.4's);
--   - a loop that is collected without close: on 5.2 and 5.3 its __gc
--     closes it; on 5.1 and LuaJIT tables have no __gc, and the set's own
--     __gc closes its epoll descriptor (the loop then holds nothing else);
--   - a task waits (readable, writable, sleep) by yielding to the loop, so
--     it cannot wait where its coroutine cannot yield: inside a pcall or
--     xpcall on Lua 5.1 (5.2 and later, and LuaJIT, yield across them), in
--     a metamethod on 5.1, or in a function a C function calls back
--     (table.sort's comparator, string.gsub's replacement) on every
--     version. The wait then raises an error and leaves nothing behind:
--     Lua's own "attempt to yield across ... C-call boundary" on 5.1 and
--     5.2 (a first yield to the loop, resumed at once, finds out), ours,
--     naming the function, where coroutine.isyieldable tells (5.3, 5.4,
--     LuaJIT);
--   - errors: an error value is re-raised by run unchanged on every
--     version, but Lua 5.1, 5.2 and LuaJIT themselves turn error(42) into
--     the string "file:line: 42" (5.3 and later keep the number).
--
-- A round of the loop:
--   1. events left over by a round that an error interrupted are dispatched;
--   2. tasks spawned since the last round start, in spawn order;
--   3. the set waits: without blocking when the mode is "nowait", when stop()
--      was called or something already ran in this round; else until the
--      nearest timer deadline (or for ever when there is no timer);
--   4. I/O events are dispatched, in the kernel's order (watcher callbacks,
--      tasks waiting on descriptors);
--   5. timers that are due are run, in deadline order, equal deadlines in
--      the order they were started (timer callbacks, sleeping tasks, task
--      wait timeouts).
local lepoll = require "lepoll"

local create, clock, has, toflags = lepoll.create, lepoll.now, lepoll.has, lepoll.flags
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_running, co_close = coroutine.status, coroutine.running, coroutine.close
local co_isyieldable = coroutine.isyieldable -- Lua 5.3+, LuaJIT 2.1
local xpcall, pcall, error, type, select, next = xpcall, pcall, error, type, select, next
local pairs, ipairs, setmetatable, getmetatable = pairs, ipairs, setmetatable, getmetatable
local tostring, rawequal = tostring, rawequal
local floor = math.floor
local format, sub = string.format, string.sub
local traceback, getinfo = debug.traceback, debug.getinfo
-- luacheck: read globals unpack (the fallback: Lua 5.1's and LuaJIT's)
local unpack = table.unpack or unpack ---@diagnostic disable-line: deprecated

local IN, OUT = lepoll.IN, lepoll.OUT
local INOUT = toflags("in|out")
-- Events that wake a reader, a writer, when both wait on one descriptor.
local READ_EVENTS = toflags("in|pri|err|hup|rdhup")
local WRITE_EVENTS = toflags("out|err|hup")

local CLOSED = "attempt to use a closed loop"
local MODES = { default = true, once = true, nowait = true }

-- What a task yields to the loop; anything else is a stray yield.
local TOKEN = setmetatable({}, { __tostring = function() return "lepoll.loop yield" end })
-- Where coroutine.isyieldable is missing (5.1, 5.2), what a task yields
-- before it waits, to find out whether it can: the loop resumes it at once.
local PROBE = not co_isyieldable and setmetatable({}, { __tostring = function() return "lepoll.loop probe" end })

-- This file's name as positions show it, to move the position of errors
-- raised by lepoll on our calls to the caller's line.
local SELF_SRC = getinfo(1, "S").short_src

local M = { _VERSION = "lepoll.loop 0.1.0" }

local Loop, Watcher, Timer, Task = {}, {}, {}, {}
Loop.__index, Watcher.__index, Timer.__index, Task.__index = Loop, Watcher, Timer, Task

------------------------------------------------------------------ errors

local function argerror(n, name, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, name, msg), level + 1)
end

-- Raises err, an error of a lepoll call made here (through do_set or
-- do_create, so that it carries this file's position), at `level` instead:
-- the caller's position replaces ours. Any other value goes on unchanged.
local function raise(err, level)
  if type(err) == "string" and sub(err, 1, #SELF_SRC + 1) == SELF_SRC .. ":" then
    local rest = err:match("^:%d+: (.*)$", #SELF_SRC + 1)
    if rest then error(rest, level + 1) end
  end
  error(err, 0)
end

local function do_set(ep, fd, flags) ep:set(fd, flags) end

local function do_create(num_fds, max_ready)
  local ep = create(num_fds, max_ready)
  return ep
end

-- ep:set(fd, flags) with lepoll's errors raised at `level`.
-- ep:set(fd, flags); a refusal of the flags (exclusive) is given as
-- argument n of `name`, the caller's own function.
local function kernel_set(ep, fd, flags, level, n, name)
  local ok, err = pcall(do_set, ep, fd, flags)
  if ok then return end
  local msg = n and type(err) == "string" and err:match("bad argument #2 to 'set' %((.*)%)$")
  if msg then error(format("bad argument #%d to '%s' (%s)", n, name, msg), level + 1) end
  raise(err, level + 1)
end

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

local function check_flags(spec, n, name, level)
  local ok, flags = pcall(toflags, spec)
  if not ok then
    local msg = type(flags) == "string" and flags:match("%((.*)%)$") or tostring(flags)
    argerror(n, name, msg, level + 1)
  end
  return flags
end

local function check_seconds(v, n, name, what, level)
  if type(v) ~= "number" then
    argerror(n, name, format("%s expected, got %s", what, v == nil and "no value" or type(v)), level + 1)
  end
  if v ~= v then argerror(n, name, what .. " expected, got NaN", level + 1) end
  if v < 0 then return 0 end
  return v
end

-- Where a function was defined, for messages.
local function defined_at(f)
  if type(f) ~= "function" then return "callable " .. type(f) end
  local info = getinfo(f, "S")
  if info.what == "C" then return "[C]" end
  return format("%s:%d", info.short_src, info.linedefined)
end

-- Names a watcher, timer or task: the first line of tracebacks.
local function describe(obj)
  local kind = obj.kind
  if kind == "io" then
    return format("io watcher on fd %d (callback %s)", obj.fd, defined_at(obj.callback))
  elseif kind == "timer" then
    return format("timer #%d (callback %s)", obj.id, defined_at(obj.callback))
  end
  return format("task #%d (function %s)", obj.id, defined_at(obj.fn))
end

-- An error value as text, as the standalone interpreter shows it.
local function errtext(err)
  local t = type(err)
  if t == "string" or t == "number" then return tostring(err) end
  local mt = getmetatable(err)
  if type(mt) == "table" and mt.__tostring then
    local ok, s = pcall(tostring, err)
    if ok and type(s) == "string" then return s end
  end
  return format("(error object is a %s value)", t)
end

-- A callback, timer or task failed with self.err (already recorded, with
-- self.trace). With on_error, it handles the error now; otherwise the
-- round winds down and run raises it.
local function failed(self, obj)
  local on_error = self.on_error
  if on_error then
    local err = self.err
    self.err = nil
    on_error(err, self.trace, obj)
  else
    self.failed = true
  end
end

-- A watcher or timer callback raised err under xpcall. The message handler
-- kept the traceback (it is not called for memory errors: then the message
-- alone).
local function callback_failed(self, obj, err)
  self.err = err
  self.trace = self.htrace or describe(obj) .. ": " .. errtext(err)
  self.htrace = false
  failed(self, obj)
end

------------------------------------------------------------ descriptors

-- Not a tail call: LuaJIT would then name the method '?' in its argument
-- errors, and count the arguments from self.
local function do_tofd(ep, fd)
  local res = ep:tofd(fd)
  return res
end

-- Any descriptor lepoll accepts, as the integer the set reports, resolved
-- by the set itself; its argument errors are given as this function's.
local function resolve(self, fd, n, name, level)
  local ok, res = pcall(do_tofd, self.ep, fd)
  if ok then return res end
  local msg = type(res) == "string" and res:match("bad argument #%d+ to 'tofd' %((.*)%)$")
  if msg then argerror(n, name, msg, level + 1) end
  raise(res, level + 1)
end

-- Errors when fd is taken by a started watcher or a waiting task.
local function check_free(self, fd, level)
  if self.watchers[fd] then error(format("fd %d already has an I/O watcher", fd), level + 1) end
  if self.readers[fd] or self.writers[fd] then
    error(format("fd %d has a task waiting on it", fd), level + 1)
  end
end

local function check_open(self, level)
  if self.closed then error(CLOSED, level + 1) end
end

-------------------------------------------------------------- the heap
-- heap[1..nheap], ordered by (deadline, seq); each entry knows its index
-- (hidx, nil when not in the heap).

local function less(a, b)
  local da, db = a.deadline, b.deadline
  return da < db or (da == db and a.seq < b.seq)
end

local function sift_up(heap, i, t)
  while i > 1 do
    local p = floor(i / 2)
    local pt = heap[p]
    if not less(t, pt) then break end
    heap[i] = pt
    pt.hidx = i
    i = p
  end
  heap[i] = t
  t.hidx = i
end

local function sift_down(heap, n, i, t)
  while true do
    local c = i * 2
    if c > n then break end
    local ct = heap[c]
    if c < n then
      local c2 = heap[c + 1]
      if less(c2, ct) then c, ct = c + 1, c2 end
    end
    if not less(ct, t) then break end
    heap[i] = ct
    ct.hidx = i
    i = c
  end
  heap[i] = t
  t.hidx = i
end

-- Schedules t at deadline, after every entry with the same deadline.
local function heap_push(self, t, deadline)
  local seq = self.seq
  self.seq = seq + 1
  t.deadline, t.seq = deadline, seq
  local n = self.nheap + 1
  self.nheap = n
  sift_up(self.heap, n, t)
end

local function heap_remove(self, t)
  local heap, i, n = self.heap, t.hidx, self.nheap
  local last = heap[n]
  heap[n] = nil
  self.nheap = n - 1
  t.hidx = nil
  if i < n then
    if i > 1 and less(last, heap[floor(i / 2)]) then
      sift_up(heap, i, last)
    else
      sift_down(heap, n - 1, i, last)
    end
  end
end

------------------------------------------------------------------ tasks

local function task_ended(self, task)
  task.state = "dead"
  local tasks = self.tasks
  if tasks[task.co] then
    tasks[task.co] = nil
    self.ntasks = self.ntasks - 1
  end
end

-- Runs task until it waits again, ends or fails.
local function resume(self, task, ...)
  task.state = "running"
  local co = task.co
  local ok, v = co_resume(co, ...)
  if ok and co_status(co) == "suspended" then
    if rawequal(v, TOKEN) then return end -- waiting: the wait set its state
    if PROBE and rawequal(v, PROBE) then return resume(self, task) end -- about to wait
    ok, v = false, format("%s yielded to the loop outside readable, writable or sleep",
      describe(task))
  end
  if ok then
    task_ended(self, task)
    return
  end
  task_ended(self, task)
  self.err = v
  self.trace = traceback(co, describe(task) .. ": " .. errtext(v))
  if co_close then pcall(co_close, co) end -- its to-be-closed variables
  failed(self, task)
end

-- Stops task's wait on its descriptor: the slot, then the kernel's set.
local function release_fd(self, task)
  local fd, reading = task.wait_fd, task.wait_dir == "r"
  task.wait_fd, task.wait_obj = nil, nil
  local ep = self.ep
  local other
  if reading then
    self.readers[fd] = nil
    other = self.writers[fd]
  else
    self.writers[fd] = nil
    other = self.readers[fd]
  end
  -- Failures mean the descriptor was closed behind the loop's back: the
  -- kernel has forgotten it already.
  if other then
    pcall(ep.set, ep, fd, reading and OUT or IN)
  else
    pcall(ep.remove, ep, fd)
  end
end

-- A task's descriptor is ready.
local function wake_fd(self, task)
  release_fd(self, task)
  local t = task.timer
  if t and t.hidx then heap_remove(self, t) end
  resume(self, task, true)
end

-- A task's timer fired: its sleep is over, or its wait timed out.
local function task_timer(self, task)
  if task.wait_fd then
    release_fd(self, task)
    resume(self, task, nil, "timeout")
  else
    resume(self, task, true)
  end
end

-- The task of this loop running now, or an error naming `name`.
local function this_task(self, name, level)
  check_open(self, level + 1)
  local co = co_running()
  local task = co and self.tasks[co]
  if not task or task.state ~= "running" then
    error(format("%s must be called from a task of this loop (see spawn)", name), level + 1)
  end
  return task
end

-- Errors, before a wait registers anything, when the task cannot yield
-- there (see the top of this file).
local function check_yieldable(name, level)
  if co_isyieldable then
    if not co_isyieldable() then
      error(format("%s cannot wait here: the task would yield across a C-call boundary", name), level + 1)
    end
  else
    co_yield(PROBE) -- raises Lua's own error when it cannot yield
  end
end

local function task_timer_start(self, task, deadline)
  local t = task.timer
  if not t then
    t = { task = task }
    task.timer = t
  end
  heap_push(self, t, deadline)
end

local function wait_fd(self, obj, timeout, reading, name)
  local task = this_task(self, name, 3)
  local fd = resolve(self, obj, 1, name, 3)
  local deadline
  if timeout ~= nil then
    -- Before the kernel call: a clock that fails must leave nothing behind.
    deadline = self.clock() + check_seconds(timeout, 2, name, "timeout (seconds)", 3)
  end
  if self.watchers[fd] then
    error(format("fd %d has an I/O watcher: a task cannot wait on it", fd), 3)
  end
  local mine, others = self.readers, self.writers
  if not reading then mine, others = others, mine end
  if mine[fd] then
    error(format("fd %d already has a task waiting to %s", fd, reading and "read" or "write"), 3)
  end
  check_yieldable(name, 3)
  kernel_set(self.ep, fd, others[fd] and INOUT or (reading and IN or OUT), 3)
  mine[fd] = task
  task.wait_fd, task.wait_dir, task.round = fd, reading and "r" or "w", self.round
  task.wait_obj = obj -- keeps a handle or socket (and so its fd) alive
  if deadline then task_timer_start(self, task, deadline) end
  task.state = "waiting"
  return co_yield(TOKEN)
end

------------------------------------------------------------------- rounds

-- Dispatches the collected events from rpos on. Watchers and waits started
-- after the wait that reported an event (same round) do not get it.
local function dispatch_io(self)
  local rfd, rfl = self.rfd, self.rfl
  local watchers, readers, writers = self.watchers, self.readers, self.writers
  local round = self.round
  while not self.failed and not self.closed do
    local i = self.rpos
    if i > self.nready then break end
    self.rpos = i + 1
    local fd, flags = rfd[i], rfl[i]
    local w = watchers[fd]
    if w then
      if w.round ~= round then
        self.cur, self.cur_flags = w, flags
        local ok, err = xpcall(self.call_io, self.handler)
        self.cur = false
        if not ok then callback_failed(self, w, err) end
      end
    else
      local r, wr = readers[fd], writers[fd]
      if r and r.round == round then r = nil end
      if wr and wr.round == round then wr = nil end
      if r and wr then
        if not has(flags, READ_EVENTS) then r = nil end
        if not has(flags, WRITE_EVENTS) then wr = nil end
      end
      if r then wake_fd(self, r) end
      if wr and writers[fd] == wr and not self.failed and not self.closed then wake_fd(self, wr) end
    end
  end
end

-- Repeating timers move on from their deadline; when that is more than a
-- period in the past, to the last tick not after now (missed ticks skipped).
local function next_deadline(deadline, every, now)
  local nd = deadline + every
  if now - nd >= every then nd = nd + every * floor((now - nd) / every) end
  return nd
end

-- Runs the timers due at the start of this phase; timers started while it
-- runs wait for the next round.
local function run_timers(self)
  local heap = self.heap
  local now = self.clock()
  local limit = self.seq
  while self.nheap > 0 and not self.failed and not self.closed do
    local t = heap[1]
    if t.deadline > now or t.seq >= limit then break end
    heap_remove(self, t)
    local task = t.task
    if task then
      task_timer(self, task)
    else
      local every = t.every
      if every then
        heap_push(self, t, next_deadline(t.deadline, every, now))
      else
        self.ntimers = self.ntimers - 1
      end
      self.cur = t
      local ok, err = xpcall(self.call_timer, self.handler)
      self.cur = false
      if not ok then callback_failed(self, t, err) end
    end
  end
end

local function start_tasks(self)
  local queue, last = self.queue, self.qlast
  while self.qfirst <= last and not self.failed and not self.closed do
    local i = self.qfirst
    local task = queue[i]
    queue[i] = nil
    self.qfirst = i + 1
    local args = task.args
    task.args = nil
    resume(self, task, unpack(args, 1, args.n))
  end
  if self.qfirst > self.qlast then self.qfirst, self.qlast = 1, 0 end
end

local function alive(self)
  return not self.closed and (self.nwatchers > 0 or self.nheap > 0 or self.ntasks > 0)
end

local function round(self, mode)
  local busy = false
  if self.rpos <= self.nready then
    busy = true
    dispatch_io(self)
    if self.failed or self.closed then return end
  end
  if self.qfirst <= self.qlast then
    busy = true
    start_tasks(self)
    if self.failed or self.closed then return end
  end
  if not alive(self) then return end
  local timeout
  if busy or mode == "nowait" or self.stopping or self.qfirst <= self.qlast then
    timeout = 0
  elseif self.nheap > 0 then
    -- Rounded up to the next millisecond (wait rounds to the nearest):
    -- never woken before the deadline.
    local span = self.heap[1].deadline - self.clock()
    timeout = span > 0 and span + 0.0005 or 0
  end
  local ep = self.ep
  local result = ep:wait(timeout)
  self.round = self.round + 1
  self.nready, self.rpos = 0, 1
  if result == "ok" then ep:iter_ready(self.collect) end
  dispatch_io(self)
  if self.failed or self.closed then return end
  run_timers(self)
end

local function run_rounds(self, mode)
  while alive(self) do
    round(self, mode)
    if self.failed or self.closed or mode ~= "default" or self.stopping then break end
  end
  return alive(self)
end

--------------------------------------------------------------- the loop

function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    argerror(1, "new", "options table expected, got " .. type(opts), 2)
  end
  opts = opts or {}
  local on_error = opts.on_error
  if on_error ~= nil and not callable(on_error) then
    argerror(1, "new", "on_error must be a function, got " .. type(on_error), 2)
  end
  local now = opts.clock
  if now ~= nil and not callable(now) then
    argerror(1, "new", "clock must be a function, got " .. type(now), 2)
  end
  local ok, ep = pcall(do_create, opts.num_file_descrs, opts.max_ready_events)
  if not ok then
    local n, msg
    if type(ep) == "string" then n, msg = ep:match("bad argument #(%d) to 'create' %((.*)%)$") end
    if n then
      local option = n == "1" and "num_file_descrs" or "max_ready_events"
      if msg:sub(1, #option) ~= option then msg = option .. ": " .. msg end
      argerror(1, "new", msg, 2)
    end
    raise(ep, 2)
  end
  local self = setmetatable({
    ep = ep,
    on_error = on_error or false,
    clock = now or clock,
    watchers = {}, nwatchers = 0,   -- fd -> started watcher
    readers = {}, writers = {},     -- fd -> task waiting on it
    heap = {}, nheap = 0, seq = 0, ntimers = 0, timer_ids = 0,
    tasks = {}, ntasks = 0, task_ids = 0,  -- coroutine -> live task
    queue = {}, qfirst = 1, qlast = 0,     -- tasks to start
    rfd = {}, rfl = {}, nready = 0, rpos = 1, round = 0,
    cur = false, cur_flags = 0,
    running = false, stopping = false, closed = false,
    failed = false, err = false, trace = false, htrace = false,
  }, Loop)
  local rfd, rfl = self.rfd, self.rfl
  -- Made once per loop, so that dispatching allocates nothing.
  function self.collect(fd, flags)
    local k = self.nready + 1
    self.nready = k
    rfd[k], rfl[k] = fd, flags
  end
  function self.call_io()
    local w = self.cur
    w.callback(w, w.fd, self.cur_flags)
  end
  function self.call_timer()
    local t = self.cur
    t.callback(t)
  end
  function self.handler(err)
    self.htrace = traceback(describe(self.cur) .. ": " .. errtext(err), 2)
    return err
  end
  return self
end

function Loop:io(obj, flags, callback)
  check_open(self, 2)
  local fd = resolve(self, obj, 1, "io", 2)
  flags = check_flags(flags, 2, "io", 2)
  if not callable(callback) then
    argerror(3, "io", "function expected, got " .. (callback == nil and "no value" or type(callback)), 2)
  end
  check_free(self, fd, 2)
  kernel_set(self.ep, fd, flags, 2, 2, "io")
  local w = setmetatable({
    kind = "io", loop = self, fd = fd, flags = flags, callback = callback,
    active = true, round = self.round,
    -- A handle or socket given as the descriptor: while the watcher lives,
    -- the collector must not close its fd.
    handle = type(obj) ~= "number" and obj or nil,
  }, Watcher)
  self.watchers[fd] = w
  self.nwatchers = self.nwatchers + 1
  return w
end

function Loop:timer(after, callback, every)
  check_open(self, 2)
  after = check_seconds(after, 1, "timer", "seconds", 2)
  if not callable(callback) then
    argerror(2, "timer", "function expected, got " .. (callback == nil and "no value" or type(callback)), 2)
  end
  if every ~= nil then
    every = check_seconds(every, 3, "timer", "seconds", 2)
    if every <= 0 then argerror(3, "timer", "the period must be > 0", 2) end
  end
  local id = self.timer_ids + 1
  self.timer_ids = id
  local t = setmetatable({
    kind = "timer", loop = self, id = id, callback = callback, after = after,
    every = every or false,
  }, Timer)
  heap_push(self, t, self.clock() + after)
  self.ntimers = self.ntimers + 1
  return t
end

function Loop:spawn(fn, ...)
  check_open(self, 2)
  if type(fn) ~= "function" then
    argerror(1, "spawn", "function expected, got " .. (fn == nil and "no value" or type(fn)), 2)
  end
  local id = self.task_ids + 1
  self.task_ids = id
  local co = co_create(fn)
  local task = setmetatable({
    kind = "task", loop = self, id = id, fn = fn, co = co, state = "queued",
    args = { n = select("#", ...), ... }, wait_fd = nil, timer = nil, round = 0,
  }, Task)
  self.tasks[co] = task
  self.ntasks = self.ntasks + 1
  local last = self.qlast + 1
  self.qlast = last
  self.queue[last] = task
  return task
end

-- Not tail calls: error levels count these frames. true alone, or nil
-- and "timeout".
function Loop:readable(fd, timeout)
  local ok, why = wait_fd(self, fd, timeout, true, "readable")
  if ok then return ok end
  return ok, why
end

function Loop:writable(fd, timeout)
  local ok, why = wait_fd(self, fd, timeout, false, "writable")
  if ok then return ok end
  return ok, why
end

function Loop:sleep(seconds)
  local task = this_task(self, "sleep", 2)
  seconds = check_seconds(seconds, 1, "sleep", "seconds", 2)
  check_yieldable("sleep", 2)
  task_timer_start(self, task, self.clock() + seconds)
  task.state = "waiting"
  local ok = co_yield(TOKEN)
  return ok
end

function Loop:run(mode)
  check_open(self, 2)
  if mode == nil then mode = "default" end
  if not MODES[mode] then
    argerror(1, "run", format("invalid mode '%s' (expected 'default', 'once' or 'nowait')", tostring(mode)), 2)
  end
  if self.running then
    error("the loop is already running (run called from one of its callbacks or tasks)", 2)
  end
  self.running, self.stopping = true, false
  local ok, more = pcall(run_rounds, self, mode)
  self.running, self.stopping, self.cur = false, false, false
  if not ok then error(more, 0) end
  if self.failed then
    local err = self.err
    self.failed, self.err = false, false
    error(err, 0)
  end
  return more
end

function Loop:stop()
  if self.running then self.stopping = true end
end

function Loop:now()
  return self.clock()
end

function Loop:getfd()
  check_open(self, 2)
  return self.ep:getfd()
end

function Loop:last_traceback()
  return self.trace or nil
end

function Loop:close()
  if self.closed then return end
  self.closed = true
  self.stopping = true
  for _, w in pairs(self.watchers) do w.active = false end
  self.watchers, self.readers, self.writers = {}, {}, {}
  self.nwatchers = 0
  local heap = self.heap
  for i = 1, self.nheap do
    heap[i].hidx = nil
    heap[i] = nil
  end
  self.nheap, self.ntimers = 0, 0
  self.queue, self.qfirst, self.qlast = {}, 1, 0
  self.nready, self.rpos = 0, 1
  self.ep:close()
  -- Tasks end here: their to-be-closed variables are closed (Lua 5.4). A
  -- task running now (it called close) ends when it next yields or returns.
  local tasks = self.tasks
  self.tasks, self.ntasks = {}, 0
  local first_err, has_err = nil, false
  for co, task in pairs(tasks) do
    task.state, task.wait_fd, task.args = "dead", nil, nil
    if co_close and co_status(co) == "suspended" then
      local ok, err = co_close(co)
      if not ok and not has_err then first_err, has_err = err, true end
    end
  end
  if has_err then error(first_err, 0) end
end

function Loop:invariant()
  local function fail(fmt, ...) error("lepoll.loop: invariant: " .. format(fmt, ...), 3) end
  if self.closed then
    if self.nwatchers ~= 0 or self.nheap ~= 0 or self.ntasks ~= 0 or next(self.watchers) then
      fail("a closed loop holds watchers, timers or tasks")
    end
    return
  end
  local ep = self.ep
  ep:invariant()
  -- The set watches exactly what the watchers and waiting tasks want.
  local n, nfd = 0, 0
  for fd, w in pairs(self.watchers) do
    n = n + 1
    if not w.active or w.fd ~= fd or w.loop ~= self then fail("watcher for fd %d is not started on it", fd) end
    if self.readers[fd] or self.writers[fd] then fail("fd %d has a watcher and a waiting task", fd) end
    if ep:find(fd) ~= w.flags then fail("fd %d: set has %s, watcher wants %s", fd,
      tostring(ep:find(fd)), tostring(w.flags)) end
  end
  if n ~= self.nwatchers then fail("%d started watchers counted as %d", n, self.nwatchers) end
  for _, slots in ipairs({ self.readers, self.writers }) do
    local reading = slots == self.readers
    for fd, task in pairs(slots) do
      if task.wait_fd ~= fd or (task.wait_dir == "r") ~= reading or task.state ~= "waiting"
          or self.tasks[task.co] ~= task then
        fail("fd %d: the task waiting on it is not waiting for it", fd)
      end
      local want = (self.readers[fd] and self.writers[fd]) and INOUT or (reading and IN or OUT)
      if ep:find(fd) ~= want then fail("fd %d: set has %s for waiting tasks, wants %d", fd,
        tostring(ep:find(fd)), want) end
    end
  end
  -- ep:iter, not pairs(ep): __pairs does nothing on Lua 5.1 and LuaJIT.
  -- The first stray fd is failed on after the walk, at this level.
  local stray
  ep:iter(function(fd)
    nfd = nfd + 1
    if not stray and not (self.watchers[fd] or self.readers[fd] or self.writers[fd]) then stray = fd end
  end)
  if stray then fail("fd %d is in the set with no watcher or task", stray) end
  -- The heap.
  local heap, users = self.heap, 0
  for i = 1, self.nheap do
    local t = heap[i]
    if t == nil or t.hidx ~= i then fail("timer heap entry %d misplaced", i) end
    if i > 1 and less(t, heap[floor(i / 2)]) then fail("timer heap order broken at %d", i) end
    if t.task then
      if self.tasks[t.task.co] ~= t.task or t.task.state ~= "waiting" then
        fail("timer of a task that is not waiting at %d", i)
      end
    else
      users = users + 1
    end
  end
  if heap[self.nheap + 1] ~= nil then fail("timer heap holds entries past its end") end
  if users ~= self.ntimers then fail("%d pending timers counted as %d", users, self.ntimers) end
  local nt = 0
  for co, task in pairs(self.tasks) do
    nt = nt + 1
    if task.co ~= co or task.state == "dead" then fail("task #%d listed but dead", task.id) end
  end
  if nt ~= self.ntasks then fail("%d live tasks counted as %d", nt, self.ntasks) end
end

function Loop:__tostring()
  if self.closed then return "loop{closed}" end
  return format("loop{watchers=%d, timers=%d, tasks=%d, %s}",
    self.nwatchers, self.ntimers, self.ntasks, tostring(self.ep))
end

function Loop:__close()
  self:close()
end

function Loop:__gc()
  pcall(self.close, self)
end

---------------------------------------------------------------- watchers

function Watcher:stop()
  if not self.active then return end
  local l = self.loop
  self.active = false
  l.watchers[self.fd] = nil
  l.nwatchers = l.nwatchers - 1
  -- Fails only when the descriptor was closed before: the kernel has
  -- already forgotten it, and the set's entry is dropped either way.
  local ep = l.ep
  pcall(ep.remove, ep, self.fd)
end

function Watcher:start()
  local l = self.loop
  check_open(l, 2)
  if self.active then return end
  check_free(l, self.fd, 2)
  kernel_set(l.ep, self.fd, self.flags, 2)
  self.active, self.round = true, l.round
  l.watchers[self.fd] = self
  l.nwatchers = l.nwatchers + 1
end

function Watcher:set(flags)
  local l = self.loop
  check_open(l, 2)
  flags = check_flags(flags, 1, "set", 2)
  if self.active then kernel_set(l.ep, self.fd, flags, 2, 1, "set") end
  self.flags = flags
end

function Watcher:is_active()
  return self.active
end

function Watcher:__tostring()
  return format("io{fd=%d, flags=\"%s\"%s}", self.fd, lepoll.flagnames(self.flags),
    self.active and "" or ", stopped")
end

------------------------------------------------------------------ timers

function Timer:stop()
  if self.hidx then
    local l = self.loop
    heap_remove(l, self)
    l.ntimers = l.ntimers - 1
  end
end

function Timer:again(after)
  local l = self.loop
  check_open(l, 2)
  if after ~= nil then self.after = check_seconds(after, 1, "again", "seconds", 2) end
  if self.hidx then
    heap_remove(l, self)
  else
    l.ntimers = l.ntimers + 1
  end
  heap_push(l, self, l.clock() + self.after)
end

function Timer:is_active()
  return self.hidx ~= nil
end

function Timer:__tostring()
  return format("timer{id=%d%s}", self.id, self.hidx and "" or ", stopped")
end

------------------------------------------------------------------- tasks

function Task:status()
  return self.state
end

function Task:__tostring()
  return format("task{id=%d, %s}", self.id, self.state)
end

return M
