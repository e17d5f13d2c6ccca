-- lepoll.loop.tasks: tasks, coroutines run by the loop (l:spawn), their
-- waits (for a descriptor, for time, on a condition, for another task's
-- end), their end, cancellation and joining.
--
-- A wait is a request: the task checks its arguments, notes what it wants
-- in its own fields and yields WAIT; the loop, back in its own code, carries
-- the request out (begin_wait) and the task stays suspended, or refuses it
-- and resumes the task at once with FAIL and the reason, which the wait
-- raises in the task. So nothing is registered for a task that cannot
-- yield (the yield itself fails, in the task, before anything happened),
-- and a failure while registering (the kernel refuses the descriptor,
-- memory runs out) is undone in one place, the loop's.
--
-- A waiting task is resumed by the loop: at once when its descriptor is
-- ready (slots.lua keeps the descriptor registered between waits) or its
-- timer is due; from the run queue in the next round when it is woken by
-- another part of the program (a condition's signal, the end of a task it
-- joins, l:closing on its descriptor).
local lepoll = require "lepoll"
local common = require "lepoll.loop.common"
local heap_mod = require "lepoll.loop.heap"
local slots = require "lepoll.loop.slots"

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

local function token(name)
  return setmetatable({}, { __tostring = function() return name end })
end
-- What a task yields to the loop; anything else is a stray yield.
local WAIT = token("lepoll.loop wait")
-- Resumes a task whose request the loop refused.
local FAIL = token("lepoll.loop refusal")
-- Yielded by a task that ends here: it was cancelled, or its loop closed.
local END = token("lepoll.loop end")

local Task = {}
Task.__index = Task

local M = { Task = Task }

------------------------------------------------------------------ the end

-- task leaves the loop's books: dead, its slots released, its joiners woken.
local function task_ended(self, task, outcome, results)
  task.state, task.outcome, task.results = "dead", outcome, results
  task.args = false
  local tasks = self.tasks
  if tasks[task.co] == task then
    tasks[task.co] = nil
    self.ntasks = self.ntasks - 1
  end
  slots.release_owned(self, task)
  local joiners = task.joiners
  if joiners then joiners:broadcast() end
end

-- Closes the pending to-be-closed variables of a suspended coroutine, or
-- of one that died by an error (Lua 5.4 keeps them open until then).
-- Returns false and the error of one that raised.
local function close_co(co)
  local status = co_status(co)
  if co_close and (status == "suspended" or status == "dead") then
    local ok, err = co_close(co)
    if not ok then return false, err end
  end
  return true
end

-- A task failed with err: recorded, with its traceback, for on_error or run.
local function task_failed(self, task, err, trace)
  task_ended(self, task, "failed", err)
  self.err = err
  self.trace = trace
  common.failed(self, task)
end

------------------------------------------------------------------ waiting

-- The wait task is in ends: its slot side, timer and queue entry go.
local function stop_wait(self, task)
  local kind = task.wait
  if kind == "fd" then
    local s = task.wslot
    if task.wdir == "r" then
      if s.reader == task then s.reader = false end
    elseif s.writer == task then
      s.writer = false
    end
    task.wslot = false
  elseif kind == "cond" then
    task.wtarget:forget(task)
    task.wtarget = false
  end
  local t = task.timer
  if t.hidx then self.heap:remove(t) end
  t.due = false
  task.wait = false
end
M.stop_wait = stop_wait

-- Undoes what begin_wait did before it failed.
local function undo_wait(self, task)
  local t = task.timer
  if t.hidx then self.heap:remove(t) end
  local kind = task.req
  if kind == "fd" then
    local s = self.slots[task.req_fd]
    if s and s.reg == 0 and not s.reader and not s.writer then self.slots[task.req_fd] = nil end
  elseif kind == "cond" then
    local c = task.req_target
    if c.last > 0 and c.q[c.last] == task and task.wticket == c.last then c:forget(task) end
  end
end

-- Carries out task's request. Returns true, or nil, message and errno
-- name when the kernel refuses the descriptor (nothing is then left of
-- the request). Everything that can allocate comes before the first
-- change that counts; see undo_wait for a memory error.
local function begin_wait(self, task)
  local kind, deadline = task.req, task.req_deadline
  local s, reading
  if kind == "fd" then
    local fd = task.req_fd
    s = slots.get(self, fd, task.req_obj)
    if task.held[fd] ~= s then task.held[fd] = s end
    reading = task.req_dir == "r"
  elseif kind == "cond" then
    task.req_target:enqueue(task)
  end
  if deadline then self.heap:push(task.timer, deadline) end
  if s then
    local ok, why, errname = slots.arm(self, s, reading and IN or OUT)
    if not ok then
      undo_wait(self, task)
      return nil, why, errname
    end
    -- Nothing below allocates.
    if reading then s.reader = task else s.writer = task end
    s.owner, s.obj = task, task.req_obj
    task.wslot, task.wdir = s, task.req_dir
  elseif kind == "cond" then
    task.wtarget = task.req_target
  end
  task.wait, task.state, task.round = kind, "waiting", self.round
  task.req_obj, task.req_target = false, false
  self.nwaits = self.nwaits + 1
  return true
