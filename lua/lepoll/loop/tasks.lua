-- lepoll.loop.tasks: tasks, coroutines run by the loop (l:spawn), and
-- their waits: for a descriptor (l:readable, l:writable) or for time
-- (l:sleep). A waiting task yields to the loop; the loop resumes it when
-- its descriptor is ready or its timer is due.
local lepoll = require "lepoll"
local common = require "lepoll.loop.common"

local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_running, co_close = coroutine.status, coroutine.running, coroutine.close
local co_isyieldable = coroutine.isyieldable -- Lua 5.3+, LuaJIT 2.1
local setmetatable, select, type, error, pcall, rawequal = setmetatable, select, type, error, pcall, rawequal
local format = string.format
local traceback = debug.traceback
-- luacheck: read globals unpack (the fallback: Lua 5.1's and LuaJIT's)
local unpack = table.unpack or unpack ---@diagnostic disable-line: deprecated
local check_open, describe = common.check_open, common.describe

local IN, OUT = lepoll.IN, lepoll.OUT
local INOUT = lepoll.flags("in|out")

-- What a task yields to the loop; anything else is a stray yield.
local TOKEN = setmetatable({}, { __tostring = function() return "lepoll.loop yield" end })
-- Where coroutine.isyieldable is missing (5.1, 5.2), what a task yields
-- before it waits, to find out whether it can: the loop resumes it at once.
local PROBE = not co_isyieldable and setmetatable({}, { __tostring = function() return "lepoll.loop probe" end })

local Task = {}
Task.__index = Task

local M = { Task = Task, INOUT = INOUT }

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
  self.trace = traceback(co, describe(task) .. ": " .. common.errtext(v))
  if co_close then pcall(co_close, co) end -- its to-be-closed variables
  common.failed(self, task)
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
  -- Refusals mean the descriptor was closed behind the loop's back: the
  -- kernel has forgotten it already, and the set's entry goes either way.
  if other then
    ep:try_set(fd, reading and OUT or IN)
  else
    ep:try_remove(fd)
  end
end

-- A task's descriptor is ready.
function M.wake_fd(self, task)
  release_fd(self, task)
  local t = task.timer
  if t and t.hidx then self.heap:remove(t) end
  resume(self, task, true)
end

-- A task's timer fired: its sleep is over, or its wait timed out.
function M.task_timer(self, task)
  if task.wait_fd then
    release_fd(self, task)
    resume(self, task, nil, "timeout")
  else
    resume(self, task, true)
  end
end

-- Starts the tasks spawned since the last round, in spawn order.
function M.start_tasks(self)
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
-- there (see the top of lepoll/loop.lua).
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
  self.heap:push(t, deadline)
end

-- Called by readable and writable, two levels above their caller.
local function wait_fd(self, obj, timeout, reading, name)
  local task = this_task(self, name, 3)
  local fd = common.resolve(self, obj, 1, name, 3)
  local deadline
  if timeout ~= nil then
    -- Before the kernel call: a clock that fails must leave nothing behind.
    deadline = self.clock() + common.check_seconds(timeout, 2, name, "timeout (seconds)", 3)
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
  common.kernel_set(self.ep, fd, others[fd] and INOUT or (reading and IN or OUT), 3)
  mine[fd] = task
  task.wait_fd, task.wait_dir, task.round = fd, reading and "r" or "w", self.round
  task.wait_obj = obj -- keeps a handle or socket (and so its fd) alive
  if deadline then task_timer_start(self, task, deadline) end
  task.state = "waiting"
  return co_yield(TOKEN)
end

-- l:spawn(fn, ...)
function M.spawn(self, fn, ...)
  check_open(self, 2)
  if type(fn) ~= "function" then
    common.argerror(1, "spawn", "function expected, got " .. (fn == nil and "no value" or type(fn)), 2)
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
function M.readable(self, fd, timeout)
  local ok, why = wait_fd(self, fd, timeout, true, "readable")
  if ok then return ok end
  return ok, why
end

function M.writable(self, fd, timeout)
  local ok, why = wait_fd(self, fd, timeout, false, "writable")
  if ok then return ok end
  return ok, why
end

function M.sleep(self, seconds)
  local task = this_task(self, "sleep", 2)
  seconds = common.check_seconds(seconds, 1, "sleep", "seconds", 2)
  check_yieldable("sleep", 2)
  task_timer_start(self, task, self.clock() + seconds)
  task.state = "waiting"
  local ok = co_yield(TOKEN)
  return ok
end

function Task:status()
  return self.state
end

function Task:__tostring()
  return format("task{id=%d, %s}", self.id, self.state)
end

return M
