-- Runs commands side by side and watches them, with lepoll.loop:
--
--     lua5.4 examples/supervisor.lua [--timeout SECONDS] CMD...
--
-- Each CMD runs as `sh -c CMD`, child N (its place among the commands,
-- from 1). Its output, stdout and stderr together, is printed line by line
-- as it comes, each line as `[N] line`; when it ends, `[N] exit status S`
-- or `[N] killed by signal S`. With --timeout, a child still running that
-- many seconds after it started is stopped (`[N] timeout after S s`). On
-- SIGINT (Ctrl-C) or SIGTERM every child still running is stopped, the
-- supervisor waits for them all, and exits with status 0; otherwise it
-- exits once every child has ended, with status 0 when each exited 0,
-- else 1. (Status 2: bad arguments, or a command that cannot start.)
--
-- Stopping a child: SIGTERM to its process group (each child leads one of
-- its own, so the commands its shell started stop too, and a Ctrl-C at the
-- terminal reaches the supervisor alone), then SIGKILL if anything of the
-- group still holds its output open 2 seconds later.
local lepoll = require "lepoll"
local loop = require "lepoll.loop"

local GRACE = 2 -- seconds between SIGTERM and SIGKILL
local SIGTERM, SIGKILL = 15, 9

local function usage()
  io.stderr:write(("usage: %s examples/supervisor.lua [--timeout SECONDS] CMD...\n"):format(arg[-1] or "lua"))
  os.exit(2)
end

local args, timeout = { ... }, nil
if args[1] == "--timeout" then
  timeout = tonumber(args[2])
  if not timeout or timeout <= 0 then usage() end
  table.remove(args, 1)
  table.remove(args, 1)
end
if #args == 0 then usage() end

local l = loop.new()
local children, running, all_ok = {}, 0, true
local stop_all -- defined below

local function say(n, text)
  io.stdout:write("[", n, "] ", text, "\n")
  io.stdout:flush()
end

-- SIGTERM to the child's group now, SIGKILL after the grace period if its
-- output has not ended by then.
local function stop(c)
  if c.stopping or c.done then return end
  c.stopping = true
  c.proc:killgroup(SIGTERM) -- ESRCH: the whole group has gone already
  c.kill_timer = l:timer(GRACE, function() c.proc:killgroup(SIGKILL) end)
end

-- A child is done once its output has ended and it has exited, in either
-- order: its exit is reported after its last line.
local function finish(c)
  if c.done or not c.eof or not c.how then return end
  c.done = true
  if c.timer then c.timer:stop() end
  if c.kill_timer then c.kill_timer:stop() end
  if c.how == "exit" then
    say(c.n, "exit status " .. c.code)
    all_ok = all_ok and c.code == 0
  else
    say(c.n, "killed by signal " .. c.code)
    all_ok = false
  end
  running = running - 1
  if running == 0 then stop_all() end -- the signal watchers: nothing left to stop
end

local function on_output(c, watcher)
  local data, err = lepoll.read(c.proc.stdout)
  if data == nil and err == "again" then return end
  if data and data ~= "" then
    local text, last = c.rest .. data, 0
    for line, stop_at in text:gmatch("([^\n]*)\n()") do
      say(c.n, line)
      last = stop_at - 1
    end
    c.rest = text:sub(last + 1)
    return
  end
  -- the end of its output (or a read error, which ends it too)
  if c.rest ~= "" then say(c.n, c.rest) end
  c.rest = ""
  watcher:stop()
  c.eof = true
  finish(c)
end

for n, cmd in ipairs(args) do
  local c = { n = n, rest = "", eof = false, how = false, code = false, done = false, stopping = false,
    timer = false, kill_timer = false }
  local p, err = l:process({ "sh", "-c", cmd, stdout = "pipe", stderr = "stdout", stdin = "null",
    newgroup = true }, function(_, how, code)
      c.how, c.code = how, code
      finish(c)
    end)
  if not p then
    io.stderr:write("supervisor: ", err, "\n")
    for _, other in ipairs(children) do other.proc:close() end -- each killed and reaped
    l:close()
    os.exit(2)
  end
  c.proc = p
  children[n] = c
  running = running + 1
  l:io(p.stdout, "in", function(w) on_output(c, w) end)
  if timeout then
    c.timer = l:timer(timeout, function()
      say(n, ("timeout after %g s"):format(timeout))
      stop(c)
    end)
  end
end

local stopping_all = false
local function on_signal(_, name)
  if stopping_all then return end
  stopping_all = true
  io.stderr:write("supervisor: SIG", name, ": stopping ", running, " children\n")
  for _, c in ipairs(children) do stop(c) end
end
local watchers = { l:signal("INT", on_signal), l:signal("TERM", on_signal) }
function stop_all()
  for _, w in ipairs(watchers) do w:stop() end
end

l:run() -- until every child is done and the signal watchers are stopped
for _, c in ipairs(children) do c.proc:close() end
l:close()
os.exit((stopping_all or all_ok) and 0 or 1)
