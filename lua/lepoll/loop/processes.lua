-- lepoll.loop.processes: child processes in the loop (l:process,
-- l:wait_exit). A child's end is watched through its pidfd, readable once
-- it has exited, with an I/O watcher of the loop's own; where the kernel
-- gives no pidfd, a repeating timer asks its status instead. Either way the
-- child is reaped as soon as the loop learns of its end, then its on_exit
-- callback runs and the tasks waiting for it wake.
local lepoll = require "lepoll"
local common = require "lepoll.loop.common"

local type = type
local check_open, argerror = common.check_open, common.argerror

local M = {}

-- Seconds between status checks of a child without a pidfd.
M.POLL_INTERVAL = 0.05

local function unwatch(self, rec)
  if rec.watcher then rec.watcher:stop() end
  if rec.timer then rec.timer:stop() end
  self.processes[rec.proc] = nil
end

-- The loop learnt that rec's child ended: the books first, then the
-- callback (an error in it is the loop's, as any callback's).
local function ended(self, rec)
  local p = rec.proc
  local how, code = p:status()
  if not how then return end -- a spurious wakeup: still running
  unwatch(self, rec)
  rec.how, rec.code = how, code
  rec.cond:broadcast()
  if rec.on_exit then rec.on_exit(p, how, code) end
end

-- Starts watching p's end. -> its record.
local function watch(self, p, on_exit)
  local rec = { proc = p, on_exit = on_exit or false, watcher = false, timer = false,
    how = false, code = false, cond = self:condition() }
  local fd = p:getfd()
  if fd then
    rec.watcher = self:io(fd, "in", function() ended(self, rec) end)
  else
    rec.timer = self:timer(M.POLL_INTERVAL, function() ended(self, rec) end, M.POLL_INTERVAL)
  end
  self.processes[p] = rec
  return rec
end

local function check_process(p, n, name, level)
  if type(p) ~= "userdata" or not pcall(p.status, p) then
    argerror(n, name, "open process expected, got " .. (p == nil and "no value" or tostring(p)), level + 1)
  end
end

-- l:process(spec [, on_exit]) -> the process (lepoll.spawn's), or nil,
-- message, errname when it cannot start.
function M.process(self, spec, on_exit)
  check_open(self, 2)
  if type(spec) ~= "table" then
    argerror(1, "process", "table expected, got " .. (spec == nil and "no value" or type(spec)), 2)
  end
  if on_exit ~= nil then common.check_callback(on_exit, 2, "process", 2) end
  local p, why, errname = lepoll.spawn(spec)
  if not p then return nil, why, errname end
  local ok, err = pcall(watch, self, p, on_exit)
  if not ok then
    p:close() -- kills and reaps it: nothing is left of a process the loop cannot watch
    error(err, 0)
  end
  return p
end

-- l:wait_exit(p [, timeout]) in a task -> how, code ("exit", status or
-- "signal", number), or nil, "timeout".
function M.wait_exit(self, p, timeout)
  check_open(self, 2)
  check_process(p, 1, "wait_exit", 2)
  local how, code = p:status()
  if how then return how, code end
  local rec = self.processes[p] or watch(self, p, false)
  local ok, why = rec.cond:wait(timeout)
  if not ok then return nil, why end
  return rec.how, rec.code -- nil, "closed" after l:closing(p)
end

-- l:closing(p) for a process the loop watches: the watch ends, on_exit
-- will not run, and the tasks waiting for its end wake with nil, "closed".
-- -> how many woke, or nil when the loop does not watch p.
function M.closing(self, p)
  local rec = self.processes[p]
  if not rec then return nil end
  unwatch(self, rec)
  rec.how, rec.code = nil, "closed"
  return rec.cond:broadcast()
end

return M
