-- lepoll.loop.timers: timers (l:timer), one-shot or repeating, and the
-- phase of a round that runs those due. The heap (lepoll.loop.heap) holds
-- them with the timers of waiting tasks.
--
-- The phase works in two steps: it first takes every entry due by now out
-- of the heap, in order, into the loop's due list, then runs the list. So
-- a repeating timer rescheduled while the list runs (its next deadline may
-- already have passed, when the loop lags) never hides the entries due
-- after it, and entries started while the list runs wait for the next
-- round. The list survives an error that cuts the phase short (a memory
-- error; a callback's error when there is no on_error): the entries left
-- on it run first in the next phase.
local heap_mod = require "lepoll.loop.heap"
local common = require "lepoll.loop.common"

local setmetatable, xpcall, pcall, error = setmetatable, xpcall, pcall, error
local floor = math.floor
local format = string.format
local check_open, check_seconds = common.check_open, common.check_seconds

local Timer = {}
Timer.__index = Timer

local M = { Timer = Timer }

-- l:timer(after, callback [, every])
function M.timer(self, after, callback, every)
  check_open(self, 2)
  after = check_seconds(after, 1, "timer", "seconds", 2)
  common.check_callback(callback, 2, "timer", 2)
  if every ~= nil then
    every = check_seconds(every, 3, "timer", "seconds", 2)
    if every <= 0 then common.argerror(3, "timer", "the period must be > 0", 2) end
  end
  local deadline = self.clock() + after
  local id = self.timer_ids + 1
  local t = setmetatable(heap_mod.entry({
    kind = "timer", loop = self, id = id, callback = callback, after = after,
    every = every or false, due = false, task = false,
  }), Timer)
  self.heap:push(t, deadline)
  self.timer_ids, self.ntimers = id, self.ntimers + 1
  return t
end

-- Repeating timers move on from their deadline; when that is more than a
-- period in the past, to the last tick not after now (missed ticks skipped).
-- A frame larger than a C function's minimum stack: called just before
-- xpcall, it makes the CallInfo and stack that xpcall's call takes.
local function reserve_call()
  -- luacheck: ignore 211
  local a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16
  local b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16
end

local function next_deadline(deadline, every, now)
  local nd = deadline + every
  if now - nd >= every then nd = nd + every * floor((now - nd) / every) end
  return nd
end

-- Takes the entries due by now out of the heap onto the due list; the
-- disarmed entries of tasks' ended waits go.
local function collect_due(self, now)
  local heap, due = self.heap, self.due
  while heap.n > 0 do
    local t = heap[1]
    if t.deadline > now then break end
    if t.task and not t.armed then
      heap:remove(t)
    else
      local k = self.ndue + 1
      due[k] = t -- may allocate: before anything changes
      heap:remove(t)
      t.due = true
      self.ndue = k
    end
  end
end

-- Runs the due list: timer callbacks, and task_timer(self, task, i) for
-- the timers of waiting tasks (it takes entry i). An entry stopped (or
-- restarted) meanwhile has lost its due mark and is passed over. A timer's
-- callback is called once its entry is taken: the xpcall is reserved
-- before, so that nothing between can fail.
local function run_due(self, task_timer, now)
  local due = self.due
  while self.dpos <= self.ndue and not self.failed and not self.closed do
    local i = self.dpos
    local t = due[i]
    if not t.due then
      self.dpos = i + 1
    elseif t.task then
      task_timer(self, t.task, i)
    else
      local every = t.every
      reserve_call()
      if every then self.heap:push(t, next_deadline(t.deadline, every, now)) end
      if not every then self.ntimers = self.ntimers - 1 end
      t.due = false
      self.dpos = i + 1
      self.cur = t
      local ok, err = xpcall(self.call_timer, self.handler)
      self.cur = false
      if not ok then common.callback_failed(self, t, err) end
    end
  end
  if self.dpos > self.ndue then
    for i = 1, self.ndue do due[i] = false end
    self.dpos, self.ndue = 1, 0
  end
end
M.run_due = run_due

-- The nearest deadline, or nil when there is none; the disarmed entries
-- of tasks' ended waits on top of the heap go first.
function M.first_deadline(self)
  local heap = self.heap
  while heap.n > 0 do
    local t = heap[1]
    if not t.task or t.armed then return t.deadline end
    heap:remove(t)
  end
  return nil
end

-- Step 5 of a round: the entries due at its start.
function M.run_timers(self, task_timer)
  local now = self.clock()
  if self.dpos > self.ndue then collect_due(self, now) end
  run_due(self, task_timer, now)
end

function Timer:stop()
  local l = self.loop
  if self.hidx then
    l.heap:remove(self)
    l.ntimers = l.ntimers - 1
  elseif self.due then
    self.due = false
    l.ntimers = l.ntimers - 1
  end
end

function Timer:again(after)
  local l = self.loop
  check_open(l, 2)
  if after ~= nil then after = check_seconds(after, 1, "again", "seconds", 2) end
  after = after or self.after
  local deadline = l.clock() + after
  local heap = l.heap
  if self.hidx then
    -- Out and in again; a failed push puts it back as it was.
    local d, s = self.deadline, self.seq
    heap:remove(self)
    local ok, err = pcall(heap.push, heap, self, deadline)
    if not ok then
      heap:push(self, d, s)
      error(err, 0)
    end
  else
    heap:push(self, deadline)
    if self.due then self.due = false else l.ntimers = l.ntimers + 1 end
  end
  self.after = after
end

function Timer:is_active()
  return self.hidx ~= false or self.due
end

function Timer:__tostring()
  return format("timer{id=%d%s}", self.id, self:is_active() and "" or ", stopped")
end

return M
