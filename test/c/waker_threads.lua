-- Run by test/c/waker_threads.c: the Lua side of its tests. Defines the
-- global functions the host calls with a waker that its threads post to;
-- each returns a summary, or raises what went wrong.
local loop = require "lepoll.loop"

local format = string.format
local TIMEOUT = 120 -- seconds: a lost value ends the test, not the run

-- Runs a loop watching waker until on_value(value) returns true, bounded
-- by TIMEOUT. The descriptor must never be readable with nothing queued:
-- every call of the watcher's callback finds a value. -> the calls (each
-- but the last one emptied the queue).
local function drive(waker, on_value)
  local l = loop.new()
  local finished, calls = false, 0
  local watcher, timer
  watcher = l:io(waker, "in", function()
    local value, again = waker:read()
    assert(value ~= nil, format("readable with nothing queued (%s)", tostring(again)))
    calls = calls + 1
    repeat
      if on_value(value) then
        finished = true
        watcher:stop()
        timer:stop()
        return
      end
      value = waker:read()
    until value == nil
  end)
  timer = l:timer(TIMEOUT, function()
    error(format("no end after %d s (%s)", TIMEOUT, tostring(waker)))
  end)
  l:run()
  l:close()
  assert(finished)
  return calls
end

-- The filler of thread t's k-th value, as waker_threads.c makes it.
local function filler(t, k, len)
  return string.char(65 + (t * 7 + k) % 26):rep(len)
end

-- THREADS threads post VALUES values each, at once: "t k|" and a filler
-- (0 to 199 bytes; 1 MiB for k == VALUES/2), every 997th value empty
-- instead, then "t done". Each value must come once, in its thread's order.
function in_order(waker, threads, values)
  local big = math.floor(values / 2)
  local next_k, done, n, empties, bytes = {}, 0, 0, 0, 0
  for t = 1, threads do next_k[t] = 1 end
  local function skip_empties(t)
    while next_k[t] <= values and next_k[t] % 997 == 0 do next_k[t] = next_k[t] + 1 end
  end
  for t = 1, threads do skip_empties(t) end
  local calls = drive(waker, function(value)
    n = n + 1
    bytes = bytes + #value
    if value == "" then
      empties = empties + 1
      return false
    end
    local t, rest = value:match("^(%d+) (.*)$")
    t = tonumber(t)
    assert(t and next_k[t], format("a value from no thread: %q", value:sub(1, 40)))
    if rest == "done" then
      assert(next_k[t] == values + 1, format("thread %d: done after value %d of %d", t, next_k[t] - 1, values))
      next_k[t] = nil
      done = done + 1
      return done == threads
    end
    local k, fill = rest:match("^(%d+)|(.*)$")
    k = tonumber(k)
    assert(k == next_k[t], format("thread %d: value %s where %d was due", t, tostring(k), next_k[t]))
    local len = k == big and 1048576 or (t * 13 + k * 7) % 200
    assert(fill == filler(t, k, len), format("thread %d: value %d: a filler of %d bytes, %d expected", t, k,
      #fill, len))
    next_k[t] = k + 1
    ack(t, k)
    skip_empties(t)
    return false
  end)
  local expected_empties = threads * math.floor(values / 997)
  assert(empties == expected_empties, format("%d empty values, %d expected", empties, expected_empties))
  assert(n == threads * (values + 1), format("%d values, %d expected", n, threads * (values + 1)))
  local s = tostring(waker)
  assert(s:match("^waker{fd=%d+, queued=0}$"), s)
  waker:close()
  return format("%d values (%d empty, %d bytes) from %d threads, each once and in order; the queue ran "
    .. "empty %d times", n, empties, bytes, threads, calls - 1)
end

-- The threads post "t k" until the waker is closed; this side reads `count`
-- values (in each thread's order), then closes it under their posts.
function close_under_posts(waker, threads, count)
  local next_k, n = {}, 0
  for t = 1, threads do next_k[t] = 1 end
  drive(waker, function(value)
    local t, k = value:match("^(%d+) (%d+)$")
    t, k = tonumber(t), tonumber(k)
    assert(t and next_k[t] == k, format("value %q where %s was due", value, tostring(t and next_k[t])))
    next_k[t] = k + 1
    n = n + 1
    return n == count
  end)
  waker:close()
  local ok, err = pcall(waker.read, waker)
  assert(not ok and err:find("attempt to use a closed waker", 1, true), tostring(err))
  return format("%d values read in order, then closed under the posts", n)
end

-- Keeps the waker until lua_close, which closes it (__gc) under the posts.
function keep(waker)
  KEPT = waker
  return "kept"
end
