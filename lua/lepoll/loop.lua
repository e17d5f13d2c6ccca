-- lepoll.loop: an event loop written on the public API of lepoll. This
-- file is the loop itself: making one, its rounds, running, closing. The
-- parts it puts together are in lepoll/loop/: watchers.lua (I/O
-- watchers), timers.lua (timers), heap.lua (the timer heap), tasks.lua
-- (tasks and their waits), invariant.lua (l:invariant), common.lua (the
-- argument checks and error records they share).
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
local common = require "lepoll.loop.common"
local heap = require "lepoll.loop.heap"
local watchers = require "lepoll.loop.watchers"
local timers = require "lepoll.loop.timers"
local tasks = require "lepoll.loop.tasks"
local invariant = require "lepoll.loop.invariant"

local clock, has, toflags = lepoll.now, lepoll.has, lepoll.flags
local co_status, co_close = coroutine.status, coroutine.close
local pcall, xpcall, error, type, pairs, setmetatable = pcall, xpcall, error, type, pairs, setmetatable
local tostring = tostring
local format = string.format
local traceback = debug.traceback
local argerror, check_open, describe = common.argerror, common.check_open, common.describe
local wake_fd, run_timers, task_timer = tasks.wake_fd, timers.run_timers, tasks.task_timer

-- Events that wake a reader, a writer, when both wait on one descriptor.
local READ_EVENTS = toflags("in|pri|err|hup|rdhup")
local WRITE_EVENTS = toflags("out|err|hup")

local MODES = { default = true, once = true, nowait = true }

local M = { _VERSION = "lepoll.loop 0.1.0" }

local Loop = {
  io = watchers.io,
  timer = timers.timer,
  spawn = tasks.spawn,
  readable = tasks.readable,
  writable = tasks.writable,
  sleep = tasks.sleep,
  invariant = invariant,
}
Loop.__index = Loop

------------------------------------------------------------------- rounds

-- Dispatches the collected events from rpos on. Watchers and waits started
-- after the wait that reported an event (same round) do not get it.
local function dispatch_io(self)
  local rfd, rfl = self.rfd, self.rfl
  local watching, readers, writers = self.watchers, self.readers, self.writers
  local round = self.round
  while not self.failed and not self.closed do
    local i = self.rpos
    if i > self.nready then break end
    self.rpos = i + 1
    local fd, flags = rfd[i], rfl[i]
    local w = watching[fd]
    if w then
      if w.round ~= round then
        self.cur, self.cur_flags = w, flags
        local ok, err = xpcall(self.call_io, self.handler)
        self.cur = false
        if not ok then common.callback_failed(self, w, err) end
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

local function alive(self)
  return not self.closed and (self.nwatchers > 0 or self.heap.n > 0 or self.ntasks > 0)
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
    tasks.start_tasks(self)
    if self.failed or self.closed then return end
  end
  if not alive(self) then return end
  local timeout
  if busy or mode == "nowait" or self.stopping or self.qfirst <= self.qlast then
    timeout = 0
  elseif self.heap.n > 0 then
    -- Rounded up to the next millisecond (wait rounds to the nearest):
    -- never woken before the deadline.
    local span = self.heap:peek().deadline - self.clock()
    timeout = span > 0 and span + 0.0005 or 0
  end
  local ep = self.ep
  local result = ep:wait(timeout)
  self.round = self.round + 1
  self.nready, self.rpos = 0, 1
  if result == "ok" then ep:iter_ready(self.collect) end
  dispatch_io(self)
  if self.failed or self.closed then return end
  run_timers(self, task_timer)
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
    watchers = {}, nwatchers = 0,   -- fd -> started watcher
    readers = {}, writers = {},     -- fd -> task waiting on it
    heap = heap.new(), ntimers = 0, timer_ids = 0,
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
  self.heap:clear()
  self.ntimers = 0
  self.queue, self.qfirst, self.qlast = {}, 1, 0
  self.nready, self.rpos = 0, 1
  self.ep:close()
  -- Tasks end here: their to-be-closed variables are closed (Lua 5.4). A
  -- task running now (it called close) ends when it next yields or returns.
  local live = self.tasks
  self.tasks, self.ntasks = {}, 0
  local first_err, has_err = nil, false
  for co, task in pairs(live) do
    task.state, task.wait_fd, task.args = "dead", nil, nil
    if co_close and co_status(co) == "suspended" then
      local ok, err = co_close(co)
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
