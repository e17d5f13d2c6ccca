-- Expectations the specs share: the error a call raises and where it says
-- it was raised, descriptors left open, memory allocated.
local T = require "lepoll_test"
local luassert = require "luassert"
local compat = require "support.compat"

local M = {}

-- ------------------------------------------------------------ errors

-- The error message raised by f(...), or fails when it raises nothing.
function M.error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return err
end

-- lepoll's errors carry the position of the Lua code that called it
-- ("spec/...:N: ", from luaL_error and luaL_argerror). Checks that it names
-- `file`, the spec file that asked, then returns the message proper. With
-- `required` false, a message without position (raised where Lua knows
-- none: a metamethod called from C, as __pairs from pairs) is returned whole.
local function message_proper(required, file, f, ...)
  local ok, err = pcall(f, ...)
  luassert(not ok, "expected an error")
  luassert.are.equal("string", type(err))
  local where, msg = err:match("^(.-):%d+: (.*)$")
  if where == nil and not required then return err end
  luassert.are.equal(file, where, err)
  return msg
end

-- The file of the spec function that called H.msg_of or H.msg_anywhere. A
-- tail call would leave no such frame, so it is refused: through "t"
-- (istailcall) from 5.2 on; 5.1 shows a "tail" frame instead, and LuaJIT
-- none at all, so there the position check itself catches it.
local HAS_ISTAILCALL = pcall(debug.getinfo, 1, "t")
local function calling_file()
  if HAS_ISTAILCALL then
    luassert(not debug.getinfo(2, "t").istailcall,
      "call H.msg_of / H.msg_anywhere as a plain call, not a tail call")
  else
    luassert(debug.getinfo(3, "S").what ~= "tail",
      "call H.msg_of / H.msg_anywhere as a plain call, not a tail call")
  end
  return debug.getinfo(3, "S").short_src
end

-- The message of the error raised by f(...), which must start with a
-- position in the calling spec file.
function M.msg_of(f, ...)
  return message_proper(true, calling_file(), f, ...)
end

-- The same, for errors that may carry no position; any position there is
-- must still be in the calling spec file.
function M.msg_anywhere(f, ...)
  return message_proper(false, calling_file(), f, ...)
end

-- ------------------------------------------------------- descriptors

-- Registers, in the calling describe block, a check that the block ends
-- with exactly the descriptors it started with. Sets left open are closed
-- by the collector, so a full collection runs first. Busted's functions
-- live in the spec file's environment, hence the arguments:
--   H.no_fd_leaks(lazy_setup, lazy_teardown)
function M.no_fd_leaks(lazy_setup, lazy_teardown)
  local before
  lazy_setup(function()
    collectgarbage()
    collectgarbage()
    before = assert(T.fdcount())
  end)
  lazy_teardown(function()
    collectgarbage()
    collectgarbage()
    luassert.are.equal(before, assert(T.fdcount()), "descriptors leaked")
  end)
end

-- This process's child processes, running or not yet reaped (zombies), as
-- a sorted string of pids: /proc/PID/task/PID/children.
function M.children()
  local stat = assert(io.open("/proc/self/stat"))
  local pid = stat:read("*l"):match("^(%d+)")
  stat:close()
  local f = assert(io.open(("/proc/%s/task/%s/children"):format(pid, pid)))
  local list = {}
  for p in f:read("*a"):gmatch("%d+") do list[#list + 1] = tonumber(p) end
  f:close()
  table.sort(list)
  return table.concat(list, " ")
end

-- The same check as no_fd_leaks for child processes: the block ends with
-- the children it started with, none left running or unreaped.
function M.no_child_leaks(lazy_setup, lazy_teardown)
  local before
  lazy_setup(function()
    collectgarbage()
    collectgarbage()
    before = M.children()
  end)
  lazy_teardown(function()
    collectgarbage()
    collectgarbage()
    luassert.are.equal(before, M.children(), "child processes left behind")
  end)
end

-- Whether fd is an open descriptor of this process.
function M.is_open(fd)
  return T.cloexec(fd) ~= nil
end

-- ------------------------------------------------------------ memory

-- Kilobytes the collector counts while run(n) runs, after run(warm) and a
-- full collection, with the collector stopped so that any allocation shows.
-- On LuaJIT the compiler is off meanwhile, its traces flushed: traces
-- it records take memory of their own, which is not the code's.
function M.alloc_growth(run, warm, n)
  local jit = rawget(_G, "jit")
  if compat.JIT and jit.status() then
    jit.off()
    jit.flush()
    local ok, growth = pcall(M.alloc_growth, run, warm, n)
    jit.on()
    assert(ok, growth)
    return growth
  end
  run(warm)
  collectgarbage()
  collectgarbage()
  collectgarbage("stop")
  pcall(run, 10) -- the collection freed spare stack space: take it back first
  local before = collectgarbage("count")
  local ok, err = pcall(run, n)
  local after = collectgarbage("count")
  collectgarbage("restart")
  assert(ok, err)
  return after - before
end

return M
