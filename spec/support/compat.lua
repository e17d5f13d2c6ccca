-- Lua-version compatibility for the specs: which Lua runs them, what it
-- has, and the same operation written once for every version.
--
-- The suite runs under Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT 2.1 (make test
-- LUA=...; make test-all). Spec files use only syntax all of them parse;
-- what a version lacks is skipped explicitly with H.it_if, never silently.
local M = {}

-- 501 .. 504 (LuaJIT says 501), and whether this is LuaJIT.
M.LUA_VERSION = ({ ["Lua 5.1"] = 501, ["Lua 5.2"] = 502, ["Lua 5.3"] = 503, ["Lua 5.4"] = 504 })[_VERSION]
M.JIT = type(rawget(_G, "jit")) == "table"

-- Language and library features by version.
M.has = {
  toclose = M.LUA_VERSION >= 504,          -- local x <close>
  integers = M.LUA_VERSION >= 503,         -- the integer subtype, math.type
  bitops = M.LUA_VERSION >= 503,           -- & | ~ << >> as operators
  pairs_mm = M.LUA_VERSION >= 502 and not M.JIT, -- __pairs
  gc_mm_tables = M.LUA_VERSION >= 502,     -- __gc on tables
  generational = M.LUA_VERSION >= 504,     -- collectgarbage("generational")
  popen_status = M.LUA_VERSION >= 502,     -- p:close() of io.popen says how the command ended
}

-- it(name, fn) when cond holds, else an explicit pending with the reason.
-- Busted's it and pending live in the spec file's environment, so they
-- are passed: H.it_if(it, pending, H.has.toclose, "needs <close>")(name, fn)
function M.it_if(it, pending, cond, reason)
  return function(name, fn)
    if cond then
      it(name, fn)
    else
      pending(name .. " [skipped on " .. (M.JIT and "LuaJIT" or _VERSION) .. ": " .. reason .. "]")
    end
  end
end

-- Compiles Lua source that only some versions parse (<close>, integer
-- division, bit operators); call it only where H.has says they exist.
function M.load(src, name)
  local chunk, err = (rawget(_G, "loadstring") or load)(src, "=" .. (name or "H.load"))
  if not chunk then error(err, 2) end
  return chunk
end

-- Compiles src, as text only, as a chunk named `name` that sees only the
-- table env: load's mode and env from 5.2 on (LuaJIT has them too),
-- loadstring and setfenv on 5.1. Returns the chunk, or nil and the error,
-- as load does.
function M.load_in(src, name, env)
  if M.LUA_VERSION >= 502 or M.JIT then return load(src, name, "t", env) end
  local chunk, err = rawget(_G, "loadstring")(src, name)
  if chunk then rawget(_G, "setfenv")(chunk, env) end
  return chunk, err
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
function M.bor(a, ...)
  for i = 1, select("#", ...) do a = bits(a, (select(i, ...)), function(x, y) return x or y end) end
  return a
end
function M.band(a, ...)
  for i = 1, select("#", ...) do a = bits(a, (select(i, ...)), function(x, y) return x and y end) end
  return a
end
-- a without the bits of b
function M.bclear(a, b) return bits(a, b, function(x, y) return x and not y end) end

-- How a shell command ended, from the status ($?) the shell wrote to the
-- file at `path` (removed here), as p:close() of io.popen says it from Lua
-- 5.2 on: true or nil, "exit" or "signal", the code (signal n shows in $?
-- as 128 + n).
function M.exit_status(path)
  local f = assert(io.open(path))
  local code = assert(tonumber(f:read("*a")))
  f:close()
  os.remove(path)
  if code > 128 then return nil, "signal", code - 128 end
  return code == 0 or nil, "exit", code
end

-- io.popen(cmd, mode), and a function that closes it and says how the
-- command ended, as p:close() does from Lua 5.2 on: true or nil, "exit" or
-- "signal", the code. The close of 5.1 and LuaJIT says only true, so there
-- the shell writes the subshell's $? to a file, read back by
-- H.exit_status.
function M.popen(cmd, mode)
  if M.has.popen_status then
    local p = assert(io.popen(cmd, mode))
    return p, function() return p:close() end
  end
  local status = os.tmpname()
  local p = assert(io.popen("( " .. cmd .. "\n); echo $? >'" .. status .. "'", mode))
  return p, function()
    p:close()
    return M.exit_status(status)
  end
end

-- package.searchpath as Lua source for a child interpreter's -e script,
-- defining a local `searchpath`: the library's where it exists (not 5.1),
-- else the same search written out.
M.SEARCHPATH_SRC = "local searchpath = package.searchpath or function(name, path) "
  .. "for t in path:gmatch('[^;]+') do local f = t:gsub('%?', (name:gsub('%.', '/'))) "
  .. "local h = io.open(f) if h then h:close() return f end end end "

-- math.type where it exists; before 5.3 every number is a "float" unless
-- integral, which is what an integer looks like there.
function M.numtype(v)
  if type(v) ~= "number" then return nil end
  if math.type then return math.type(v) end
  return (v == math.floor(v) and v > -2 ^ 63 and v < 2 ^ 63) and "integer" or "float"
end

-- math.tointeger where it exists (5.3 on); before, every number is a
-- double, and an integral one is what an integer is there. nil for
-- anything else.
M.tointeger = math.tointeger or function(x)
  if type(x) == "number" and x == math.floor(x) then return x end
  return nil
end

return M
