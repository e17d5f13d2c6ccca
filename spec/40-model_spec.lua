-- Model-based random testing: thousands of random operations on epoll sets,
-- pipes and socketpairs, each checked against a pure-Lua model of the sets'
-- tables and of the readiness the kernel must report.
--
-- The model knows, for every descriptor it made, what is readable, whether
-- the peer is gone, and so the exact readiness bits (pipes: in, hup; out,
-- err; stream socketpairs: in, out, rdhup, hup, err). It checks every result
-- exactly: return values, error messages, the table (pairs, #, find, iter,
-- fold), the ready set (iter_ready, fold_ready, tostring), and invariant()
-- after every step on every open set, which must pass, or fail naming the
-- lowest descriptor that was closed while watched.
--
-- Where the kernel is not predictable from outside, the model is
-- conservative, never blind:
-- * edge-triggered entries: an event that must come (the entry was added
--   or modified while ready; data arrived for `in`; the peer shut down or
--   closed) must be reported when the descriptor is ready at the wait; an
--   entry whose descriptor saw no operation since its last report must not
--   be reported; any other operation on the same pipe or socketpair (a
--   read that frees room, a refused write) may or may not make an edge;
-- * a wait that fills max_ready_events may leave out any candidate: then
--   every event reported must be a candidate with its exact flags, and at
--   least as many as the must-report candidates (up to the capacity); the
--   candidates left out stay candidates.
-- Whatever is reported always carries the exact flags the model predicts.
-- Exclusive entries are modelled like the others: with one thread nobody
-- sleeps in epoll_wait when a wakeup comes, and then every entry is woken.
-- The descriptors start at a fixed number (BASE), whatever the process had
-- open, so that a seed replays the same alone or within the whole suite.
--
-- The seed is in the test's name and printed; LEPOLL_SEED=N replays a run
-- (the same operations, in a run of the same spec file), and
-- LEPOLL_MODEL_STEPS (default 6000) sets its length. LEPOLL_MODEL_TRACE=1
-- prints every operation. `make soak` runs it long, with several seeds.
-- A seed replays under the same Lua version only: each version has its own
-- math.random.
--
-- Every Lua version runs the same model: the flag words are combined with
-- H.bor / H.band / H.bclear and tested with lepoll.has (no bit operators
-- before 5.3). Where pairs(set) does not reach __pairs (5.1 and LuaJIT,
-- where a set is a userdata pairs refuses), the table is read with iter
-- instead, which gives the same pairs in the same order.
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local IN, OUT, PRI, ERR, HUP, RDHUP = lepoll.IN, lepoll.OUT, lepoll.PRI, lepoll.ERR, lepoll.HUP,
  lepoll.RDHUP
local ET, ONESHOT, EXCLUSIVE = lepoll.ET, lepoll.ONESHOT, lepoll.EXCLUSIVE
local bor, band, has = H.bor, H.band, lepoll.has
local INTEREST = bor(IN, OUT, PRI, RDHUP)
-- What the kernel accepts with exclusive (fs/eventpoll.c, EPOLLEXCLUSIVE_OK_BITS).
local EXCLUSIVE_OK = bor(IN, OUT, ERR, HUP, ET, EXCLUSIVE)
local CLOSED = "attempt to use a closed epoll set"

local MAX_SETS = 3
local BASE = 16 -- the regular file's number; the run's descriptors come after
local MAX_CHANNELS = 10
-- Bounds on queued data, far below what makes a pipe full or a socket
-- unwritable, so that out is always reported on a live writer.
local PIPE_BYTES, PIPE_CHUNKS = 2048, 8
local SOCK_BYTES, SOCK_CHUNKS = 1024, 12

local unpack = table.unpack or rawget(_G, "unpack")

local SEED = H.seed()
local STEPS = H.env_integer("LEPOLL_MODEL_STEPS", 6000)
local TRACE = (os.getenv("LEPOLL_MODEL_TRACE") or "") ~= ""

local names = lepoll.flagnames

-- A readable rendering of a value, for failure messages.
local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  for i = 1, #v do parts[i] = show(v[i]) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- Counts of what a run exercised, printed at its end.
local stats = {}
local function count(key, n)
  stats[key] = (stats[key] or 0) + (n or 1)
end

local function fail(fmt, ...)
  error(string.format(fmt, ...), 0)
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  if #a ~= #b then return false end
  for i = 1, #a do
    if not same(a[i], b[i]) then return false end
  end
  return true
end

local function check_eq(expected, got, what)
  if not same(expected, got) then
    fail("%s: expected %s, got %s", what, show(expected), show(got))
  end
end

local function sorted_keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return list
end

