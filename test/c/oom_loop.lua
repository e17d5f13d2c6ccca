-- Run by build/oom_host (test/c/oom_host.c), whose allocator fails exactly
-- the k-th allocation counted from oom.arm(k), then succeeds again. For
-- each operation of lepoll.loop, this sweeps k = 1, 2, ... until the
-- operation completes without meeting the failure, each k on a fixture of
-- its own, and checks what the loop is left with (doc/loop.md, "Memory
-- errors"):
--
--   - plain operations (l:io, w:start, w:set, l:timer, t:again, l:spawn,
--     l:closing, and cond:signal, cond:broadcast, task:cancel, which end
--     waits as l:closing does): they complete, or raise and leave the loop exactly as it
--     was: the same l:stats() counts (watchers, timers, tasks, waiting,
--     descriptors), the same tostring(l) (the set's flags_by_fd), the same
--     registrations in the kernel (/proc/self/fdinfo of the epoll
--     descriptor), the same state of the fixture's watchers, timers and
--     tasks, and l:invariant() passing. After a raise the operation is done
--     again, unarmed: it must then give what it gives on a fixture that never
--     failed, and so must a few rounds of the loop afterwards;
--   - the waits (l:readable, l:writable, l:sleep, cond:wait, task:join),
--     each from inside a task that arms the failure just before the wait:
--     a wait that raises leaves the loop as it was, seen from the task;
--     then the task waits again, unarmed, and the loop must go on as on a
--     fixture that never failed;
--   - l:step and l:run with pending events (level and edge-triggered,
--     oneshot), due timers, queued and woken tasks, left-overs of an
--     interrupted round: after the operation (raised or not) the loop is
--     consistent, and a few more rounds deliver every edge-triggered and
--     oneshot event, every due timer and every woken task exactly once;
--     the one callback or task that the failure hit (named by
--     l:last_traceback) may have been cut short, as any callback that raises.
--
-- Each point collects the garbage before it arms the failure, so the
-- window starts as after any collection: the collector has shrunk the
-- threads' CallInfo lists and stacks, and a call one level deeper than
-- since then allocates (as a table or string does). The loop's clock is
-- the fixture's (time moves when the fixture says so), so every point is
-- the same but for the failure.
--
-- Prints one line per operation, `oom: op "NAME": points=N raised=N
-- memory=N other=N absorbed=N inconsistent=N`, one `oom: INCONSISTENT ...`
-- line per inconsistency (with the stack where the failed allocation
-- happened, from a traced rerun), and last `oom: total: ...`. Returns the
-- number of inconsistencies.
--
--   build/oom_host test/c/oom_loop.lua [name]   (only the operations whose
--                                               name contains this text)
-- OOM_REPORTS=N prints N inconsistencies per operation (3); OOM_VERBOSE=1
-- prints every point, with where its allocation failed.
local only = ...
-- LuaJIT runs interpreted: with its compiler on, a memory error raised in
-- compiled code crashes it now and then (SIGSEGV inside libluajit, called
-- from a trace; LuaJIT 2.1.0-beta3 of Debian 12, about one run in four),
-- whatever the loop does. OOM_JIT=1 keeps the compiler on.
local jit = rawget(_G, "jit")
if jit and not os.getenv("OOM_JIT") then jit.off() end
local loop = require "lepoll.loop"
local oom = oom ---@diagnostic disable-line: undefined-global

local format, concat, sort = string.format, table.concat, table.sort

local MEMERR = "not enough memory"
local MAX_K = 100000
local VERBOSE = os.getenv("OOM_VERBOSE") -- each point, with where its allocation failed
local MAX_REPORTS = tonumber(os.getenv("OOM_REPORTS") or "") or 3 -- inconsistencies printed per operation (all counted)

-- The loop's clock: time moves only when a fixture says so.
local NOW = 1000
local function clock() return NOW end

------------------------------------------------------------ descriptors

local fds = {}

local function track(a, b)
  fds[#fds + 1] = a
  fds[#fds + 1] = b
end

local function pipe(data)
  local r, w = oom.pipe()
  track(r, w)
  if data then oom.write(w, data) end
  return { r = r, w = w }
end

local function socketpair()
  local a, b = oom.socketpair()
  track(a, b)
  return { a = a, b = b }
end

-- Writes to fd until the kernel takes no more.
local function fill(fd)
  local chunk = string.rep("x", 65536)
  while oom.write(fd, chunk) do end
end

local function drain(fd)
  while true do
    local s = oom.read(fd)
    if not s or s == "" then return end
  end
end

local function close_fds()
  for i = #fds, 1, -1 do
    oom.close(fds[i])
    fds[i] = nil
  end
end

------------------------------------------------------------ snapshots

-- The epoll set's registrations as the kernel has them: "fd:events" sorted.
local function kernel(l)
  local f = io.open("/proc/self/fdinfo/" .. l:getfd())
  if not f then return "?" end
  local regs = {}
  for line in f:lines() do
    local tfd, ev = line:match("^tfd:%s*(%d+)%s+events:%s*(%x+)")
    if tfd then regs[#regs + 1] = tfd .. ":" .. ev end
  end
  f:close()
  sort(regs)
  return concat(regs, ",")
end

-- The fixture's objects (ctx.objs names fields of ctx) and counters
-- (ctx.cnt; names starting with "~" are level-triggered counts, left out:
-- they depend on how many rounds ran), and the results of its tasks.
local function probe(ctx)
  local parts = {}
  for _, name in ipairs(ctx.objs) do
    local o, v = ctx[name]
    if not o then
      v = "none"
    elseif o.kind == "io" or o.kind == "timer" then
      v = o:is_active() and "active" or "stopped"
    elseif o.kind == "task" then
      v = o:status()
    elseif o.kind == "condition" then
      v = "waiting=" .. o:waiting()
    else
      v = tostring(o)
    end
    parts[#parts + 1] = name .. "=" .. v
  end
  local names = {}
  for name in pairs(ctx.cnt) do
    if name:sub(1, 1) ~= "~" then names[#names + 1] = name end
  end
  sort(names)
  for _, name in ipairs(names) do parts[#parts + 1] = name .. "=" .. ctx.cnt[name] end
  for _, name in ipairs(ctx.results) do
    parts[#parts + 1] = name .. "=" .. tostring(ctx[name])
  end
  return concat(parts, " ")
end

local function snap(ctx)
  local l = ctx.l
  local st = l:stats()
  local ok, err = pcall(l.invariant, l)
  local text = tostring(l)
  local ready = text:match(", ready=(%b{})") or ""
  return {
    counts = format("watchers=%d timers=%d tasks=%d waiting=%d descriptors=%d",
      st.watchers, st.timers, st.tasks, st.waiting, st.descriptors),
    loop = (text:gsub(", ready=%b{}", "")),
    -- 0 when tasks are queued (woken) or events or timers are left over
    timeout = tostring(l:timeout()),
    ready = ready,
    kernel = kernel(l),
    objects = probe(ctx),
    invariant = ok and "ok" or tostring(err),
  }
end

local FIELDS = { "invariant", "counts", "loop", "timeout", "kernel", "objects", "ready" }
-- After rounds that may have gone otherwise: the set's ready list (the
-- last wait's events) is left out.
local SETTLED = { "invariant", "counts", "loop", "timeout", "kernel", "objects" }

-- What differs between snapshots a (expected) and b, or nil.
local function diff(a, b, what, fields)
  local out = {}
  for _, f in ipairs(fields or FIELDS) do
    if a[f] ~= b[f] then
      out[#out + 1] = format("%s: %s: expected %s, got %s", what, f, a[f], b[f])
    end
  end
  if #out == 0 then return nil end
  return concat(out, "; ")
end

local function invariant_of(l)
  local ok, err = pcall(l.invariant, l)
  if ok then return nil end
  return tostring(err)
end

------------------------------------------------------------ fixtures

-- A loop with a bit of everything, so that "as it was" says something: a
-- level-triggered watcher on a pipe with data, a pending timer, a task
-- waiting to read an empty pipe, a sleeping task, a task waiting on a
-- condition.
local function new_ctx(opts)
  NOW = 1000
  local l = loop.new { clock = clock, on_error = opts and opts.on_error or nil }
  return { l = l, objs = {}, cnt = {}, results = {}, fd_item = {}, timer_item = {}, task_item = {} }
end

local function add(ctx, name, obj)
  ctx[name] = obj
  ctx.objs[#ctx.objs + 1] = name
  return obj
end

local function base()
  local ctx = new_ctx()
  local l = ctx.l
  local a = pipe("x")
  ctx.cnt["~base"] = 0
  add(ctx, "w_base", l:io(a.r, "in", function() ctx.cnt["~base"] = ctx.cnt["~base"] + 1 end))
  ctx.cnt.base_timer = 0
  add(ctx, "t_base", l:timer(50, function() ctx.cnt.base_timer = ctx.cnt.base_timer + 1 end))
  local b = pipe()
  ctx.base_pipe = b
  add(ctx, "task_reader", l:spawn(function() l:readable(b.r) end))
  add(ctx, "task_sleeper", l:spawn(function() l:sleep(30) end))
  add(ctx, "cond_base", l:condition())
  add(ctx, "task_condw", l:spawn(function() ctx.cond_base:wait() end))
  l:step()
  return ctx
end

local function teardown(ctx)
  local ok, err = pcall(ctx.l.close, ctx.l)
  if ctx.file then ctx.file:close() end
  close_fds()
  if not ok then return "close raised: " .. tostring(err) end
  return nil
end

-- A few rounds, unarmed; what goes wrong in them.
local function rounds(ctx, n)
  local l = ctx.l
  for i = 1, n or 3 do
    local ok, err = pcall(l.step, l)
    if not ok then return format("round %d after the point raised: %s", i, tostring(err)) end
    local bad = invariant_of(l)
    if bad then return format("round %d after the point: %s", i, bad) end
  end
  return nil
end

-- A callback that counts its calls under `name` (made 0 now: counting
-- later allocates nothing).
local function counter(ctx, name)
  ctx.cnt[name] = 0
  return function() ctx.cnt[name] = ctx.cnt[name] + 1 end
end

------------------------------------------------------------ reporting

-- k: the k-th allocation fails; or { rank, osize, nsize }: the request the
-- allocator reported, in a traced rerun.
local function arm(k)
  if type(k) == "table" then oom.arm(k[1], k[2], k[3]) else oom.arm(k) end
end

local ops, total = {}, { points = 0, raised = 0, inconsistent = 0 }

local function is_memerr(err)
  return err == MEMERR
end

local function new_record(name)
  local rec = { name = name, points = 0, raised = 0, memory = 0, other = 0, absorbed = 0,
    inconsistent = 0, reports = {}, others = {}, lastk = 0 }
  ops[#ops + 1] = rec
  return rec
end

local function other_error(rec, err)
  local text = tostring(err):gsub("^[^:]*:%d+: ", "")
  rec.others[text] = (rec.others[text] or 0) + 1
end

-- What the allocator says once the window is closed: whether the failure
-- happened, the allocations counted, the number of the failed one and the
-- request (sig: to fail it again in a traced rerun), where it happened
-- (traced reruns only).
local function outcome(ctx, before, trace)
  local failed, count, at, rank, osize, nsize = oom.disarm()
  if trace then oom.trace(false) end
  return { failed = failed, count = count, at = at, sig = failed and { rank, osize, nsize } or nil,
    where = oom.where(), ctx = ctx, before = before }
end

------------------------------------------------------------ plain operations

-- spec: name, setup() -> ctx, op(ctx) (stores what it makes in fields of ctx
-- that exist already: assigning them allocates nothing).
local function plain_point(spec, k, trace)
  if trace then oom.trace(true) end
  local ctx = spec.setup()
  local before = snap(ctx)
  collectgarbage()
  collectgarbage()
  local done = false
  local ok, err = pcall(function()
    arm(k)
    spec.op(ctx)
    done = true
    oom.disarm()
  end)
  local r = outcome(ctx, before, trace)
  r.done, r.err = done, (not ok) and err or nil
  r.after = snap(ctx)
  if not done then
    -- Again, unarmed: it must do what it does on a fresh fixture.
    local ok2, err2 = pcall(spec.op, ctx)
    r.retry_err = (not ok2) and tostring(err2) or nil
    r.retried = snap(ctx)
  end
  if spec.after then spec.after(ctx) end
  r.rounds_bad = rounds(ctx)
  r.final = snap(ctx)
  r.teardown = teardown(ctx)
  return r
end

local function check_plain(ref, r)
  local bad = {}
  if r.before and diff(ref.before, r.before, "fixture") then
    bad[#bad + 1] = diff(ref.before, r.before, "the fixture differs from the reference run")
  end
  if r.done then
    local d = diff(ref.after, r.after, "completed, but the loop is not as on a fixture that never failed")
    if d then bad[#bad + 1] = d end
  else
    local d = diff(r.before, r.after, "raised " .. tostring(r.err) .. ", and the loop changed")
    if d then bad[#bad + 1] = d end
    if (r.retry_err or false) ~= (ref.err_plain or false) then
      bad[#bad + 1] = format("done again after the raise: %s (on a fresh fixture: %s)",
        tostring(r.retry_err or "no error"), tostring(ref.err_plain or "no error"))
    end
    d = diff(ref.after, r.retried, "done again after the raise")
    if d then bad[#bad + 1] = d end
  end
  if r.rounds_bad then bad[#bad + 1] = r.rounds_bad end
  local d = diff(ref.final, r.final, "after a few rounds", SETTLED)
  if d then bad[#bad + 1] = d end
  if r.teardown then bad[#bad + 1] = r.teardown end
  return bad
end

------------------------------------------------------------ waits

-- spec: name, setup(ctx) (after base: what the wait needs; ctx.pre(ctx) runs
-- in the task before it waits for the go), wait(ctx) -> r1, r2 (the
-- measured wait, in the task), finish(ctx) (unarmed: what ends the wait).
local function wait_fixture(spec)
  local ctx = base()
  local l = ctx.l
  ctx.k = 0
  ctx.completed, ctx.resumed, ctx.finished, ctx.terr = false, false, false, false
  ctx.tbefore, ctx.tafter = false, false
  ctx.r1, ctx.r2 = "unset", "unset"
  ctx.results[#ctx.results + 1] = "r1"
  ctx.results[#ctx.results + 1] = "r2"
  add(ctx, "go", l:condition())
  if spec.setup then spec.setup(ctx) end
  local wait = spec.wait
  add(ctx, "task", l:spawn(function()
    if ctx.pre then ctx.pre(ctx) end
    ctx.go:wait()
    ctx.tbefore = snap(ctx)
    collectgarbage()
    collectgarbage()
    local ok, err = pcall(function()
      arm(ctx.k)
      local a, b = wait(ctx)
      ctx.r1, ctx.r2 = a, b
      ctx.completed = true
      oom.disarm()
      return a, b
    end)
    oom.disarm()
    ctx.resumed = true
    if not ok and not ctx.completed then
      ctx.terr = err
      ctx.tafter = snap(ctx)
      ctx.r1, ctx.r2 = wait(ctx) -- again, unarmed
    end
    ctx.finished = true
  end))
  l:step() -- the task waits for the go
  if spec.ready then spec.ready(ctx) end
  ctx.go:signal()
  return ctx
end

local function wait_point(spec, k, trace)
  if trace then oom.trace(true) end
  local ctx = wait_fixture(spec)
  local l = ctx.l
  ctx.k = k
  local before = snap(ctx)
  local ok, err = pcall(l.step, l)
  local r = outcome(ctx, before, trace)
  r.err = (not ok) and err or nil
  r.after = snap(ctx)
  r.resumed, r.completed, r.terr = ctx.resumed, ctx.completed, ctx.terr
  r.tbefore, r.tafter = ctx.tbefore, ctx.tafter
  if spec.finish then spec.finish(ctx) end
  r.rounds_bad = rounds(ctx, 4)
  r.final = snap(ctx)
  r.teardown = teardown(ctx)
  -- What the point came to.
  if ctx.resumed and not ctx.completed then
    r.done, r.raised_by = false, ctx.terr
  elseif not ok then
    r.done, r.raised_by, r.round = false, err, true
  else
    r.done = true
  end
  return r
end

local function check_wait(ref, r)
  local bad = {}
  local d = diff(ref.before, r.before, "the fixture differs from the reference run")
  if d then bad[#bad + 1] = d end
  if r.resumed and not r.completed then
    -- The wait raised in the task: as it was, seen from the task.
    d = diff(r.tbefore, r.tafter, "the wait raised " .. tostring(r.terr) .. ", and the loop changed")
    if d then bad[#bad + 1] = d end
    if r.err then bad[#bad + 1] = "the wait raised in the task, and step raised too: " .. tostring(r.err) end
  elseif r.err then
    -- The wait was made; the round after it raised: consistent.
    if r.after.invariant ~= "ok" then bad[#bad + 1] = "step raised " .. tostring(r.err) .. ": " .. r.after.invariant end
  else
    d = diff(ref.after, r.after, "completed, but the loop is not as on a fixture that never failed")
    if d then bad[#bad + 1] = d end
  end
  if r.rounds_bad then bad[#bad + 1] = r.rounds_bad end
  d = diff(ref.final, r.final, "once the wait is over", SETTLED)
  if d then bad[#bad + 1] = d end
  if r.teardown then bad[#bad + 1] = r.teardown end
  return bad
end

------------------------------------------------------------ runs

-- What the failure hit, when l:last_traceback() changed: the fixture item
-- whose callback or task it names.
local function culprit(ctx, before_tb, nerrors)
  local tb = ctx.l:last_traceback()
  if ctx.errors then
    -- on_error: the errors it got during the operation, but the fixture's own
    tb = nil
    for i = nerrors + 1, #ctx.errors do
      local e = ctx.errors[i]
      if not tostring(e.err):find("task boom", 1, true) then tb = e.where end
    end
    if not tb then return nil end
  elseif tb == before_tb or not tb then
    return nil
  end
  local line = tb:match("^[^\n]*")
  local fd = line:match("^io watcher on fd (%d+)")
  if fd then return ctx.fd_item[tonumber(fd)] or ("fd " .. fd), line end
  local id = line:match("^timer #(%d+)")
  if id then return ctx.timer_item[tonumber(id)] or ("timer " .. id), line end
  id = line:match("^task #(%d+)")
  if id then return ctx.task_item[tonumber(id)] or ("task " .. id), line end
  return "?", line
end

-- spec: name, setup() -> ctx with ctx.once (names of counters that must be
-- 1 at the end), ctx.atleast (names that must be >= 1), ctx.tasks_end
-- (names of tasks that must be dead at the end); op(ctx).
local function run_point(spec, k, trace)
  if trace then oom.trace(true) end
  local ctx = spec.setup()
  local l = ctx.l
  local before = snap(ctx)
  local tb = l:last_traceback()
  local nerrors = ctx.errors and #ctx.errors or 0
  collectgarbage()
  collectgarbage()
  local done = false
  local ok, err = pcall(function()
    arm(k)
    spec.op(ctx)
    done = true
    oom.disarm()
  end)
  local r = outcome(ctx, before, trace)
  r.done, r.err = done, (not ok) and err or nil
  r.after_invariant = invariant_of(l)
  r.hit, r.hit_line = culprit(ctx, tb, nerrors)
  r.rounds_bad = rounds(ctx, 5)
  local ok_alive, alive = pcall(l.step, l)
  if ok_alive then r.alive = alive else r.alive = "raised: " .. tostring(alive) end
  r.final = snap(ctx)
  r.cnt = {}
  for name, n in pairs(ctx.cnt) do r.cnt[name] = n end
  r.status = {}
  for _, name in ipairs(ctx.tasks_end) do r.status[name] = ctx[name]:status() end
  r.errors = ctx.errors and #ctx.errors or 0
  r.teardown = teardown(ctx)
  return r
end

local function check_run(ref, r)
  local bad = {}
  local d = diff(ref.before, r.before, "the fixture differs from the reference run")
  if d then bad[#bad + 1] = d end
  local ctx = r.ctx
  if r.after_invariant then bad[#bad + 1] = "after the run: " .. r.after_invariant end
  if r.rounds_bad then bad[#bad + 1] = r.rounds_bad end
  for _, name in ipairs(ctx.once) do
    local n = r.cnt[name]
    if n ~= 1 and not (name == r.hit and n == 0) then
      bad[#bad + 1] = format("%s delivered %d times (once expected)", name, n)
    end
  end
  for _, name in ipairs(ctx.atleast) do
    local n = r.cnt[name]
    if n < 1 and name ~= r.hit then bad[#bad + 1] = format("%s never delivered", name) end
  end
  for _, name in ipairs(ctx.tasks_end) do
    if r.status[name] ~= "dead" then
      bad[#bad + 1] = format("task %s is %s at the end (dead expected)", name, r.status[name])
    end
  end
  if type(r.alive) == "string" then
    bad[#bad + 1] = "the last round " .. r.alive
  elseif r.alive ~= ref.alive and not r.hit then
    bad[#bad + 1] = format("at the end the loop is %s (%s on a fixture that never failed)",
      r.alive and "alive" or "done", ref.alive and "alive" or "done")
  end
  if not r.hit then
    d = diff(ref.final, r.final, "after the rounds that follow", SETTLED)
    if d then bad[#bad + 1] = d end
  elseif r.final.invariant ~= "ok" then
    bad[#bad + 1] = r.final.invariant
  end
  -- A memory error out of run may stand for an error on_error did not get
  -- (on_error itself failed, or the loop on its way to it): one less.
  if ctx.errors and r.errors ~= ref.errors and not r.hit
      and not (r.errors == ref.errors - 1 and not r.done and r.err == MEMERR) then
    bad[#bad + 1] = format("on_error called %d times (%d expected)", r.errors, ref.errors)
  end
  if r.teardown then bad[#bad + 1] = r.teardown end
  return bad
end

------------------------------------------------------------ the sweep

local KINDS = {
  plain = { point = plain_point, check = check_plain },
  wait = { point = wait_point, check = check_wait },
  run = { point = run_point, check = check_run },
}

local function sweep(spec)
  if only and not spec.name:find(only, 1, true) then return end
  local kind = KINDS[spec.kind]
  local rec = new_record(spec.name)
  oom.label(spec.name .. " (reference)")
  oom.alarm(60)
  local ref = kind.point(spec, 0)
  if ref.failed then error(spec.name .. ": the reference run failed an allocation") end
  if spec.kind == "plain" then ref.err_plain = ref.err and tostring(ref.err) or false end
  if spec.kind == "run" then
    local bad = check_run(ref, ref)
    if #bad > 0 then error(spec.name .. ": the reference run is wrong: " .. concat(bad, "; ")) end
  end
  for k = 1, MAX_K do
    oom.label(format("%s k=%d", spec.name, k))
    oom.alarm(60)
    local r = kind.point(spec, k)
    if not r.failed and k > ref.count then
      rec.lastk = k
      break
    end
    -- (below the reference's count, a point that met no failure made fewer
    -- allocations than the reference: it is still checked)
    if not r.failed then rec.missed = (rec.missed or 0) + 1 end
    rec.points = rec.points + 1
    local raised = not r.done
    if r.failed and raised then
      rec.raised = rec.raised + 1
      local e = r.raised_by or r.err
      if is_memerr(e) then rec.memory = rec.memory + 1 else
        rec.other = rec.other + 1
        other_error(rec, e)
      end
    elseif r.failed then
      rec.absorbed = rec.absorbed + 1
    end
    local bad = kind.check(ref, r)
    if VERBOSE and r.sig then
      local t = kind.point(spec, r.sig, true)
      print(format("oom: point %s k=%d: %s%s, %d bad; at:%s", spec.name, k,
        raised and ("raised " .. tostring(r.raised_by or r.err)) or "completed",
        r.hit and (" (hit " .. r.hit .. ")") or "", #bad, t.where or " ?"))
    end
    if #bad > 0 then
      rec.inconsistent = rec.inconsistent + 1
      if #rec.reports < MAX_REPORTS then
        -- Again with the hook, for the stack of the failed allocation.
        local tb, rerun = "(no allocation failed)", ""
        if r.sig then
          oom.label(format("%s k=%d (traced)", spec.name, k))
          local t = kind.point(spec, r.sig, true)
          tb = t.where or "(no Lua stack recorded)"
          local tbad = t.failed and kind.check(ref, t) or {}
          if concat(tbad, "\n") ~= concat(bad, "\n") then
            rerun = "\n  (the traced rerun found otherwise: " .. (#tbad > 0 and concat(tbad, "; ") or "nothing") .. ")"
          end
        end
        local what = "completed"
        if raised then
          what = "raised " .. tostring(r.raised_by or r.err) .. (r.round and " (in the round)" or "")
        end
        rec.reports[#rec.reports + 1] = format(
          "%s k=%d (allocation %d of %d): %s%s\n  %s%s\n  the failed allocation, at:%s", spec.name, k,
          r.at, ref.count, what, r.hit and (", hit " .. r.hit .. ": " .. r.hit_line) or "",
          concat(bad, "\n  "), rerun, tb)
      end
    end
  end
  oom.alarm(0)
  if rec.lastk == 0 then error(spec.name .. ": no end to the sweep") end
  rec.reference = ref.count
  total.points = total.points + rec.points
  total.raised = total.raised + rec.raised
  total.inconsistent = total.inconsistent + rec.inconsistent
  local others = {}
  for text, n in pairs(rec.others) do others[#others + 1] = format("%dx %q", n, text) end
  sort(others)
  print(format("oom: op %q: points=%d raised=%d memory=%d other=%d absorbed=%d inconsistent=%d " ..
    "(k=1..%d; the reference run counted %d allocations%s)%s",
    rec.name, rec.points, rec.raised, rec.memory, rec.other, rec.absorbed, rec.inconsistent,
    rec.lastk - 1, ref.count, rec.missed and format("; %d points met no failure", rec.missed) or "",
    #others > 0 and ("; other errors: " .. concat(others, ", ")) or ""))
  for _, text in ipairs(rec.reports) do print("oom: INCONSISTENT " .. text) end
  if rec.inconsistent > #rec.reports then
    print(format("oom: INCONSISTENT %s: %d more points not shown", rec.name, rec.inconsistent - #rec.reports))
  end
end

------------------------------------------------------------ operations

local SPECS = {}
-- after(ctx): what happens next (unarmed, on the reference too), before
-- the rounds that follow the point.
local function plain(name, setup, op, after)
  SPECS[#SPECS + 1] = { kind = "plain", name = name, setup = setup, op = op, after = after }
end
local function waitop(name, t)
  t.kind, t.name = "wait", name
  SPECS[#SPECS + 1] = t
end
local function runop(name, setup, op)
  SPECS[#SPECS + 1] = { kind = "run", name = name, setup = setup, op = op }
end

-- l:io
local function io_setup(flags, data)
  return function()
    local ctx = base()
    ctx.p = pipe(data and "y" or nil)
    ctx.flags = flags
    ctx.cnt["~new"] = 0
    ctx.cb = function() ctx.cnt["~new"] = ctx.cnt["~new"] + 1 end
    add(ctx, "w", false)
    return ctx
  end
end
local function io_op(ctx) ctx.w = ctx.l:io(ctx.p.r, ctx.flags, ctx.cb) end
plain("l:io", io_setup("in", true), io_op)
plain("l:io (et, nothing ready)", io_setup("in|et", false), io_op)

-- A descriptor a task waited on and left registered (an idle slot).
local function idle_slot(ctx, data)
  local l = ctx.l
  ctx.p = pipe("z")
  add(ctx, "task_idle", l:spawn(function()
    l:readable(ctx.p.r)
    drain(ctx.p.r)
    l:sleep(20)
  end))
  l:step()
  l:step()
  if data then oom.write(ctx.p.w, "again") end
end
plain("l:io (on an idle slot)", function()
  local ctx = io_setup("in", false)()
  idle_slot(ctx)
  return ctx
end, io_op)
plain("l:io (exclusive, on an idle slot)", function()
  local ctx = io_setup("in|exclusive", false)()
  idle_slot(ctx)
  return ctx
end, io_op)
plain("l:io (a regular file: refused)", function()
  local ctx = io_setup("in", false)()
  ctx.file = io.tmpfile()
  return ctx
end, function(ctx) ctx.w = ctx.l:io(ctx.file, ctx.flags, ctx.cb) end)

-- w:start, w:set
local function stopped_watcher(ctx)
  ctx.p = pipe("s")
  ctx.cnt["~w"] = 0
  add(ctx, "w", ctx.l:io(ctx.p.r, "in", function() ctx.cnt["~w"] = ctx.cnt["~w"] + 1 end))
  ctx.w:stop()
end
plain("w:start", function()
  local ctx = base()
  stopped_watcher(ctx)
  return ctx
end, function(ctx) ctx.w:start() end)
plain("w:start (on an idle slot)", function()
  local ctx = base()
  stopped_watcher(ctx)
  local l = ctx.l
  add(ctx, "task_idle", l:spawn(function()
    l:readable(ctx.p.r)
    drain(ctx.p.r)
    l:sleep(20)
  end))
  l:step()
  l:step()
  return ctx
end, function(ctx) ctx.w:start() end)
plain("w:set (started)", function()
  local ctx = base()
  stopped_watcher(ctx)
  ctx.w:start()
  return ctx
end, function(ctx) ctx.w:set("in|et") end)
plain("w:set (started, exclusive: refused)", function()
  local ctx = base()
  stopped_watcher(ctx)
  ctx.w:start()
  return ctx
end, function(ctx) ctx.w:set("in|exclusive") end)
plain("w:set (stopped)", function()
  local ctx = base()
  stopped_watcher(ctx)
  return ctx
end, function(ctx) ctx.w:set("in|rdhup") end)

-- l:timer, with the heap at a few sizes (its array grows at powers of 2)
for _, extra in ipairs { 0, 1, 2, 5, 6 } do
  plain(format("l:timer (%d more timers)", extra), function()
    local ctx = base()
    for i = 1, extra do add(ctx, "t_extra" .. i, ctx.l:timer(40 + i, counter(ctx, "extra" .. i))) end
    ctx.cb = counter(ctx, "t")
    add(ctx, "t", false)
    return ctx
  end, function(ctx) ctx.t = ctx.l:timer(5, ctx.cb, 10) end)
end

-- t:again
local function timer_fixture(state)
  return function()
    local ctx = base()
    local l = ctx.l
    for i = 1, 4 do add(ctx, "t_extra" .. i, l:timer(40 + i, counter(ctx, "extra" .. i))) end
    add(ctx, "t", l:timer(state == "fired" and 0 or 7, counter(ctx, "t")))
    if state == "stopped" then ctx.t:stop() end
    if state == "fired" then l:step() end
    return ctx
  end
end
plain("t:again (pending)", timer_fixture("pending"), function(ctx) ctx.t:again(3) end)
plain("t:again (stopped)", timer_fixture("stopped"), function(ctx) ctx.t:again() end)
plain("t:again (fired)", timer_fixture("fired"), function(ctx) ctx.t:again(2) end)

-- l:spawn
local function spawn_setup(queued)
  return function()
    local ctx = base()
    if queued then add(ctx, "task_queued", ctx.l:spawn(counter(ctx, "queued"))) end
    ctx.fn = function(a, b, c) ctx.cnt.spawned = ctx.cnt.spawned + a + b + c end
    ctx.cnt.spawned = 0
    add(ctx, "task", false)
    return ctx
  end
end
local function spawn_op(ctx) ctx.task = ctx.l:spawn(ctx.fn, 1, 2, 3) end
plain("l:spawn", spawn_setup(false), spawn_op)
plain("l:spawn (run queue not empty)", spawn_setup(true), spawn_op)

-- l:closing
local function reader_writer(ctx, s)
  local l = ctx.l
  fill(s.a)
  ctx.rres, ctx.wres = "unset", "unset"
  ctx.results[#ctx.results + 1] = "rres"
  ctx.results[#ctx.results + 1] = "wres"
  add(ctx, "task_r", l:spawn(function()
    local ok, why = l:readable(s.a)
    ctx.rres = tostring(ok) .. "/" .. tostring(why)
  end))
  add(ctx, "task_w", l:spawn(function()
    local ok, why = l:writable(s.a)
    ctx.wres = tostring(ok) .. "/" .. tostring(why)
  end))
  l:step()
end
plain("l:closing (a reader and a writer)", function()
  local ctx = base()
  ctx.s = socketpair()
  reader_writer(ctx, ctx.s)
  ctx.n = false
  ctx.results[#ctx.results + 1] = "n"
  return ctx
end, function(ctx) ctx.n = ctx.l:closing(ctx.s.a) end)
plain("l:closing (a reader and a writer, the run queue's array full)", function()
  -- No base: the run queue's array has held one task at a time, so the
  -- second task woken needs a new cell.
  local ctx = new_ctx()
  local l = ctx.l
  local s = socketpair()
  ctx.s = s
  fill(s.a)
  ctx.rres, ctx.wres, ctx.n = "unset", "unset", false
  ctx.results[#ctx.results + 1] = "n"
  ctx.results[#ctx.results + 1] = "rres"
  ctx.results[#ctx.results + 1] = "wres"
  add(ctx, "task_r", l:spawn(function()
    local ok, why = l:readable(s.a)
    ctx.rres = tostring(ok) .. "/" .. tostring(why)
  end))
  l:step()
  add(ctx, "task_w", l:spawn(function()
    local ok, why = l:writable(s.a)
    ctx.wres = tostring(ok) .. "/" .. tostring(why)
  end))
  l:step()
  return ctx
end, function(ctx) ctx.n = ctx.l:closing(ctx.s.a) end)
-- The reader waits with a timeout, which the clock then passes.
plain("l:closing (a reader with a timeout)", function()
  local ctx = base()
  ctx.rres = "unset"
  ctx.results[#ctx.results + 1] = "rres"
  local p = pipe()
  ctx.p = p
  add(ctx, "task_r", ctx.l:spawn(function()
    local ok, why = ctx.l:readable(p.r, 25)
    ctx.rres = tostring(ok) .. "/" .. tostring(why)
  end))
  ctx.l:step()
  return ctx
end, function(ctx) ctx.l:closing(ctx.p.r) end, function(ctx)
  ctx.l:step()
  NOW = NOW + 26
end)
plain("l:closing (a watcher)", function()
  local ctx = base()
  stopped_watcher(ctx)
  ctx.w:start()
  return ctx
end, function(ctx) ctx.l:closing(ctx.p.r) end)
plain("l:closing (an idle slot)", function()
  local ctx = base()
  idle_slot(ctx)
  return ctx
end, function(ctx) ctx.l:closing(ctx.p.r) end)

-- cond:signal, cond:broadcast and task:cancel end waits too (wake_later,
-- stop_wait), the waiters with timeouts.
local function cond_waiters(n)
  return function()
    local ctx = base()
    local l = ctx.l
    add(ctx, "cond", l:condition())
    ctx.res = {}
    for i = 1, n do
      local name = "cres" .. i
      ctx[name] = "unset"
      ctx.results[#ctx.results + 1] = name
      add(ctx, "task_c" .. i, l:spawn(function()
        local ok, why = ctx.cond:wait(20 + i)
        ctx[name] = tostring(ok) .. "/" .. tostring(why)
      end))
    end
    l:step()
    ctx.n = false
    ctx.results[#ctx.results + 1] = "n"
    return ctx
  end
end
local function pass_timeouts(ctx)
  ctx.l:step()
  NOW = NOW + 25
end
plain("cond:signal", cond_waiters(2), function(ctx) ctx.n = ctx.cond:signal() end, pass_timeouts)
plain("cond:broadcast", cond_waiters(3), function(ctx) ctx.n = ctx.cond:broadcast() end, pass_timeouts)
plain("task:cancel (waiting with a timeout)", function()
  local ctx = base()
  ctx.p = pipe()
  add(ctx, "task_x", ctx.l:spawn(function() ctx.l:readable(ctx.p.r, 20) end))
  ctx.l:step()
  ctx.n = false
  ctx.results[#ctx.results + 1] = "n"
  return ctx
end, function(ctx) ctx.n = ctx.task_x:cancel() end, pass_timeouts)

-- The waits, from a task. finish: what ends a wait that is still on.
local function advance(s) return function(ctx) NOW = NOW + s; ctx.l:step() end end
waitop("l:readable (blocks)", {
  setup = function(ctx) ctx.p = pipe() end,
  wait = function(ctx) return ctx.l:readable(ctx.p.r) end,
  finish = function(ctx) oom.write(ctx.p.w, "now") end,
})
waitop("l:readable (timeout)", {
  setup = function(ctx) ctx.p = pipe() end,
  wait = function(ctx) return ctx.l:readable(ctx.p.r, 5) end,
  finish = advance(10),
})
waitop("l:readable (ready at once)", {
  setup = function(ctx) ctx.p = pipe("ready") end,
  wait = function(ctx) return ctx.l:readable(ctx.p.r) end,
})
waitop("l:readable (registered by an earlier wait)", {
  setup = function(ctx)
    ctx.p = pipe("first")
    ctx.pre = function() ctx.l:readable(ctx.p.r); drain(ctx.p.r) end
  end,
  wait = function(ctx) return ctx.l:readable(ctx.p.r, 5) end,
  finish = function(ctx) oom.write(ctx.p.w, "now") end,
})
waitop("l:readable (a writer waits on the descriptor)", {
  setup = function(ctx)
    ctx.s = socketpair()
    fill(ctx.s.a)
    add(ctx, "task_w", ctx.l:spawn(function() ctx.l:writable(ctx.s.a) end))
  end,
  wait = function(ctx) return ctx.l:readable(ctx.s.a) end,
  finish = function(ctx) oom.write(ctx.s.b, "now"); drain(ctx.s.b) end,
})
waitop("l:readable (a stale slot: the number given as another object)", {
  setup = function(ctx)
    ctx.p = pipe("first")
    local obj = { getfd = function() return ctx.p.r end }
    ctx.pre = function() ctx.l:readable(obj); drain(ctx.p.r) end
  end,
  wait = function(ctx) return ctx.l:readable(ctx.p.r, 5) end,
  finish = function(ctx) oom.write(ctx.p.w, "now") end,
})
waitop("l:readable (dirty)", {
  setup = function(ctx)
    ctx.p = pipe()
    ctx.obj = { getfd = function() return ctx.p.r end, dirty = function() return true end }
  end,
  wait = function(ctx) return ctx.l:readable(ctx.obj) end,
})
waitop("l:writable (ready at once)", {
  setup = function(ctx) ctx.p = pipe() end,
  wait = function(ctx) return ctx.l:writable(ctx.p.w) end,
})
waitop("l:writable (blocks, timeout)", {
  setup = function(ctx) ctx.p = pipe(); fill(ctx.p.w) end,
  wait = function(ctx) return ctx.l:writable(ctx.p.w, 5) end,
  finish = function(ctx) drain(ctx.p.r) end,
})
waitop("l:sleep (0)", {
  wait = function(ctx) return ctx.l:sleep(0) end,
})
waitop("l:sleep (5)", {
  wait = function(ctx) return ctx.l:sleep(5) end,
  finish = advance(10),
})
waitop("cond:wait", {
  setup = function(ctx) add(ctx, "cond", ctx.l:condition()) end,
  wait = function(ctx) return ctx.cond:wait() end,
  finish = function(ctx) ctx.cond:signal() end,
})
waitop("cond:wait (timeout)", {
  setup = function(ctx) add(ctx, "cond", ctx.l:condition()) end,
  wait = function(ctx) return ctx.cond:wait(5) end,
  finish = advance(10),
})
waitop("cond:wait (others waiting, some woken before)", {
  setup = function(ctx)
    local l = ctx.l
    add(ctx, "cond", l:condition())
    for i = 1, 4 do add(ctx, "task_c" .. i, l:spawn(function() ctx.cond:wait() end)) end
    l:step()
    ctx.cond:signal()
    ctx.cond:signal()
    ctx.cond:signal()
  end,
  -- the waiters woken run in the measured step, before the task
  wait = function(ctx) return ctx.cond:wait() end,
  finish = function(ctx) ctx.cond:broadcast() end,
})
local function joined(ctx)
  add(ctx, "cond_j", ctx.l:condition())
  add(ctx, "task_j", ctx.l:spawn(function() ctx.cond_j:wait(); return "joined", 42 end))
end
waitop("task:join (a live task)", {
  setup = joined,
  wait = function(ctx) return ctx.task_j:join() end,
  finish = function(ctx) ctx.cond_j:signal() end,
})
waitop("task:join (timeout)", {
  setup = joined,
  wait = function(ctx) return ctx.task_j:join(5) end,
  finish = advance(10),
})
waitop("task:join (another joiner already)", {
  setup = function(ctx)
    joined(ctx)
    add(ctx, "task_j2", ctx.l:spawn(function() ctx.task_j:join() end))
  end,
  wait = function(ctx) return ctx.task_j:join() end,
  finish = function(ctx) ctx.cond_j:signal() end,
})
waitop("task:join (a dead task)", {
  setup = function(ctx)
    add(ctx, "task_j", ctx.l:spawn(function() return "done", 7 end))
  end,
  wait = function(ctx) return ctx.task_j:join() end,
})

-- l:run and l:step with work pending: every kind of event and wake-up.
-- selfstop: watchers stop after their first event, nothing pending is left
-- (for run's default mode, which runs until nothing is left).
local function busy(opts)
  opts = opts or {}
  return function()
    local ctx = new_ctx { on_error = opts.on_error and function(err, where)
      local e = rawget(_G, "ERRORS")
      e[#e + 1] = { err = err, where = where }
    end }
    local l = ctx.l
    ctx.once, ctx.atleast, ctx.tasks_end = {}, {}, {}
    if opts.on_error then
      ctx.errors = {}
      _G.ERRORS = ctx.errors
    end
    local function once(name) ctx.once[#ctx.once + 1] = name end
    local function task(name, fn)
      ctx.cnt[name] = 0
      once(name)
      ctx.tasks_end[#ctx.tasks_end + 1] = name
      local t = add(ctx, name, l:spawn(fn))
      ctx.task_item[t.id] = name
      return t
    end
    local function tick(name) ctx.cnt[name] = ctx.cnt[name] + 1 end
    -- Tasks that wait, made to wait by a first round.
    local pr, pt, pc = pipe(), pipe(), pipe()
    add(ctx, "cond", l:condition())
    task("task_fd", function() l:readable(pr.r); tick("task_fd") end)
    task("task_sleep", function() l:sleep(1); tick("task_sleep") end)
    task("task_timeout", function() l:readable(pt.r, 1); tick("task_timeout") end)
    task("task_cond", function() ctx.cond:wait(); tick("task_cond") end)
    task("task_closing", function() l:readable(pc.r); tick("task_closing") end)
    task("task_joined", function() ctx.cond:wait(); tick("task_joined"); return 1, 2 end)
    task("task_joiner", function() ctx.task_joined:join(); tick("task_joiner") end)
    if opts.failing_task then
      task("task_fails", function() ctx.cond:wait(); tick("task_fails"); error("task boom") end)
    end
    l:step()
    -- Watchers, timers and new tasks, then what wakes the waiting tasks.
    local function watch(name, fd, flags, lt)
      ctx.cnt[name] = 0
      if lt then ctx.atleast[#ctx.atleast + 1] = name else once(name) end
      local w = add(ctx, name, l:io(fd, flags, function(w)
        tick(name)
        if opts.selfstop then w:stop() end
      end))
      ctx.fd_item[fd] = name
      return w
    end
    if opts.leftover_io then
      -- First in the kernel's order: raises once, leaving the rest.
      local p = pipe("b")
      ctx.cnt.boom = 0
      add(ctx, "w_boom", l:io(p.r, "in|et", function() ctx.cnt.boom = ctx.cnt.boom + 1; error("boom") end))
    end
    watch("et1", pipe("e").r, "in|et")
    watch("et2", pipe("e").r, "in|et")
    watch("oneshot", pipe("o").r, "in|oneshot")
    watch("et_out", pipe().w, "out|et")
    watch("~lt", pipe("l").r, "in", true)
    local function timer(name, after, every)
      ctx.cnt[name] = 0
      once(name)
      local t = add(ctx, name, l:timer(after, function(t)
        tick(name)
        if opts.selfstop then t:stop() end
      end, every))
      ctx.timer_item[t.id] = name
    end
    if opts.leftover_timers then
      ctx.cnt.tboom = 0
      add(ctx, "t_boom", l:timer(0, function() ctx.cnt.tboom = ctx.cnt.tboom + 1; error("timer boom") end))
    end
    timer("timer1", 0)
    timer("timer2", 0)
    timer("timer_rep", 0, 10)
    timer("timer_late", 0.5)
    task("task_new1", function() tick("task_new1") end)
    task("task_new2", function(...) tick("task_new2"); return ... end)
    oom.write(pr.w, "wake")
    ctx.cond:signal()
    ctx.cond:signal() -- task_joined
    if opts.failing_task then ctx.cond:signal() end
    l:closing(pc.r)
    NOW = NOW + 1
    if opts.leftover_io or opts.leftover_timers then
      local ok, err = pcall(l.step, l)
      assert(not ok and tostring(err):find("boom"), "the fixture's round did not raise: " .. tostring(err))
    end
    return ctx
  end
end
runop("l:step (events, timers, tasks pending)", busy(), function(ctx) ctx.l:step() end)
runop("l:run once", busy(), function(ctx) ctx.l:run("once") end)
runop("l:run nowait", busy(), function(ctx) ctx.l:run("nowait") end)
runop("l:step (events left over by an interrupted round)", busy { leftover_io = true },
  function(ctx) ctx.l:step() end)
runop("l:step (due timers left over by an interrupted round)", busy { leftover_timers = true },
  function(ctx) ctx.l:step() end)
runop("l:step (on_error, a task that fails)", busy { on_error = true, failing_task = true },
  function(ctx) ctx.l:step() end)
runop("l:run (default: until all work is done)", busy { selfstop = true }, function(ctx) ctx.l:run() end)

------------------------------------------------------------ the run

-- The allocator itself: one allocation fails, with Lua's retry.
do
  local ok, err = pcall(function()
    oom.arm(1)
    local t = {}
    return t
  end)
  local failed = oom.disarm()
  assert(not ok and err == MEMERR and failed, "the failing allocator does not fail: " .. tostring(err))
  local t = { 1, 2, 3 } -- allocations succeed again
  assert(#t == 3)
end

local info = oom.info()
print(format("oom: %s, lepoll.loop %s; one allocation fails per point%s%s", _VERSION, loop._VERSION,
  info.lua_retries and " (with Lua's retry after an emergency collection)" or "",
  jit and (jit.status() and " (LuaJIT, compiler on)" or " (LuaJIT, compiler off)") or ""))

local skip_waits = _VERSION == "Lua 5.1" and not rawget(_G, "jit")
for _, spec in ipairs(SPECS) do
  if spec.kind == "wait" and skip_waits then
    print(format("oom: skip %q: a task cannot wait inside pcall on Lua 5.1", spec.name))
  else
    sweep(spec)
  end
end

info = oom.info()
print(format("oom: total: operations=%d points=%d raised=%d inconsistent=%d (Lua's retries failed: %d; warnings: %d)",
  #ops, total.points, total.raised, total.inconsistent, info.retries, info.warnings))
return total.inconsistent
