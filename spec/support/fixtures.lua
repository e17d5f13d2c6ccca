-- What tests make and must not leave behind: raw descriptors (through the
-- lepoll_test module), sets, pipes, socketpairs, loops and temporary
-- files, each cleaned up when the test ends; and what the network specs
-- share: a loopback listener, a line echo handler, a loop stepped until
-- something is done.
local T = require "lepoll_test"
local lepoll = require "lepoll"
local luassert = require "luassert"

local M = { T = T }

-- Closes raw descriptors, ignoring ones already closed.
function M.close(...)
  for i = 1, select("#", ...) do
    local fd = select(i, ...)
    if fd then T.close(fd) end
  end
end

-- The whole content of the file at `path`.
function M.slurp(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

-- Steps loop l until done() returns true, at most `limit` seconds (20 when
-- nil); an error in a task is raised here, and so is the time running out.
function M.step_until(l, done, limit)
  local deadline = lepoll.now() + (limit or 20)
  while not done() and lepoll.now() < deadline do l:step(0.05) end
  assert(done(), "not done in time")
end

-- A LuaSocket TCP socket listening on a free loopback port, and the port.
-- (LuaSocket is required here, by the specs that ask for a listener.)
function M.listener()
  local s = assert(require("socket").bind("127.0.0.1", 0))
  return s, select(2, s:getsockname())
end

-- A connection handler for l:serve: each line back, until the peer closes.
function M.echo_lines(conn)
  while true do
    local line = conn:receive()
    if not line then return end
    conn:send(line .. "\n")
  end
end

-- Cleanups run at the end of the current test, whether it passes or not.
-- busted keeps only the last finally() of a test, so they go in a list that
-- one finally() runs, last registered first. finally itself exists only
-- while a test runs, in the spec file's environment: busted 2.1.1 sets it
-- per test, and require "busted" does not export it (it does export
-- lazy_setup and the like). So a spec file hands over a function that looks
-- it up when called, and gets back its helpers:
--   local C = H.cleanups(function(fn) finally(fn) end)
function M.cleanups(finally)
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
    C.defer(function() M.close(r, w) end)
    return r, w
  end

  -- T.socketpair(kind), both ends closed when the test ends.
  function C.socketpair(kind)
    local a, b = assert(T.socketpair(kind))
    C.defer(function() M.close(a, b) end)
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
      for _, p in ipairs(pipes) do M.close(p.r, p.w) end
    end)
    for i = 1, n do
      local r, w = assert(T.pipe())
      pipes[i] = { r = r, w = w }
      ep:set(r, lepoll.IN)
      if data then luassert.are.equal(#data, T.write(w, data)) end
    end
    return ep, pipes
  end

  -- lepoll.loop.new(opts), closed when the test ends. (The loop module is
  -- required here, when a test first asks for a loop.)
  function C.new_loop(opts)
    local l = require("lepoll.loop").new(opts)
    C.defer(function() l:close() end)
    return l
  end

  -- A new temporary path (os.tmpname creates the file), removed when the
  -- test ends.
  function C.tmpname()
    local path = os.tmpname()
    C.defer(function() os.remove(path) end)
    return path
  end

  -- The Lua under test run on args (the interpreter's arguments: a script
  -- path, or "-e", code), with H.child_env(); its stdout a pipe, and its
  -- stderr too when `stderr` is true. Closed (killed and reaped if still
  -- running) when the test ends.
  function C.lua_child(args, stderr)
    local argv = { require("support.settings").LUA }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    argv.stdout, argv.stderr = "pipe", stderr and "pipe" or nil
    argv.env = require("support.process").child_env()
    local p = assert(lepoll.spawn(argv))
    C.defer(function() p:close() end)
    return p
  end

  -- One lepoll.read of fd once it is readable, waiting at most `seconds`
  -- (default 10).
  function C.read_when_ready(fd, seconds)
    local ep = C.new_set()
    ep:set(fd, "in")
    ep:wait(seconds or 10)
    return lepoll.read(fd)
  end

  return C
end

return M
