-- fork: what a child may do with a set it inherited. The epoll descriptor
-- is close-on-exec, so a program the child executes has no set. A forked
-- child shares the kernel's epoll set with its parent (one open file
-- description) but has its own copy of the table and of the ready set:
-- closing its copy (or exiting) leaves the parent's set as it was; set,
-- remove and wait in the child reach the parent's kernel set behind the
-- parent's table, which these specs show too.
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)

local IN = lepoll.IN

local popen = H.popen

local in_child = H.in_child

-- The descriptors of a program this process executes, as fd -> what it
-- is (`ls -l /proc/self/fd` run by a shell).
local function exec_fds()
  local p, close = popen("exec ls -l /proc/self/fd")
  local fds = {}
  for line in p:lines() do
    local fd, target = line:match(" (%d+) %-> (.*)$")
    if fd then fds[tonumber(fd)] = target end
  end
  assert.are.same({ true, "exit", 0 }, { close() })
  return fds
end

-- What this process's descriptor fd is, seen from a shell.
local function link_of(fd)
  local p = assert(io.popen("readlink /proc/$PPID/fd/" .. fd))
  local target = p:read("*l")
  p:close()
  return target
end

local function set_string(ep, entries, ready)
  return ("epoll{fd=%d, num_file_descrs=64, max_ready_events=256, flags_by_fd={%s}, ready={%s}}")
    :format(ep:getfd(), entries or "", ready or "")
end

