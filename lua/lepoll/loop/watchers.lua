-- lepoll.loop.watchers: I/O watchers, a callback per descriptor, kept in
-- the loop's set for as long as they are started (see l:io).
local lepoll = require "lepoll"
local common = require "lepoll.loop.common"
local slots = require "lepoll.loop.slots"

local setmetatable, type, pcall, error = setmetatable, type, pcall, error
local format = string.format
local check_open, check_free, kernel_set = common.check_open, common.check_free, common.kernel_set

local EXCLUSIVE = lepoll.EXCLUSIVE

local Watcher = {}
Watcher.__index = Watcher

local M = { Watcher = Watcher }

-- Puts w's descriptor in the set with w's flags and w in the loop's
-- watchers. A descriptor a task waited on before (an idle slot, see
-- slots.lua) is taken over: modified in place, or, for exclusive flags,
-- which the kernel takes only on add, removed and added again. Returns
-- true, or nil, message and errno name with nothing changed. Run
-- protected by attach: the table's cell is taken first.
local function attach_body(self, w)
  local fd, flags = w.fd, w.flags
  self.watchers[fd] = w
  local ep = self.ep
  local idle = slots.idle(self, fd)
  local exclusive = idle and idle.reg ~= 0 and lepoll.has(flags, EXCLUSIVE)
  -- Removing comes before adding: the add's call is reserved.
  if exclusive then common.reserve() end
  if exclusive then
    self.nctl = self.nctl + 1
    ep:try_remove(fd)
    idle.reg, idle.fast_r, idle.fast_w = 0, false, false
  end
  local ok, why, errname = slots.set_flags(self, fd, flags)
  if not ok then
    self.watchers[fd] = nil
    return nil, why, errname
  end
  if idle then slots.give_up(self, idle) end
  self.nwatchers = self.nwatchers + 1
  w.active, w.round = true, self.round
  return true
end

-- attach_body, protected; raises its refusal at `level`.
local function attach(self, w, level)
  local done, ok, why = pcall(attach_body, self, w)
  if done and ok then return end
  if self.watchers[w.fd] == w and not w.active then self.watchers[w.fd] = nil end
  if not done then error(ok, 0) end
  error(why, level + 1)
end

-- l:io(obj, flags, callback)
function M.io(self, obj, flags, callback)
  check_open(self, 2)
  local fd = common.resolve(self, obj, 1, "io", 2)
  flags = common.check_flags(flags, 2, "io", 2)
  common.check_callback(callback, 3, "io", 2)
  check_free(self, fd, 2)
  local w = setmetatable({
    kind = "io", loop = self, fd = fd, flags = flags, callback = callback,
    active = false, round = 0,
    -- A handle or socket given as the descriptor: while the watcher lives,
    -- the collector must not close its fd.
    handle = type(obj) ~= "number" and obj or false,
  }, Watcher)
  attach(self, w, 2)
  return w
end

function Watcher:stop()
  if not self.active then return end
  local l = self.loop
  -- Fails only when the descriptor was closed before: the kernel has
  -- already forgotten it, and the set's entry is dropped either way. The
  -- call first: what follows changes fields only.
  l.ep:try_remove(self.fd)
  self.active = false
  l.watchers[self.fd] = nil
  l.nwatchers = l.nwatchers - 1
  l.nctl = l.nctl + 1
end

function Watcher:start()
  local l = self.loop
  check_open(l, 2)
  if self.active then return end
  check_free(l, self.fd, 2)
  attach(l, self, 2)
end

function Watcher:set(flags)
  local l = self.loop
  check_open(l, 2)
  flags = common.check_flags(flags, 1, "set", 2)
  if self.active then
    l.nctl = l.nctl + 1
    kernel_set(l.ep, self.fd, flags, 2, 1, "set")
  end
  self.flags = flags
end

function Watcher:is_active()
  return self.active
end

function Watcher:__tostring()
  return format("io{fd=%d, flags=\"%s\"%s}", self.fd, lepoll.flagnames(self.flags),
    self.active and "" or ", stopped")
end

return M
