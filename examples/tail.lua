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
-- (lines printed and bytes read so far) and a last line at the end:
--
--     tail: end of input: 4 lines, 30 bytes
--
-- How it reads. Lua's io library reads through C stdio, which is no help
-- next to epoll in two ways: a buffered FILE reads ahead, and the lines it
-- holds are no longer in the kernel, so epoll, which watches the
-- descriptor, never reports them; and read("l") or read(n) wait for a whole
-- line or n bytes, blocking the whole loop (no heartbeat, no timers) when
-- the writer stops in the middle of a line. So the input is made
-- unbuffered, and each readiness event reads one byte: on an unbuffered
-- FILE, read(1) is exactly one read(2) of one byte, which cannot block as
-- the descriptor is readable (a byte, or end of input), and leaves the rest
-- in the kernel, where the level-triggered watcher sees it again in the
-- next round. It costs a round and a system call per byte, plenty for
-- following logs; a program that must read megabytes per second reads the
-- descriptor with a non-blocking read of its own (a LuaSocket socket, or a
-- few lines of C) instead of stdio.
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
input:setvbuf("no") -- before any read: nothing is ever read ahead

local l = loop.new()
local line, lines, bytes = {}, 0, 0

local function emit()
  io.stdout:write(table.concat(line))
  io.stdout:flush()
  line = {}
  lines = lines + 1
end

local beats = 0
local heartbeat = l:timer(interval, function()
  beats = beats + 1
  io.stderr:write(("tail: heartbeat %d: %d lines, %d bytes\n"):format(beats, lines, bytes))
end, interval)

local failure
local function on_input(watcher)
  local c, err = input:read(1)
  if c then
    bytes = bytes + 1
    line[#line + 1] = c
    if c == "\n" then emit() end
    return
  end
  -- The end of input (nil), or an error (nil and a message): done.
  if #line > 0 then emit() end
  watcher:stop()
  heartbeat:stop()
  if err then
    failure = err
    io.stderr:write("tail: ", err, "\n")
  else
    io.stderr:write(("tail: end of input: %d lines, %d bytes\n"):format(lines, bytes))
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
