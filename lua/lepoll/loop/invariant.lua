-- lepoll.loop.invariant: l:invariant(), the loop's state checked against
-- itself and against its epoll set: raises naming what disagrees.
local lepoll = require "lepoll"
local slots_mod = require "lepoll.loop.slots"

local pairs, next, error, tostring = pairs, next, error, tostring
local format = string.format

local IN, OUT = lepoll.IN, lepoll.OUT

-- Raised at the caller of l:invariant: fail, check_*, invariant, caller.
local function fail(fmt, ...) error("lepoll.loop: invariant: " .. format(fmt, ...), 4) end

-- The set watches exactly what the watchers and task slots hold.
local function check_descriptors(self)
  local ep = self.ep
  local n = 0
  for fd, w in pairs(self.watchers) do
    n = n + 1
    if not w.active or w.fd ~= fd or w.loop ~= self then fail("watcher for fd %d is not started on it", fd) end
    if self.slots[fd] then fail("fd %d has a watcher and a task slot", fd) end
    if ep:find(fd) ~= w.flags then fail("fd %d: set has %s, watcher wants %s", fd,
      tostring(ep:find(fd)), tostring(w.flags)) end
  end
  if n ~= self.nwatchers then fail("%d started watchers counted as %d", n, self.nwatchers) end
  for fd, s in pairs(self.slots) do
    if s.fd ~= fd then fail("slot of fd %d filed under fd %d", s.fd, fd) end
    if s.reader and s.reader == s.writer then fail("fd %d: one task waits to read and to write", fd) end
    for _, task in pairs({ r = s.reader, w = s.writer }) do
      if task and (task.wait ~= "fd" or task.fslot ~= s or task.state ~= "waiting"
          or self.tasks[task.co] ~= task) then
        fail("fd %d: the task in its slot is not waiting for it", fd)
      end
    end
    local want = slots_mod.wanted(s)
    if want ~= 0 and not (s.reg == want or s.reg == slots_mod.wanted({ reader = true, writer = true })) then
      fail("fd %d: registered %d, waited for %d", fd, s.reg, want)
    end
    if s.reg ~= 0 and not slots_mod.holds(s.reg, want == 0 and s.reg or want) then
      fail("fd %d: registered %d, waited for %d", fd, s.reg, want)
    end
    -- A token (slots.lua) stands for a registration its holder may wait on.
    for bit, holder in pairs({ [IN] = s.fast_r, [OUT] = s.fast_w }) do
      if holder and not (slots_mod.holds(s.reg, bit) and holder.held[fd] == s) then
        fail("fd %d: a task holds a token for %d without a registration it holds", fd, bit)
      end
    end
    local found = ep:find(fd)
    if (s.reg == 0 and found ~= nil) or (s.reg ~= 0 and found ~= s.reg) then
      fail("fd %d: set has %s, slot registered %d", fd, tostring(found), s.reg)
    end
  end
  -- ep:iter, not pairs(ep): __pairs does nothing on Lua 5.1 and LuaJIT.
  -- The first stray fd is failed on after the walk, at this level.
  local stray
  ep:iter(function(fd)
    if not stray and not (self.watchers[fd] or self.slots[fd]) then stray = fd end
  end)
  if stray then fail("fd %d is in the set with no watcher or task", stray) end
end

local function check_timers(self)
  local heap, users = self.heap, 0
  local broken = heap:check()
  if broken then fail("%s", broken) end
  for i = 1, heap.n do
    local t = heap[i]
    if t.task then
      -- A disarmed entry is a timeout whose wait ended (tasks.lua).
      local task = t.task
      if t.armed and (self.tasks[task.co] ~= task or task.state ~= "waiting" or not task.wait) then
        fail("timer of a task that is not waiting at %d", i)
      end
      if not t.armed and self.tasks[task.co] ~= task then fail("timer of a dead task at %d", i) end
    else
      users = users + 1
    end
    if t.due then fail("timer at %d both pending and due", i) end
  end
  for i = self.dpos, self.ndue do
    local t = self.due[i]
    if t.due then
      if t.hidx then fail("due timer %d still in the heap", i) end
      if not t.task then users = users + 1 end
    end
  end
  if users ~= self.ntimers then fail("%d pending timers counted as %d", users, self.ntimers) end
end

local function check_tasks(self)
  local nt = 0
  for co, task in pairs(self.tasks) do
    nt = nt + 1
    if task.co ~= co or task.state == "dead" then fail("task #%d listed but dead", task.id) end
    if task.state == "waiting" and not task.wait and not task.queued then
      fail("task #%d waits for nothing", task.id)
    end
    if task.state == "running" and task.pending and self.current ~= task then
      fail("task #%d is to be resumed, but not by the loop", task.id)
    end
    if task.wait == "cond" and task.wtarget.q[task.wticket] ~= task then
      fail("task #%d is not in its condition's queue", task.id)
    end
  end
  if nt ~= self.ntasks then fail("%d live tasks counted as %d", nt, self.ntasks) end
  local live = 0
  for i = self.qfirst, self.qlast do
    local task = self.queue[i]
    if task and task.state ~= "dead" then
      if task.state ~= "queued" and not task.queued then
        fail("task #%d in the run queue neither new nor woken", task.id)
      end
      live = live + 1
    end
  end
  if live ~= self.nqueued then fail("%d tasks in the run queue counted as %d", live, self.nqueued) end
end

return function(self)
  if self.closed then
    if self.nwatchers ~= 0 or self.heap.n ~= 0 or self.ntasks ~= 0 or next(self.watchers) or next(self.slots) then
      error("lepoll.loop: invariant: a closed loop holds watchers, timers or tasks", 2)
    end
    return
  end
  self.ep:invariant()
  check_descriptors(self)
  check_timers(self)
  check_tasks(self)
end
