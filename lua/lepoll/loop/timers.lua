-- lepoll.loop.timers: timers (l:timer), one-shot or repeating, and the
-- phase of a round that runs those due. The heap (lepoll.loop.heap) holds
-- them with the timers of waiting tasks.
local common = require "lepoll.loop.common"

local setmetatable, xpcall = setmetatable, xpcall
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
  local id = self.timer_ids + 1
  self.timer_ids = id
  local t = setmetatable({
    kind = "timer", loop = self, id = id, callback = callback, after = after,
    every = every or false,
  }, Timer)
  self.heap:push(t, self.clock() + after)
  self.ntimers = self.ntimers + 1
  return t
end

-- Repeating timers move on from their deadline; when that is more than a
-- period in the past, to the last tick not after now (missed ticks skipped).
local function next_deadline(deadline, every, now)
  local nd = deadline + every
  if now - nd >= every then nd = nd + every * floor((now - nd) / every) end
  return nd
end

-- Runs the timers due at the start of this phase; timers started while it
-- runs wait for the next round. task_timer(self, task) handles a task's.
function M.run_timers(self, task_timer)
  local heap = self.heap
  local now = self.clock()
  local limit = heap.seq
  while heap.n > 0 and not self.failed and not self.closed do
    local t = heap[1]
    if t.deadline > now or t.seq >= limit then break end
    heap:remove(t)
    local task = t.task
    if task then
      task_timer(self, task)
    else
      local every = t.every
      if every then
        heap:push(t, next_deadline(t.deadline, every, now))
      else
        self.ntimers = self.ntimers - 1
      end
      self.cur = t
      local ok, err = xpcall(self.call_timer, self.handler)
      self.cur = false
      if not ok then common.callback_failed(self, t, err) end
    end
  end
end

function Timer:stop()
  if self.hidx then
    local l = self.loop
    l.heap:remove(self)
    l.ntimers = l.ntimers - 1
  end
end

function Timer:again(after)
  local l = self.loop
  check_open(l, 2)
  if after ~= nil then self.after = check_seconds(after, 1, "again", "seconds", 2) end
  if self.hidx then
    l.heap:remove(self)
  else
    l.ntimers = l.ntimers + 1
  end
  l.heap:push(self, l.clock() + self.after)
end

function Timer:is_active()
  return self.hidx ~= nil
end

function Timer:__tostring()
  return format("timer{id=%d%s}", self.id, self.hidx and "" or ", stopped")
end

return M
