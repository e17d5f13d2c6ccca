-- lepoll.loop: an event loop written on the public API of lepoll. This
-- file is the loop itself: making one, running and stepping it, what
-- another loop needs to drive it, closing. The parts it puts together are
-- in lepoll/loop/: rounds.lua (a round, below, and the runner that runs
-- them), watchers.lua (I/O watchers), timers.lua (timers), heap.lua (the
-- timer heap), tasks.lua (tasks: their runs, ends, cancellation, joins),
-- waits.lua (how a task waits: readable, writable, sleep), slots.lua (the
-- descriptors tasks wait on), condition.lua (conditions), processes.lua
-- (child processes), signals.lua (signals), invariant.lua (l:invariant),
-- common.lua (the argument checks and error records they share).
--
-- One epoll set per loop; I/O watchers (callbacks per descriptor), timers
-- in a binary min-heap, and tasks (coroutines) that wait for readability,
-- writability, time, a condition or another task's end.
--
-- Lua versions. Written for Lua 5.4; runs on 5.1, 5.2, 5.3 and LuaJIT 2.1
-- too (no attributes, no integer division, no bit operators, no goto; the
-- set is walked with ep:iter, not pairs). What differs before 5.4:
--   - a loop closes at scope exit as `local l <close> = loop.new()`, and
--     l:close() and task:cancel() close the to-be-closed variables of the
--     tasks they end, on Lua 5.4 only (<close>, __close and
--     coroutine.close are 5.4's);
--   - a loop that is collected without close: on 5.2 and 5.3 its __gc
--     closes it; on 5.1 and LuaJIT tables have no __gc, and the set's own
--     __gc closes its epoll descriptor (the loop then holds nothing else);
--   - a task waits by yielding to the loop, so it cannot wait where its
--     coroutine cannot yield: inside a pcall or xpcall on Lua 5.1 (5.2 and
--     later, and LuaJIT, yield across them), in a metamethod on 5.1, or in
--     a function a C function calls back (table.sort's comparator,
--     string.gsub's replacement) on every version. The wait then raises
--     and leaves nothing behind: ours, naming the function, where
--     coroutine.isyieldable tells (5.3, 5.4, LuaJIT), else Lua's own
--     "attempt to yield across ... C-call boundary";
--   - errors: an error value is re-raised by run unchanged on every
--     version, but Lua 5.1, 5.2 and LuaJIT themselves turn error(42) into
--     the string "file:line: 42" (5.3 and later keep the number).
--
-- A round of the loop:
--   1. a task's run that a memory error interrupted is finished; events and
--      due timers left over by a round that an error interrupted are
--      dispatched;
--   2. the run queue: tasks spawned since the last round start, tasks woken
--      by a condition, a join or l:closing resume, in the order they were
--      queued;
--   3. the set waits: without blocking when the mode is "nowait", when stop()
--      was called or something already ran in this round; else until the
--      nearest timer deadline (or for ever when there is no timer), at most
--      the step's limit;
--   4. I/O events are dispatched, in the kernel's order (watcher callbacks,
--      tasks waiting on descriptors);
--   5. timers that are due are run, in deadline order, equal deadlines in
--      the order they were started (timer callbacks, sleeping tasks, task
--      wait timeouts).
--
-- Rounds run in a coroutine of the loop's own (the runner), so that a
-- callback that yields cannot carry run's caller away with it: the yield
-- ends at the runner, and run raises an error saying so, the loop intact.
--
-- Memory errors. Every field of the loop's objects exists from their
-- creation and is never set to nil (false stands for none), so setting one
-- never allocates; an operation makes its allocations before it changes
-- anything that counts, and what it does after them cannot fail, or is
-- undone when it does; where an operation must make calls after its first
-- change, it reserves them first (common.reserve). Events are consumed only
-- once dispatched, a due timer once its callback is called, and a task's
-- run, interrupted, is finished first thing in the next round (tasks.lua),
-- so a memory error in run loses nothing and delivers nothing twice: the
-- next run goes on. make test-oom checks all of it, allocation by
-- allocation (test/c/oom_loop.lua).
local lepoll = require "lepoll"
local common = require "lepoll.loop.common"
local heap = require "lepoll.loop.heap"
local watchers = require "lepoll.loop.watchers"
local timers = require "lepoll.loop.timers"
local tasks = require "lepoll.loop.tasks"
local waits = require "lepoll.loop.waits"
local slots = require "lepoll.loop.slots"
local condition = require "lepoll.loop.condition"
local invariant = require "lepoll.loop.invariant"
local rounds = require "lepoll.loop.rounds"
local processes = require "lepoll.loop.processes"
local signals = require "lepoll.loop.signals"

local clock = lepoll.now
local co_status = coroutine.status
local error, type, pairs, setmetatable = error, type, pairs, setmetatable
local tostring, pcall = tostring, pcall
local format = string.format
local traceback = debug.traceback
local argerror, check_open, describe = common.argerror, common.check_open, common.describe
local drive, queued = rounds.drive, rounds.queued

local MODES = { default = true, once = true, nowait = true }

local M = { _VERSION = "lepoll.loop 0.2.0" }

local Loop = {
  io = watchers.io,
  timer = timers.timer,
  spawn = tasks.spawn,
  readable = waits.readable,
  writable = waits.writable,
  sleep = waits.sleep,
  running = waits.running,
  process = processes.process,
  wait_exit = processes.wait_exit,
  signal = signals.signal,
  wait_signal = signals.wait_signal,
  invariant = invariant,
}
Loop.__index = Loop

--------------------------------------------------------------- the loop

function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    argerror(1, "new", "options table expected, got " .. type(opts), 2)
  end
  opts = opts or {}
  local on_error = opts.on_error
  if on_error ~= nil and not common.callable(on_error) then
    argerror(1, "new", "on_error must be a function, got " .. type(on_error), 2)
  end
  local now = opts.clock
  if now ~= nil and not common.callable(now) then
    argerror(1, "new", "clock must be a function, got " .. type(now), 2)
  end
  local ep, why, errname = lepoll.try_create(opts.num_file_descrs, opts.max_ready_events)
  if not ep then
    if errname == "EINVAL" then argerror(1, "new", why, 2) end
    error(why, 2)
  end
  local self = setmetatable({
    ep = ep,
    on_error = on_error or false,
    clock = now or clock,
    watchers = {}, nwatchers = 0,          -- fd -> started watcher
    slots = {},                            -- fd -> slot (slots.lua)
    heap = heap.new(), ntimers = 0, timer_ids = 0,
    due = {}, dpos = 1, ndue = 0,          -- due timers being run
    tasks = {}, ntasks = 0, task_ids = 0,  -- coroutine -> live task
    queue = {}, qfirst = 1, qlast = 0,     -- the run queue
    nqueued = 0,                           -- its live entries
    cond_ids = 0,
    processes = {},                        -- process -> its record (processes.lua)
    sigset = false, sigwatch = false,      -- the signal set, its watcher (signals.lua)
    sigs = {},                             -- signal number -> its record
    rfd = {}, rfl = {}, nready = 0, rpos = 1, round = 0,
    cur = false, cur_flags = 0,
    current = false,                       -- the task run now (tasks.lua)
    in_run = false, stopping = false, closed = false,
    runner = false, paused = false, caller = false,
    failed = false, err = false, trace = false, htrace = false,
    nrounds = 0, nevents = 0, nwaits = 0, nctl = 0,
  }, Loop)
  -- The event buffers at their full size, so that taking a wait's events
  -- never allocates.
  local rfd, rfl = self.rfd, self.rfl
  for i = 1, opts.max_ready_events or 256 do rfd[i], rfl[i] = 0, 0 end
  -- Made once per loop, so that dispatching allocates nothing.
  function self.call_io()
    local w = self.cur
    w.callback(w, w.fd, self.cur_flags)
  end
  function self.call_timer()
    local t = self.cur
    t.callback(t)
  end
  function self.handler(err)
    self.htrace = traceback(describe(self.cur) .. ": " .. common.errtext(err), 2)
    return err
  end
  return self
end

function Loop:run(mode)
  check_open(self, 2)
  if mode == nil then mode = "default" end
  if not MODES[mode] then
    argerror(1, "run", format("invalid mode '%s' (expected 'default', 'once' or 'nowait')", tostring(mode)), 2)
  end
  local more = drive(self, mode, nil) -- not a tail call: levels count run
  return more
end

-- One round, waiting at most timeout seconds (default 0).
function Loop:step(timeout)
  check_open(self, 2)
  local limit = 0
  if timeout ~= nil then limit = common.check_seconds(timeout, 1, "step", "timeout (seconds)", 2) end
  local more = drive(self, "once", limit)
  return more
end

function Loop:stop()
  if self.in_run then self.stopping = true end
end

function Loop:now()
  return self.clock()
end

function Loop:getfd()
  check_open(self, 2)
  return self.ep:getfd()
end

-- The cqueues protocol: a poller waits for pollfd() to be readable
-- (events() is "r") or timeout() seconds, then steps the loop.
Loop.pollfd = Loop.getfd

function Loop.events()
  return "r"
end

-- Seconds until the loop has something to do without an event: 0 when
-- something is queued or left over, the nearest timer otherwise, nil when
-- there is no deadline.
function Loop:timeout()
  if self.closed then return nil end
  if queued(self) or self.rpos <= self.nready or self.dpos <= self.ndue then return 0 end
  local deadline = timers.first_deadline(self)
  if not deadline then return nil end
  local span = deadline - self.clock()
  return span > 0 and span or 0
end

function Loop:last_traceback()
  return self.trace or nil
end

-- The network layer above the loop (lua/lepoll/net/: wrapped sockets,
-- connect, serve, resolve) is loaded on first use, so that the loop itself
-- never needs LuaSocket. Not tail calls: error levels count these frames.
function Loop:wrap(sock)
  local w = require("lepoll.net.socket").wrap(self, sock, 2)
  return w
end

function Loop:connect(host, port, timeout)
  local conn, err = require("lepoll.net.connect").connect(self, host, port, timeout)
  return conn, err
end

function Loop:serve(sock, handler, opts)
  local server = require("lepoll.net.server").serve(self, sock, handler, opts)
  return server
end

function Loop:resolve(host, family, timeout)
  local addresses, err = require("lepoll.net.resolve").resolve(self, host, family, timeout)
  return addresses, err
end

function Loop:condition()
  return condition.new(self)
end

-- Wakes the tasks waiting on obj's descriptor (their waits return nil,
-- "closed"), stops a watcher on it, and takes it out of the set: call it
-- before closing a descriptor the loop may be using. Returns the number of
-- tasks woken. After close there is nothing left to wake: 0.
function Loop:closing(obj)
  if self.closed then return 0 end
  if self.processes[obj] then return processes.closing(self, obj) end
  local fd = common.resolve(self, obj, 1, "closing", 2)
  local w = self.watchers[fd]
  if w then w:stop() end
  local s = self.slots[fd]
  if not s then return 0 end
  -- All or nothing: the run queue's cells and the calls below made first.
  tasks.reserve_cells(self, 2)
  common.reserve()
  local n = 0
  local r = s.reader
  if r then
    tasks.wake_later(self, r, false, "closed")
    n = 1
  end
  local wr = s.writer
  if wr then
    tasks.wake_later(self, wr, false, "closed")
    n = n + 1
  end
  slots.drop(self, s)
  return n
