-- Shared by the specs: raw descriptors, descriptor-leak guard, waiting,
-- error messages and per-test cleanups.
local T = require "lepoll_test"
local lepoll = require "lepoll"
local luassert = require "luassert"

local H = { T = T }

-- Registers, in the calling describe block, a check that the block ends
-- with exactly the descriptors it started with. Sets left open are closed
-- by the collector, so a full collection runs first. Busted's functions
-- live in the spec file's environment, hence the arguments:
--   H.no_fd_leaks(lazy_setup, lazy_teardown)
function H.no_fd_leaks(lazy_setup, lazy_teardown)
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

-- Closes raw descriptors, ignoring ones already closed.
function H.close(...)
  for i = 1, select("#", ...) do
    local fd = select(i, ...)
    if fd then T.close(fd) end
  end
end

-- The ready set of the last wait as a list of {fd, flags}, kernel order.
function H.ready(ep)
  local list = {}
  ep:iter_ready(function(fd, flags) list[#list + 1] = { fd, flags } end)
  return list
end

-- The ready set as a map fd -> flag names.
function H.ready_names(ep)
  local map = {}
  ep:iter_ready(function(fd, flags) map[fd] = lepoll.flagnames(flags) end)
  return map
end

-- The error message raised by f(...), or fails when it raises nothing.
function H.error_of(f, ...)
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
-- tail call would leave no such frame, so it is refused.
local function calling_file()
  luassert(not debug.getinfo(2, "t").istailcall,
    "call H.msg_of / H.msg_anywhere as a plain call, not a tail call")
  return debug.getinfo(3, "S").short_src
end

-- The message of the error raised by f(...), which must start with a
-- position in the calling spec file.
function H.msg_of(f, ...)
  return message_proper(true, calling_file(), f, ...)
end

-- The same, for errors that may carry no position; any position there is
-- must still be in the calling spec file.
function H.msg_anywhere(f, ...)
  return message_proper(false, calling_file(), f, ...)
end

-- num_file_descrs of lepoll.create() without arguments: the soft
-- RLIMIT_NOFILE, capped to INT_MAX (unlimited, which T.nofile gives as -1,
-- cannot be a range).
function H.default_num_file_descrs()
  local soft = T.nofile()
  return (soft < 0 or soft > 0x7fffffff) and 0x7fffffff or soft
end

-- Cleanups run at the end of the current test, whether it passes or not.
-- busted keeps only the last finally() of a test, so they go in a list that
-- one finally() runs, last registered first. finally itself exists only
-- while a test runs, in the spec file's environment: busted 2.1.1 sets it
-- per test, and require "busted" does not export it (it does export
-- lazy_setup and the like). So a spec file hands over a function that looks
-- it up when called, and gets back its helpers:
--   local C = H.cleanups(function(fn) finally(fn) end)
function H.cleanups(finally)
  local C = {}
  local pending = {}

  local function run_pending()
    local list = pending
    pending = {}
    for i = #list, 1, -1 do list[i]() end
  end

  -- Runs fn when the current test ends.
  function C.defer(fn)
    pending[#pending + 1] = fn
    finally(run_pending)
  end

  -- lepoll.create(...), closed when the test ends.
  function C.new_set(...)
    local ep = lepoll.create(...)
    C.defer(function() ep:close() end)
    return ep
  end

  -- T.pipe(), both ends closed when the test ends.
  function C.pipe()
    local r, w = assert(T.pipe())
    C.defer(function() H.close(r, w) end)
    return r, w
  end

  -- T.socketpair(kind), both ends closed when the test ends.
  function C.socketpair(kind)
    local a, b = assert(T.socketpair(kind))
    C.defer(function() H.close(a, b) end)
    return a, b
  end

  -- A new set watching n level-triggered pipes for IN, each with `data`
  -- waiting (none when data is nil), written in pipe order: the kernel's
  -- order. Returns the set and the pipes as a list of {r = fd, w = fd}; the
  -- set and the pipes are closed when the test ends.
  function C.watched_pipes(n, data)
    local ep = lepoll.create()
    local pipes = {}
    C.defer(function()
      ep:close()
      for _, p in ipairs(pipes) do H.close(p.r, p.w) end
    end)
    for i = 1, n do
      local r, w = assert(T.pipe())
      pipes[i] = { r = r, w = w }
      ep:set(r, lepoll.IN)
      if data then luassert.are.equal(#data, T.write(w, data)) end
    end
    return ep, pipes
  end

  return C
end

-- Kilobytes the collector counts while run(n) runs, after run(warm) and a
-- full collection, with the collector stopped so that any allocation shows.
function H.alloc_growth(run, warm, n)
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

return H
