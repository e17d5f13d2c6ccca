-- lepoll.loop.condition: conditions (l:condition): tasks wait on one until
-- another part of the program signals it. Waiters are woken in the order
-- they began to wait, through the loop's run queue (they run in the next
-- round), and their wait returns true.
--
-- The queue is an array q[first..last] of tasks; each waiting task has its
-- ticket (its index). A wait that ends otherwise (timeout, cancel, the
-- loop closing) leaves its cell behind, stale: signal passes over cells
-- whose task is no longer waiting there with that ticket. The task goes in
-- and out of the queue in tasks.lua (begin_wait, stop_wait), in fields
-- only, so that neither can stop halfway (see the loop's notes on memory
-- errors).
local common = require "lepoll.loop.common"
local tasks = require "lepoll.loop.tasks"
local waits = require "lepoll.loop.waits"

local setmetatable, format = setmetatable, string.format

local Condition = {}
Condition.__index = Condition

local M = { Condition = Condition }

-- l:condition()
function M.new(l)
  common.check_open(l, 3)
  l.cond_ids = l.cond_ids + 1
  return setmetatable({ kind = "condition", loop = l, id = l.cond_ids, q = {}, first = 1, last = 0, n = 0 },
    Condition)
end

-- Whether cell i holds a task still waiting on self.
local function live(self, task, i)
  return task and task.wait == "cond" and task.wtarget == self and task.wticket == i
end

-- Makes the cell past the end, where a wait beginning puts its task
-- (tasks.lua: begin_wait, which also takes a task out of the queue when
-- its wait ends otherwise than by a signal). Moves the queue to the front
-- first when more than half of it is used up.
function Condition:reserve()
  if self.first > 1 and self.first > self.last - self.first then self:compact() end
  local i = self.last + 1
  if self.q[i] == nil then self.q[i] = false end
end

-- Moves the cells first..last to the front (tickets follow), so that the
-- queue reuses its cells rather than its indices growing for ever.
function Condition:compact()
  local q, first, last = self.q, self.first, self.last
  local n = last - first + 1
  for j = 1, n do
    local task = q[first + j - 1]
    if live(self, task, first + j - 1) then task.wticket = j end
    q[j] = task
  end
  for j = n + 1, last do q[j] = false end
  self.first, self.last = 1, n
end

-- cond:wait([timeout]) in a task → true, or nil and "timeout".
function Condition:wait(timeout)
  local l = self.loop
  local task = waits.this_task(l, "wait", 2)
  task.req, task.req_target, task.req_deadline = "cond", self, waits.deadline_of(l, timeout, 1, "wait", 2)
  local ok, why = waits.request(task, "wait", 2)
  if ok then return ok end
  return ok, why
end

-- Wakes the first waiter: true, or false when none waits.
function Condition:signal()
  local q, l = self.q, self.loop
  while self.first <= self.last do
    local i = self.first
    local task = q[i]
    if live(self, task, i) then
      -- wake_later ends the wait (first moves past i) and queues the task.
      tasks.wake_later(l, task, true, false)
      return true
    end
    q[i] = false
    self.first = i + 1
  end
  if self.first > 1 then self.first, self.last = 1, 0 end
  return false
end

-- Wakes every waiter: how many. The run queue's cells are made first, and
-- the calls reserved: it wakes all or none.
function Condition:broadcast()
  local n = self.n
  if n == 0 then return 0 end
  tasks.reserve_cells(self.loop, n)
  common.reserve()
  for _ = 1, n do self:signal() end
  return n
end

-- How many tasks wait.
function Condition:waiting()
  return self.n
end

function Condition:__tostring()
  return format("condition{id=%d, waiting=%d}", self.id, self.n)
end

return M
