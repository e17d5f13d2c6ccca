-- lepoll.loop.slots: the descriptors tasks wait on. A slot is the loop's
-- record of one such descriptor: the object it was given as, the flags it
-- has in the set (reg), the task waiting to read and the one waiting to
-- write (false when none), and the task that waited on it last (owner).
--
-- Why slots outlive waits: a task that reads a socket waits on it again and
-- again. Removing the descriptor from the set when a wait ends and adding it
-- back at the next wait costs two epoll_ctl calls per wait; a slot keeps it
-- registered (level-triggered) between waits, so a wait on an already
-- registered descriptor makes no system call at all. The flags are
-- narrowed lazily: when the set reports an event nobody waits for (the
-- task is busy elsewhere, or waits to write while data comes in), the
-- registration is cut down to what is still waited for, or removed when
-- nothing is. A slot goes when its owner ends, when the descriptor is
-- handed to a watcher, when l:closing names it, and when a task waits on
-- the same number given as another object (the old one was closed and the
-- number reused: the kernel forgot the old registration).
--
-- Tokens (fast_r, fast_w): the task that may begin its next wait to read
-- (to write) on the slot, as the same object, without the checks of a
-- first wait (waits.lua: fd_waiter's steady state). A wait that begins
-- here (tasks.lua: begin_wait) gives its task the token of its direction. A
-- token holds while the slot is the loop's slot for its descriptor,
-- registered for its direction, held by the task, and no other task has
-- begun a wait on it as another object: every change to one of these (apply
-- dropping the direction, drop, a watcher taking the descriptor, another
-- object's wait) takes the token back, so a token is never wrong, only
-- missing.
--
-- Every field of a slot exists from its creation and is never set to nil,
-- so changing one never allocates (see the loop's notes on memory errors).
local lepoll = require "lepoll"

local rawequal, pairs = rawequal, pairs

local IN, OUT = lepoll.IN, lepoll.OUT

local M = {}

-- The flags the waiting tasks of slot s need (IN and OUT are distinct bits,
-- so their sum is their union).
local function wanted(s)
  return (s.reader and IN or 0) + (s.writer and OUT or 0)
end
M.wanted = wanted

-- Whether flag bit is in reg (reg holds IN, OUT or both).
local function holds(reg, bit)
  return reg == bit or reg == IN + OUT
end
M.holds = holds

-- ep:try_set(fd, flags), counted. When the set modifies an entry the
-- kernel no longer has (ENOENT: the descriptor was closed behind the
-- loop's back, its number reused), the stale entry goes and the
-- descriptor is added afresh.
local function set_flags(self, fd, flags)
  local ep = self.ep
  self.nctl = self.nctl + 1
  local ok, why, errname = ep:try_set(fd, flags)
  if ok or errname ~= "ENOENT" or ep:find(fd) == nil then return ok, why, errname end
  ep:try_remove(fd)
  self.nctl = self.nctl + 2
  return ep:try_set(fd, flags)
end
M.set_flags = set_flags

-- Changes the set to `flags` for s (0: removes it). Returns true, or nil,
-- message and errno name. A descriptor closed behind the loop's back makes
-- removal fail; the set's entry goes either way, and so does the slot's.
local function apply(self, s, flags)
  if flags == 0 then
    self.nctl = self.nctl + 1
    self.ep:try_remove(s.fd)
    s.reg, s.fast_r, s.fast_w = 0, false, false
    return true
  end
  local ok, why, errname = set_flags(self, s.fd, flags)
  if not ok then return nil, why, errname end
  s.reg = flags
  if not holds(flags, IN) then s.fast_r = false end
  if not holds(flags, OUT) then s.fast_w = false end
  return true
end
M.apply = apply

-- Drops slot s: out of the set and out of the loop's slots. Its waiters
-- must have been dealt with by the caller.
function M.drop(self, s)
  if s.reg ~= 0 then apply(self, s, 0) end
  s.fast_r, s.fast_w = false, false
  if self.slots[s.fd] == s then self.slots[s.fd] = nil end
end

local function new_slot(fd, obj)
  return { fd = fd, obj = obj, reg = 0, reader = false, writer = false, owner = false, fast_r = false, fast_w = false }
end

-- The slot for fd given as obj, made when missing. An idle slot that holds
-- another object for the same number is stale (see above): it is dropped
-- and a new one made. May raise a memory error before changing anything.
function M.get(self, fd, obj)
  local s = self.slots[fd]
  if s and not rawequal(s.obj, obj) and not s.reader and not s.writer then
    local fresh = new_slot(fd, obj)
    M.drop(self, s)
    self.slots[fd] = fresh
    return fresh
  end
  if s then return s end
  s = new_slot(fd, obj)
  self.slots[fd] = s
  return s
end

-- Makes sure the set reports `bit` (IN or OUT) for s. Returns true or nil,
-- message, errno name. Bits already registered stay (see above).
function M.arm(self, s, bit)
  local reg = s.reg
  if holds(reg, bit) then return true end
  return apply(self, s, reg == 0 and bit or IN + OUT)
end

-- After an event on s that a waiter-less direction had: narrows the
-- registration to what is waited for now; with nothing waited for, the
-- slot goes.
function M.narrow(self, s)
  local want = wanted(s)
  if want == 0 then
    M.drop(self, s)
  elseif want ~= s.reg then
    apply(self, s, want)
  end
end

-- An idle slot on fd (nobody waiting) gives way to a watcher; a busy one
-- does not. Returns the slot that must be given up (M.give_up) once the
-- watcher holds the descriptor, or nil.
function M.idle(self, fd)
  local s = self.slots[fd]
  if s and not s.reader and not s.writer then return s end
  return nil
end

-- The idle slot s leaves the loop's books, its descriptor now a
-- watcher's: fields only (the set's entry is the watcher's now).
function M.give_up(self, s)
  s.reg, s.fast_r, s.fast_w = 0, false, false
  if self.slots[s.fd] == s then self.slots[s.fd] = nil end
end

-- A task ends: the slots it waited on last leave the set when nobody
-- waits on them; one that another task waits on becomes that task's.
function M.release_owned(self, task)
  local slots = self.slots
  for fd, s in pairs(task.held) do
    if slots[fd] == s and s.owner == task then
      local waiter = s.reader or s.writer
      if waiter then s.owner = waiter else M.drop(self, s) end
    end
  end
end

return M
