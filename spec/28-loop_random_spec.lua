-- lepoll.loop under seeded random operations, checked against a model.
--
-- A loop on a fake clock (opts.clock returns the spec's `now`, which the
-- spec advances by random amounts: zero, small steps, big jumps that make
-- repeating timers lag) and a small pool of real pipes and stream
-- socketpairs. At random: watchers on read ends (level and edge
-- triggered), their stop/start/set; timers, one-shot and repeating, their
-- stop/again; tasks that wait to read or write (with and without
-- timeouts), sleep, wait on conditions, join other tasks, cancel tasks or
-- themselves, raise, yield where they must not, close the loop; writes,
-- fills and reads of the pipes; l:closing then closing descriptors (and
-- replacing them in the pool); errors in callbacks and tasks, with
-- on_error (which sometimes raises itself, or closes the loop) and without
-- (run raises, the next run goes on); callbacks that yield out of run;
-- l:close from a callback, a task or between runs (a fresh loop goes on).
-- Runs are l:run("nowait"), l:step(0), l:step(0.001), "once" when
-- something is queued or due, "default" with a task that calls l:stop(),
-- and "default" with nothing alive (it must return false at once). A run
-- that could block is watched by an alarm: one that waits fails.
--
-- The model follows the rounds of doc/loop.md exactly and checks every
-- callback and every resumption of a task as it happens:
-- * step 2, the run queue: tasks queued (spawned or woken) before the step
--   starts resume in queue order, each once, with what their wait returns
--   (true for a condition, nil, "closed" after l:closing, a join's
--   outcome); a task queued during the step waits for the next round; a
--   cancelled task never resumes; a queued one never starts;
-- * the wait, then step 4, I/O: the model knows every descriptor's
--   readiness at the wait, so the set of deliveries of the round is exact
--   (the kernel's order is not): a level-triggered watcher whose read end
--   is ready is called exactly once, with the kernel's flags; an
--   edge-triggered one exactly once when data arrived (or it was started
--   or set while ready) since the last wait and it is still ready then;
--   a task waiting to read (write) a ready descriptor is resumed with
--   true; none of them when stopped or cancelled before its turn, or
--   started during the round; nothing else;
-- * step 5, timers: the entries due at its start (timers, sleeps, wait
--   timeouts) run in deadline order, equal deadlines in the order they
--   were scheduled, each once, never before its deadline, never twice for
--   one deadline; entries scheduled during the step wait for the next
--   round; a repeating timer's next deadline is the previous one plus its
--   period, or the last tick not after now when the loop lags by more;
-- * an error without on_error (or raised by on_error, or a callback that
--   yields) ends the round at once and run raises it unchanged; the next
--   run first delivers what the interrupted round had not (events, due
--   timers): nothing is lost, nothing delivered twice. (One exception, by
--   design: when the task woken to read a descriptor fails that way, the
--   task waiting to write the same descriptor, woken by the same event, is
--   resumed in a later round instead: its registration is level
--   triggered.)
-- After every operation, in callbacks and in tasks too: l:invariant()
-- passes; l:stats() counts (watchers, timers, tasks, waiting, rounds,
-- waits) agree with the model; the set holds exactly the descriptors of
-- started watchers (with their flags) and waiting tasks, plus at most the
-- idle registrations of live tasks (never one of a dead task); statuses,
-- is_active, cond:waiting(), l:now(); l:timeout() between runs; on Lua 5.4
-- every task's to-be-closed variable is closed exactly once when it ends
-- (before on_error hears of its failure). After l:close: run returned
-- false, everything is dead or stopped (no task waits on a condition),
-- the loop refuses use.
--
-- The seed is in the test's name and printed; LEPOLL_SEED=N replays a run
-- (same Lua version: math.random differs between versions),
-- LEPOLL_LOOP_STEPS (default 6000) sets its length, LEPOLL_LOOP_TRACE=1
-- prints every operation. A failure shows the last operations, the loop
-- and the model.
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local IN, HUP = lepoll.IN, lepoll.HUP
local floor, format = math.floor, string.format

local SEED = H.seed()
local STEPS = H.env_integer("LEPOLL_LOOP_STEPS", 6000)
local TRACE = (os.getenv("LEPOLL_LOOP_TRACE") or "") ~= ""
local SKIP = os.getenv("LEPOLL_LOOP_SKIP") or "" -- TEMPORARY exploration aid
local function skip(name) return SKIP:find(name, 1, true) ~= nil end

-- To-be-closed variables (5.4), and whether a callback's yield reaches the
-- loop: callbacks run under xpcall, which yields from 5.2 on and in LuaJIT
-- (on 5.1 the yield fails inside the callback, an ordinary error).
local TBC = H.has.toclose
local CALLBACK_YIELDS = H.LUA_VERSION >= 502 or H.JIT

local N_CHANNELS = 6
local MAX_TASKS, MAX_TIMERS, MAX_CONDS, MAX_WATCHERS = 8, 8, 3, 10
local MAX_DEAD = 6 -- dead tasks kept (for join) beyond the live ones
-- Bytes queued in a pipe or towards a socket end, far below what makes a
-- writer wait (fill makes a pipe full on purpose).
local MAX_BYTES = 1024

-- A body wrapped in a function with a to-be-closed variable (Lua 5.4).
local wrap_tbc = TBC and H.load([[
  local setmetatable = ...
  return function(body, closer)
    return function(...)
      local guard <close> = setmetatable({}, { __close = closer })
      return body(...)
    end
  end
]], "28-loop_random tbc")(setmetatable)

-- Raised through the loop when the model finds a disagreement; the text is
-- in S.failure.
local FAILED = setmetatable({}, { __tostring = function() return "28-loop_random: model disagreement" end })

local ERR_MT = { __tostring = function(e) return format("boom#%d (%s)", e.n, e.what) end }

local S -- the world of the run: clock, channels, trace, counts, failure
local M -- the model of the current loop (a fresh one after each close)

------------------------------------------------------------- utilities

local function pack(...)
  return { n = select("#", ...), ... }
end

local function show(v)
  if type(v) == "string" then return format("%q", v) end
  if type(v) == "table" and v.n and getmetatable(v) == nil then
    local parts = {}
    for i = 1, v.n do parts[i] = show(v[i]) end
    return "(" .. table.concat(parts, ", ") .. ")"
  end
  return tostring(v)
end

local function count(key, n)
  S.counts[key] = (S.counts[key] or 0) + (n or 1)
end

local function note(fmt, ...)
  local line = string.rep("  ", S.depth) .. format(fmt, ...)
  local tr = S.trace
  tr[#tr + 1] = line
  if #tr > 120 then table.remove(tr, 1) end
  if TRACE then io.stderr:write(line, "\n") end
end

local function fail(fmt, ...)
  if not S.failure then S.failure = debug.traceback(format(fmt, ...), 2) end
  error(FAILED, 0)
end

local function check(cond, fmt, ...)
  if not cond then fail(fmt, ...) end
end

local function chance(p)
  return math.random() < p
end

local function pick(list)
  if #list == 0 then return nil end
  return list[math.random(#list)]
end

local function remove_value(list, v)
  for i = 1, #list do
    if list[i] == v then
      table.remove(list, i)
      return true
    end
  end
  return false
end

local function copy(list)
  local out = {}
  for i = 1, #list do out[i] = list[i] end
  return out
end

local function new_err(what)
  S.nerr = S.nerr + 1
  return setmetatable({ n = S.nerr, what = what }, ERR_MT)
end

-- A message (string) contains `part`.
local function has_text(msg, part)
  return type(msg) == "string" and msg:find(part, 1, true) ~= nil
end

local function id_of(obj)
  return tonumber(tostring(obj):match("id=(%d+)"))
end

------------------------------------------------ channels and endpoints

-- A channel is a pipe (ends r and w) or a stream socketpair (ends a and
-- b); an endpoint records the loop's users of its descriptor: the started
-- watcher, the task waiting to read, the one waiting to write, and the
-- task that waited on it last (its registration may stay in the set while
-- that task lives).
local function new_ep(ch, fd, role)
  S.ep_ids = S.ep_ids + 1
  return {
    id = S.ep_ids, fd = fd, ch = ch, role = role, open = true, inq = 0,
    watcher = false, reader = false, writer = false, last_waiter = false,
  }
end

local function make_channel(kind)
  local ch = { kind = kind }
  if kind == "pipe" then
    local r, w = assert(T.pipe())
    ch.bytes, ch.full = 0, false
    ch.r, ch.w = new_ep(ch, r, "r"), new_ep(ch, w, "w")
    ch.ends = { ch.r, ch.w }
  else
    local a, b = assert(T.socketpair("stream"))
    ch.a, ch.b = new_ep(ch, a, "s"), new_ep(ch, b, "s")
    ch.a.peer, ch.b.peer = ch.b, ch.a
    ch.ends = { ch.a, ch.b }
  end
  return ch
end

local function epname(e)
  return format("%s%d(fd %d)", e.role, e.id, e.fd)
end

local function can_read(e)
  if e.role == "r" then return e.ch.bytes > 0 or not e.ch.w.open end
  return e.inq > 0
end

local function can_write(e)
  if e.role == "w" then return not e.ch.full or not e.ch.r.open end
  return true
end

-- The events the kernel reports for a watcher (flags "in", any mode) on e.
local function read_flags(e)
  if e.role == "r" then
    return (e.ch.bytes > 0 and IN or 0) + (e.ch.w.open and 0 or HUP)
  end
  return IN
end

local function is_reader(e) return e.role ~= "w" end
local function is_writer(e) return e.role ~= "r" end

local function endpoints(filter)
  local list = {}
  for _, ch in ipairs(S.chans) do
    for _, e in ipairs(ch.ends) do
      if e.open and (not filter or filter(e)) then list[#list + 1] = e end
    end
  end
  return list
end

-- The descriptor as the loop is given it: the number, or an object with
-- getfd (and sometimes dirty).
local function obj_of(e, dirty)
  local fd = e.fd
  if dirty then return { getfd = function() return fd end, dirty = function() return true end } end
  local r = math.random()
  if r < 0.1 then return { getfd = function() return fd end } end
  if r < 0.15 then return { getfd = function() return fd end, dirty = function() return false end } end
  return fd
end

------------------------------------------------------------ the model

local function new_model(l, with_handler)
  return {
    l = l, on_error = with_handler,
    seq = 0,            -- the timer heap's push counter
    rounds = 0, waits = 0,
    watchers = {}, timers = {}, tasks = {}, conds = {},
    queue = {},         -- entries {mk, kind = "start" | "wake", vals}
    phase = "idle",     -- idle, q, io, tm, done; left4 / left5 after an interrupted round
    qsnap = {}, qi = 1, -- the run queue as step 2 started
    E = {},             -- deliveries due in step 4 of the round
    D = {}, di = 1,     -- step 5's due list
    in_run = false, halt = false, expect_err = nil, expect_pattern = nil,
    pending = nil,      -- a failure on_error must hear of now
    cur = false,        -- the observation under way
    closed = false,
  }
end

local function next_seq()
  local s = M.seq
  M.seq = s + 1
  return s
end

local function model_alive()
  for _, mw in ipairs(M.watchers) do if mw.active then return true end end
  for _, mt in ipairs(M.timers) do if mt.pending then return true end end
  for _, mk in ipairs(M.tasks) do if mk.state ~= "dead" then return true end end
  return false
end

local function q_live(entry)
  local mk = entry.mk
  return mk.qentry == entry and (mk.state == "queued" or mk.state == "woken")
end

local function queue_has_live()
  for _, entry in ipairs(M.queue) do if q_live(entry) then return true end end
  return false
end

local function e_live(entry)
  if entry.done then return false end
  if entry.mw then return entry.mw.active and entry.mw.gen == entry.gen end
  return entry.mk.state == "waiting" and entry.mk.wgen == entry.wgen
end

local function d_live(entry)
  if entry.mt then return entry.mt.due and entry.mt.gen == entry.gen end
  return entry.mk.state == "waiting" and entry.mk.wgen == entry.wgen
end

local function describe_entry(entry)
  if not entry then return "nothing" end
  if entry.mw then return format("watcher w%d on %s", entry.mw.id, epname(entry.mw.e)) end
  if entry.mt then return format("timer t%d (deadline %s)", entry.mt.id, tostring(entry.deadline)) end
  if entry.dir then
    return format("task k%d to %s %s", entry.mk.id, entry.dir == "r" and "read" or "write", epname(entry.e))
  end
  if entry.deadline then
    return format("task k%d's %s (deadline %s)", entry.mk.id, entry.mk.wait and entry.mk.wait.kind or "?",
      tostring(entry.deadline))
  end
  return format("task k%d (%s)", entry.mk.id, entry.kind or "?")
end

local function live_list(list, live)
  local out = {}
  for _, entry in ipairs(list) do
    if live(entry) then out[#out + 1] = describe_entry(entry) end
  end
  if #out == 0 then return nil end
  return table.concat(out, "; ")
end

local function q_head()
  while M.qi <= #M.qsnap and not q_live(M.qsnap[M.qi]) do M.qi = M.qi + 1 end
  return M.qsnap[M.qi]
end

local function d_head()
  while M.di <= #M.D and not d_live(M.D[M.di]) do M.di = M.di + 1 end
  return M.D[M.di]
end

local function push_queue(mk, kind, vals)
  local entry = { mk = mk, kind = kind, vals = vals }
  mk.qentry = entry
  M.queue[#M.queue + 1] = entry
end

-- Step 2 starts: the run queue as it is now.
local function start_round()
  local snap = {}
  for _, entry in ipairs(M.queue) do
    if q_live(entry) then snap[#snap + 1] = entry end
  end
  M.qsnap, M.qi = snap, 1
  M.queue = copy(snap) -- what is no longer live goes
  M.phase = "q"
end

-- Step 3: the wait, unless nothing is left alive. What the kernel reports
-- is what is ready now (edge triggered: and had an edge since the last
-- wait).
local function do_wait()
  if not model_alive() then
    M.phase = "done"
    return
  end
  M.rounds = M.rounds + 1
  local E = {}
  for _, mw in ipairs(M.watchers) do
    if mw.active then
      if can_read(mw.e) and (not mw.et or mw.edge) then
        E[#E + 1] = { mw = mw, gen = mw.gen, flags = read_flags(mw.e) }
      end
      mw.edge = false
    end
  end
  for _, mk in ipairs(M.tasks) do
    local w = mk.wait
    if mk.state == "waiting" and w.kind == "fd" then
      if (w.dir == "r" and can_read(w.e)) or (w.dir == "w" and can_write(w.e)) then
        E[#E + 1] = { mk = mk, wgen = mk.wgen, e = w.e, dir = w.dir }
      end
    end
  end
  M.E = E
  M.phase = "io"
end

-- Step 5 starts: the entries due now, in deadline order, then push order.
local function snapshot_due()
  local D = {}
  for _, mt in ipairs(M.timers) do
    if mt.pending and mt.deadline <= S.now then
      mt.due = true
      D[#D + 1] = { mt = mt, gen = mt.gen, deadline = mt.deadline, seq = mt.seq }
    end
  end
  for _, mk in ipairs(M.tasks) do
    local w = mk.wait
    if mk.state == "waiting" and w.deadline and w.deadline <= S.now then
      D[#D + 1] = { mk = mk, wgen = mk.wgen, deadline = w.deadline, seq = w.seq }
    end
  end
  table.sort(D, function(a, b)
    if a.deadline ~= b.deadline then return a.deadline < b.deadline end
    return a.seq < b.seq
  end)
  M.D, M.di = D, 1
  M.phase = "tm"
end

-- Moves the model's round on to where an observation of `kind` (q, io,
-- tm) or the end of a run ("end") belongs, checking that every phase
-- passed over delivered all it had to.
local function advance(kind)
  local ph = M.phase
  if ph == "left4" then
    local left = live_list(M.E, e_live)
    if left then
      if kind == "io" then return end
      fail("events of an interrupted round not delivered before the next %s: %s", kind, left)
    end
    start_round()
    ph = "q"
  elseif ph == "left5" then
    if d_head() then
      if kind == "tm" then return end
      fail("due timers of an interrupted round not run before the next %s: %s", kind, live_list(M.D, d_live))
    end
    start_round()
    ph = "q"
  end
  if ph == "idle" then
    start_round()
    ph = "q"
  end
  if ph == "q" then
    if kind == "q" then return end
    local h = q_head()
    if h then
      fail("%s, queued when the run queue step started, was not resumed before the %s phase",
        describe_entry(h), kind)
    end
    do_wait()
    ph = M.phase
  end
  if ph == "io" then
    if kind == "io" then return end
    local left = live_list(M.E, e_live)
    if left then fail("ready at the wait but not delivered in its round: %s", left) end
    if kind == "q" then fail("a task resumed from the run queue after the I/O step of its round") end
    snapshot_due()
    ph = "tm"
    if kind == "tm" then return end
  end
  if ph == "tm" then
    if kind == "tm" then return end
    if kind == "end" then
      local left = live_list(M.D, d_live)
      if left then fail("due when the timer step started but not run: %s", left) end
      M.phase = "done"
      return
    end
    fail("a %s observation after the timer step of its round", kind)
  end
  if ph == "done" then
    if kind == "end" then return end
    fail("a %s observation after the round ended (nothing alive after the run queue: no wait)", kind)
  end
end

-- A callback or task resumption begins.
local function obs_begin(kind, what)
  if S.failure then error(FAILED, 0) end
  check(M.in_run, "%s outside run", what)
  check(not M.closed, "%s after the loop was closed", what)
  check(not M.halt, "%s after an error that must end the round (%s)", what,
    show(M.expect_err or M.expect_pattern))
  check(M.pending == nil, "%s before on_error heard of %s", what, M.pending and show(M.pending.err))
  note("%s", what)
  advance(kind)
end

-- The round must end now: run raises err (or an error containing pattern).
-- A task woken to read whose failure ends the round takes the writer's
-- wake-up of the same event with it (see the header).
local function halting(err, pattern)
  M.halt, M.expect_err, M.expect_pattern = true, err, pattern
  local cur = M.cur
  if cur and cur.kind == "io" and cur.mk and cur.dir == "r" then
    for _, entry in ipairs(M.E) do
      if entry.mk and entry.e == cur.e and entry.dir == "w" and e_live(entry) then
        entry.done = true
        note("(the writer k%d on %s is left for a later round)", entry.mk.id, epname(entry.e))
      end
    end
  end
end

-- obj failed with err (or a string containing pattern): on_error hears of
-- it, or the round ends.
local function model_fail(obj, err, prefix, opts)
  opts = opts or {}
  count("errors")
  if M.on_error then
    M.pending = { err = err, obj = obj, prefix = prefix, pattern = opts.pattern, mk = opts.mk,
      rethrow = opts.rethrow }
  else
    halting(err, opts.pattern)
  end
end

------------------------------------------------------------- watchers

local function stop_watcher_model(mw)
  if mw.active then
    mw.active = false
    mw.gen = mw.gen + 1
    if mw.e.watcher == mw then mw.e.watcher = false end
  end
end

local function start_watcher_model(mw)
  mw.active = true
  mw.gen = mw.gen + 1
  mw.e.watcher = mw
  mw.edge = mw.et and can_read(mw.e) -- added while ready: reported
end

-- What l:io or w:start on e must refuse, or nil.
local function watch_refusal(e)
  if e.watcher then return format("fd %d already has an I/O watcher", e.fd) end
  if e.reader or e.writer then return format("fd %d has a task waiting on it", e.fd) end
  return nil
end

------------------------------------------------------------ tasks: end

local function stop_wait_model(mk)
  local w = mk.wait
  if not w then return end
  if w.kind == "fd" then
    if w.dir == "r" then
      if w.e.reader == mk then w.e.reader = false end
    elseif w.e.writer == mk then
      w.e.writer = false
    end
  elseif w.kind == "cond" then
    remove_value(w.mc.waiters, mk)
  elseif w.kind == "join" then
    remove_value(w.target.joiners, mk)
  end
end

-- mk's wait ends now; it resumes from the run queue with vals.
local function wake_later(mk, vals)
  stop_wait_model(mk)
  mk.state = "woken"
  push_queue(mk, "wake", vals)
end

local function model_task_end(mk, outcome, results, pattern)
  if mk.state == "waiting" then stop_wait_model(mk) end
  mk.state, mk.outcome, mk.results, mk.fail_pattern = "dead", outcome, results, pattern
  mk.qentry, mk.wait = false, false
  local joiners = copy(mk.joiners)
  mk.joiners = {}
  for _, j in ipairs(joiners) do wake_later(j, { join = mk }) end
  for _, e in ipairs(endpoints()) do
    if e.last_waiter == mk then e.last_waiter = e.reader or e.writer or false end
  end
  count("task " .. outcome)
end

local function task_prefix(mk)
  return format("task #%d (function ", mk.tid)
end

-- mk fails with err: it is dead, then on_error or run hears of it.
local function task_fails(mk, err, opts)
  opts = opts or {}
  model_task_end(mk, "failed", err, opts.pattern)
  opts.mk = mk
  model_fail(mk.task, err, task_prefix(mk), opts)
end

-- What a join of target returns.
local function join_result(target)
  if target.outcome == "returned" then
    local r = target.results
    local out = { n = r.n + 1, true }
    for i = 1, r.n do out[i + 1] = r[i] end
    return out
  elseif target.outcome == "failed" then
    return { n = 2, false, target.results, pattern = target.fail_pattern }
  end
  return { n = 2, nil, "cancelled" }
end

local function same_values(want, got)
  if want.n ~= got.n then return false end
  for i = 1, want.n do
    if want.pattern and i == 2 then
      if not has_text(got[i], want.pattern) then return false end
    elseif not rawequal(want[i], got[i]) then
      return false
    end
  end
  return true
end

---------------------------------------------------------- the checks

-- The set's entries as tostring(l) renders them: fd -> flag names.
local function set_entries(l)
  local inside = tostring(l):match("flags_by_fd={(.-)}")
  local map, n = {}, 0
  if inside then
    for fd, names in inside:gmatch('%[(%d+)%]="([^"]*)"') do
      map[tonumber(fd)] = names
      n = n + 1
    end
  end
  return map, n
end

local function has_flag(names, flag)
  for part in names:gmatch("[^|]+") do
    if part == flag then return true end
  end
  return false
end

local function expect_status(mk)
  local st = mk.state
  if st == "woken" then return "waiting" end
  return st
end

local stats_buf = {}

-- Everything the loop shows against the model.
local function check_model(where)
  local l = M.l
  local ok, err = pcall(l.invariant, l)
  check(ok, "invariant (%s): %s", where, tostring(err))
  local st = l:stats(stats_buf)
  local nw, nt, nk, nwait = 0, 0, 0, 0
  for _, mw in ipairs(M.watchers) do
    if mw.active then nw = nw + 1 end
    check(mw.w:is_active() == mw.active, "%s: w%d is_active() is %s", where, mw.id, tostring(mw.w:is_active()))
  end
  for _, mt in ipairs(M.timers) do
    if mt.pending then nt = nt + 1 end
    check(mt.t:is_active() == mt.pending, "%s: t%d is_active() is %s, model %s", where, mt.id,
      tostring(mt.t:is_active()), tostring(mt.pending))
  end
  for _, mk in ipairs(M.tasks) do
    if mk.state ~= "dead" then nk = nk + 1 end
    if mk.state == "waiting" or mk.state == "woken" then nwait = nwait + 1 end
    local status = mk.task:status()
    check(status == expect_status(mk), "%s: k%d status %s, model %s", where, mk.id, status, mk.state)
    if TBC and mk.tbc then
      local want = (mk.state == "dead" and mk.started) and 1 or 0
      check(mk.tbc_closed == want, "%s: k%d (%s) had its to-be-closed variable closed %d times",
        where, mk.id, mk.state, mk.tbc_closed)
    end
  end
  for _, mc in ipairs(M.conds) do
    if not (M.closed and skip("condwaiting")) then
      check(mc.c:waiting() == #mc.waiters, "%s: c%d:waiting() is %d, model %d", where, mc.id,
        mc.c:waiting(), #mc.waiters)
    end
  end
  check(st.closed == M.closed, "%s: stats.closed %s", where, tostring(st.closed))
  check(st.watchers == nw and st.timers == nt and st.tasks == nk and st.waiting == nwait,
    "%s: stats watchers=%d timers=%d tasks=%d waiting=%d, model %d %d %d %d", where,
    st.watchers, st.timers, st.tasks, st.waiting, nw, nt, nk, nwait)
  check(skip("rounds") or st.rounds == M.rounds, "%s: stats.rounds %d, model %d", where, st.rounds, M.rounds)
  check(st.waits == M.waits, "%s: stats.waits %d, model %d", where, st.waits, M.waits)
  check(l:now() == S.now, "%s: l:now() %s, clock %s", where, tostring(l:now()), tostring(S.now))
  if M.closed then
    check(st.descriptors == 0, "%s: closed loop counts %d descriptors", where, st.descriptors)
    return
  end
  check(l:pollfd() == l:getfd() and l:events() == "r", "%s: pollfd %s, getfd %s, events %s", where,
    tostring(l:pollfd()), tostring(l:getfd()), tostring(l:events()))
  -- The set: watchers with their flags, waiting tasks' directions, idle
  -- registrations only for live tasks, nothing of closed descriptors.
  local map, n = set_entries(l)
  check(st.descriptors == n, "%s: stats.descriptors %d, the set holds %d", where, st.descriptors, n)
  local mine = {}
  for _, e in ipairs(endpoints()) do
    mine[e.fd] = true
    local names = map[e.fd]
    if e.watcher then
      check(names == e.watcher.names, "%s: %s has watcher w%d (%s), the set has %s", where, epname(e),
        e.watcher.id, e.watcher.names, tostring(names))
    else
      if e.reader then
        check(names and has_flag(names, "in"), "%s: k%d waits to read %s, the set has %s", where,
          e.reader.id, epname(e), tostring(names))
      end
      if e.writer then
        check(names and has_flag(names, "out"), "%s: k%d waits to write %s, the set has %s", where,
          e.writer.id, epname(e), tostring(names))
      end
      if names and not (e.reader or e.writer) then
        local lw = e.last_waiter
        check(lw and lw.state ~= "dead", "%s: %s stays in the set (%s) with no watcher and no live task "
          .. "that waited on it", where, epname(e), names)
      end
    end
  end
  for fd, names in pairs(map) do
    check(mine[fd], "%s: fd %d (%s) is in the set but is no descriptor in use", where, fd, names)
  end
end

------------------------------------------------- model of the world ops

local function edge(e)
  if e.watcher and e.watcher.et then e.watcher.edge = true end
end

local function op_write(e, n)
  local dest = e.role == "w" and e.ch.r or e.peer
  local s = string.rep(string.char(97 + e.id % 26), n)
  local got, why = T.write(e.fd, s)
  check(got == n, "write %d bytes to %s: %s", n, epname(e), tostring(got or why))
  if e.role == "w" then e.ch.bytes = e.ch.bytes + n else dest.inq = dest.inq + n end
  edge(dest)
  note("write %d to %s", n, epname(e))
end

local function writable_now(e)
  if e.role == "w" then
    return e.ch.r.open and not e.ch.full and e.ch.bytes < MAX_BYTES
  end
  return e.peer.inq < MAX_BYTES
end

local function act_write()
  local list = endpoints(function(e) return is_writer(e) and writable_now(e) end)
  local e = pick(list)
  if not e then return end
  local room = MAX_BYTES - (e.role == "w" and e.ch.bytes or e.peer.inq)
  op_write(e, math.random(1, math.min(64, room)))
end

local function act_fill()
  local list = {}
  for _, ch in ipairs(S.chans) do
    if ch.kind == "pipe" and ch.r.open and ch.w.open and not ch.full then list[#list + 1] = ch end
  end
  local ch = pick(list)
  if not ch then return end
  local chunk = string.rep("f", 65536)
  local total = 0
  while true do
    local n, _, errname = T.write(ch.w.fd, chunk)
    if not n then
      check(errname == "EAGAIN", "fill %s: %s", epname(ch.w), tostring(errname))
      break
    end
    total = total + n
  end
  ch.bytes, ch.full = ch.bytes + total, true
  edge(ch.r)
  note("fill %s (%d bytes)", epname(ch.w), total)
end

local function avail(e)
  if e.role == "r" then return e.ch.bytes end
  return e.inq
end

local function op_drain(e)
  local total = 0
  while true do
    local s, _, errname = T.read(e.fd)
    if not s then
      check(errname == "EAGAIN", "drain %s: %s", epname(e), tostring(errname))
      break
    end
    if s == "" then break end
    total = total + #s
  end
  check(total == avail(e), "drain %s read %d bytes, model %d", epname(e), total, avail(e))
  if e.role == "r" then e.ch.bytes, e.ch.full = 0, false else e.inq = 0 end
  note("drain %s (%d)", epname(e), total)
end

local function act_drain()
  local e = pick(endpoints(is_reader))
  if e then op_drain(e) end
end

-- A partial read: not where an edge-triggered watcher is started (the
-- kernel may or may not make that an edge), not from a full pipe (whether
-- a writer can go on then depends on the pipe's pages).
local function can_read_some(e)
  return avail(e) > 0 and not (e.watcher and e.watcher.et) and not (e.role == "r" and e.ch.full)
end

local function op_read_some(e)
  local k = math.random(1, 48)
  local want = math.min(k, avail(e))
  local s = T.read(e.fd, k)
  check(s and #s == want, "read %d from %s: got %s, model %d", k, epname(e), s and #s or "nil", want)
  if e.role == "r" then e.ch.bytes = e.ch.bytes - want else e.inq = e.inq - want end
  note("read %d from %s", want, epname(e))
end

local function act_read_some()
  local e = pick(endpoints(function(x) return is_reader(x) and can_read_some(x) end))
  if e then op_read_some(e) end
end

-- l:closing(e): its watcher stops, its waiting tasks are woken with nil,
-- "closed" (reader first), it leaves the set.
local function op_closing(e)
  local expect = 0
  if e.watcher then stop_watcher_model(e.watcher) end
  local r, w = e.reader, e.writer
  if r then
    wake_later(r, { n = 2, nil, "closed" })
    expect = expect + 1
  end
  if w then
    wake_later(w, { n = 2, nil, "closed" })
    expect = expect + 1
  end
  e.last_waiter = false
  local n = M.l:closing(obj_of(e))
  check(n == expect, "l:closing(%s) woke %s tasks, model %d", epname(e), tostring(n), expect)
  note("closing %s -> %d", epname(e), n)
end

local function close_ep(e)
  op_closing(e)
  assert(T.close(e.fd))
  e.open = false
end

local function replace_channel(i)
  local ch = S.chans[i]
  for _, e in ipairs(ch.ends) do
    if e.open then op_closing(e) end
  end
  for _, e in ipairs(ch.ends) do
    if e.open then
      assert(T.close(e.fd))
      e.open = false
    end
  end
  S.chans[i] = make_channel(chance(0.7) and "pipe" or "sock")
  note("replace channel %d: %s", i, S.chans[i].kind)
  count("replaced")
end

local function act_replace()
  replace_channel(math.random(#S.chans))
end

local function after_partial_close(i)
  local ch = S.chans[i]
  if not ch.r.open and not ch.w.open then replace_channel(i) end
end

local function pipes_with(pred)
  local list = {}
  for i, ch in ipairs(S.chans) do
    if ch.kind == "pipe" and pred(ch) then list[#list + 1] = i end
  end
  return list
end

-- The write end goes: the read end sees end of file (hup).
local function act_hangup()
  local i = pick(pipes_with(function(ch) return ch.w.open end))
  if not i then return end
  local ch = S.chans[i]
  close_ep(ch.w)
  edge(ch.r)
  note("hung up %s", epname(ch.w))
  after_partial_close(i)
end

-- The read end goes: the write end reports err (writable).
local function act_close_r()
  local i = pick(pipes_with(function(ch) return ch.r.open end))
  if not i then return end
  local ch = S.chans[i]
  close_ep(ch.r)
  note("closed %s", epname(ch.r))
  after_partial_close(i)
end

local function act_closing_idle()
  local e = pick(endpoints())
  if e and not e.watcher and not e.reader and not e.writer then
    op_closing(e)
  end
end

--------------------------------------------------------- watchers: ops

local io_callback -- defined below

local function act_io_new()
  local e = pick(endpoints(is_reader))
  if not e then return end
  local et = chance(0.4)
  local flags = et and "in|et" or "in"
  local refusal = watch_refusal(e)
  local mw = { id = S.ids + 1, e = e, flags = flags, et = et, names = flags, active = false, gen = 0,
    edge = false, fires = 0 }
  local cb = io_callback(mw)
  if chance(0.1) then
    local f = cb
    cb = setmetatable({}, { __call = function(_, ...) return f(...) end })
  end
  local ok, w = pcall(M.l.io, M.l, obj_of(e), flags, cb)
  if refusal then
    check(not ok and has_text(w, refusal), "l:io on %s: expected %q, got %s", epname(e), refusal, show(w))
    note("io on %s refused", epname(e))
    return
  end
  check(ok, "l:io on %s: %s", epname(e), tostring(w))
  S.ids = S.ids + 1
  mw.w = w
  start_watcher_model(mw)
  M.watchers[#M.watchers + 1] = mw
  note("w%d = io(%s, %s)", mw.id, epname(e), flags)
  -- Forget the oldest stopped ones.
  if #M.watchers > MAX_WATCHERS then
    for i, old in ipairs(M.watchers) do
      if not old.active then
        table.remove(M.watchers, i)
        break
      end
    end
  end
end

local function usable_watchers(active)
  local list = {}
  for _, mw in ipairs(M.watchers) do
    if mw.e.open and (active == nil or mw.active == active) then list[#list + 1] = mw end
  end
  return list
end

local function act_w_stop()
  local mw = pick(usable_watchers())
  if not mw then return end
  mw.w:stop()
  stop_watcher_model(mw)
  note("w%d:stop()", mw.id)
end

local function act_w_start()
  local mw = pick(usable_watchers())
  if not mw then return end
  if mw.active then
    mw.w:start() -- nothing
    note("w%d:start() (started)", mw.id)
    return
  end
  local refusal = watch_refusal(mw.e)
  local ok, err = pcall(mw.w.start, mw.w)
  if refusal then
    check(not ok and has_text(err, refusal), "w%d:start(): expected %q, got %s", mw.id, refusal, show(err))
    note("w%d:start() refused", mw.id)
    return
  end
  check(ok, "w%d:start(): %s", mw.id, tostring(err))
  start_watcher_model(mw)
  note("w%d:start()", mw.id)
end

-- Stopped and started again at once: during a round, the new start must
-- not get the event the round's wait reported for the old one.
local function act_w_restart()
  local mw = pick(usable_watchers(true))
  if not mw then return end
  mw.w:stop()
  stop_watcher_model(mw)
  mw.w:start()
  start_watcher_model(mw)
  note("w%d:stop() w%d:start()", mw.id, mw.id)
end

local function act_w_set()
  local mw = pick(usable_watchers())
  if not mw then return end
  local et = chance(0.5)
  local flags = et and "in|et" or "in"
  mw.w:set(flags)
  mw.flags, mw.et, mw.names = flags, et, flags
  if mw.active then mw.edge = et and can_read(mw.e) end -- modified while ready: reported
  note("w%d:set(%s)", mw.id, flags)
end

----------------------------------------------------------- timers: ops

local timer_callback -- defined below

local AFTERS = { 0, 0, 0.25, 0.5, 0.5, 1, 1, 2, 3, 5, -1, math.huge }
local PERIODS = { 0.25, 0.5, 0.75, 1, 1.5, 3 }

local function act_timer_new()
  local every = chance(0.4) and pick(PERIODS) or nil
  local after = pick(AFTERS)
  if after == math.huge and every then after = 1 end
  local mt = { id = S.ids + 1, every = every, after = math.max(after, 0), pending = true, due = false,
    gen = 0, fired = 0, last = nil }
  S.ids = S.ids + 1
  mt.t = M.l:timer(after, timer_callback(mt), every)
  mt.tid = id_of(mt.t)
  mt.deadline, mt.seq = S.now + mt.after, next_seq()
  M.timers[#M.timers + 1] = mt
  note("t%d = timer(%s, every %s): deadline %s", mt.id, tostring(after), tostring(every), tostring(mt.deadline))
  if #M.timers > MAX_TIMERS then
    for i, old in ipairs(M.timers) do
      if not old.pending then
        table.remove(M.timers, i)
        break
      end
    end
  end
end

local function act_t_stop()
  local mt = pick(M.timers)
  if not mt then return end
  mt.t:stop()
  if mt.pending then
    mt.pending, mt.due = false, false
    mt.gen = mt.gen + 1
  end
  note("t%d:stop()", mt.id)
end

local function act_t_again()
  local mt = pick(M.timers)
  if not mt then return end
  local after = chance(0.5) and pick(AFTERS) or nil
  if after == math.huge then after = 2 end
  mt.t:again(after)
  if after then mt.after = math.max(after, 0) end
  mt.pending, mt.due = true, false
  mt.gen = mt.gen + 1
  mt.deadline, mt.seq = S.now + mt.after, next_seq()
  mt.last = nil
  note("t%d:again(%s): deadline %s", mt.id, tostring(after), tostring(mt.deadline))
end

-------------------------------------------------------- tasks: ops

local task_main -- defined below

local function live_tasks()
  local n = 0
  for _, mk in ipairs(M.tasks) do if mk.state ~= "dead" then n = n + 1 end end
  return n
end

local function spawn_task(stopper)
  if not stopper and live_tasks() >= MAX_TASKS then return nil end
  S.ids = S.ids + 1
  local mk = { id = S.ids, state = "queued", wgen = 0, wait = false, joiners = {}, qentry = false,
    started = false, tbc = TBC and chance(0.5) or false, tbc_raise = false, tbc_closed = 0,
    self_cancel = false, stopper = stopper, arg = math.random(1000) }
  if mk.tbc and chance(0.1) then
    mk.tbc_raise = true
    mk.tbc_err = new_err("to-be-closed of k" .. mk.id)
  end
  local fn = function(...) return task_main(mk, ...) end
  if mk.tbc then
    fn = wrap_tbc(fn, function()
      mk.tbc_closed = mk.tbc_closed + 1
      if mk.tbc_raise then error(mk.tbc_err, 0) end
    end)
  end
  mk.task = M.l:spawn(fn, mk.id, mk.arg, nil)
  mk.tid = id_of(mk.task)
  push_queue(mk, "start")
  M.tasks[#M.tasks + 1] = mk
  note("k%d = spawn()%s%s", mk.id, stopper and " (stopper)" or "", mk.tbc_raise and " (close raises)" or "")
  -- Forget the oldest dead ones.
  local dead = 0
  for _, k in ipairs(M.tasks) do if k.state == "dead" then dead = dead + 1 end end
  if dead > MAX_DEAD then
    for i, k in ipairs(M.tasks) do
      if k.state == "dead" then
        table.remove(M.tasks, i)
        break
      end
    end
  end
  return mk
end

local function act_spawn()
  spawn_task(false)
end

-- Cancels mk from ctx ("main", "cb" or "task"; `me` the running task).
local function do_cancel(mk, ctx, me)
  local t = mk.task
  local st = mk.state
  if st == "dead" then
    check(t:cancel() == false, "cancel of dead k%d did not return false", mk.id)
    note("k%d:cancel() (dead)", mk.id)
    return
  end
  if st == "running" then
    check(mk == me, "k%d is running but is not the running task", mk.id)
    mk.self_cancel = true
    check(t:cancel() == true, "k%d cancelling itself did not return true", mk.id)
    note("k%d:cancel() itself", mk.id)
    return
  end
  local raising = TBC and mk.tbc and mk.started and mk.tbc_raise
  local raises_here = false
  count("cancels")
  if raising then
    model_task_end(mk, "failed", mk.tbc_err)
    count("errors")
    if M.on_error then
      M.pending = { err = mk.tbc_err, obj = t, prefix = task_prefix(mk), mk = mk }
    elseif ctx == "main" then
      raises_here = true
    else
      halting(mk.tbc_err)
    end
  else
    model_task_end(mk, "cancelled")
  end
  local ok, r = pcall(t.cancel, t)
  if raises_here then
    check(not ok and rawequal(r, mk.tbc_err), "k%d:cancel() outside run: expected its to-be-closed error, got %s",
      mk.id, show(r))
  else
    if rawequal(r, FAILED) then error(FAILED, 0) end
    check(ok and r == true, "k%d:cancel() (%s): %s", mk.id, st, show(r))
  end
  check(M.pending == nil, "k%d:cancel(): on_error did not hear of its to-be-closed error", mk.id)
  note("k%d:cancel() (%s)%s", mk.id, st, raising and " (close raised)" or "")
end

local function act_cancel(ctx, me)
  local list = {}
  for _, mk in ipairs(M.tasks) do
    if not mk.stopper and (mk.state ~= "running" or mk == me) then list[#list + 1] = mk end
  end
  local mk = pick(list)
  if mk then do_cancel(mk, ctx, me) end
end

local function act_cond_new()
  if #M.conds >= MAX_CONDS then return end
  S.ids = S.ids + 1
  local mc = { id = S.ids, c = M.l:condition(), waiters = {} }
  M.conds[#M.conds + 1] = mc
  note("c%d = condition()", mc.id)
end

local function act_signal()
  local mc = pick(M.conds)
  if not mc then return end
  local first = mc.waiters[1]
  if first then wake_later(first, { n = 1, true }) end
  local got = mc.c:signal()
  check(got == (first ~= nil), "c%d:signal() returned %s, model %s", mc.id, tostring(got), tostring(first ~= nil))
  note("c%d:signal() -> %s", mc.id, first and ("k" .. first.id) or "none")
end

local function act_broadcast()
  local mc = pick(M.conds)
  if not mc then return end
  local list = copy(mc.waiters)
  for _, mk in ipairs(list) do wake_later(mk, { n = 1, true }) end
  local got = mc.c:broadcast()
  check(got == #list, "c%d:broadcast() returned %s, model %d", mc.id, tostring(got), #list)
  note("c%d:broadcast() -> %d", mc.id, #list)
end

local function act_stop_loop()
  M.l:stop()
  note("l:stop()")
end

local function act_run_inside()
  local ok, err = pcall(M.l.run, M.l, "nowait")
  check(not ok and has_text(err, "the loop is already running"), "run inside the loop: %s", show(err))
  ok, err = pcall(M.l.step, M.l)
  check(not ok and has_text(err, "the loop is already running"), "step inside the loop: %s", show(err))
end

-- Closes the loop from ctx (the running task, if any, goes on to its end).
local function do_close_loop(ctx)
  local errs, nerrs = {}, 0
  for _, mk in ipairs(M.tasks) do
    if mk.state ~= "dead" then
      if mk.state ~= "running" and TBC and mk.tbc and mk.started and mk.tbc_raise then
        errs[mk.tbc_err] = true
        nerrs = nerrs + 1
      end
      mk.state, mk.outcome, mk.wait, mk.qentry = "dead", "cancelled", false, false
    end
  end
  for _, mw in ipairs(M.watchers) do stop_watcher_model(mw) end
  for _, mt in ipairs(M.timers) do mt.pending, mt.due = false, false end
  for _, mc in ipairs(M.conds) do mc.waiters = {} end
  for _, e in ipairs(endpoints()) do
    e.watcher, e.reader, e.writer, e.last_waiter = false, false, false, false
  end
  M.closed = true
  local ok, err = pcall(M.l.close, M.l)
  if nerrs > 0 then
    check(not ok and errs[err], "l:close(): expected one of %d to-be-closed errors, got %s", nerrs, show(err))
  else
    if rawequal(err, FAILED) then error(FAILED, 0) end
    check(ok, "l:close(): %s", show(err))
  end
  note("l:close() from %s", ctx)
  count("closed loops")
end

----------------------------------------------------- random actions

-- The actions callbacks, tasks and the main loop all take, with weights.
local ACTIONS = {
  { "write", 15, act_write }, { "fill", 1.5, act_fill }, { "drain", 7, act_drain },
  { "read_some", 5, act_read_some }, { "io", 5, act_io_new }, { "w_stop", 4, act_w_stop },
  { "w_start", 4, act_w_start }, { "w_restart", 2, act_w_restart }, { "w_set", 2, act_w_set },
  { "timer", 4, act_timer_new }, { "t_stop", 2.5, act_t_stop }, { "t_again", 3, act_t_again },
  { "spawn", 5, act_spawn }, { "cancel", 2.5, act_cancel }, { "cond", 0.7, act_cond_new },
  { "signal", 5, act_signal }, { "broadcast", 1.5, act_broadcast }, { "replace", 0.8, act_replace },
  { "hangup", 0.6, act_hangup }, { "close_r", 0.5, act_close_r }, { "closing_idle", 0.4, act_closing_idle },
  { "stop", 0.8, act_stop_loop },
}
local INSIDE_ONLY = { { "run_inside", 0.4, act_run_inside } }

local function weighted(list, extra)
  local total = 0
  for _, a in ipairs(list) do total = total + a[2] end
  if extra then for _, a in ipairs(extra) do total = total + a[2] end end
  local r = math.random() * total
  for _, a in ipairs(list) do
    r = r - a[2]
    if r < 0 then return a end
  end
  if extra then
    for _, a in ipairs(extra) do
      r = r - a[2]
      if r < 0 then return a end
    end
  end
  return list[#list]
end

local function random_action(ctx, me)
  if M.closed then return end
  local a = weighted(ACTIONS, ctx ~= "main" and INSIDE_ONLY or nil)
  count("action " .. a[1])
  a[3](ctx, me)
end

------------------------------------------------------------- on_error

local function on_error(err, where, obj)
  if rawequal(err, FAILED) then error(FAILED, 0) end
  local p = M.pending
  check(p ~= nil, "on_error called with %s (%s) when no error was expected", show(err), tostring(where))
  M.pending = nil
  if p.pattern then
    check(has_text(err, p.pattern), "on_error: expected an error saying %q, got %s", p.pattern, show(err))
  else
    check(rawequal(err, p.err), "on_error: expected %s, got %s", show(p.err), show(err))
  end
  check(rawequal(obj, p.obj), "on_error: expected the object %s, got %s", tostring(p.obj), tostring(obj))
  check(type(where) == "string" and where:find(p.prefix, 1, true) == 1,
    "on_error: traceback %s does not start with %q", show(where), p.prefix)
  if TBC and p.mk and p.mk.tbc and p.mk.started then
    check(p.mk.tbc_closed == 1, "on_error for k%d before its to-be-closed variable was closed", p.mk.id)
  end
  count("on_error")
  note("on_error(%s)", show(err))
  if not p.rethrow and M.in_run and not M.halt and chance(0.03) then
    -- The program gives up: it closes the loop from on_error.
    do_close_loop("on_error")
    return
  end
  if p.rethrow then
    halting(p.rethrow)
    note("on_error raises %s", show(p.rethrow))
    error(p.rethrow, 0)
  end
end

------------------------------------------------------------- callbacks

-- What a watcher or timer callback does after its checks.
local function callback_body(kind, model, obj, prefix)
  S.depth = S.depth + 1
  if kind == "io" and model.e.open then
    local r = math.random()
    if r < 0.55 then
      op_drain(model.e)
    elseif r < 0.75 and can_read_some(model.e) then
      op_read_some(model.e)
    end
  end
  for _ = 1, math.random(0, 2) do random_action("cb") end
  if not M.closed and chance(0.3) then check_model("in a callback") end
  if not M.closed then
    local r = math.random()
    if r < 0.04 then
      local err = new_err(kind .. " callback")
      local rethrow = M.on_error and chance(0.15) and new_err("on_error's own") or nil
      note("raise %s", show(err))
      model_fail(obj, err, prefix, { rethrow = rethrow })
      S.depth = S.depth - 1
      error(err, 0)
    elseif r < 0.046 and CALLBACK_YIELDS then
      note("yield out of run")
      count("callback yields")
      halting(nil, "yielded out of the loop's run; callbacks cannot yield")
      M.yield_prefix = prefix
      S.depth = S.depth - 1
      coroutine.yield("stray")
      fail("a callback resumed after it yielded out of run")
    elseif r < 0.049 and not M.halt then
      do_close_loop("a callback")
    end
  end
  S.depth = S.depth - 1
end

io_callback = function(mw)
  return function(w, fd, flags)
    obs_begin("io", format("w%d called (%s)", mw.id, epname(mw.e)))
    local entry
    for _, x in ipairs(M.E) do
      if x.mw == mw and e_live(x) then entry = x end
    end
    check(entry, "w%d on %s called with no event due (not ready at the wait, edge-triggered without an edge, "
      .. "started during the round, stopped, or already called this round)", mw.id, epname(mw.e))
    check(rawequal(w, mw.w) and fd == mw.e.fd, "w%d called with %s, fd %s", mw.id, tostring(w), tostring(fd))
    check(flags == entry.flags, "w%d called with flags %s, the kernel reports %s", mw.id,
      lepoll.flagnames(flags), lepoll.flagnames(entry.flags))
    entry.done = true
    mw.fires = mw.fires + 1
    M.cur = { kind = "io", mw = mw }
    count("io callbacks")
    callback_body("io", mw, w, format("io watcher on fd %d (callback ", mw.e.fd))
  end
end

-- A repeating timer's next deadline (the model's own reading of the rule).
local function next_deadline(prev, every, now)
  local k = floor((now - prev) / every) -- ticks prev + k * every not after now
  return prev + math.max(1, k) * every
end

timer_callback = function(mt)
  return function(t)
    obs_begin("tm", format("t%d fires", mt.id))
    local entry = d_head()
    check(entry and entry.mt == mt, "timer step: t%d fired, expected %s", mt.id, describe_entry(entry))
    check(rawequal(t, mt.t), "t%d called with %s", mt.id, tostring(t))
    check(S.now >= entry.deadline, "t%d fired at %s, before its deadline %s", mt.id, tostring(S.now),
      tostring(entry.deadline))
    check(not mt.last or entry.deadline > mt.last, "t%d fired twice for deadline %s", mt.id,
      tostring(entry.deadline))
    mt.last = entry.deadline
    M.di = M.di + 1
    mt.due = false
    mt.gen = mt.gen + 1
    mt.fired = mt.fired + 1
    if mt.every then
      mt.deadline, mt.seq = next_deadline(entry.deadline, mt.every, S.now), next_seq()
      if mt.deadline <= S.now then count("lagging timer ticks") end
    else
      mt.pending = false
    end
    M.cur = { kind = "tm", mt = mt }
    count("timer callbacks")
    callback_body("tm", mt, t, format("timer #%d (callback ", mt.tid))
  end
end

----------------------------------------------------------------- tasks

-- A task's wait is about to begin: the model's side (the loop's comes at
-- the yield).
local function begin_wait(mk, w)
  if w.deadline then w.seq = next_seq() end
  mk.wait, mk.state, mk.wgen = w, "waiting", mk.wgen + 1
  M.waits = M.waits + 1
  if w.kind == "fd" then
    if w.dir == "r" then w.e.reader = mk else w.e.writer = mk end
    w.e.last_waiter = mk
  elseif w.kind == "cond" then
    w.mc.waiters[#w.mc.waiters + 1] = mk
  elseif w.kind == "join" then
    w.target.joiners[#w.target.joiners + 1] = mk
  end
  M.cur = false
end

-- The task's wait returned res: checked as an observation.
local function resumed(mk, res)
  local w = mk.wait
  check(w and (mk.state == "waiting" or mk.state == "woken"), "k%d (%s) resumed from a wait it is not in: %s",
    mk.id, mk.state, show(res))
  local a, b = res[1], res[2]
  local class
  if w.kind == "fd" then
    class = a == true and "io" or (b == "timeout" and "tm" or "q")
  elseif w.kind == "sleep" then
    class = "tm"
  else
    class = (a == nil and b == "timeout") and "tm" or "q"
  end
  obs_begin(class, format("k%d resumes from %s: %s", mk.id, w.kind, show(res)))
  if class == "io" then
    local entry
    for _, x in ipairs(M.E) do
      if x.mk == mk and e_live(x) then entry = x end
    end
    check(entry, "k%d resumed to %s %s with no event due", mk.id, w.dir == "r" and "read" or "write", epname(w.e))
    check(res.n == 1, "k%d: readable/writable returned %s", mk.id, show(res))
    entry.done = true
    stop_wait_model(mk)
    count("task I/O wakeups")
  elseif class == "q" then
    local entry = q_head()
    check(entry and entry.mk == mk, "run queue: k%d resumed, expected %s", mk.id, describe_entry(entry))
    M.qi = M.qi + 1
    remove_value(M.queue, entry)
    mk.qentry = false
    local want = entry.vals.join and join_result(entry.vals.join) or entry.vals
    check(same_values(want, res), "k%d's %s returned %s, expected %s", mk.id, w.kind, show(res), show(want))
    count("task queue wakeups")
  else
    local entry = d_head()
    check(entry and entry.mk == mk and not entry.mt, "timer step: k%d's %s ended, expected %s", mk.id, w.kind,
      describe_entry(entry))
    check(S.now >= entry.deadline, "k%d's %s ended before its deadline", mk.id, w.kind)
    M.di = M.di + 1
    stop_wait_model(mk)
    local want = w.kind == "sleep" and { n = 1, true } or { n = 2, nil, "timeout" }
    check(same_values(want, res), "k%d's %s returned %s, expected %s", mk.id, w.kind, show(res), show(want))
    count("task timer wakeups")
  end
  mk.state, mk.wait = "running", false
  M.cur = { kind = class, mk = mk, e = w.e, dir = w.dir }
end

local TIMEOUTS = { 0, 0.25, 0.5, 1, 2, 5 }
local SLEEPS = { 0, 0, 0.25, 0.5, 1, 2, 3, -1 }

local function maybe_timeout()
  if chance(0.5) then return nil end
  return pick(TIMEOUTS)
end

local function deadline_of(timeout)
  if timeout == nil then return nil end
  return S.now + math.max(timeout, 0)
end

local function expect_refusal(mk, what, msg, f, ...)
  local ok, err = pcall(f, ...)
  check(not ok and has_text(err, msg), "k%d: %s: expected %q, got %s", mk.id, what, msg, show(err))
  note("k%d: %s refused", mk.id, what)
end

-- A wait of a task that must end there (cancelled itself, or closed its
-- loop): it does not return.
local function final_wait(mk)
  local l = M.l
  local r = math.random(4)
  note("k%d waits, to end there", mk.id)
  if r == 1 then
    l:sleep(0)
  elseif r == 2 then
    local e = pick(endpoints(is_reader))
    if e then l:readable(obj_of(e, chance(0.3)), 1) else l:sleep(1) end
  elseif r == 3 then
    mk.task:join() -- itself
  else
    local mc = pick(M.conds)
    if mc then mc.c:wait() else l:sleep(1) end
  end
  fail("k%d resumed from a wait after it %s", mk.id, M.closed and "closed its loop" or "cancelled itself")
end

local function wait_fd(mk, reading)
  local l = M.l
  local e
  if reading and chance(0.5) then
    -- Often one a live task left registered (an idle registration) or
    -- one with input: resumed in the I/O step, a task that waits on one
    -- whose event comes later in the same round must not get it.
    e = pick(endpoints(function(x)
      local lw = x.last_waiter
      return is_reader(x) and can_read(x) and not x.watcher and not x.reader and lw and lw.state ~= "dead"
        and lw.state ~= "waiting"
    end))
    e = e or pick(endpoints(function(x) return is_reader(x) and can_read(x) end))
  end
  e = e or pick(endpoints(reading and is_reader or is_writer))
  if not e then return false end
  local timeout = maybe_timeout()
  local dirty = reading and chance(0.05)
  local obj = obj_of(e, dirty)
  local f = reading and l.readable or l.writable
  local name = reading and "readable" or "writable"
  if e.watcher then
    expect_refusal(mk, name, format("fd %d has an I/O watcher: a task cannot wait on it", e.fd), f, l, obj, timeout)
    return true
  end
  local other = reading and e.reader or (not reading and e.writer)
  if other then
    expect_refusal(mk, name, format("fd %d already has a task waiting to %s", e.fd, reading and "read" or "write"),
      f, l, obj, timeout)
    return true
  end
  if dirty then
    local res = pack(f(l, obj, timeout))
    check(res.n == 1 and res[1] == true, "k%d: readable on dirty input returned %s", mk.id, show(res))
    note("k%d: readable(%s) dirty -> true", mk.id, epname(e))
    return true
  end
  note("k%d waits to %s %s%s", mk.id, reading and "read" or "write", epname(e),
    timeout and (" timeout " .. timeout) or "")
  begin_wait(mk, { kind = "fd", e = e, dir = reading and "r" or "w", deadline = deadline_of(timeout) })
  resumed(mk, pack(f(l, obj, timeout)))
  return true
end

local function task_wait(mk)
  local l = M.l
  local r = math.random()
  if r < 0.3 then
    if wait_fd(mk, true) then return end
  elseif r < 0.45 then
    if wait_fd(mk, false) then return end
  elseif r < 0.6 then
    local mc = pick(M.conds)
    if mc then
      local timeout = maybe_timeout()
      note("k%d waits on c%d%s", mk.id, mc.id, timeout and (" timeout " .. timeout) or "")
      begin_wait(mk, { kind = "cond", mc = mc, deadline = deadline_of(timeout) })
      resumed(mk, pack(mc.c:wait(timeout)))
      return
    end
  elseif r < 0.72 then
    local target = pick(M.tasks)
    local timeout = maybe_timeout()
    if target == mk then
      expect_refusal(mk, "join itself", "a task cannot join itself", mk.task.join, mk.task, timeout)
      return
    end
    if target.state == "dead" then
      local res = pack(target.task:join(timeout))
      local want = join_result(target)
      check(same_values(want, res), "k%d: join of dead k%d returned %s, expected %s", mk.id, target.id, show(res),
        show(want))
      note("k%d joins dead k%d: %s", mk.id, target.id, show(res))
      return
    end
    note("k%d joins k%d%s", mk.id, target.id, timeout and (" timeout " .. timeout) or "")
    begin_wait(mk, { kind = "join", target = target, deadline = deadline_of(timeout) })
    resumed(mk, pack(target.task:join(timeout)))
    return
  end
  local s = pick(SLEEPS)
  note("k%d sleeps %s", mk.id, tostring(s))
  begin_wait(mk, { kind = "sleep", deadline = S.now + math.max(s, 0) })
  resumed(mk, pack(l:sleep(s)))
end

-- The task returns vals (its to-be-closed variable raising turns that
-- into a failure).
local function task_return(mk, ...)
  if TBC and mk.tbc and mk.tbc_raise then
    note("k%d returns; its to-be-closed variable raises", mk.id)
    task_fails(mk, mk.tbc_err)
  else
    model_task_end(mk, "returned", pack(...))
    note("k%d returns %s", mk.id, show(pack(...)))
  end
  return ...
end

task_main = function(mk, ...)
  local args = pack(...)
  obs_begin("q", format("k%d starts", mk.id))
  local entry = q_head()
  check(entry and entry.mk == mk and entry.kind == "start", "run queue: k%d started, expected %s", mk.id,
    describe_entry(entry))
  M.qi = M.qi + 1
  remove_value(M.queue, entry)
  mk.qentry = false
  check(args.n == 3 and args[1] == mk.id and args[2] == mk.arg and args[3] == nil, "k%d started with %s",
    mk.id, show(args))
  mk.state, mk.started = "running", true
  M.cur = { kind = "q", mk = mk }
  count("tasks started")
  if mk.stopper then
    M.l:stop()
    return task_return(mk, "stopped")
  end
  while true do
    S.depth = S.depth + 1
    check(mk.task:status() == "running" or M.closed, "k%d runs with status %s", mk.id, mk.task:status())
    for _ = 1, math.random(0, 2) do random_action("task", mk) end
    if not M.closed and chance(0.3) then check_model("in a task") end
    S.depth = S.depth - 1
    if M.closed then
      -- The loop was closed (by this task, or by on_error meanwhile): the
      -- task goes on to its next wait and ends there, or returns.
      if chance(0.5) then return "after close" end
      final_wait(mk)
    end
    local r = math.random()
    if r < 0.06 then
      return task_return(mk, mk.id, "done", nil)
    elseif r < 0.095 then
      local err = new_err("task k" .. mk.id)
      local rethrow = M.on_error and chance(0.15) and new_err("on_error's own") or nil
      note("k%d raises %s", mk.id, show(err))
      task_fails(mk, err, { rethrow = rethrow })
      error(err, 0)
    elseif r < 0.1 then
      note("k%d yields outside its waits", mk.id)
      task_fails(mk, nil, { pattern = "yielded to the loop outside its waits" })
      coroutine.yield("stray")
      fail("k%d resumed after yielding outside its waits", mk.id)
    elseif r < 0.12 then
      do_cancel(mk, "task", mk)
    elseif r < 0.123 and not M.halt then
      do_close_loop("a task")
    elseif mk.self_cancel then
      -- Cancelled itself: its next wait ends it.
      if TBC and mk.tbc and mk.tbc_raise then
        task_fails(mk, mk.tbc_err)
      else
        model_task_end(mk, "cancelled")
      end
      final_wait(mk)
    else
      task_wait(mk)
    end
  end
end

---------------------------------------------------------- the main loop

local function make_loop()
  local with_handler = chance(0.7)
  local opts = { clock = function() return S.now end }
  if with_handler then opts.on_error = on_error end
  M = new_model(require("lepoll.loop").new(opts), with_handler)
  note("new loop (%s)", with_handler and "on_error" or "no on_error")
  for _ = 1, math.random(0, 2) do act_cond_new() end
end

-- After a close: the loop is closed, everything of it dead or stopped, and
-- it refuses to be used.
local function check_closed()
  local l = M.l
  check_model("closed loop")
  check(tostring(l) == "loop{closed}", "closed loop renders as %s", tostring(l))
  check(l:timeout() == nil, "closed loop's timeout() is %s", tostring(l:timeout()))
  for _, mk in ipairs(M.tasks) do
    check(mk.task:cancel() == false, "k%d:cancel() on a closed loop", mk.id)
  end
  for _, mc in ipairs(M.conds) do
    check(mc.c:signal() == false and mc.c:broadcast() == 0, "c%d woke a task of a closed loop", mc.id)
  end
  local closed = "attempt to use a closed loop"
  local e = pick(endpoints(is_reader))
  if e then
    local ok, err = pcall(l.io, l, e.fd, "in", function() end)
    check(not ok and has_text(err, closed), "io on a closed loop: %s", show(err))
  end
  local ok, err = pcall(l.spawn, l, function() end)
  check(not ok and has_text(err, closed), "spawn on a closed loop: %s", show(err))
  ok, err = pcall(l.run, l, "nowait")
  check(not ok and has_text(err, closed), "run on a closed loop: %s", show(err))
  local mt = pick(M.timers)
  if mt then
    mt.t:stop()
    ok, err = pcall(mt.t.again, mt.t)
    check(not ok and has_text(err, closed), "t:again on a closed loop: %s", show(err))
  end
  local mw = pick(M.watchers)
  if mw then
    mw.w:stop()
    ok, err = pcall(mw.w.start, mw.w)
    check(not ok and has_text(err, closed), "w:start on a closed loop: %s", show(err))
  end
  l:stop()
  l:close() -- again: nothing
end

-- Whether a "once" round cannot block: a task is queued, events or due
-- timers are left over, or a timer is due.
local function once_safe()
  if queue_has_live() then return true end
  if (M.phase == "io" or M.phase == "left4") and live_list(M.E, e_live) then return true end
  if (M.phase == "tm" or M.phase == "left5") and d_head() then return true end
  for _, mt in ipairs(M.timers) do
    if mt.pending and mt.deadline <= S.now then return true end
  end
  return false
end

local function op_run()
  local l = M.l
  local mode, f
  local r = math.random()
  local blocking = false
  if not model_alive() and chance(0.3) then
    -- Nothing to wait for: run returns false at once, in any mode.
    mode, f = "run default (nothing alive)", function() return l:run() end
    blocking = true
  elseif r < 0.45 then
    mode, f = "run nowait", function() return l:run("nowait") end
  elseif r < 0.85 then
    mode, f = "step()", function() return l:step(chance(0.5) and 0 or nil) end
  elseif r < 0.9 then
    mode, f = "step(0.001)", function() return l:step(0.001) end
  elseif r < 0.95 and once_safe() then
    -- Something to run: the wait does not block.
    mode, f = "run once", function() return l:run("once") end
    blocking = true
  else
    -- One round: a task queued now stops the run.
    spawn_task(true)
    mode, f = "run default", function() return l:run() end
    blocking = true
  end
  note("%s at %s", mode, tostring(S.now))
  count("runs")
  M.in_run, M.cur, M.halt, M.expect_err, M.expect_pattern = true, false, false, nil, nil
  local ph = M.phase
  if ph == "io" then
    M.phase = "left4"
  elseif ph == "tm" then
    M.phase = "left5"
  elseif ph ~= "left4" and ph ~= "left5" then
    M.phase = "idle"
  end
  -- A run that must not block is cut short by an alarm (the wait then
  -- returns early), and fails.
  local alarms = T.alarms()
  if blocking then T.alarm(2) end
  local ok, ret = pcall(f)
  if blocking then T.alarm(0) end
  M.in_run, M.cur = false, false
  S.depth = 0
  if S.failure or rawequal(ret, FAILED) then error(FAILED, 0) end
  check(T.alarms() == alarms, "%s blocked (it waited 2 s): it had something to run, or nothing to wait for", mode)
  if M.closed then
    check(ok and ret == false, "%s after l:close from inside: expected false, got %s", mode, show(ret))
    note("run ended: loop closed")
    return
  end
  if M.halt then
    check(not ok, "%s returned %s: expected it to raise %s", mode, show(ret),
      show(M.expect_err or M.expect_pattern))
    if M.expect_pattern then
      check(has_text(ret, M.expect_pattern), "%s raised %s, expected an error saying %q", mode, show(ret),
        M.expect_pattern)
      if M.yield_prefix then
        check(has_text(ret, M.yield_prefix), "%s raised %s, expected it to name %q", mode, show(ret),
          M.yield_prefix)
      end
    else
      check(rawequal(ret, M.expect_err), "%s raised %s, expected %s", mode, show(ret), show(M.expect_err))
    end
    note("run raised %s (phase %s)", show(ret), M.phase)
    count("interrupted runs")
    M.halt, M.expect_err, M.expect_pattern, M.yield_prefix = false, nil, nil, nil
    return
  end
  check(ok, "%s raised %s", mode, show(ret))
  check(M.pending == nil, "on_error never heard of %s", M.pending and show(M.pending.err))
  advance("end")
  M.phase = "done"
  local alive = model_alive()
  check(ret == alive, "%s returned %s, model %s", mode, show(ret), tostring(alive))
end

local CLOCK_STEPS = { 0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1, 1, 1.5, 2, 3, 10, 100 }

local function op_clock()
  local d = pick(CLOCK_STEPS)
  S.now = S.now + d
  note("clock +%s = %s", tostring(d), tostring(S.now))
end

local function model_timeout()
  if queue_has_live() then return 0 end
  local best
  for _, mt in ipairs(M.timers) do
    if mt.pending and (not best or mt.deadline < best) then best = mt.deadline end
  end
  for _, mk in ipairs(M.tasks) do
    local w = mk.wait
    if mk.state == "waiting" and w.deadline and (not best or w.deadline < best) then best = w.deadline end
  end
  if not best then return nil end
  local span = best - S.now
  return span > 0 and span or 0
end

local function op_timeout()
  local got, want = M.l:timeout(), model_timeout()
  -- After an interrupted I/O or timer step, what is left over (even what
  -- is no longer delivered) makes it 0.
  local leftover = M.phase == "io" or M.phase == "tm" or M.phase == "left4" or M.phase == "left5"
  check(got == want or (leftover and got == 0), "l:timeout() is %s, model %s", tostring(got), tostring(want))
end

local function op_close()
  do_close_loop("the main program")
end

local MAIN = {
  { "run", 30, op_run }, { "clock", 10, op_clock }, { "timeout", 2, op_timeout },
  { "close", 0.25, op_close },
}

local function main_op()
  local a = weighted(MAIN, ACTIONS)
  count("op " .. a[1])
  a[3]("main")
end

-- The model's state in one line, for failure messages.
local function model_summary()
  local parts = { "phase " .. M.phase, "now " .. tostring(S.now) }
  for _, mw in ipairs(M.watchers) do
    if mw.active then parts[#parts + 1] = format("w%d on %s %s", mw.id, epname(mw.e), mw.flags) end
  end
  for _, mt in ipairs(M.timers) do
    if mt.pending then
      parts[#parts + 1] = format("t%d at %s%s", mt.id, tostring(mt.deadline),
        mt.every and (" every " .. mt.every) or "")
    end
  end
  for _, mk in ipairs(M.tasks) do
    if mk.state ~= "dead" then
      local w = mk.wait
      parts[#parts + 1] = format("k%d %s%s", mk.id, mk.state,
        w and (" " .. w.kind .. (w.deadline and (" until " .. tostring(w.deadline)) or "")) or "")
    end
  end
  return table.concat(parts, ", ")
end

local function new_world()
  return {
    now = 1000, chans = {}, ep_ids = 0, ids = 0, nerr = 0, depth = 0,
    trace = {}, counts = {}, failure = nil,
  }
end

local function close_world(world)
  for _, ch in ipairs(world.chans) do
    for _, e in ipairs(ch.ends) do
      if e.open then
        T.close(e.fd)
        e.open = false
      end
    end
  end
end

describe("lepoll.loop under random operations", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it(("agree with the model over %d steps (seed %d)"):format(STEPS, SEED), function()
    io.stderr:write(("\n28-loop_random: seed %d, %d steps (LEPOLL_SEED=%d LEPOLL_LOOP_STEPS=%d replays it)\n")
      :format(SEED, STEPS, SEED, STEPS))
    T.ignore_sigpipe()
    math.randomseed(SEED)
    S = new_world()
    local world = S
    finally(function()
      T.alarm(0)
      if M and not M.closed then pcall(M.l.close, M.l) end
      close_world(world)
    end)
    for i = 1, N_CHANNELS do S.chans[i] = make_channel(i <= 4 and "pipe" or "sock") end
    make_loop()
    local step = 0
    local ok, err = xpcall(function()
      for i = 1, STEPS do
        step = i
        S.depth = 0
        note("%d:", i)
        main_op()
        if S.failure then error(FAILED, 0) end
        check_model("after step " .. i)
        if M.closed then
          -- Closed by the main program, a callback, a task or on_error: a
          -- fresh loop goes on.
          check_closed()
          make_loop()
        end
      end
      -- The end: run what is ready, close the loop, check once more.
      for _ = 1, 3 do
        if M.closed then break end
        op_run()
        check_model("final runs")
      end
      if not M.closed then do_close_loop("the end") end
      check_closed()
    end, function(e)
      if rawequal(e, FAILED) then return S.failure end
      return debug.traceback(tostring(e), 2)
    end)
    if not ok then
      err = tostring(err) .. "\nloop: " .. tostring(M.l) .. "\nmodel: " .. model_summary()
      error(("seed %d, step %d: %s\nlast operations (newest last):\n  %s\nreplay: LEPOLL_SEED=%d "
        .. "LEPOLL_LOOP_STEPS=%d busted --run=%s spec/28-loop_random_spec.lua"):format(SEED, step,
        err, table.concat(S.trace, "\n  "), SEED, step, H.LUA), 0)
    end
    local keys = {}
    for k in pairs(S.counts) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = ("%s %d"):format(k, S.counts[k]) end
    io.stderr:write("28-loop_random: ", table.concat(parts, ", "), "\n")
  end)
end)
