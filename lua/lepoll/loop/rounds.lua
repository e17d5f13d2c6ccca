-- lepoll.loop.rounds: the loop's rounds (see "A round of the loop" in
-- loop.lua), and the runner, the coroutine of the loop's own that runs
-- them: dispatching events to watchers and waiting tasks, the wait's
-- timeout, run and step's driving of the runner, and Ctrl-C's pauses.
local lepoll = require "lepoll"
local common = require "lepoll.loop.common"
local timers = require "lepoll.loop.timers"
local tasks = require "lepoll.loop.tasks"
local slots = require "lepoll.loop.slots"

local has, toflags = lepoll.has, lepoll.flags
-- (dispatch_io compares flags with the number itself: no upvalue to read)
assert(lepoll.IN == 1, "EPOLLIN is 1")
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_running, gethook = coroutine.running, debug.gethook
-- PUC Lua 5.1 (not LuaJIT, whose hooks are global): see run_rounds.
local PUC_51 = _VERSION == "Lua 5.1" and rawget(_G, "jit") == nil
local xpcall, error, setmetatable, rawequal = xpcall, error, setmetatable, rawequal
local format = string.format
local describe = common.describe
local wake_fd, task_timer = tasks.wake_fd, tasks.task_timer

-- Events that wake a task waiting to read, to write.
local READ_EVENTS = toflags("in|pri|err|hup|rdhup")
local WRITE_EVENTS = toflags("out|err|hup")

-- Which of the two an event's flags wake, for the flags an event on a
-- slot can have (IN, OUT and what the kernel adds): looked up, not
-- computed, per event. Other flags are computed.
local READS, WRITES = {}, {}
do
  local bits = { lepoll.IN, lepoll.OUT, toflags("pri"), toflags("err"), toflags("hup"), toflags("rdhup") }
  for mask = 0, 2 ^ #bits - 1 do
    local flags, m = 0, mask
    for i = 1, #bits do
      if m % 2 == 1 then flags = flags + bits[i] end
      m = (m - m % 2) / 2
    end
    READS[flags], WRITES[flags] = has(flags, READ_EVENTS), has(flags, WRITE_EVENTS)
  end
end

-- What the runner yields when a run is over, and between rounds for a hook
-- of the caller's to run (Ctrl-C, see pause).
local DONE = setmetatable({}, { __tostring = function() return "lepoll.loop run done" end })
local PAUSE = setmetatable({}, { __tostring = function() return "lepoll.loop pause" end })

local M = {}

-- An event on a descriptor tasks wait on: the reader and the writer it is
-- for are resumed; a direction nobody waits for narrows the registration.
local function dispatch_slot(self, s, flags, round)
  local r, w = s.reader, s.writer
  local to_r, to_w = READS[flags], WRITES[flags]
  if to_r == nil then to_r, to_w = has(flags, READ_EVENTS), has(flags, WRITE_EVENTS) end
  local unwanted = (to_r and not r) or (to_w and not w)
  if r and to_r and r.round ~= round then wake_fd(self, r, s, true) end
  if w and to_w and w.round ~= round and s.writer == w and not self.failed and not self.closed then
    wake_fd(self, w, s, false)
  end
  if unwanted and self.slots[s.fd] == s and not self.closed then slots.narrow(self, s) end
end

-- Dispatches the collected events from rpos on. Watchers and waits started
-- after the wait that reported an event (same round) do not get it. An
-- event counts as dispatched once its callback returned or its task ran.
local function dispatch_io(self)
  local rfd, rfl = self.rfd, self.rfl
  local watching, slot_of = self.watchers, self.slots
  local round = self.round
  -- (nothing a callback or task can do moves rpos or nready: they are
  -- read once, and rpos is written as each event is taken)
  local i, n = self.rpos, self.nready
  while i <= n and not self.failed and not self.closed do
    local fd, flags = rfd[i], rfl[i]
    i = i + 1
    local w = watching[fd]
    if w then
      if w.round ~= round then
        self.cur, self.cur_flags = w, flags
        local ok, err = xpcall(self.call_io, self.handler)
        self.cur = false
        self.rpos = i
        if not ok then common.callback_failed(self, w, err) end
      else
        self.rpos = i
      end
    else
      self.rpos = i
      local s = slot_of[fd]
      if s then
        -- The common case first: input for a task waiting to read (the
        -- event wakes no writer, and nobody waits for nothing).
        local r = s.reader
        if flags == 1 --[[IN]] and r then
          if r.round ~= round then
            -- wake_fd(self, r, s, true), written out (a call less per wake)
            s.reader = false
            local t = r.timer
            if t.armed then t.armed, t.due = false, false end
            r.wait, r.pending, r.wv1 = false, true, true
            self.current, r.state = r, "running"
            local ok, v = co_resume(r.co, true)
            if not ok then r.rv, r.rset = v, true end
            -- (the wait's own code clears pending first thing, but a
            -- coroutine resumed elsewhere meanwhile may sit at another
            -- yield: it did run)
            r.pending = false
            if r.wait and not self.closed then
              self.current = false
            else
              tasks.run_current(self)
            end
          end
        else
          dispatch_slot(self, s, flags, round)
        end
      end
    end
    self.nevents = self.nevents + 1
  end
end

