-- Follows a pipe (stdin, or a named pipe) with lepoll.loop: prints each
-- line as soon as it is complete, a heartbeat on stderr every few seconds
-- while it waits, and the rest at the end of input, then exits.
--
--     lua examples/tail.lua [interval [path]]
--
-- (any Lua from 5.1 to 5.4, or LuaJIT: the loop is closed explicitly where
-- Lua 5.4 alone could say `local l <close> = loop.new()`).
--
-- interval: seconds between heartbeats (default 5); path: what to follow
-- instead of stdin, anything epoll can watch (a named pipe, a terminal, a
-- character device that polls) but not a regular file, which epoll refuses
-- (follow one with `tail -f FILE | lua examples/tail.lua`). Stdout is a
-- copy of the input; stderr has the heartbeats,
--
--     tail: heartbeat 3: 2 lines, 11 bytes
--
-- (lines printed and bytes read so far) and a last line at the end, with
-- the number of reads it took (the last one finds the end):
--
--     tail: end of input: 4 lines, 30 bytes, 3 reads
--
-- How it reads. Not through Lua's io library: C stdio reads ahead, and the
-- lines it holds are no longer in the kernel, where epoll would see them;
-- and read("l") or read(n) wait for a whole line or n bytes, blocking the
-- whole loop (no heartbeat, no timers) when the writer stops in the middle
-- of a line. Each readiness event makes one read(2) of what is there, up
-- to 64 KiB (lepoll.read on the handle's descriptor), which cannot block as
-- the descriptor is readable; complete lines are printed, the rest kept
-- for the next read.
local lepoll = require "lepoll"
local loop = require "lepoll.loop"

local interval, path = ...
interval = tonumber(interval or 5)
if not interval or interval <= 0 then
  -- arg[-1]: the interpreter as it was invoked (lua5.4, luajit, ...)
  io.stderr:write(("usage: %s examples/tail.lua [interval [path]]\n"):format(arg and arg[-1] or "lua"))
  os.exit(2)
end

local input = io.stdin
if path then
  local err
  input, err = io.open(path, "rb") -- a named pipe: waits for a writer
  if not input then
    io.stderr:write("tail: ", err, "\n")
    os.exit(2)
  end
end

local l = loop.new()
local rest, lines, bytes, reads = "", 0, 0, 0

-- Prints the complete lines of rest .. data, keeps the last partial one.
local function take(data)
  local text = rest .. data
  local last = 0
  for stop in text:gmatch("()\n") do
    lines = lines + 1
    last = stop
  end
  rest = text:sub(last + 1)
  if last > 0 then
    io.stdout:write(text:sub(1, last))
    io.stdout:flush()
  end
end

local beats = 0
local heartbeat = l:timer(interval, function()
  beats = beats + 1
  io.stderr:write(("tail: heartbeat %d: %d lines, %d bytes\n"):format(beats, lines, bytes))
end, interval)

local failure
local function on_input(watcher)
  local data, err = lepoll.read(input)
  if data == nil and err == "again" then return end -- someone else took it
  if data and data ~= "" then
    reads, bytes = reads + 1, bytes + #data
    take(data)
    return
  end
  -- The end of input (""), or an error (nil, message): done.
  if data then reads = reads + 1 end
  if #rest > 0 then
    io.stdout:write(rest)
    io.stdout:flush()
    lines, rest = lines + 1, ""
  end
  watcher:stop()
  heartbeat:stop()
  if not data then
    failure = err
    io.stderr:write("tail: ", err, "\n")
  else
    io.stderr:write(("tail: end of input: %d lines, %d bytes, %d read%s\n"):format(lines, bytes, reads,
      reads == 1 and "" or "s"))
  end
end

local ok, err = pcall(l.io, l, input, "in", on_input)
if not ok then
  io.stderr:write(("tail: cannot follow %s: %s\n"):format(path or "stdin", tostring(err)))
  l:close()
  os.exit(2)
end

-- Until the watcher and the heartbeat are stopped. An error out of run ends
-- the program, with its traceback: the kernel closes the set then.
l:run()
l:close()
if failure then os.exit(1) end
