-- lepoll.loop.waits: how a task waits. l:readable, l:writable and
-- l:sleep are here, and the protocol every wait of a task follows (a join,
-- a condition's wait and l:wait_signal use it too): this_task, request,
-- deadline_of.
--
-- A wait is a request: the task checks its arguments, notes what it wants
-- in its own fields and yields WAIT; the loop, back in its own code, carries
-- the request out (tasks.lua: begin_wait) and the task stays suspended, or
-- refuses it and resumes the task at once with FAIL and the reason, which
-- the wait raises in the task. So nothing is registered for a task that
-- cannot yield (the yield itself fails, in the task, before anything
-- happened), and a failure while registering (the kernel refuses the
-- descriptor, memory runs out) is dealt with in one place, the loop's. One
-- wait skips the request: a task waiting again on a descriptor it holds,
-- registered for the same direction, begins its wait itself (fd_waiter).
local common = require "lepoll.loop.common"

local co_yield, co_running = coroutine.yield, coroutine.running
local co_isyieldable = coroutine.isyieldable -- Lua 5.3+, LuaJIT 2.1
local setmetatable, type, error, rawequal = setmetatable, type, error, rawequal
local io_type = io.type
local format = string.format


local function token(name)
  return setmetatable({}, { __tostring = function() return name end })
end
-- What a task yields to the loop; anything else is a stray yield.
local WAIT = token("lepoll.loop wait")
-- Resumes a task whose request the loop refused.
local FAIL = token("lepoll.loop refusal")
-- Yielded by a task that ends here: it was cancelled, or its loop closed.
local END = token("lepoll.loop end")

-- task.fobj for an object wait_fd does not cache (a file): no argument
-- is ever this function, and no __eq is ever asked about one.
local function UNCACHED() end

local M = { WAIT = WAIT, FAIL = FAIL, END = END }

-- The task of this loop running now, or an error naming `name`. A task
-- whose loop was closed, or that was cancelled, ends here.
local function this_task(self, name, level)
  local co = co_running()
  if self.closed then
    local cur = self.current
    if cur and cur.co == co then co_yield(END) end
    error(common.CLOSED, level + 1)
  end
  local task = co and self.tasks[co]
  if not task or task.state ~= "running" then
    error(format("%s must be called from a task of this loop (see spawn)", name), level + 1)
  end
  if task.cancelled then
    task.req = "end"
    co_yield(END)
  end
  return task
end
M.this_task = this_task

-- l:running(): the task of this loop whose code runs now (the caller's),
-- or nil: outside any task, in a coroutine a task resumed, in a task of
-- another loop. After close, the tasks it ends at their next wait.
function M.running(self)
  local task = self.tasks[co_running()]
  if task and task.state == "running" then return task end
  return nil
end

-- Where coroutine.isyieldable tells (5.3+, LuaJIT), a wait that cannot
-- yield is refused in our words; elsewhere the yield's own error says so.
local function check_yieldable(task, name, level)
  if co_isyieldable and not co_isyieldable() then
    task.req = false
    error(format("%s cannot wait here: the task would yield across a C-call boundary", name), level + 1)
  end
end

-- A refusal of a wait on a descriptor: msg, after "name: " for a method.
local function refuse(msg, name, method, level)
  error(method and name .. ": " .. msg or msg, level + 1)
end

-- Yields task's request (its req fields are set) and returns what the wait
-- returns (false from the loop stands for nil); a refusal is raised at
-- `level` (for a method, see wait_fd: after "name: ").
local function request(task, name, level, method)
  check_yieldable(task, name, level + 1)
  local a, b, c = co_yield(WAIT)
  task.pending = false
  if rawequal(a, FAIL) then
    -- The kernel's refusal, at the caller's line; a memory error as it is.
    if not c then error(b, 0) end
    refuse(b, name, method, level + 1)
  end
  if a then return a end
  return nil, b or nil
end
M.request = request

local function deadline_of(self, timeout, n, name, level)
  if timeout == nil then return false end
  return self.clock() + common.check_seconds(timeout, n, name, "timeout (seconds)", level + 1)
end
M.deadline_of = deadline_of

-- Whether obj has input buffered outside the kernel (LuaSocket, LuaSec).
local function dirty(obj)
  local t = type(obj)
  if t ~= "userdata" and t ~= "table" then return false end
  local d = obj.dirty
  return d ~= nil and d(obj) and true or false
end

-- The wait of readable and writable, and of the methods of a layer above
-- that wait on a descriptor (a wrapped socket's receive, lepoll.net.socket:
-- method true), but for their steady state (fd_waiter). Its errors call
-- it `name` and are raised at `level`, as its caller would pass it to
-- error: at the line that called readable, or the method. A method's
-- refusals that would not name it (the descriptor taken, the set refusing
-- it) begin with "name: ".
local function wait_fd(self, obj, timeout, reading, name, level, method)
  local task = self.tasks[co_running()]
  -- Any other wait (this_task's common case first: a running task, not
  -- cancelled). The object the task waited on last resolves by its
  -- getfd alone, while getfd is the same function and returns the same
  -- number; anything else is resolved by the set (ep:try_tofd), and the
  -- task's steady state starts again from the wait it then begins.
  if not task or task.state ~= "running" or task.cancelled then task = this_task(self, name, level + 1) end
  local fd, known
  local get = task.fget
  if get and rawequal(obj, task.fobj) and obj.getfd == get and get(obj) == task.ffd then
    fd, known = task.ffd, true
  else
    if method then
      local why
      fd, why = self.ep:try_tofd(obj)
      if not fd then refuse(why, name, method, level + 1) end
    else
      fd = common.resolve(self, obj, 1, name, level + 1)
    end
    local t = type(obj)
    get = (t == "table" or t == "userdata") and io_type(obj) == nil and obj.getfd
    task.fslot = false
    if type(get) == "function" then
      task.fobj, task.fget, task.ffd = obj, get, fd
    elseif t == "number" then
      task.fobj, task.fget, task.ffd = obj, false, fd
    else
      task.fobj, task.fget, task.ffd = UNCACHED, false, -1
    end
  end
  local deadline = false
  if timeout ~= nil then deadline = deadline_of(self, timeout, 2, name, level + 1) end
  if self.watchers[fd] then
    refuse(format("fd %d has an I/O watcher: a task cannot wait on it", fd), name, method, level + 1)
  end
  local slot = self.slots[fd]
  if slot and (reading and slot.reader or not reading and slot.writer) then
    refuse(format("fd %d already has a task waiting to %s", fd, reading and "read" or "write"), name, method,
      level + 1)
  end
  if reading then
    if known then -- a table or userdata: dirty's work, written out
      local d = obj.dirty
      if d ~= nil and d(obj) then return true end
    elseif dirty(obj) then
      return true
    end
  end
  task.req, task.req_fd, task.req_obj, task.req_dir, task.req_deadline =
    "fd", fd, obj, reading and "r" or "w", deadline
  -- not a tail call: levels count wait_fd
  local ok, why = request(task, name, level + 1, method)
  return ok, why
end

-- The waits on a descriptor: wait_fd behind its steady state, written out
-- here (a call less per wait). reading: whether the wait is to read.
-- public_name: the method of the loop it is (readable, writable), whose
-- errors go to its caller; or nil for the wait of a method of a layer
-- above (lepoll.net.socket), called as wait(l, obj, timeout, name, level)
-- (see wait_fd). Not tail calls: error levels count these frames. true
-- alone, or nil and "timeout" or "closed".
--
-- The steady state: the task waits again, with no timeout, on the object
-- and in the direction of its last wait on a descriptor, and still holds
-- that direction's token of the slot (slots.lua): the slot is the loop's,
-- registered for the direction, and nobody else waits there. (A task
-- cancelled, or whose loop closed, has no fslot.) Left to check are the
-- object's descriptor (getfd: a closed socket gives another) and its
-- buffered input; the wait then begins in fields only (nothing to
-- allocate, nothing to fail), once the task is known to be able to yield,
-- and the loop finds it begun (run_current). The object is compared with
-- == (rawequal, a C call, adds some 250 machine instructions per wait,
-- bench/tasks_profile.lua counts): so of two objects whose class has
-- __eq, __eq is asked, and an object it calls equal to the last one must
-- still give the slot's number through the same getfd; UNCACHED, a
-- function, equals no object. Without isyieldable (PUC Lua 5.1) there is
-- no steady state.
local function fd_waiter(reading, public_name)
  local TOKEN, SIDE = reading and "fast_r" or "fast_w", reading and "reader" or "writer"
  if not co_isyieldable then TOKEN = "no steady state" end -- a field no slot has
  return function(self, obj, timeout, name, level)
    local task = self.tasks[co_running()]
    local s = task and task.fslot
    if s and s[TOKEN] == task and task.fobj == obj and timeout == nil and task.state == "running" then
      local get = task.fget
      if not get or (obj.getfd == get and get(obj) == s.fd) then
        if reading and get then -- a table or userdata: dirty's work, written out
          local d = obj.dirty
          if d ~= nil and d(obj) then return true end
        end
        if co_isyieldable() then
          s[SIDE], s.owner = task, task
          task.wait, task.state, task.round = "fd", "waiting", self.round
          self.nwaits = self.nwaits + 1
          local a, b = co_yield(WAIT)
          task.pending = false
          if a then return a end
          return nil, b or nil
        end
      end
    end
    local ok, why
    if public_name then
      ok, why = wait_fd(self, obj, timeout, reading, public_name, 2, false)
    else
      ok, why = wait_fd(self, obj, timeout, reading, name, level + 1, true)
    end
    if ok then return ok end
    return ok, why
  end
end
M.readable, M.writable = fd_waiter(true, "readable"), fd_waiter(false, "writable")
M.wait_read, M.wait_write = fd_waiter(true), fd_waiter(false)

function M.sleep(self, seconds)
  local task = this_task(self, "sleep", 2)
  seconds = common.check_seconds(seconds, 1, "sleep", "seconds", 2)
  task.req, task.req_deadline = "sleep", self.clock() + seconds
  local ok = request(task, "sleep", 2)
  return ok
end

return M
