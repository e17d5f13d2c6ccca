-- Shared by the specs: raw descriptors, descriptor-leak guard, waiting,
-- error messages and per-test cleanups.
local T = require "lepoll_test"
local lepoll = require "lepoll"
local luassert = require "luassert"

local H = { T = T }

-- ------------------------------------------------------ Lua versions
-- The suite runs under Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT 2.1 (make test
-- LUA=...; make test-all). Spec files use only syntax all of them parse;
-- what a version lacks is skipped explicitly with H.it_if, never silently.

-- 501 .. 504 (LuaJIT says 501), and whether this is LuaJIT.
H.LUA_VERSION = ({ ["Lua 5.1"] = 501, ["Lua 5.2"] = 502, ["Lua 5.3"] = 503, ["Lua 5.4"] = 504 })[_VERSION]
H.JIT = type(rawget(_G, "jit")) == "table"
-- The interpreter running the suite, for child processes, and the build
-- it loads lepoll from (the Makefile sets both; these are the defaults).
H.LUA = os.getenv("LEPOLL_LUA") or "lua5.4"
H.BUILD = os.getenv("LEPOLL_BUILD") or "build"

-- Language features by version.
H.has = {
  toclose = H.LUA_VERSION >= 504,          -- local x <close>
  integers = H.LUA_VERSION >= 503,         -- the integer subtype, math.type
  bitops = H.LUA_VERSION >= 503,           -- & | ~ << >> as operators
  pairs_mm = H.LUA_VERSION >= 502 and not H.JIT, -- __pairs
  gc_mm_tables = H.LUA_VERSION >= 502,     -- __gc on tables
  generational = H.LUA_VERSION >= 504,     -- collectgarbage("generational")
}

-- it(name, fn) when cond holds, else an explicit pending with the reason.
-- Busted's it and pending live in the spec file's environment, so they
-- are passed: H.it_if(it, pending, H.has.toclose, "needs <close>")(name, fn)
function H.it_if(it, pending, cond, reason)
  return function(name, fn)
    if cond then
      it(name, fn)
    else
      pending(name .. " [skipped on " .. (H.JIT and "LuaJIT" or _VERSION) .. ": " .. reason .. "]")
    end
  end
end

-- Compiles Lua source that only some versions parse (<close>, integer
-- division, bit operators); call it only where H.has says they exist.
function H.load(src, name)
  local chunk, err = (rawget(_G, "loadstring") or load)(src, "=" .. (name or "H.load"))
  if not chunk then error(err, 2) end
  return chunk
end

-- Bitwise or / and / not-in-32-bits of flag words, on any version (flags
-- are integers in [0, 2^32)). lepoll.has covers the tests of one flag.
local function bits(a, b, keep)
  local r, bit = 0, 1
  for _ = 1, 32 do
    local x, y = a % 2, b % 2
    if keep(x == 1, y == 1) then r = r + bit end
    a, b, bit = (a - x) / 2, (b - y) / 2, bit * 2
  end
  return r
end
function H.bor(a, ...)
  for i = 1, select("#", ...) do a = bits(a, (select(i, ...)), function(x, y) return x or y end) end
  return a
end
function H.band(a, ...)
  for i = 1, select("#", ...) do a = bits(a, (select(i, ...)), function(x, y) return x and y end) end
  return a
end
-- a without the bits of b
function H.bclear(a, b) return bits(a, b, function(x, y) return x and not y end) end

-- io.popen(cmd, mode), and a function that closes it and says how the
-- command ended, as p:close() does from Lua 5.2 on: true or nil, "exit" or
-- "signal", the code. The close of 5.1 and LuaJIT says only true, so there
-- the shell writes the subshell's $? to a file (signal n shows as 128 + n).
function H.popen(cmd, mode)
  if H.LUA_VERSION >= 502 then
    local p = assert(io.popen(cmd, mode))
    return p, function() return p:close() end
  end
  local status = os.tmpname()
  local p = assert(io.popen("( " .. cmd .. "\n); echo $? >'" .. status .. "'", mode))
  return p, function()
    p:close()
    local f = assert(io.open(status))
    local code = assert(tonumber(f:read("*a")))
    f:close()
    os.remove(status)
    if code > 128 then return nil, "signal", code - 128 end
    return code == 0 or nil, "exit", code
  end
end

-- package.searchpath as Lua source for a child interpreter's -e script,
-- defining a local `searchpath`: the library's where it exists (not 5.1),
-- else the same search written out.
H.SEARCHPATH_SRC = "local searchpath = package.searchpath or function(name, path) "
  .. "for t in path:gmatch('[^;]+') do local f = t:gsub('%?', (name:gsub('%.', '/'))) "
  .. "local h = io.open(f) if h then h:close() return f end end end "

-- math.type where it exists; before 5.3 every number is a "float" unless
-- integral, which is what an integer looks like there.
function H.numtype(v)
  if type(v) ~= "number" then return nil end
  if math.type then return math.type(v) end
  return (v == math.floor(v) and v > -2 ^ 63 and v < 2 ^ 63) and "integer" or "float"
end

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
-- On LuaJIT the compiler is off meanwhile, its traces flushed: traces
-- it records take memory of their own, which is not the code's.
function H.alloc_growth(run, warm, n)
  local jit = rawget(_G, "jit")
  if H.JIT and jit.status() then
    jit.off()
    jit.flush()
    local ok, growth = pcall(H.alloc_growth, run, warm, n)
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

return H