local function alive(self)
  return not self.closed and (self.nwatchers > 0 or self.ntimers > 0 or self.dpos <= self.ndue or self.ntasks > 0)
end

-- Whether a task is to be started or resumed: one in the run queue
-- (cancelled ones leave their cells behind, passed over), or the one a
-- memory error interrupted.
local function queued(self)
  return self.nqueued > 0 or self.current ~= false
end

-- The wait's timeout for this round: 0 when something is ready to run.
local function wait_timeout(self, busy, mode)
  if busy or mode == "nowait" or self.stopping or queued(self) or self.dpos <= self.ndue then
    return 0
  end
  local deadline = timers.first_deadline(self)
  if deadline then
    -- Rounded up to the next millisecond (wait rounds to the nearest):
    -- never woken before the deadline.
    local span = deadline - self.clock()
    return span > 0 and span + 0.0005 or 0
  end
  return nil
end

-- One round; limit (seconds, or nil) caps the wait.
local function round(self, mode, limit)
  local busy = false
  if self.current then
    -- A task's run that a memory error interrupted.
    busy = true
    tasks.run_current(self)
    if self.failed or self.closed then return end
  end
  if self.rpos <= self.nready or self.dpos <= self.ndue then
    busy = true
    dispatch_io(self)
    if self.failed or self.closed then return end
    timers.run_due(self, task_timer, self.clock())
    if self.failed or self.closed then return end
  end
  if self.qfirst <= self.qlast then
    busy = true
    tasks.run_queue(self)
    if self.failed or self.closed then return end
  end
  if not alive(self) then return end
  local timeout = wait_timeout(self, busy, mode)
  if limit and (timeout == nil or timeout > limit) then timeout = limit end
  local ep = self.ep
  local result = ep:wait(timeout)
  self.round, self.nrounds = self.round + 1, self.nrounds + 1
  self.rpos = 1
  self.nready = result == "ok" and ep:ready_into(self.rfd, self.rfl) or 0
  dispatch_io(self)
  if self.failed or self.closed then return end
  timers.run_timers(self, task_timer)
  return result
end

-- Ctrl-C. The standalone interpreter (lua) answers SIGINT by setting a
-- hook on its main thread that raises "interrupted!" at the next
-- instruction there; but rounds run in the runner, a thread of their own
-- whose hook that is not (hooks are per thread, except on LuaJIT). So
-- between rounds the runner hands control back to drive, in the caller's
-- thread, whenever a signal interrupted the wait or the caller has a hook
-- set (on Lua 5.1 after every round): the hook runs there, its error
-- leaves run, and the loop, between rounds, is intact (drive then starts a
-- new runner; see PAUSE).
local function pause(self)
  self.in_run, self.paused = false, true
  co_yield(PAUSE)
  self.in_run, self.paused = true, false
end

local function run_rounds(self, mode, limit)
  local caller = self.caller
  -- Lua 5.1 cannot name its main thread (coroutine.running() is nil
  -- there), so it cannot look at that thread's hook: it pauses after
  -- every round run from the main thread.
  local every_round = caller == false and PUC_51
  while alive(self) do
    if round(self, mode, limit) == "interrupted" or every_round or (caller and gethook(caller)) then
      pause(self)
    end
    if self.failed or self.closed or mode ~= "default" or self.stopping then break end
  end
  return alive(self)
end

-- A runner for self: a coroutine that runs rounds on request, for ever.
local function new_runner(self)
  return co_create(function(mode, limit)
    while true do
      -- Set here, not before the resume: a resume that fails to start
      -- (memory) leaves the loop not running.
      self.in_run = true
      local more = run_rounds(self, mode, limit)
      -- Not running from here: a Ctrl-C hook that raises in drive before
      -- drive's own reset must not leave the loop "already running".
      self.in_run = false
      mode, limit = co_yield(DONE, more)
    end
  end)
end

-- Runs rounds in the runner; what run and step share.
local function drive(self, mode, limit)
  if self.in_run then
    error("the loop is already running (run called from one of its callbacks or tasks)", 3)
  end
  local runner = self.runner
  if not runner or self.paused then
    -- (paused: an error, Ctrl-C's, left the last run at a pause, between
    -- rounds; that runner is dropped)
    runner = new_runner(self)
    self.runner, self.paused = runner, false
  end
  self.stopping = false
  self.caller = co_running() or false
  local ok, tag, more = co_resume(runner, mode, limit)
  -- (== and not rawequal: no call, which a memory error could fail, before
  -- the state below is reset; PAUSE has no __eq)
  while ok and tag == PAUSE do ok, tag, more = co_resume(runner) end
  self.caller = false
  local cur = self.cur
  self.in_run, self.stopping, self.cur = false, false, false
  if not ok then
    self.runner = false
    error(tag, 0)
  end
  if not rawequal(tag, DONE) then
    -- A callback yielded: the runner is abandoned where it is, and the
    -- callback's event counts as delivered.
    self.runner = false
    if cur and cur.kind == "io" then self.rpos = self.rpos + 1 end
    error(format("%s yielded out of the loop's run; callbacks cannot yield (a task can wait instead)",
      cur and describe(cur) or "a callback"), 3)
  end
  if self.failed then
    local err = self.err
    self.failed, self.err = false, false
    error(err, 0)
  end
  return more
end

M.drive, M.queued = drive, queued

return M