describe("fork", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("an executed program does not have the epoll descriptor: it is close-on-exec", function()
    local ep = C.new_set(64)
    local r, w = C.pipe()
    ep:set(r, "in")
    local epfd = ep:getfd()
    assert.is_true(T.cloexec(epfd))
    assert.are.equal("anon_inode:[eventpoll]", link_of(epfd)) -- the shell can see it here
    for fd, target in pairs(exec_fds()) do
      assert.are_not.equal("anon_inode:[eventpoll]", target, "fd " .. fd .. " is an epoll set")
    end
    -- A forked child that executes a program: the same.
    local out, how, code = in_child(function()
      for _, target in pairs(exec_fds()) do
        if target == "anon_inode:[eventpoll]" then return "an epoll set" end
      end
      return "none"
    end)
    assert.are.same({ "none", "exit", 0 }, { out, how, code })
    T.write(w, "x")
    assert.are.equal("ok", ep:wait(0))
  end)

  it("a forked child has the set: the same kernel set, a copy of the table and ready set", function()
    local ep = C.new_set(64)
    local r, w = C.pipe()
    ep:set(r, "in")
    T.write(w, "x")
    assert.are.equal("ok", ep:wait(0))
    local out, how, code = in_child(function()
      local before = tostring(ep)
      ep:invariant() -- the child's table agrees with the kernel's set
      local res = ep:wait(0)
      return table.concat({ before, res, tostring(ep), tostring(T.cloexec(ep:getfd())) }, "\n")
    end)
    local s = set_string(ep, ('[%d]="in"'):format(r), ('[%d]="in"'):format(r))
    assert.are.same({ table.concat({ s, "ok", s, "true" }, "\n"), "exit", 0 }, { out, how, code })
  end)

  it("closing the set in a forked child does not disturb the parent", function()
    local ep = C.new_set(64)
    local r1, w1 = C.pipe()
    local r2, w2 = C.pipe()
    ep:set(r1, "in")
    ep:set(r2, "in|et")
    T.write(w1, "x")
    local before = tostring(ep)
    local out, how, code = in_child(function()
      local epfd = ep:getfd()
      ep:close()
      -- Closing watched descriptors in the child does not matter either:
      -- the parent holds them open.
      H.close(r1, r2)
      return table.concat({ tostring(ep), tostring(T.cloexec(epfd)) }, " ")
    end)
    assert.are.same({ "epoll{closed} nil", "exit", 0 }, { out, how, code })
    assert.are.equal(before, tostring(ep))
    ep:invariant()
    T.write(w2, "y")
    assert.are.equal("ok", ep:wait(0))
    local ready = H.ready(ep)
    table.sort(ready, function(a, b) return a[1] < b[1] end)
    assert.are.same({ { r1, IN }, { r2, IN } }, ready)
    -- The set goes on working: set, remove, wait.
    ep:remove(r1)
    ep:set(r2, "in")
    assert.are.equal("ok", ep:wait(0))
    assert.are.same({ { r2, IN } }, H.ready(ep))
    ep:invariant()
  end)

  it("a child that exits without closing the set does not disturb the parent either", function()
    local ep = C.new_set(64)
    local r, w = C.pipe()
    ep:set(r, "in")
    local out, how, code = in_child(function() return "bye" end)
    assert.are.same({ "bye", "exit", 0 }, { out, how, code })
    T.write(w, "x")
    assert.are.equal("ok", ep:wait(0))
    assert.are.same({ { r, IN } }, H.ready(ep))
    ep:invariant()
  end)

  it("set and remove in a child change the parent's kernel set, not its table", function()
    local ep = C.new_set(64)
    local r1, w1 = C.pipe()
    local r2, w2 = C.pipe()
    ep:set(r1, "in")
    T.write(w1, "x")
    T.write(w2, "y")
    local out, how, code = in_child(function()
      ep:remove(r1)
      ep:set(r2, "in")
      return tostring(ep)
    end)
    assert.are.same({ set_string(ep, ('[%d]="in"'):format(r2)), "exit", 0 }, { out, how, code })
    -- The parent's table is as it was; the kernel's set is the child's.
    assert.are.equal(set_string(ep, ('[%d]="in"'):format(r1)), tostring(ep))
    assert.are.equal(("lepoll: invariant: fd %d is in the kernel's set (in|err|hup) but not in the "
      .. "table"):format(r2), H.error_of(ep.invariant, ep))
    -- Its waits report the fd it does not watch, never the one it does.
    assert.are.equal("ok", ep:wait(0))
    assert.are.same({ { r2, IN } }, H.ready(ep))
    -- Repairs: remove r1 (the kernel has no entry: ENOENT, dropped anyway)
    -- and set it again; r2 cannot be added (EEXIST) until it is closed.
    assert.are.equal(("lepoll: remove fd %d: No such file or directory (ENOENT)"):format(r1),
      H.msg_of(function() ep:remove(r1) end))
    ep:set(r1, "in")
    assert.are.equal(("lepoll: set fd %d: File exists (EEXIST)"):format(r2),
      H.msg_of(function() ep:set(r2, "in") end))
    H.close(r2)
    ep:invariant()
    assert.are.equal("ok", ep:wait(0))
    assert.are.same({ { r1, IN } }, H.ready(ep))
    H.close(w2)
  end)

  it("a wait in a child consumes et and oneshot events: the parent does not see them", function()
    local ep = C.new_set(64)
    local r1, w1 = C.pipe()
    local r2, w2 = C.pipe()
    local r3, w3 = C.pipe()
    ep:set(r1, "in|et")
    ep:set(r2, "in|oneshot")
    ep:set(r3, "in")
    T.write(w1, "x")
    T.write(w2, "y")
    T.write(w3, "z")
    local out, how, code = in_child(function()
      local res = ep:wait(0)
      return res .. " " .. #H.ready(ep)
    end)
    assert.are.same({ "ok 3", "exit", 0 }, { out, how, code })
    -- Only the level-triggered fd is still reported to the parent.
    assert.are.equal("ok", ep:wait(0))
    assert.are.same({ { r3, IN } }, H.ready(ep))
    ep:invariant() -- a oneshot entry that fired counts as consistent
    -- Set again (EPOLL_CTL_MOD), both are reported once more.
    ep:set(r1, "in|et")
    ep:set(r2, "in|oneshot")
    ep:remove(r3)
    assert.are.equal("ok", ep:wait(0))
    local ready = H.ready(ep)
    table.sort(ready, function(a, b) return a[1] < b[1] end)
    assert.are.same({ { r1, IN }, { r2, IN } }, ready)
  end)
end)