local function pick(list)
  return list[math.random(#list)]
end

local function chance(p)
  return math.random() < p
end

------------------------------------------------------------ the world

-- Endpoints (live descriptors this spec made): fd -> endpoint.
--   pipe ends: { fd, kind = "r" | "w", ch }; the channel holds the data
--   (ch.buf, a queue of chunks) and both ends (ch.r, ch.w).
--   socket ends: { fd, kind = "s", ch, peer, inq (queue), rcv_shut,
--   snd_shut, err } where inq is what this end has to read, and the shut
--   bits are the kernel's sk_shutdown of this end.
-- A queue is { bytes = n, chunks = list of strings }.
local W -- the world of the current run, see new_world

local function new_queue()
  return { bytes = 0, chunks = {} }
end

local function push(q, s)
  q.chunks[#q.chunks + 1] = s
  q.bytes = q.bytes + #s
end

-- Takes up to n bytes from the front, as read(2) does on a pipe or a
-- stream socket.
local function take(q, n)
  local out = {}
  while n > 0 and #q.chunks > 0 do
    local c = q.chunks[1]
    if #c <= n then
      table.remove(q.chunks, 1)
      out[#out + 1] = c
      n = n - #c
    else
      out[#out + 1] = c:sub(1, n)
      q.chunks[1] = c:sub(n + 1)
      n = 0
    end
  end
  local s = table.concat(out)
  q.bytes = q.bytes - #s
  return s
end

-- The readiness bits the kernel reports for an endpoint (its poll()).
local function readiness(e)
  if e.kind == "r" then
    local b = 0
    if e.ch.buf.bytes > 0 then b = bor(b, IN) end
    if not e.ch.w.open then b = bor(b, HUP) end
    return b
  elseif e.kind == "w" then
    local b = OUT
    if not e.ch.r.open then b = bor(b, ERR) end
    return b
  end
  local b = OUT
  if e.inq.bytes > 0 or e.rcv_shut then b = bor(b, IN) end
  if e.rcv_shut then b = bor(b, RDHUP) end
  if e.rcv_shut and e.snd_shut then b = bor(b, HUP) end
  if e.err then b = bor(b, ERR) end
  return b
end

-- The bits an entry with `flags` can report: the kernel adds err|hup.
local function mask(flags)
  return bor(band(flags, INTEREST), ERR, HUP)
end

local function any_zombie()
  for _, S in ipairs(W.sets) do
    for fd in pairs(S.entries) do
      if not W.eps[fd] then return true end
    end
  end
  return false
end

-- A descriptor was made: numbers closed before may be in use again.
local function made_fd()
  W.freed = {}
end

local function freed_fd(fd)
  W.freed[#W.freed + 1] = fd
end

-- Every open number this spec knows: endpoints, the regular file, sets.
local function is_open(fd)
  if W.eps[fd] or fd == W.file then return true end
  for _, S in ipairs(W.sets) do
    if S.epfd == fd then return true end
  end
  return false
end

-- Edges of edge-triggered entries. "must": the kernel queued the entry,
-- and reports it if it is ready at the next wait; "maybe": it may have.
-- key: the wakeup's poll bits (nil: a wakeup without key, which every
-- entry takes); an entry whose flags share no bit with the key ignores it.
local function mark(e, level, key)
  if not e or not e.open then return end
  for _, S in ipairs(W.sets) do
    local en = S.entries[e.fd]
    if en and en.armed and has(en.flags, ET) then
      if level == "must" and (key == nil or has(en.flags, key)) then
        en.edge = "must"
      elseif en.edge == nil then
        en.edge = "maybe"
      end
    end
  end
end

-- Any operation on a channel may wake any entry of either end.
local function touch(ch)
  if ch.kind == "pipe" then
    mark(ch.r, "maybe")
    mark(ch.w, "maybe")
  else
    mark(ch.a, "maybe")
    mark(ch.b, "maybe")
  end
end

local function new_pipe()
  local r, w = assert(T.pipe())
  made_fd()
  local ch = { kind = "pipe", buf = new_queue() }
  ch.r = { fd = r, kind = "r", ch = ch, open = true }
  ch.w = { fd = w, kind = "w", ch = ch, open = true }
  W.eps[r], W.eps[w] = ch.r, ch.w
  W.channels[#W.channels + 1] = ch
  return ("pipe r=%d w=%d"):format(r, w)
end

local function new_socketpair()
  local a, b = assert(T.socketpair("stream"))
  made_fd()
  local ch = { kind = "sock" }
  ch.a = { fd = a, kind = "s", ch = ch, open = true, inq = new_queue() }
  ch.b = { fd = b, kind = "s", ch = ch, open = true, inq = new_queue() }
  ch.a.peer, ch.b.peer = ch.b, ch.a
  W.eps[a], W.eps[b] = ch.a, ch.b
  W.channels[#W.channels + 1] = ch
  return ("socketpair %d %d"):format(a, b)
end

local function live_endpoints(filter)
  local list = {}
  for _, fd in ipairs(sorted_keys(W.eps)) do
    local e = W.eps[fd]
    if not filter or filter(e) then list[#list + 1] = e end
  end
  return list
end

------------------------------------------------------------ set models

-- S = { ep, epfd, num, maxev, entries = fd -> { flags, armed, edge },
--       ready = list of { fd, flags } (the last wait's, kernel order) }

local function zombies(S)
  local list = {}
  for _, fd in ipairs(sorted_keys(S.entries)) do
    if not W.eps[fd] then list[#list + 1] = fd end
  end
  return list
end

local function table_list(S)
  local list = {}
  for _, fd in ipairs(sorted_keys(S.entries)) do
    list[#list + 1] = { fd, S.entries[fd].flags }
  end
  return list
end

local function expected_tostring(S)
  local t, r = {}, {}
  for _, item in ipairs(table_list(S)) do
    t[#t + 1] = ('[%d]="%s"'):format(item[1], names(item[2]))
  end
  for _, ev in ipairs(S.ready) do
    r[#r + 1] = ('[%d]="%s"'):format(ev[1], names(ev[2]))
  end
  return ("epoll{fd=%d, num_file_descrs=%d, max_ready_events=%d, flags_by_fd={%s}, ready={%s}}")
    :format(S.epfd, S.num, S.maxev, table.concat(t, ", "), table.concat(r, ", "))
end

local function observed_ready(S)
  local list = {}
  S.ep:iter_ready(function(fd, flags) list[#list + 1] = { fd, flags } end)
  return list
end

-- Everything observable about S against the model.
local function check_set(S)
  local what = ("set %d (fd %d)"):format(S.id, S.epfd)
  local got = {}
  if H.has.pairs_mm then
    for fd, flags in pairs(S.ep) do got[#got + 1] = { fd, flags } end
  else -- no __pairs: the same walk through iter
    S.ep:iter(function(fd, flags) got[#got + 1] = { fd, flags } end)
  end
  local want = table_list(S)
  check_eq(want, got, what .. " pairs")
  check_eq(#want, #S.ep, what .. " #")
  check_eq(S.ready, observed_ready(S), what .. " iter_ready")
  check_eq(expected_tostring(S), tostring(S.ep), what .. " tostring")
  local z = zombies(S)
  local ok, err = pcall(S.ep.invariant, S.ep)
  if #z == 0 then
    if not ok then fail("%s invariant: expected to pass, got %s", what, tostring(err)) end
  else
    if ok then fail("%s invariant: expected a failure naming fd %d, it passed", what, z[1]) end
    count("invariant failures expected (watched fd closed)")
    check_eq(('lepoll: invariant: fd %d is in the table ("%s") but not in the kernel\'s set')
      :format(z[1], names(S.entries[z[1]].flags)), err, what .. " invariant")
  end
end

local function check_all()
  for _, S in ipairs(W.sets) do check_set(S) end
end

------------------------------------------------------------ arguments

-- A flag spec for `flags` in one of the accepted forms.
local function flag_spec(flags)
  local r = math.random(5)
  if r == 1 then return flags end
  if r == 2 then return flags + 0.0 end
  local list = {}
  for name in names(flags):gmatch("[^|]+") do list[#list + 1] = name end
  if r == 3 then return list end
  local s = table.concat(list, pick({ "|", ",", ", ", " " }))
  if r == 4 then return s:upper() end
  return s
end

local function random_flags()
  if chance(0.05) then return 0 end
  local f = 0
  if chance(0.5) then f = bor(f, IN) end
  if chance(0.35) then f = bor(f, OUT) end
  if chance(0.1) then f = bor(f, PRI) end
  if chance(0.1) then f = bor(f, ERR) end
  if chance(0.1) then f = bor(f, HUP) end
  if chance(0.25) then f = bor(f, RDHUP) end
  if chance(0.3) then f = bor(f, ET) end
  if chance(0.2) then f = bor(f, ONESHOT) end
  if chance(0.08) then f = bor(f, EXCLUSIVE) end
  return f
end

-- A descriptor for an operation on S: mostly live endpoints and the
-- table's own, sometimes numbers that are refused in some way.
local function random_fd(S)
  local r = math.random(100)
  if r <= 55 then
    local eps = live_endpoints()
    if #eps > 0 then return pick(eps).fd end
  elseif r <= 80 then
    local fds = sorted_keys(S.entries)
    if #fds > 0 then return pick(fds) end
  elseif r <= 84 then
    return W.file
  elseif r <= 87 then
    return S.epfd
  elseif r <= 92 then
    if #W.freed > 0 then return pick(W.freed) end
  elseif r <= 95 then
    return S.num + math.random(0, 3)
  elseif r <= 97 then
    return -math.random(1, 2)
  else
    return pick({ 0x7fffffff, 0x80000000, 1099511627776 }) -- the last: 2^40, an integer from 5.3 on
  end
  local eps = live_endpoints()
  if #eps > 0 then return pick(eps).fd end
  return W.file
end

local function out_of_range(S, fd, method)
  if fd >= 0 and fd < S.num then return nil end
  return ("bad argument #1 to '%s' (fd %d out of range [0, %d))"):format(method, fd, S.num)
end

local function syserr(op, fd, text, errname)
  return ("lepoll: %s fd %d: %s (%s)"):format(op, fd, text, errname)
end

local EBADF = { "Bad file descriptor", "EBADF" }
local EPERM = { "Operation not permitted", "EPERM" }
local EINVAL = { "Invalid argument", "EINVAL" }

------------------------------------------------------------ operations

local ops = {}

local function choose_set()
  return pick(W.sets)
end

function ops.create_set()
  local num = pick({ false, false, 1, BASE, BASE + 8, BASE + 16, BASE + 16, BASE + 24, BASE + 32,
    1024, 1024, 100000 })
  local maxev = num and pick({ false, 1, 2, 3, 4, 8, 64 })
  local ep
  if not num then
    ep = lepoll.create()
  elseif not maxev then
    ep = lepoll.create(num)
  else
    ep = lepoll.create(num, maxev)
  end
  made_fd()
  W.nsets = W.nsets + 1
  local S = {
    id = W.nsets, ep = ep, epfd = ep:getfd(), num = num or H.default_num_file_descrs(),
    maxev = maxev or 256, entries = {}, ready = {},
  }
  W.sets[#W.sets + 1] = S
  return ("create set %d (fd %d, %s, %s)"):format(S.id, S.epfd, tostring(num), tostring(maxev))
end

function ops.close_set()
  local S = choose_set()
  S.ep:close()
  for i, s in ipairs(W.sets) do
    if s == S then table.remove(W.sets, i) break end
  end
  freed_fd(S.epfd)
  check_eq("epoll{closed}", tostring(S.ep), "closed set tostring")
  check_eq(0, #S.ep, "closed set #")
  local ok, err = pcall(S.ep.invariant, S.ep)
  check_eq(true, ok, "closed set invariant passes: " .. tostring(err))
  local calls = {
    -- no tail calls: LuaJIT would drop the caller's frame, and with it
    -- the error's position
    function() S.ep:wait(0) end,
    function() S.ep:set(W.file, "in") end,
    function() S.ep:find(0) end,
    function() S.ep:iter_ready(function() end) end,
    function() S.ep:clear_ready() end,
  }
  local msg = H.msg_anywhere(pick(calls))
  check_eq(CLOSED, msg, "closed set error")
  S.ep:close() -- a second close does nothing
  return ("close set %d (fd %d)"):format(S.id, S.epfd)
end

-- The outcome of S:set(fd, flags) the model predicts: "ok", or "arg"/"sys"
-- with the message.
local function predict_set(S, fd, flags)
  local bad = out_of_range(S, fd, "set")
  if bad then return "arg", bad end
  local en = S.entries[fd]
  if en then
    if has(flags, EXCLUSIVE) then
      return "arg", ("bad argument #2 to 'set' (exclusive can only be set when fd %d is added; "
        .. "remove it first)"):format(fd)
    end
    if has(en.flags, EXCLUSIVE) then
      return "arg", ("bad argument #2 to 'set' (fd %d was added with exclusive, which the "
        .. "kernel never modifies; remove it first)"):format(fd)
    end
    if not W.eps[fd] then return "sys", syserr("set", fd, EBADF[1], EBADF[2]) end
    return "ok"
  end
  if not is_open(fd) then return "sys", syserr("set", fd, EBADF[1], EBADF[2]) end
  if fd == W.file then return "sys", syserr("set", fd, EPERM[1], EPERM[2]) end
  if fd == S.epfd then return "sys", syserr("set", fd, EINVAL[1], EINVAL[2]) end
  if has(flags, EXCLUSIVE) and H.bclear(flags, EXCLUSIVE_OK) ~= 0 then
    return "sys", syserr("set", fd, EINVAL[1], EINVAL[2])
  end
  -- Only endpoints remain: other sets' descriptors are never chosen.
  assert(W.eps[fd], "no model for fd " .. fd)
  return "ok"
end

local function check_find(S, fd)
  if fd >= 0 and fd < S.num then
    local en = S.entries[fd]
    check_eq(en and en.flags or nil, S.ep:find(fd), ("set %d find(%d)"):format(S.id, fd))
  end
end

local function do_set(S, fd, flags)
  local spec = flag_spec(flags)
  local outcome, msg = predict_set(S, fd, flags)
  local desc = ("set %d: set(%d, %s) -> %s"):format(S.id, fd, show(spec), msg or outcome)
  if outcome == "ok" then
    S.ep:set(fd, spec)
    local en = S.entries[fd]
    local e = W.eps[fd]
    local ready = has(readiness(e), mask(flags))
    count(en and "set: modify" or "set: add")
    if not en then
      S.entries[fd] = { flags = flags, armed = true, edge = ready and "must" or nil }
    else
      -- MOD re-arms and polls: queued when ready. An edge-triggered entry
      -- already queued stays queued. (One that is queued but not ready is
      -- as good as not queued: readiness only comes with a wakeup, which
      -- queues it anyway.)
      local edge = has(en.flags, ET) and en.armed and en.edge or nil
      if ready then edge = "must" end
      en.flags, en.armed, en.edge = flags, true, edge
    end
  else
    local got = H.msg_of(function() S.ep:set(fd, spec) end)
    check_eq(msg, got, desc)
    count("set refused: " .. (outcome == "sys" and msg:match("%((E%u+)%)$")
      or msg:find("out of range", 1, true) and "out of range" or "exclusive"))
  end
  check_find(S, fd)
  return desc
end

function ops.set()
  local S = choose_set()
  return do_set(S, random_fd(S), random_flags())
end

-- Set again with the same flags: MOD, which re-arms and re-polls.
function ops.rearm()
  local S = choose_set()
  local fds = sorted_keys(S.entries)
  if #fds == 0 then return ops.set() end
  local fd = pick(fds)
  return do_set(S, fd, S.entries[fd].flags)
end

local function do_remove(S, fd)
  local bad = out_of_range(S, fd, "remove")
  local en = not bad and S.entries[fd]
  local expect = bad or (en and not W.eps[fd] and syserr("remove", fd, EBADF[1], EBADF[2]))
  local desc = ("set %d: remove(%d) -> %s"):format(S.id, fd, expect or "ok")
  if expect then
    check_eq(expect, H.msg_of(function() S.ep:remove(fd) end), desc)
    count(bad and "remove refused: out of range" or "remove refused: EBADF")
  else
    S.ep:remove(fd)
  end
  if en then S.entries[fd] = nil end -- dropped, even when the kernel refused
  check_find(S, fd)
  return desc
end

function ops.remove()
  local S = choose_set()
  local fds = sorted_keys(S.entries)
  if #fds > 0 and chance(0.7) then return do_remove(S, pick(fds)) end
  return do_remove(S, random_fd(S))
end

-- Removes a descriptor that was closed while watched (EBADF).
function ops.remove_zombie()
  for _, S in ipairs(W.sets) do
    local z = zombies(S)
    if #z > 0 then return do_remove(S, pick(z)) end
  end
  return ops.remove()
end

function ops.find()
  local S = choose_set()
  local fd = random_fd(S)
  local bad = out_of_range(S, fd, "find")
  if bad then
    check_eq(bad, H.msg_of(function() S.ep:find(fd) end), "find")
  else
    check_find(S, fd)
  end
  return ("set %d: find(%d)"):format(S.id, fd)
end

function ops.views()
  local S = choose_set()
  local want = table_list(S)
  local got = {}
  S.ep:iter(function(fd, flags, extra)
    assert(extra == nil)
    got[#got + 1] = { fd, flags }
  end)
  check_eq(want, got, "iter")
  local folded = S.ep:fold({}, function(fd, flags, acc)
    acc[#acc + 1] = { fd, flags }
    return acc
  end)
  check_eq(want, folded, "fold")
  check_eq(#want, S.ep:fold(0, function(_, _, n) return n + 1 end), "fold count")
  check_eq(#want, #S.ep, "#")
  return ("set %d: iter, fold, #"):format(S.id)
end

local WAIT_FORMS = {
  { 0 }, { "immediately" }, { 0.0 }, { -1 }, { -0.25 }, { 0.0004 }, { 0.001 }, { 0.002 },
  { 0, after = true }, { 0.001, after = true },
}
local WAIT_QUICK = { 1, 2, 3, 4, 5, 9 } -- indexes above that never sleep
local WAIT_BLOCKING = { { nil }, { "never" }, { math.huge }, { 3600 }, { 3600, after = true } }

-- The candidates of a wait on S: fd -> exact flags, for those that must be
-- reported (capacity allowing) and for those that may be.
local function candidates(S)
  local must, may, nmust = {}, {}, 0
  for fd, en in pairs(S.entries) do
    local e = W.eps[fd]
    if e and en.armed then
      local bits = band(readiness(e), mask(en.flags))
      if bits ~= 0 then
        if not has(en.flags, ET) or en.edge == "must" then
          must[fd], may[fd], nmust = bits, bits, nmust + 1
        elseif en.edge == "maybe" then
          may[fd] = bits
        end
      end
    end
  end
  return must, may, nmust
end

function ops.wait()
  local S = choose_set()
  local must, may, nmust = candidates(S)
  local form
  if nmust > 0 and chance(0.3) then
    form = pick(WAIT_BLOCKING)
  elseif chance(0.85) then
    form = WAIT_FORMS[pick(WAIT_QUICK)]
  else
    form = pick(WAIT_FORMS)
  end
  local status
  local t = form[1]
  local blocking = t == nil or t == "never" or (type(t) == "number" and t > 1)
  -- A watchdog: should the model be wrong, the wait is interrupted and the
  -- status says so, instead of hanging the suite.
  if blocking then T.alarm(5) end
  if form.after then
    status = S.ep:wait_timeout_after(form[1])
  elseif form[1] == nil and chance(0.5) then
    status = S.ep:wait()
  else
    status = S.ep:wait(form[1])
  end
  if blocking then T.alarm(0) end
  local got = observed_ready(S)
  if status == "interrupted" and blocking then
    fail("set %d: a blocking wait was interrupted by the watchdog after 5 s, while the model "
      .. "expected %d descriptors to be ready", S.id, nmust)
  end
  local desc = ("set %d: wait%s(%s) -> %s %s (must %d)"):format(S.id, form.after and "_timeout_after" or "",
    tostring(form[1]), status, show(got), nmust)
  local seen = {}
  for _, ev in ipairs(got) do
    local fd, flags = ev[1], ev[2]
    if seen[fd] then fail("%s: fd %d reported twice", desc, fd) end
    seen[fd] = true
    if may[fd] == nil then
      local en = S.entries[fd]
      fail("%s: fd %d reported (%s) but the model expects nothing from it (%s, %s)", desc, fd,
        names(flags), en and names(en.flags) or "not in the table",
        en and (W.eps[fd] and ("readiness " .. names(readiness(W.eps[fd])) .. ", edge "
          .. tostring(en.edge) .. ", armed " .. tostring(en.armed)) or "closed") or "")
    end
    check_eq(names(may[fd]), names(flags), desc .. ": flags of fd " .. fd)
  end
  if #got > S.maxev then fail("%s: more than max_ready_events", desc) end
  local full = #got == S.maxev
  local missing = {}
  for _, fd in ipairs(sorted_keys(must)) do
    if not seen[fd] then missing[#missing + 1] = fd end
  end
  if not full and #missing > 0 then
    fail("%s: must report fd %s, ready with %s", desc, missing[1], names(must[missing[1]]))
  end
  if #got < math.min(nmust, S.maxev) then fail("%s: fewer events than must be reported", desc) end
  check_eq(#got > 0 and "ok" or "timeout", status, desc .. ": status")
  -- What the kernel did with each entry.
  for fd, en in pairs(S.entries) do
    if seen[fd] then
      if has(en.flags, ONESHOT) then
        en.armed, en.edge = false, nil
      elseif has(en.flags, ET) then
        en.edge = nil
      end
    elseif has(en.flags, ET) and en.edge and not full then
      -- Not full: every queued entry was looked at, and dropped when not
      -- ready. Full: those not looked at are still queued (the others were
      -- not ready, and are queued again when they are).
      en.edge = nil
    end
  end
  S.ready = got
  count("waits")
  count("events", #got)
  if full and #got > 0 then count("waits that filled max_ready_events") end
  if blocking then count("blocking waits") end
  for _, ev in ipairs(got) do
    local en = S.entries[ev[1]]
    if has(en.flags, ET) then count("edge-triggered events") end
    if has(en.flags, ONESHOT) then count("oneshot events") end
    if must[ev[1]] == nil then count("events the model left open (maybe)") end
  end
  for fd in pairs(may) do
    if not must[fd] and not seen[fd] then count("maybes not reported") end
  end
  return desc
end

function ops.ready_views()
  local S = choose_set()
  check_eq(S.ready, observed_ready(S), "iter_ready")
  local folded = S.ep:fold_ready({}, function(acc, fd, flags, extra)
    assert(extra == nil)
    acc[#acc + 1] = { fd, flags }
    return acc
  end)
  check_eq(S.ready, folded, "fold_ready")
  local init = {}
  check_eq(#S.ready, S.ep:fold_ready(0, function(n) return n + 1 end), "fold_ready count")
  if #S.ready == 0 then check_eq(true, rawequal(init, S.ep:fold_ready(init, error)), "fold_ready init") end
  return ("set %d: iter_ready, fold_ready"):format(S.id)
end

function ops.clear_ready()
  local S = choose_set()
  S.ep:clear_ready()
  S.ready = {}
  return ("set %d: clear_ready"):format(S.id)
end

-- iter_ready whose callback removes each reported descriptor still watched
-- (and open): every event is still delivered, the table loses them.
function ops.iter_ready_remove()
  local S = choose_set()
  local got, removed = {}, {}
  S.ep:iter_ready(function(fd, flags)
    got[#got + 1] = { fd, flags }
    if S.entries[fd] and W.eps[fd] then
      S.ep:remove(fd)
      S.entries[fd] = nil
      removed[#removed + 1] = fd
    end
  end)
  check_eq(S.ready, got, "iter_ready while removing")
  return ("set %d: iter_ready removing %s"):format(S.id, show(removed))
end

local function random_bytes()
  local n = math.random(1, 48)
  local t = {}
  for i = 1, n do t[i] = math.random(33, 126) end
  return string.char(unpack(t))
end

-- Whether a write on e fails (EPIPE): a pipe without reader, a socket
-- shut for sending (or whose peer is gone).
local function write_fails(e)
  if e.kind == "w" then return not e.ch.r.open end
  return e.kind == "s" and e.snd_shut
end

-- Whether the model can take a write on e without a queue reaching its
-- bounds.
local function write_fits(e)
  if e.kind == "w" then
    local b = e.ch.buf
    return b.bytes < PIPE_BYTES - 48 and #b.chunks < PIPE_CHUNKS
  end
  local q = e.peer.inq
  return e.kind == "s" and q.bytes < SOCK_BYTES - 48 and #q.chunks < SOCK_CHUNKS
end

function ops.write()
  local failing = live_endpoints(write_fails)
  local eps = live_endpoints(function(e) return e.kind ~= "r" and not write_fails(e) and write_fits(e) end)
  if #failing > 0 and (#eps == 0 or chance(0.1)) then eps = failing end
  if #eps == 0 then return ops.read() end
  local e = pick(eps)
  local data = random_bytes()
  local n, _, errname = T.write(e.fd, data)
  local desc = ("write(%d, %d bytes) -> %s"):format(e.fd, #data, tostring(n or errname))
  touch(e.ch)
  if e.kind == "w" then
    if not e.ch.r.open then
      check_eq("EPIPE", errname, desc)
      count("EPIPE writes")
    else
      check_eq(#data, n, desc)
      count("bytes written", n)
      push(e.ch.buf, data)
      mark(e.ch.r, "must", IN) -- the pipe wakes its readers with in
    end
  else
    if e.snd_shut then
      check_eq("EPIPE", errname, desc)
      count("EPIPE writes")
    else
      check_eq(#data, n, desc)
      count("bytes written", n)
      push(e.peer.inq, data)
      mark(e.peer, "must", bor(IN, PRI)) -- sock_def_readable's key
    end
  end
  return desc
end

function ops.read()
  local eps = live_endpoints(function(e) return e.kind ~= "w" end)
  if #eps == 0 then return "read: nothing to read from" end
  local e = pick(eps)
  local want = chance(0.5) and 65536 or math.random(1, 64)
  local s, _, errname = T.read(e.fd, want)
  local desc = ("read(%d, %d) -> %s"):format(e.fd, want, s and show(s) or tostring(errname))
  touch(e.ch)
  local q = e.kind == "r" and e.ch.buf or e.inq
  if q.bytes > 0 then
    check_eq(take(q, want), s, desc)
    count("bytes read", #s)
  elseif e.kind == "r" then
    check_eq(e.ch.w.open and "EAGAIN" or "", s or errname, desc)
  elseif e.err then
    check_eq("ECONNRESET", errname, desc) -- reported once, then cleared
    e.err = false
    count("ECONNRESET reads")
  else
    check_eq(e.rcv_shut and "" or "EAGAIN", s or errname, desc)
  end
  return desc
end

function ops.shutdown()
  local eps = live_endpoints(function(e) return e.kind == "s" end)
  if #eps == 0 then return ops.write() end
  local e = pick(eps)
  local how = pick({ "r", "w", "rw" })
  check_eq(true, T.shutdown(e.fd, how), "shutdown")
  local peer = e.peer.open and e.peer or nil
  if how ~= "w" then
    e.rcv_shut = true
    if peer then peer.snd_shut = true end
  end
  if how ~= "r" then
    e.snd_shut = true
    if peer then peer.rcv_shut = true end
  end
  touch(e.ch)
  -- Both ends' state changes wake every entry (no key).
  mark(e, "must")
  mark(peer, "must")
  count("shutdowns")
  return ("shutdown(%d, %q)"):format(e.fd, how)
end

local function close_endpoint(e)
  touch(e.ch)
  check_eq(true, T.close(e.fd), "close " .. e.fd)
  e.open = false
  W.eps[e.fd] = nil
  freed_fd(e.fd)
  local ch = e.ch
  if ch.kind == "pipe" then
    mark(e.kind == "r" and ch.w or ch.r, "must") -- pipe_release wakes both sides
    if not ch.r.open and not ch.w.open then ch.dead = true end
  else
    local peer = e.peer
    if peer.open then
      peer.rcv_shut, peer.snd_shut = true, true
      if e.inq.bytes > 0 then peer.err = true end -- unread data: ECONNRESET
      mark(peer, "must")
    end
    e.inq = new_queue()
    if not peer.open then ch.dead = true end
  end
  if ch.dead then
    for i, c in ipairs(W.channels) do
      if c == ch then table.remove(W.channels, i) break end
    end
  end
  local watched = {}
  for _, S in ipairs(W.sets) do
    if S.entries[e.fd] then watched[#watched + 1] = S.id end
  end
  return ("close(%d)%s"):format(e.fd, #watched > 0 and (" while watched by set " .. show(watched)) or "")
end

function ops.close_fd()
  -- Mostly ends of pipes and socketpairs already half closed or shut down.
  local eps = live_endpoints(function(e)
    if e.kind == "s" then return not e.peer.open or e.rcv_shut or e.snd_shut end
    return not (e.ch.r.open and e.ch.w.open)
  end)
  if #eps == 0 or chance(0.3) then eps = live_endpoints() end
  if #eps == 0 then return ops.new_channel() end
  return close_endpoint(pick(eps))
end

-- Closes a descriptor that a set watches, behind the set's back.
function ops.close_watched()
  local eps = live_endpoints(function(e)
    for _, S in ipairs(W.sets) do
      if S.entries[e.fd] then return true end
    end
    return false
  end)
  if #eps == 0 then return ops.close_fd() end
  return close_endpoint(pick(eps))
end

function ops.new_channel()
  if chance(0.5) then
    count("pipes")
    return new_pipe()
  end
  count("socketpairs")
  return new_socketpair()
end

-- Weights by state. Nothing makes a descriptor while one is closed but
-- watched: its number would come back.
local function weights()
  local zombie = any_zombie()
  local nsets, nch = #W.sets, #W.channels
  return {
    { "new_channel", zombie and 0 or (nch < 4 and 12 or (nch < MAX_CHANNELS and 2 or 0)) },
    { "create_set", (zombie or nsets >= MAX_SETS) and 0 or (nsets == 0 and 1000 or 2) },
    { "close_set", nsets > 0 and 1 or 0 },
    { "set", nsets > 0 and 22 or 0 },
    { "rearm", nsets > 0 and 6 or 0 },
    { "remove", nsets > 0 and 7 or 0 },
    { "remove_zombie", zombie and 25 or 0 },
    { "find", nsets > 0 and 4 or 0 },
    { "views", nsets > 0 and 2 or 0 },
    { "wait", nsets > 0 and 24 or 0 },
    { "ready_views", nsets > 0 and 2 or 0 },
    { "clear_ready", nsets > 0 and 2 or 0 },
    { "iter_ready_remove", nsets > 0 and 1 or 0 },
    { "write", 16 },
    { "read", 11 },
    { "shutdown", 2 },
    { "close_fd", nch > 2 and 2 or 0 },
    { "close_watched", nch > 2 and 2 or 0 },
  }
end

local function next_op()
  local ws = weights()
  local total = 0
  for _, w in ipairs(ws) do total = total + w[2] end
  local x = math.random() * total
  for _, w in ipairs(ws) do
    x = x - w[2]
    if x < 0 then return w[1] end
  end
  return ws[#ws][1]
end

local function new_world()
  return { sets = {}, eps = {}, channels = {}, freed = {}, nsets = 0, pads = {} }
end

-- Closes what is still open: the sets, then every live descriptor.
local function close_world(world)
  for _, S in ipairs(world.sets) do S.ep:close() end
  world.sets = {}
  for _, fd in ipairs(sorted_keys(world.eps)) do T.close(fd) end
  world.eps = {}
  if world.file then T.close(world.file) world.file = nil end
  for _, fd in ipairs(world.pads) do T.close(fd) end
  world.pads = {}
  if world.path then os.remove(world.path) world.path = nil end
end

describe("model-based random operations", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it(("agree with the model over %d steps (seed %d)"):format(STEPS, SEED), function()
    io.stderr:write(("\n40-model: seed %d, %d steps (LEPOLL_SEED=%d LEPOLL_MODEL_STEPS=%d replays it)\n")
      :format(SEED, STEPS, SEED, STEPS))
    T.ignore_sigpipe()
    math.randomseed(SEED)
    stats = {}
    W = new_world()
    local world = W
    finally(function() close_world(world) end)
    -- The regular file, at BASE: the numbers below are filled with its
    -- duplicates, so that a run's descriptors do not depend on what the
    -- process had open before (a replay alone or in the suite is the same).
    W.path = os.tmpname()
    W.pads[1] = assert(T.open(W.path))
    while true do
      local fd = assert(T.dup(W.pads[1]))
      if fd >= BASE then W.file = fd break end
      W.pads[#W.pads + 1] = fd
    end
    made_fd()

    local trace, step = {}, 0
    local counts = {}
    local ok, err = xpcall(function()
      for i = 1, STEPS do
        step = i
        local name = next_op()
        trace[#trace + 1] = ("%d %s: ..."):format(i, name)
        if #trace > 40 then table.remove(trace, 1) end
        local desc = ops[name]()
        trace[#trace] = ("%d %s"):format(i, desc)
        if TRACE then io.stderr:write(trace[#trace], "\n") end
        counts[name] = (counts[name] or 0) + 1
        check_all()
      end
      -- The end: remove what is watched, close the sets, check once more.
      while any_zombie() do ops.remove_zombie() end
      check_all()
      for _, S in ipairs(W.sets) do
        for _, fd in ipairs(sorted_keys(S.entries)) do do_remove(S, fd) end
        check_set(S)
      end
    end, function(e)
      return debug.traceback(tostring(e), 2)
    end)
    if not ok then
      error(("seed %d, step %d: %s\nlast operations (newest last):\n  %s\nreplay: LEPOLL_SEED=%d "
        .. "LEPOLL_MODEL_STEPS=%d busted --run=%s spec/40-model_spec.lua"):format(SEED, step, err,
        table.concat(trace, "\n  "), SEED, step, H.LUA), 0)
    end
    local lines = {}
    for _, k in ipairs(sorted_keys(stats)) do lines[#lines + 1] = ("%s %d"):format(k, stats[k]) end
    io.stderr:write("40-model: ", table.concat(lines, ", "), "\n")
    -- Every kind of operation ran.
    for name in pairs(ops) do
      if STEPS >= 2000 then
        assert.is_true((counts[name] or 0) > 0, name .. " never ran")
      end
    end
  end)
end)