end

-- What a resume of task came to (co_resume's results): a wait to carry
-- out (a refused one resumes the task again, a tail call), or its end.
local function settle(self, task, ok, ...)
  local co, v = task.co, ...
  if ok and rawequal(v, WAIT) and not self.closed and co_status(co) == "suspended" then
    local done, waiting, why, errname = pcall(begin_wait, self, task)
    if done and waiting then
      self.current = false
      return
    end
    if not done then -- a memory error: waiting is it
      undo_wait(self, task)
      why, errname = waiting, false
    end
    task.req_obj, task.req_target = false, false
    return settle(self, task, co_resume(co, FAIL, why, errname))
  end
  self.current = false
  if self.closed then
    -- Closed meanwhile: the task ends where it is.
    close_co(co)
    return
  end
  if ok and co_status(co) == "suspended" then
    if rawequal(v, END) then -- cancelled while it ran
      local closed, err = close_co(co)
      if closed then
        task_ended(self, task, "cancelled", false)
      else
        task_failed(self, task, err, describe(task) .. ": " .. common.errtext(err))
      end
      return
    end
    ok, v = false, format("%s yielded to the loop outside its waits", describe(task))
  end
  if ok then
    task_ended(self, task, "returned", { n = select("#", ...), ... })
    return
  end
  local trace = traceback(co, describe(task) .. ": " .. common.errtext(v))
  close_co(co) -- its to-be-closed variables; an error there is lost to v's
  task_failed(self, task, v, trace)
end

-- Runs task until it waits again, ends or fails.
local function resume(self, task, ...)
  task.state = "running"
  self.current = task
  return settle(self, task, co_resume(task.co, ...))
end
M.resume = resume

-- A task's descriptor is ready.
function M.wake_fd(self, task)
  stop_wait(self, task)
  resume(self, task, true)
end

-- A task's timer is due: its sleep is over, or its wait timed out.
function M.task_timer(self, task)
  local kind = task.wait
  stop_wait(self, task)
  if kind == "sleep" then
    resume(self, task, true)
  else
    resume(self, task, nil, "timeout")
  end
end

-- Ends task's wait now and queues it to be resumed with v1, v2 in the next
-- round's run queue. The queue's cell is taken before anything changes.
function M.wake_later(self, task, v1, v2)
  local k = self.qlast + 1
  self.queue[k] = task
  stop_wait(self, task)
  task.queued, task.wv1, task.wv2 = true, v1, v2
  self.qlast, self.nqueued = k, self.nqueued + 1
end

-- Step 2 of a round: the tasks queued before it started, in order: new
-- tasks start, woken ones are resumed.
function M.run_queue(self)
  local queue, last = self.queue, self.qlast
  while self.qfirst <= last and not self.failed and not self.closed do
    local i = self.qfirst
    local task = queue[i]
    queue[i] = false
    self.qfirst = i + 1
    if task.state == "queued" then
      local args = task.args
      task.args = false
      self.nqueued = self.nqueued - 1
      resume(self, task, unpack(args, 1, args.n))
    elseif task.queued then
      task.queued = false
      self.nqueued = self.nqueued - 1
      local v1, v2 = task.wv1, task.wv2
      task.wv1, task.wv2 = false, false
      resume(self, task, v1 or nil, v2 or nil)
    end
  end
  -- What is left (tasks queued while this ran) moves to the front, so the
  -- queue's cells are reused rather than its indices growing for ever.
  local first, left = self.qfirst, self.qlast
  if first > left then
    self.qfirst, self.qlast = 1, 0
  elseif first > 1 then
    local n = left - first + 1
    for j = 1, n do queue[j] = queue[first + j - 1] end
    for j = n + 1, left do queue[j] = false end
    self.qfirst, self.qlast = 1, n
  end
end

-------------------------------------------------------------- the waits

-- The task of this loop running now, or an error naming `name`. A task
-- whose loop was closed, or that was cancelled, ends here.
local function this_task(self, name, level)
  local co = co_running()
  if self.closed then
    local cur = self.current
    if cur and cur.co == co then co_yield(END) end
    error(common.CLOSED, level + 1)
  end
  local task = co and self.tasks[co]
  if not task or task.state ~= "running" then
    error(format("%s must be called from a task of this loop (see spawn)", name), level + 1)
  end
  if task.cancelled then co_yield(END) end
  return task
end
M.this_task = this_task

-- Where coroutine.isyieldable tells (5.3+, LuaJIT), a wait that cannot
-- yield is refused in our words; elsewhere the yield's own error says so.
local function check_yieldable(name, level)
  if co_isyieldable and not co_isyieldable() then
    error(format("%s cannot wait here: the task would yield across a C-call boundary", name), level + 1)
  end
end

-- Yields the running task's request (its req fields are set) and returns what the wait
-- returns; a refusal is raised at `level`.
local function request(name, level)
  check_yieldable(name, level + 1)
  local a, b, c = co_yield(WAIT)
  if rawequal(a, FAIL) then
    -- The kernel's refusal, at the caller's line; a memory error as it is.
    error(b, c and level + 1 or 0)
  end
  return a, b
end
M.request = request

local function deadline_of(self, timeout, n, name, level)
  if timeout == nil then return false end
  return self.clock() + common.check_seconds(timeout, n, name, "timeout (seconds)", level + 1)
end
M.deadline_of = deadline_of

-- Whether obj has input buffered outside the kernel (LuaSocket, LuaSec).
local function dirty(obj)
  local t = type(obj)
  if t ~= "userdata" and t ~= "table" then return false end
  local d = obj.dirty
  return d ~= nil and d(obj) and true or false
end

-- Called by readable and writable, two levels above their caller.
local function wait_fd(self, obj, timeout, reading, name)
  local task = this_task(self, name, 3)
  local fd = common.resolve(self, obj, 1, name, 3)
  local deadline = deadline_of(self, timeout, 2, name, 3)
  if self.watchers[fd] then
    error(format("fd %d has an I/O watcher: a task cannot wait on it", fd), 3)
  end
  local s = self.slots[fd]
  if s and (reading and s.reader or not reading and s.writer) then
    error(format("fd %d already has a task waiting to %s", fd, reading and "read" or "write"), 3)
  end
  if reading and dirty(obj) then return true end
  task.req, task.req_fd, task.req_obj, task.req_dir, task.req_deadline =
    "fd", fd, obj, reading and "r" or "w", deadline
  local ok, why = request(name, 3) -- not a tail call: levels count wait_fd
  return ok, why
end

-- l:spawn(fn, ...)
function M.spawn(self, fn, ...)
  check_open(self, 2)
  if type(fn) ~= "function" then
    common.argerror(1, "spawn", "function expected, got " .. (fn == nil and "no value" or type(fn)), 2)
  end
  local id = self.task_ids + 1
  local co = co_create(fn)
  local task = setmetatable({
    kind = "task", loop = self, id = id, fn = fn, co = co, state = "queued",
    args = { n = select("#", ...), ... }, round = 0,
    -- the request a wait makes, then the wait it is in
    req = false, req_fd = -1, req_obj = false, req_dir = false, req_deadline = false,
    req_target = false,
    wait = false, wslot = false, wdir = false, wtarget = false, wticket = 0,
    timer = false, held = {},
    queued = false, wv1 = false, wv2 = false, cancelled = false,
    outcome = false, results = false, joiners = false,
  }, Task)
  task.timer = heap_mod.entry({ task = task, due = false })
  -- The queue's cell, then the task list: a memory error leaves neither.
  local k = self.qlast + 1
  self.queue[k] = task
  self.tasks[co] = task
  self.task_ids, self.ntasks, self.qlast, self.nqueued = id, self.ntasks + 1, k, self.nqueued + 1
  return task
end

-- Not tail calls: error levels count these frames. true alone, or nil
-- and "timeout" or "closed".
function M.readable(self, obj, timeout)
  local ok, why = wait_fd(self, obj, timeout, true, "readable")
  if ok then return ok end
  return ok, why
end

function M.writable(self, obj, timeout)
  local ok, why = wait_fd(self, obj, timeout, false, "writable")
  if ok then return ok end
  return ok, why
end

function M.sleep(self, seconds)
  local task = this_task(self, "sleep", 2)
  seconds = common.check_seconds(seconds, 1, "sleep", "seconds", 2)
  task.req, task.req_deadline = "sleep", self.clock() + seconds
  local ok = request("sleep", 2)
  return ok
end

------------------------------------------------------------- the object

function Task:status()
  return self.state
end

-- Ends the task at its current or next wait.
function Task:cancel()
  local state = self.state
  if state == "dead" then return false end
  if state == "running" then
    self.cancelled = true
    return true
  end
  local l = self.loop
  if self.wait then stop_wait(l, self) end
  if self.queued or state == "queued" then l.nqueued = l.nqueued - 1 end
  self.queued = false
  local closed, err = close_co(self.co)
  if not closed then
    task_failed(l, self, err, describe(self) .. ": " .. common.errtext(err))
    if l.failed and not l.running then
      l.failed, l.err = false, false
      error(err, 0)
    end
    return true
  end
  task_ended(l, self, "cancelled", false)
  return true
end

-- Waits, in a task, for this task's end: true and its results, false and
-- its error, nil and "cancelled"; nil and "timeout" after timeout seconds.
function Task:join(timeout)
  local l = self.loop
  local me = this_task(l, "join", 2)
  if me == self then error("a task cannot join itself", 2) end
  local deadline = deadline_of(l, timeout, 1, "join", 2)
  if self.state ~= "dead" then
    if not self.joiners then self.joiners = l:condition() end
    me.req, me.req_target, me.req_deadline = "cond", self.joiners, deadline
    local ok, why = request("join", 2)
    if not ok then return nil, why end
  end
  local outcome, results = self.outcome, self.results
  if outcome == "returned" then return true, unpack(results, 1, results.n) end
  if outcome == "failed" then return false, results end
  return nil, "cancelled"
end

function Task:__tostring()
  return format("task{id=%d, %s}", self.id, self.state)
end

return M
