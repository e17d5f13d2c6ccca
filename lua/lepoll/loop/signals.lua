-- lepoll.loop.signals: signals as events of the loop (l:signal,
-- l:wait_signal), through one lepoll.signals set per loop (a signalfd):
-- the signals it watches are blocked, so they wait in the kernel, never
-- run a handler or a default action, until the loop reads them.
--
-- The loop's own I/O watcher on the set is started while someone listens
-- (a signal watcher started, a task waiting): otherwise it would keep run
-- from returning. A signal stays in the set while a watcher for it is
-- started, and, once a task has waited for it, until the loop closes:
-- one that comes between two waits stays pending for the next, instead of
-- killing the process. Deliveries of a signal a task has waited for go to
-- a queue (at most KEPT of them; more are dropped), which the waiting
-- tasks, woken one per delivery, and later waits take in order.
local lepoll = require "lepoll"
local common = require "lepoll.loop.common"
local waits = require "lepoll.loop.waits"

local setmetatable, xpcall, error, pcall = setmetatable, xpcall, error, pcall
local format = string.format
local check_open, argerror = common.check_open, common.argerror

local SignalWatcher = {}
SignalWatcher.__index = SignalWatcher

local M = { SignalWatcher = SignalWatcher }

-- Signals read per round at most; more wait for the next (level-triggered).
local READS_PER_ROUND = 64
-- Deliveries kept per signal for tasks that have not taken them yet.
local KEPT = 64

-- The signal's record: who listens, what came.
local function record(self, num, name)
  local rec = self.sigs[num]
  if not rec then
    rec = { num = num, name = name, watchers = {}, nwatchers = 0, claimed = false,
      kept = {}, first = 1, last = 0, cond = self:condition() }
    self.sigs[num] = rec
  end
  return rec
end

-- How many listen, over every signal.
local function listeners(self)
  local n = 0
  for _, rec in pairs(self.sigs) do n = n + rec.nwatchers + rec.cond:waiting() end
  return n
end

local dispatch

-- The set and the loop's watcher on it made, the watcher started or
-- stopped to match whether anyone listens (extra: a task about to wait).
local function sync(self, extra)
  local want = listeners(self) + (extra or 0) > 0
  local w = self.sigwatch
  if want and not w then
    local set = self.sigset
    if not set then
      set = lepoll.signals()
      self.sigset = set
    end
    local ok, made = pcall(self.io, self, set, "in", function() dispatch(self) end)
    if not ok then error(made, 0) end
    self.sigwatch = made
  elseif want and not w:is_active() then
    w:start()
  elseif not want and w and w:is_active() then
    w:stop()
  end
end

-- Calls watcher sw's callback as the loop calls any: errors recorded with
-- a traceback naming it. -> false when the round must stop.
local function call(self, sw, name, info)
  local outer = self.cur
  self.cur = sw
  local ok, err = xpcall(function() sw.callback(sw, name, info) end, self.handler)
  self.cur = outer
  if not ok then common.callback_failed(self, sw, err) end
  return not (self.failed or self.closed)
end

function dispatch(self)
  local set = self.sigset
  for _ = 1, READS_PER_ROUND do
    local name, num, info = set:read()
    if not name then
      sync(self) -- (a waiting task cancelled meanwhile leaves no listener)
      return
    end
    local rec = self.sigs[num]
    if rec then
      if rec.claimed and rec.last - rec.first + 1 < KEPT then
        rec.last = rec.last + 1
        rec.kept[rec.last] = info
        rec.cond:signal() -- the first waiting task, if any, takes it
      end
      local list = rec.watchers
      for i = 1, #list do
        local sw = list[i]
        if sw.active and not call(self, sw, name, info) then return end
      end
    end
    if self.closed then return end
  end
end

-- The signal named by sig (a name or a number) -> number, name; an
-- argument error of `fname` for one that does not exist.
local function check_signal(sig, fname, level)
  local num, name = lepoll.try_signum(sig, true)
  if not num then argerror(1, fname, name, level + 1) end
  return num, name
end

-- Takes num out of the set when nobody needs it there any more.
local function release(self, rec)
  if rec.nwatchers == 0 and not rec.claimed and rec.cond:waiting() == 0 then
    self.sigs[rec.num] = nil
    if self.sigset then self.sigset:remove(rec.num) end
  end
  sync(self)
end

-- Puts num in the set (first: a failure leaves nothing changed).
local function claim(self, rec)
  if not self.sigset then
    self.sigset = lepoll.signals()
  end
  self.sigset:add(rec.num)
end

-- l:signal(sig, callback) -> a started signal watcher
function M.signal(self, sig, callback)
  check_open(self, 2)
  local num, name = check_signal(sig, "signal", 2)
  common.check_callback(callback, 2, "signal", 2)
  local rec = record(self, num, name)
  local ok, err = pcall(claim, self, rec)
  if not ok then
    release(self, rec)
    error(err, 2)
  end
  local sw = setmetatable({ kind = "signal", loop = self, signum = num, name = name, callback = callback,
    active = false }, SignalWatcher)
  rec.watchers[#rec.watchers + 1] = sw
  sw:start()
  return sw
end

function SignalWatcher:start()
  if self.active or self.loop.closed then return end
  local l = self.loop
  local rec = record(l, self.signum, self.name)
  local listed = false
  for i = 1, #rec.watchers do listed = listed or rec.watchers[i] == self end
  if not listed then rec.watchers[#rec.watchers + 1] = self end
  claim(l, rec)
  self.active = true
  rec.nwatchers = rec.nwatchers + 1
  sync(l)
end

function SignalWatcher:stop()
  if not self.active then return end
  self.active = false
  local l = self.loop
  if l.closed then return end
  local rec = l.sigs[self.signum]
  rec.nwatchers = rec.nwatchers - 1
  for i = #rec.watchers, 1, -1 do
    if rec.watchers[i] == self then table.remove(rec.watchers, i) end
  end
  release(l, rec)
end

function SignalWatcher:is_active()
  return self.active
end

function SignalWatcher:__tostring()
  return format("signal watcher{%s, %s}", self.name, self.active and "active" or "stopped")
end

-- l:wait_signal(sig [, timeout]) in a task -> name, details; or nil,
-- "timeout"
function M.wait_signal(self, sig, timeout)
  check_open(self, 2)
  local num, name = check_signal(sig, "wait_signal", 2)
  waits.this_task(self, "wait_signal", 2) -- in a task, or an error before anything changes
  local deadline = waits.deadline_of(self, timeout, 2, "wait_signal", 2)
  local rec = record(self, num, name)
  claim(self, rec)
  rec.claimed = true
  while true do
    if rec.first <= rec.last then -- a delivery nobody took yet
      local info = rec.kept[rec.first]
      rec.kept[rec.first] = nil
      rec.first = rec.first + 1
      if not self.closed then sync(self) end
      return name, info
    end
    local remaining = nil
    if deadline then remaining = math.max(deadline - self.clock(), 0) end
    sync(self, 1) -- this task is about to wait: the loop's watcher runs
    -- (no pcall around the wait: a task cannot yield across one on 5.1)
    local woke = rec.cond:wait(remaining)
    if not woke then
      if not self.closed then sync(self) end
      return nil, "timeout"
    end
    -- woken by a delivery; another wait may have taken it first: then on
  end
end

-- l:close: the set closed (its signals unblocked), every record gone.
function M.close(self)
  if self.sigset then self.sigset:close() end
  self.sigset, self.sigwatch, self.sigs = false, false, {}
end

return M
