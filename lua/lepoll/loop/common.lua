-- lepoll.loop.common: what the parts of the loop share: argument checks,
-- the names of watchers, timers and tasks in messages, and the recording
-- of a callback's or task's failure. lepoll is composed through its
-- non-raising forms (try_tofd, try_flags, try_set): their results are
-- values, never error text to take apart.
local lepoll = require "lepoll"

local try_flags = lepoll.try_flags
local error, type, tostring, getmetatable, pcall, rawget = error, type, tostring, getmetatable, pcall, rawget
local format, sub = string.format, string.sub
local getinfo = debug.getinfo

local M = {}

M.CLOSED = "attempt to use a closed loop"

------------------------------------------------------------------ errors

function M.argerror(n, name, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, name, msg), level + 1)
end
local argerror = M.argerror

function M.check_open(self, level)
  if self.closed then error(M.CLOSED, level + 1) end
end

function M.callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end

function M.check_callback(f, n, name, level)
  if not M.callable(f) then
    argerror(n, name, "function expected, got " .. (f == nil and "no value" or type(f)), level + 1)
  end
end

function M.check_flags(spec, n, name, level)
  local flags, why = try_flags(spec)
  if not flags then argerror(n, name, why, level + 1) end
  return flags
end

function M.check_seconds(v, n, name, what, level)
  if type(v) ~= "number" then
    argerror(n, name, format("%s expected, got %s", what, v == nil and "no value" or type(v)), level + 1)
  end
  if v ~= v then argerror(n, name, what .. " expected, got NaN", level + 1) end
  if v < 0 then return 0 end
  return v
end

-- Any descriptor lepoll accepts, as the integer the set reports, resolved
-- by the set itself; its refusal is an argument error of `name`.
function M.resolve(self, obj, n, name, level)
  local fd, why = self.ep:try_tofd(obj)
  if not fd then argerror(n, name, why, level + 1) end
  return fd
end

-- ep:set(fd, flags), its refusal raised at `level` as lepoll words it.
-- With n and name, an argument refusal (errname EINVAL: for a watched fd
-- and valid flags, only the exclusive rule) is argument n of `name`.
function M.kernel_set(ep, fd, flags, level, n, name)
  local ok, why, errname = ep:try_set(fd, flags)
  if ok then return end
  if n and errname == "EINVAL" then argerror(n, name, why, level + 1) end
  error(why, level + 1)
end

-- Errors when fd is taken by a started watcher or a waiting task.
function M.check_free(self, fd, level)
  if self.watchers[fd] then error(format("fd %d already has an I/O watcher", fd), level + 1) end
  local s = self.slots[fd]
  if s and (s.reader or s.writer) then
    error(format("fd %d has a task waiting on it", fd), level + 1)
  end
end

---------------------------------------------------------------- messages

-- Where a function was defined, for messages.
local function defined_at(f)
  if type(f) ~= "function" then return "callable " .. type(f) end
  local info = getinfo(f, "S")
  if info.what == "C" then return "[C]" end
  return format("%s:%d", info.short_src, info.linedefined)
end

-- Names a watcher, timer or task: the first line of tracebacks.
function M.describe(obj)
  local kind = obj.kind
  if kind == "io" then
    return format("io watcher on fd %d (callback %s)", obj.fd, defined_at(obj.callback))
  elseif kind == "timer" then
    return format("timer #%d (callback %s)", obj.id, defined_at(obj.callback))
  elseif kind == "signal" then
    return format("signal watcher for %s (callback %s)", obj.name, defined_at(obj.callback))
  end
  return format("task #%d (function %s)", obj.id, defined_at(obj.fn))
end

-- An error value as text, as the standalone interpreter shows it. The
-- metatable is read raw and __tostring called protected: an error object
-- whose class raises on unknown fields (a "strict" class) or whose
-- __tostring fails is still reported, as itself.
function M.errtext(err)
  local t = type(err)
  if t == "string" or t == "number" then return tostring(err) end
  local mt = getmetatable(err)
  if type(mt) == "table" and rawget(mt, "__tostring") ~= nil then
    local ok, s = pcall(tostring, err)
    if ok and type(s) == "string" then return s end
  end
  return format("(error object is a %s value)", t)
end

------------------------------------------------------------ memory errors

-- Any call can meet a memory error before the called function starts: Lua
-- makes a call's CallInfo and stack on first use and frees them again
-- when the collector runs. An operation that must make calls after its
-- first change calls reserve() before that change: every chain of calls
-- up to RESERVE_DEPTH levels below the caller then finds what it needs
-- already made, so long as nothing allocates a new object in between
-- (only then can the collector run and free them).
local RESERVE_DEPTH = 12
local function reserve_from(n)
  -- Locals for a frame larger than a C function's minimum (LUA_MINSTACK).
  -- luacheck: ignore 211
  local a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16
  local b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16
  if n > 1 then reserve_from(n - 1) end
end

function M.reserve()
  reserve_from(RESERVE_DEPTH)
end

---------------------------------------------------------------- failures

-- The standalone interpreters (lua, luajit) stop a script on Ctrl-C by
-- raising "interrupted!" from a hook, in whatever code runs then: that is
-- the user's decision, not a callback's failure, so it never goes to
-- on_error; run raises it. (A script that wants Ctrl-C as an event
-- watches SIGINT: l:signal.)
local function interrupted(err)
  return type(err) == "string" and sub(err, -12) == "interrupted!"
end

-- A callback, timer or task failed with self.err (already recorded, with
-- self.trace). With on_error, it handles the error now; otherwise the
-- round winds down and run raises it. Takes the record before the call
-- (reserved, so the call itself cannot fail): on_error runs once.
function M.failed(self, obj)
  local on_error = self.on_error
  if on_error and not interrupted(self.err) then
    M.reserve()
    local err, trace = self.err, self.trace
    self.err = false
    on_error(err, trace, obj)
  else
    self.failed = true
  end
end

-- A watcher or timer callback raised err under xpcall. The message handler
-- kept the traceback (it is not called for memory errors: then the message
-- alone).
function M.callback_failed(self, obj, err)
  self.err = err
  self.trace = self.htrace or M.describe(obj) .. ": " .. M.errtext(err)
  self.htrace = false
  M.failed(self, obj)
end

return M
