-- lepoll.loop.condition: conditions (l:condition): tasks wait on one until
-- another part of the program signals it. Waiters are woken in the order
-- they began to wait, through the loop's run queue (they run in the next
-- round), and their wait returns true.
--
-- The queue is an array q[first..last] of tasks; each waiting task has its
-- ticket (its index). A wait that ends otherwise (timeout, cancel, the
-- loop closing) leaves its cell behind, stale: signal passes over cells
-- whose task is no longer waiting there with that ticket.
local common = require "lepoll.loop.common"
local tasks = require "lepoll.loop.tasks"

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

-- Adds task at the end of the queue (called by the loop as it carries out
-- the wait; the cell is taken before anything else changes).
function Condition:enqueue(task)
  if self.first > 1 and self.first > self.last - self.first then self:compact() end
  local i = self.last + 1
  self.q[i] = task
  task.wticket = i
  self.last = i
  self.n = self.n + 1
end

-- task's wait ends otherwise than by a signal.
function Condition:forget(task)
  local i = task.wticket
  self.n = self.n - 1
  if i == self.last then
    self.q[i] = false
    self.last = i - 1
  elseif i == self.first then
    self.q[i] = false
    self.first = i + 1
  end
  if self.n == 0 then self:reset() end
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

function Condition:reset()
  local q = self.q
  for i = self.first, self.last do q[i] = false end
  self.first, self.last, self.n = 1, 0, 0
end

-- cond:wait([timeout]) in a task → true, or nil and "timeout".
function Condition:wait(timeout)
  local l = self.loop
  local task = tasks.this_task(l, "wait", 2)
  task.req, task.req_target, task.req_deadline = "cond", self, tasks.deadline_of(l, timeout, 1, "wait", 2)
  local ok, why = tasks.request("wait", 2)
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
      -- wake_later ends the wait (forget moves first past i) and queues it.
      tasks.wake_later(l, task, true, false)
      return true
    end
    q[i] = false
    self.first = i + 1
  end
  self:reset()
  return false
end

-- Wakes every waiter: how many.
function Condition:broadcast()
  local n = 0
  while self.n > 0 and self:signal() do n = n + 1 end
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
