-- lepoll.loop.tasks: tasks, coroutines run by the loop (l:spawn): how the
-- loop carries out their waits (begin_wait; the waits themselves, and the
-- protocol they follow, are in waits.lua), resumes them, ends, cancels and
-- joins them.
--
-- A waiting task is resumed by the loop: at once when its descriptor is
-- ready (slots.lua keeps the descriptor registered between waits) or its
-- timer is due; from the run queue in the next round when it is woken by
-- another part of the program (a condition's signal, the end of a task it
-- joins, l:closing on its descriptor).
--
-- Memory errors. The task the loop resumes is its current one: the loop
-- notes that (fields only) before anything else, and the run (run_current)
-- goes by the state of the task and its coroutine, never by how far it
-- got, so the next round finishes a run that a memory error cut short,
-- exactly once: the task resumed, its wait begun, its end booked. Ending
-- a wait (stop_wait) changes fields only; a timed wait's heap entry stays
-- behind, disarmed, until the heap passes over it or the task waits with
-- a timeout again or ends. The operations that end a task or wake several
-- (cancel, a condition's broadcast, l:closing) make the run queue's cells
-- and reserve their calls (common.reserve) before their first change.
local lepoll = require "lepoll"
local common = require "lepoll.loop.common"
local heap_mod = require "lepoll.loop.heap"
local slots = require "lepoll.loop.slots"

local waits = require "lepoll.loop.waits"

local co_create, co_resume = coroutine.create, coroutine.resume
local co_status, co_close = coroutine.status, coroutine.close
local setmetatable, select, type, pcall, rawequal = setmetatable, select, type, pcall, rawequal
local format = string.format
local traceback = debug.traceback
-- luacheck: read globals unpack (the fallback: Lua 5.1's and LuaJIT's)
local unpack = table.unpack or unpack ---@diagnostic disable-line: deprecated
local check_open, describe = common.check_open, common.describe
local this_task, request, deadline_of = waits.this_task, waits.request, waits.deadline_of

local IN, OUT = lepoll.IN, lepoll.OUT

-- Resumes a task whose request the loop refused (waits.lua).
local FAIL = waits.FAIL
local MEMERR = "not enough memory"

local function pack(...)
  return { n = select("#", ...), ... }
end

-- The function of every task's coroutine: it notes that it runs, and
-- keeps the results where the loop finds them, so that nothing is lost
-- when a memory error stops the loop right after the resume (run_current).
-- A memory error making the results is the task's own failure.
local function body(task)
  task.pending = false
  local args = task.args
  task.args = false
  task.results = pack(task.fn(unpack(args, 1, args.n)))
end

local Task = {}
Task.__index = Task

local M = { Task = Task }

------------------------------------------------------------------ waiting

-- The wait task is in ends: its slot side, its place in a condition's
-- queue, its timeout. Changes fields only (no call, no allocation), so
-- that it never stops halfway. A timeout's heap entry stays behind,
-- disarmed (see the loop's notes on memory errors): the heap passes over
-- it, and the task's next timed wait or its end takes it out.
local function stop_wait(task)
  local kind = task.wait
  if kind == "fd" then
    local s = task.fslot
    if s.reader == task then
      s.reader = false
    elseif s.writer == task then
      s.writer = false
    end
  elseif kind == "cond" then
    -- The condition's queue forgets the task (condition.lua): the cell at
    -- either end goes, one inside stays behind, stale.
    local c, i = task.wtarget, task.wticket
    local q = c.q
    c.n = c.n - 1
    if i == c.last then
      q[i] = false
      c.last = i - 1
    elseif i == c.first then
      q[i] = false
      c.first = i + 1
    end
    if c.n == 0 then
      for j = c.first, c.last do q[j] = false end
      c.first, c.last = 1, 0
    end
    task.wtarget = false
  end
  local t = task.timer
  t.armed, t.due = false, false
  task.wait = false
end
M.stop_wait = stop_wait

-- Carries out task's request. Returns true, or nil, message and errno name
-- when the kernel refuses the descriptor. Can be done again from the start
-- after a memory error: what it makes before its first change (an unarmed
-- heap entry, an empty slot, a condition's cell) counts for nothing.
local function begin_wait(self, task)
  local kind, deadline, t = task.req, task.req_deadline, task.timer
  if deadline then
    local heap = self.heap
    if t.hidx then heap:remove(t) end -- left by an earlier wait
    heap:push(t, deadline)
  end
  local s, reading, c, same
  if kind == "fd" then
    local fd = task.req_fd
    s = slots.get(self, fd, task.req_obj)
    if task.held[fd] ~= s then task.held[fd] = s end
    reading = task.req_dir == "r"
    same = rawequal(s.obj, task.req_obj) -- (arm leaves s.obj as it is)
    local ok, why, errname = slots.arm(self, s, reading and IN or OUT)
    if not ok then
      -- A slot made for this wait goes again.
      if s.reg == 0 and not s.owner and self.slots[fd] == s then self.slots[fd] = nil end
      return nil, why, errname
    end
  elseif kind == "cond" then
    c = task.req_target
    c:reserve()
  end
  -- From here fields change, and nothing else happens.
  if s then
    -- The direction's token (slots.lua) is the task's now; the other
    -- direction's holder keeps its token only while the object stays.
    if not same then s.fast_r, s.fast_w = false, false end
    if reading then s.reader, s.fast_r = task, task else s.writer, s.fast_w = task, task end
    s.owner, s.obj = task, task.req_obj
    task.fslot = s
  elseif c then
    local i = c.last + 1
    c.q[i] = task
    c.last, c.n = i, c.n + 1
    task.wtarget, task.wticket = c, i
  end
  if deadline then t.armed = true end
  task.wait, task.state, task.round = kind, "waiting", self.round
  task.req, task.req_obj, task.req_target = false, false, false
  self.nwaits = self.nwaits + 1
  return true
end

------------------------------------------------------------------ the end

-- Makes n more cells at the end of the run queue (false: empty), so that
-- queueing that many tasks later allocates nothing.
local function reserve_cells(self, n)
  local queue, last = self.queue, self.qlast
  for k = last + 1, last + n do
    if queue[k] == nil then queue[k] = false end
  end
end
M.reserve_cells = reserve_cells

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

-- task leaves the loop's books with outcome and value (its results, or
-- its error and trace): its slots released, its joiners woken, then the
-- books, then a failure reported. Every step before the books can be done
-- again (the next round finishes an interrupted end); the books are
-- fields only; the report's call is reserved.
local function finish_task(self, task, outcome, value, trace)
  local joiners = task.joiners
  if joiners then reserve_cells(self, joiners.n) end
  common.reserve()
  stop_wait(task)
  local t = task.timer
  if t.hidx then self.heap:remove(t) end
  slots.release_owned(self, task)
  if joiners then joiners:broadcast() end
  -- The books.
  if task.queued or task.state == "queued" then self.nqueued = self.nqueued - 1 end
  task.state, task.outcome, task.results = "dead", outcome, value
  task.args, task.req, task.pending, task.queued = false, false, false, false
  local tasks = self.tasks
  if tasks[task.co] == task then
    tasks[task.co] = nil
    self.ntasks = self.ntasks - 1
  end
  if self.current == task then self.current = false end
  if outcome == "failed" then
    self.err, self.trace = value, trace
    common.failed(self, task)
  end
end
------------------------------------------------------------------ running

-- Resumes task with wv1, wv2, wv3 and notes what came of it: the error
-- of a resume that failed, and that the task is no longer pending.
local function resume(task)
  task.state, task.rset = "running", false
  local ok, v = co_resume(task.co, task.wv1, task.wv2, task.wv3)
  if not ok then task.rv, task.rset = v, true end
  task.pending, task.wv1, task.wv2, task.wv3 = false, false, false, false
end

-- Runs self.current, the task the loop resumes now, until it waits again
-- or ends. Each pass looks at where the task is, never at where this
-- function was, so a run that a memory error cut short is finished by
-- calling it again (the next round does, first):
--   - pending: the coroutine has not run since the loop decided to resume
--     it with wv1, wv2, wv3 (the task clears pending first thing when it
--     runs): it is resumed;
--   - suspended with its wait begun: done;
--   - suspended with a request (req): the wait begins, or is refused and
--     the task resumed with FAIL and the reason;
--   - suspended with req "end": it was cancelled, or its loop closed;
--   - suspended otherwise: a stray yield, the task fails;
--   - dead: it returned (its results are kept by the coroutine's own
--     function, body) or failed (the error noted as resume returned it).
local function run_current(self)
  local task = self.current
  local co = task.co
  while true do
    if self.closed then
      -- Closed meanwhile: the task ends where it is.
      if co_status(co) == "suspended" then close_co(co) end
      self.current = false
      return
    end
    -- Pending, the coroutine is suspended: only a resume ends pending (the
    -- task's own code clears it, and the loop once the resume returned).
    local status = not task.pending and co_status(co)
    if not status then
      resume(task)
      if task.wait and not self.closed then -- the common case: a wait begun in the task
        self.current = false
        return
      end
    elseif status == "suspended" then
      local req = task.req
      if task.wait then
        self.current = false
        return
      elseif req == "end" then
        local closed, err = close_co(co)
        if closed then
          finish_task(self, task, "cancelled", false)
        else
          finish_task(self, task, "failed", err, describe(task) .. ": " .. common.errtext(err))
        end
        return
      elseif req then
        local done, waiting, why, errname = pcall(begin_wait, self, task)
        if done and waiting then
          self.current = false
          return
        end
        if not done then why, errname = waiting, false end -- a memory error
        task.req, task.req_obj, task.req_target = false, false, false
        task.wv1, task.wv2, task.wv3, task.pending = FAIL, why, errname or false, true
      else
        local err = format("%s yielded to the loop outside its waits", describe(task))
        if not task.trace then task.trace = traceback(co, describe(task) .. ": " .. err) end
        close_co(co)
        finish_task(self, task, "failed", err, task.trace)
        return
      end
    elseif task.results then
      finish_task(self, task, "returned", task.results)
      return
    else
      local err = MEMERR -- when the error was lost with the resume's results
      if task.rset then err = task.rv end
      if not task.trace then task.trace = traceback(co, describe(task) .. ": " .. common.errtext(err)) end
      close_co(co) -- its to-be-closed variables; an error there is lost to err's
      finish_task(self, task, "failed", err, task.trace)
      return
    end
  end
end
M.run_current = run_current

-- task, whose wait just ended, is resumed now with v1, v2.
local function run_now(self, task, v1, v2)
  task.state, task.pending, task.wv1, task.wv2 = "running", true, v1, v2
  self.current = task
  run_current(self)
end

-- A task's descriptor is ready: task is the reader (reading) or the
-- writer of slot s. stop_wait's and resume's work, written out for this
-- one case (a wait on a descriptor, one value passed): the calls and
-- tests they would make cost as much as the rest of a wait and wake.
function M.wake_fd(self, task, s, reading)
  if reading then s.reader = false else s.writer = false end
  local t = task.timer
  if t.armed then t.armed, t.due = false, false end
  task.wait = false
  -- (wv2 and wv3 are false between resumes, and rset for as long as the
  -- task lives; wv1 counts only while pending)
  task.pending, task.wv1 = true, true
  self.current = task
  -- run_current takes over unless the task began its next wait.
  task.state = "running"
  local ok, v = co_resume(task.co, true)
  if not ok then task.rv, task.rset = v, true end
  task.pending = false
  if task.wait and not self.closed then
    self.current = false
    return
  end
  run_current(self)
end

-- A task's timer is due: its sleep is over, or its wait timed out. The
-- due list's entry i is taken once the wait has ended.
function M.task_timer(self, task, i)
  local kind = task.wait
  stop_wait(task)
  self.dpos = i + 1
  if kind == "sleep" then
    run_now(self, task, true, false)
  else
    run_now(self, task, false, "timeout")
  end
end

-- Ends task's wait now and queues it to be resumed with v1, v2 in the next
-- round's run queue. The queue's cell is made before anything changes.
function M.wake_later(self, task, v1, v2)
  local k = self.qlast + 1
  if self.queue[k] == nil then self.queue[k] = false end
  stop_wait(task)
  self.queue[k] = task
  task.queued, task.wv1, task.wv2 = true, v1, v2
  self.qlast, self.nqueued = k, self.nqueued + 1
end

-- Step 2 of a round: the tasks queued before it started, in order: new
-- tasks start, woken ones are resumed. A cell is taken as its task becomes
-- the current one (fields only: nothing in between can fail).
function M.run_queue(self)
  local queue, last = self.queue, self.qlast
  while self.qfirst <= last and not self.failed and not self.closed do
    local i = self.qfirst
    local task = queue[i]
    queue[i] = false
    self.qfirst = i + 1
    if task.state == "queued" or task.queued then
      self.nqueued = self.nqueued - 1
      task.queued, task.state, task.pending = false, "running", true
      self.current = task
      run_current(self)
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

-- l:spawn(fn, ...)
function M.spawn(self, fn, ...)
  check_open(self, 2)
  if type(fn) ~= "function" then
    common.argerror(1, "spawn", "function expected, got " .. (fn == nil and "no value" or type(fn)), 2)
  end
  local id = self.task_ids + 1
  local co = co_create(body)
  local task = setmetatable({
    kind = "task", loop = self, id = id, fn = fn, co = co, state = "queued",
    args = { n = select("#", ...), ... }, round = 0,
    -- the request a wait makes, then the wait it is in
    req = false, req_fd = -1, req_obj = false, req_dir = false, req_deadline = false,
    req_target = false,
    wait = false, wtarget = false, wticket = 0,
    timer = false, held = {},
    fobj = false, fget = false, ffd = -1, -- the object wait_fd resolved last
    -- the slot of its last wait on fobj's descriptor: the one it waits on
    -- while its wait is "fd", the one its next wait may begin on after
    -- (waits.lua); false once it was cancelled or its loop closed
    fslot = false,
    queued = false, cancelled = false,
    -- the loop's next resume of it (see run_current), and what came of one
    pending = true, wv1 = false, wv2 = false, wv3 = false, rv = false, rset = false, trace = false,
    outcome = false, results = false, joiners = false,
  }, Task)
  task.wv1 = task
  task.timer = heap_mod.entry({ task = task, armed = false, due = false })
  -- The queue's cell, then the task list: a memory error leaves neither.
  local k = self.qlast + 1
  self.queue[k] = task
  self.tasks[co] = task
  self.task_ids, self.ntasks, self.qlast, self.nqueued = id, self.ntasks + 1, k, self.nqueued + 1
  return task
end

------------------------------------------------------------- the object

function Task:status()
  return self.state
end

-- Ends the task at its current or next wait. A task that waits or is
-- queued ends now: first in the loop's books (finish_task, which cannot
-- stop halfway), then its to-be-closed variables are closed.
function Task:cancel()
  local state = self.state
  if state == "dead" then return false end
  if state == "running" then
    self.cancelled, self.fslot = true, false
    return true
  end
  local l = self.loop
  finish_task(l, self, "cancelled", false)
  local closed, err = close_co(self.co)
  if not closed then
    self.outcome, self.results = "failed", err
    l.err, l.trace = err, describe(self) .. ": " .. common.errtext(err)
    common.failed(l, self)
    if l.failed and not l.in_run then
      l.failed, l.err = false, false
      error(err, 0)
    end
  end
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
    local ok, why = request(me, "join", 2)
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
