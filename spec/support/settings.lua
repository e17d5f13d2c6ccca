-- What a run of the specs is told through the environment: the
-- interpreter and build under test, numeric LEPOLL_* settings, the seed
-- of the randomised specs.
local compat = require "support.compat"

local M = {}

-- The interpreter running the suite, for child processes, and the build
-- it loads lepoll from (the Makefile sets both; these are the defaults).
M.LUA = os.getenv("LEPOLL_LUA") or "lua5.4"
M.BUILD = os.getenv("LEPOLL_BUILD") or "build"

-- The value of the environment variable `name` as convert(value) makes
-- it, or `default` when it is unset or empty; fails when convert says nil.
local function from_env(name, default, convert, what)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  local n = convert(v)
  assert(n, name .. " must be " .. what .. ", got " .. v)
  return n
end

-- A number from the environment variable `name`, or `default`.
function M.env_number(name, default)
  return from_env(name, default, tonumber, "a number")
end

-- An integer from the environment variable `name`, or `default`.
function M.env_integer(name, default)
  return from_env(name, default, function(v) return compat.tointeger(tonumber(v)) end, "an integer")
end

-- The seed of a randomised spec: LEPOLL_SEED, or a new one in
-- [1, 0x7fffffff] from the kernel's random bytes (math.randomseed()
-- without a seed exists only on 5.4). A spec prints it, so that
-- LEPOLL_SEED can replay the run (with the same Lua: math.random differs
-- between versions).
function M.seed()
  local env = os.getenv("LEPOLL_SEED")
  if env and env ~= "" then return M.env_integer("LEPOLL_SEED") end
  local f = assert(io.open("/dev/urandom", "rb"))
  local b1, b2, b3, b4 = f:read(4):byte(1, 4)
  f:close()
  return (((b1 * 256 + b2) * 256 + b3) * 256 + b4) % 0x7fffffff + 1 -- 1 .. 0x7fffffff
end

return M
