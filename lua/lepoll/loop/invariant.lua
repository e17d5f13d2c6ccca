-- lepoll.loop.invariant: l:invariant(), the loop's state checked against
-- itself and against its epoll set: raises naming what disagrees.
local lepoll = require "lepoll"

local pairs, ipairs, next, error, tostring = pairs, ipairs, next, error, tostring
local format = string.format

local IN, OUT = lepoll.IN, lepoll.OUT
local INOUT = lepoll.flags("in|out")

-- Raised at the caller of l:invariant: fail, check_*, invariant, caller.
local function fail(fmt, ...) error("lepoll.loop: invariant: " .. format(fmt, ...), 4) end

-- The set watches exactly what the watchers and waiting tasks want.
local function check_descriptors(self)
  local ep = self.ep
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
end

local function check_timers_and_tasks(self)
  local heap, users = self.heap, 0
  local broken = heap:check()
  if broken then fail("%s", broken) end
  for i = 1, heap.n do
    local t = heap[i]
    if t.task then
      if self.tasks[t.task.co] ~= t.task or t.task.state ~= "waiting" then
        fail("timer of a task that is not waiting at %d", i)
      end
    else
      users = users + 1
    end
  end
  if users ~= self.ntimers then fail("%d pending timers counted as %d", users, self.ntimers) end
  local nt = 0
  for co, task in pairs(self.tasks) do
    nt = nt + 1
    if task.co ~= co or task.state == "dead" then fail("task #%d listed but dead", task.id) end
  end
  if nt ~= self.ntasks then fail("%d live tasks counted as %d", nt, self.ntasks) end
end

return function(self)
  if self.closed then
    if self.nwatchers ~= 0 or self.heap.n ~= 0 or self.ntasks ~= 0 or next(self.watchers) then
      error("lepoll.loop: invariant: a closed loop holds watchers, timers or tasks", 2)
    end
    return
  end
  self.ep:invariant()
  check_descriptors(self)
  check_timers_and_tasks(self)
end
