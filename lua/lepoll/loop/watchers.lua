-- lepoll.loop.watchers: I/O watchers, a callback per descriptor, kept in
-- the loop's set for as long as they are started (see l:io).
local lepoll = require "lepoll"
local common = require "lepoll.loop.common"

local setmetatable, type = setmetatable, type
local format = string.format
local check_open, check_free, kernel_set = common.check_open, common.check_free, common.kernel_set

local Watcher = {}
Watcher.__index = Watcher

local M = { Watcher = Watcher }

-- l:io(obj, flags, callback)
function M.io(self, obj, flags, callback)
  check_open(self, 2)
  local fd = common.resolve(self, obj, 1, "io", 2)
  flags = common.check_flags(flags, 2, "io", 2)
  common.check_callback(callback, 3, "io", 2)
  check_free(self, fd, 2)
  kernel_set(self.ep, fd, flags, 2)
  local w = setmetatable({
    kind = "io", loop = self, fd = fd, flags = flags, callback = callback,
    active = true, round = self.round,
    -- A handle or socket given as the descriptor: while the watcher lives,
    -- the collector must not close its fd.
    handle = type(obj) ~= "number" and obj or nil,
  }, Watcher)
  self.watchers[fd] = w
  self.nwatchers = self.nwatchers + 1
  return w
end

function Watcher:stop()
  if not self.active then return end
  local l = self.loop
  self.active = false
  l.watchers[self.fd] = nil
  l.nwatchers = l.nwatchers - 1
  -- Fails only when the descriptor was closed before: the kernel has
  -- already forgotten it, and the set's entry is dropped either way.
  l.ep:try_remove(self.fd)
end

function Watcher:start()
  local l = self.loop
  check_open(l, 2)
  if self.active then return end
  check_free(l, self.fd, 2)
  kernel_set(l.ep, self.fd, self.flags, 2)
  self.active, self.round = true, l.round
  l.watchers[self.fd] = self
  l.nwatchers = l.nwatchers + 1
end

function Watcher:set(flags)
  local l = self.loop
  check_open(l, 2)
  flags = common.check_flags(flags, 1, "set", 2)
  if self.active then kernel_set(l.ep, self.fd, flags, 2, 1, "set") end
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