end

-- Counts, into t when given (no allocation), else a new table.
function Loop:stats(t)
  if t ~= nil and type(t) ~= "table" then argerror(1, "stats", "table expected, got " .. type(t), 2) end
  t = t or {}
  local waiting, descriptors = 0, 0
  for _, task in pairs(self.tasks) do
    if task.state == "waiting" then waiting = waiting + 1 end
  end
  for _, s in pairs(self.slots) do
    if s.reg ~= 0 then descriptors = descriptors + 1 end
  end
  t.watchers, t.timers, t.tasks, t.waiting = self.nwatchers, self.ntimers, self.ntasks, waiting
  t.descriptors = descriptors + self.nwatchers
  t.rounds, t.events, t.waits, t.ctl = self.nrounds, self.nevents, self.nwaits, self.nctl
  t.closed = self.closed
  return t
end

function Loop:close()
  if self.closed then return end
  self.closed = true
  self.stopping = true
  -- Every wait ends as a wait does (a condition forgets its waiters).
  for _, task in pairs(self.tasks) do
    if task.wait then tasks.stop_wait(task) end
    task.fslot = false -- no steady-state wait (waits.lua) after close
  end
  for _, w in pairs(self.watchers) do w.active = false end
  self.watchers, self.slots = {}, {}
  self.nwatchers = 0
  self.processes = {} -- the processes themselves are the program's
  signals.close(self) -- the signals the loop watched go back to what they were
  self.heap:clear()
  for i = 1, self.ndue do
    local t = self.due[i]
    if t then t.due = false end
  end
  self.due, self.dpos, self.ndue = {}, 1, 0
  self.ntimers = 0
  self.queue, self.qfirst, self.qlast, self.nqueued = {}, 1, 0, 0
  self.nready, self.rpos = 0, 1
  self.ep:close()
  -- Tasks end here: their to-be-closed variables are closed (Lua 5.4). A
  -- task running now (it called close) ends when it next waits or returns.
  local live = self.tasks
  self.tasks, self.ntasks = {}, 0
  local first_err, has_err = nil, false
  for co, task in pairs(live) do
    task.state, task.wait, task.args, task.queued = "dead", false, false, false
    task.outcome = "cancelled"
    if co_status(co) == "suspended" and coroutine.close then
      local ok, err = coroutine.close(co)
      if not ok and not has_err then first_err, has_err = err, true end
    end
  end
  if has_err then error(first_err, 0) end
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

return M
