-- Fault injection: epoll_create1, epoll_ctl and epoll_wait made to fail
-- with a chosen errno on the Nth call (H.BUILD/spec/libfaults.so, from
-- spec/support/faults.c, preloaded), and real descriptor exhaustion under
-- a lowered RLIMIT_NOFILE. Each scenario runs in a child interpreter of
-- the Lua under test (H.LUA) started with the library preloaded; the child
-- reports what it saw as a table, and checks that it ends with the
-- descriptors it started with.
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)

local IN, ONESHOT, RDHUP = lepoll.IN, lepoll.ONESHOT, lepoll.RDHUP

local FAULTS = H.BUILD .. "/spec/libfaults.so"

-- The errnos injected, with glibc's text for them.
local ERRNOS = { "ENOMEM", "ENOSPC", "EMFILE", "EINTR", "EBADF" }
local TEXT = {
  ENOMEM = "Cannot allocate memory",
  ENOSPC = "No space left on device",
  EMFILE = "Too many open files",
  EINTR = "Interrupted system call",
  EBADF = "Bad file descriptor",
}

local quote, popen = H.quote, H.popen

-- What every child runs around its scenario. The scenario is loaded as
-- the chunk "scenario" and returns its facts; the child writes
-- `return {ok=..., facts=..., fds_before=..., fds_after=...}` on stdout.
-- Numbers are written with %q from 5.3 on (exact, integer or float);
-- before, %q quotes them as strings, so %.17g writes them instead.
local PRELUDE = [==[
lepoll = require "lepoll"
T = require "lepoll_test"
IN, OUT, ET, ONESHOT, RDHUP = lepoll.IN, lepoll.OUT, lepoll.ET, lepoll.ONESHOT, lepoll.RDHUP
ERRNOS = { "ENOMEM", "ENOSPC", "EMFILE", "EINTR", "EBADF" }

-- Arms a fault (see spec/support/faults.c); fails without the library.
function fault(fn, nth, err, count, after)
  local ok, msg = T.fault(fn, nth, err, count, after)
  assert(ok, msg)
end

function calls(fn) return T.fault_calls(fn) end

-- The message of the error f(...) raises, which must come from a line of
-- the scenario; "no error" when it raises none. (LuaJIT gives no position
-- to an error of a C function called in a tail call: the scenarios call
-- in parentheses, `return (ep:wait(0))`.)
function err_of(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return "no error" end
  if type(err) ~= "string" then return "error value " .. tostring(err) end
  return err:match("^scenario:%d+: (.*)$") or ("not raised at a line of the scenario: " .. err)
end

-- "ok", or the message of invariant's error.
function invariant(ep)
  local ok, err = pcall(ep.invariant, ep)
  return ok and "ok" or err
end

-- The ready set as a list of {fd, flags}, in the kernel's order.
function ready(ep)
  local list = {}
  ep:iter_ready(function(fd, flags) list[#list + 1] = { fd, flags } end)
  return list
end

local function dump(v)
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = "[" .. dump(k) .. "]=" .. dump(x) end
    table.sort(parts)
    return "{" .. table.concat(parts, ", ") .. "}"
  elseif type(v) == "string" or (type(v) == "number" and math.type) then
    return string.format("%q", v)
  elseif type(v) == "number" then
    return string.format("%.17g", v)
  end
  return tostring(v)
end

collectgarbage()
collectgarbage()
local fds_before = T.fdcount()
local ok, facts = xpcall(assert((loadstring or load)(SCENARIO, "=scenario")), debug.traceback)
collectgarbage()
collectgarbage()
io.write("return ", dump({ ok = ok, facts = facts, fds_before = fds_before, fds_after = T.fdcount() }))
]==]

-- Runs `scenario` (Lua source) in a child H.LUA that finds lepoll where
-- this process does, with libfaults.so preloaded (after any preload this
-- process has, such as the sanitizers' runtimes, which must come first).
-- Returns the scenario's facts, once the child exited 0 with no
-- descriptor left open.
local function child(scenario)
  local path = C.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(("package.path = %q\npackage.cpath = %q\nSCENARIO = %q\n"):format(package.path,
    package.cpath, scenario), PRELUDE)
  f:close()
  local inherited = os.getenv("LD_PRELOAD")
  local preload = (inherited and inherited ~= "" and inherited .. " " or "") .. FAULTS
  local p, close = popen(("env LD_PRELOAD=%s timeout 20 %s %s </dev/null 2>&1")
    :format(quote(preload), H.LUA, quote(path)))
  local out = p:read("*a")
  local _, how, code = close()
  assert.are.same({ "exit", 0 }, { how, code }, out)
  local load_output = H.load_in(out, "=child output", {})
  assert(load_output, "child output: " .. out)
  local res = load_output()
  assert(res.ok, res.facts)
  assert.are.equal(res.fds_before, res.fds_after, "descriptors leaked in the child")
  return res.facts
end

local function set_string(epfd, entries, ready)
  return ("epoll{fd=%d, num_file_descrs=64, max_ready_events=256, flags_by_fd={%s}, ready={%s}}")
    :format(epfd, entries or "", ready or "")
end

describe("fault injection", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  lazy_setup(function()
    local f = io.open(FAULTS, "rb")
    assert(f, FAULTS .. " is missing: make test builds it (mk/faults.mk)")
    f:close()
  end)

  describe("the preload library", function()
    it("is not in this process: T.fault says so", function()
      -- lepoll_test names the library by its 5.4 path, whatever the build.
      assert.are.same({ nil, "build/spec/libfaults.so is not preloaded (LD_PRELOAD)", "ENOENT" },
        { T.fault("epoll_ctl", 1, "ENOMEM") })
      assert.are.same({ nil, "build/spec/libfaults.so is not preloaded (LD_PRELOAD)", "ENOENT" },
        { T.fault_calls("epoll_ctl") })
    end)

    it("passes every call through until a fault is armed, and counts the calls", function()
      local f = child [[
        local ep = lepoll.create(64)
        local r, w = T.pipe()
        ep:set(r, "in")   -- EPOLL_CTL_ADD
        ep:set(r, "in")   -- EPOLL_CTL_MOD, even with the same flags
        ep:remove(r)      -- EPOLL_CTL_DEL
        ep:remove(r)      -- not watched: no system call
        T.write(w, "x")
        ep:set(r, "in")
        local res = ep:wait(0)
        local facts = {
          r = r, res = res, ready = ready(ep), invariant = invariant(ep),
          create1 = calls("epoll_create1"), ctl = calls("epoll_ctl"), wait = calls("epoll_wait"),
        }
        ep:close()
        T.close(r) T.close(w)
        return facts
      ]]
      assert.are.same({
        r = f.r, res = "ok", ready = { { f.r, IN } }, invariant = "ok",
        create1 = 1, ctl = 4, wait = 1,
      }, f)
    end)
  end)

  describe("epoll_create1 failing", function()
    it("raises an error naming the errno, leaks nothing, and create works once the fault is gone",
      function()
        local f = child [[
          local out = {}
          for _, e in ipairs(ERRNOS) do
            local fds = T.fdcount()
            fault("epoll_create1", 1, e, -1) -- every call, the retry included
            local msg = err_of(function() return (lepoll.create(64)) end)
            local n = calls("epoll_create1")
            fault("epoll_create1", 0)        -- gone
            collectgarbage()
            collectgarbage()
            local leaked = T.fdcount() - fds
            local ep = lepoll.create(64)
            local r, w = T.pipe()
            T.write(w, "x")
            ep:set(r, "in")
            out[e] = { msg = msg, calls = n, leaked = leaked, after = ep:wait(0) }
            ep:close()
            T.close(r) T.close(w)
          end
          return out
        ]]
        local want = {}
        for _, e in ipairs(ERRNOS) do
          want[e] = {
            msg = ("lepoll: create: %s (%s)"):format(TEXT[e], e),
            -- Out of descriptors, create collects garbage and tries again.
            calls = e == "EMFILE" and 2 or 1,
            leaked = 0,
            after = "ok",
          }
        end
        assert.are.same(want, f)
      end)

    it("EMFILE or ENFILE once: the retry after a full collection succeeds", function()
      local f = child [[
        local out = {}
        for _, e in ipairs { "EMFILE", "ENFILE" } do
          fault("epoll_create1", 1, e)      -- the first call only
          local ep = lepoll.create(64)
          local r, w = T.pipe()
          T.write(w, "x")
          ep:set(r, "in")
          out[e] = { calls = calls("epoll_create1"), res = ep:wait(0), cloexec = T.cloexec(ep:getfd()),
                     invariant = invariant(ep) }
          ep:close()
          T.close(r) T.close(w)
        end
        return out
      ]]
      local want = { calls = 2, res = "ok", cloexec = true, invariant = "ok" }
      assert.are.same({ EMFILE = want, ENFILE = want }, f)
    end)

    it("frees the ready buffer of every failed create", function()
      local f = child [[
        fault("epoll_create1", 1, "ENOMEM", -1)
        collectgarbage()
        collectgarbage()
        T.count_allocs(true)
        for _ = 1, 50 do
          -- a 1.2 MB ready buffer each: a leak would show at once
          pcall(lepoll.create, 64, 100000)
        end
        collectgarbage()
        collectgarbage()
        local allocs, net = T.count_allocs(false)
        local n = calls("epoll_create1")
        fault("epoll_create1", 0)
        return { calls = n, net_below_one_buffer = net < 100000 * 12, allocated_buffers = allocs >= 50 }
      ]]
      assert.are.same({ calls = 50, net_below_one_buffer = true, allocated_buffers = true }, f)
    end)
  end)

  describe("epoll_ctl failing", function()
    it("in set (EPOLL_CTL_ADD): an error naming the fd and the errno, the table unchanged", function()
      local f = child [[
        local ep = lepoll.create(64)
        local r, w = T.pipe()
        T.write(w, "x")
        local out = { r = r, epfd = ep:getfd() }
        for _, e in ipairs(ERRNOS) do
          fault("epoll_ctl", 1, e)
          out[e] = {
            msg = err_of(function() ep:set(r, "in") end),
            n = #ep, find = ep:find(r) or "nil", str = tostring(ep), invariant = invariant(ep),
            res = ep:wait(0), -- r is not watched: nothing
          }
        end
        ep:set(r, "in")      -- the fault is gone
        out.after = { n = #ep, find = ep:find(r), res = ep:wait(0), ready = ready(ep),
                      invariant = invariant(ep) }
        ep:close()
        T.close(r) T.close(w)
        return out
      ]]
      local r = f.r
      for _, e in ipairs(ERRNOS) do
        assert.are.same({
          msg = ("lepoll: set fd %d: %s (%s)"):format(r, TEXT[e], e),
          n = 0, find = "nil", str = set_string(f.epfd), invariant = "ok", res = "timeout",
        }, f[e], e)
      end
      assert.are.same({ n = 1, find = IN, res = "ok", ready = { { r, IN } }, invariant = "ok" }, f.after)
    end)

    it("in set (EPOLL_CTL_MOD): the old flags stay, in the table and in the kernel", function()
      local f = child [[
        local ep = lepoll.create(64)
        local r, w = T.pipe()
        T.write(w, "x")
        ep:set(r, "in")
        local out = { r = r, epfd = ep:getfd(), first = ep:wait(0) }
        for _, e in ipairs(ERRNOS) do
          fault("epoll_ctl", 1, e)
          out[e] = {
            msg = err_of(function() ep:set(r, "in|rdhup") end),
            n = #ep, find = ep:find(r), str = tostring(ep), invariant = invariant(ep),
            res = ep:wait(0), ready = ready(ep),
          }
        end
        ep:set(r, "in|rdhup")
        out.after = { find = ep:find(r), invariant = invariant(ep) }
        ep:close()
        T.close(r) T.close(w)
        return out
      ]]
      local r = f.r
      for _, e in ipairs(ERRNOS) do
        assert.are.same({
          msg = ("lepoll: set fd %d: %s (%s)"):format(r, TEXT[e], e),
          -- the ready set of the last wait as it was, too
          n = 1, find = IN, str = set_string(f.epfd, ('[%d]="in"'):format(r), ('[%d]="in"'):format(r)),
          invariant = "ok", res = "ok", ready = { { r, IN } },
        }, f[e], e)
      end
      assert.are.equal("ok", f.first)
      assert.are.same({ find = H.bor(IN, RDHUP), invariant = "ok" }, f.after)
    end)

    it("re-arming a oneshot fd: it stays disarmed, and the event comes once re-armed", function()
      local f = child [[
        local ep = lepoll.create(64)
        local r, w = T.pipe()
        ep:set(r, "in|oneshot")
        T.write(w, "x")
        local out = { r = r }
        out.first = { ep:wait(0), ready(ep) }
        out.disarmed = ep:wait(0)
        fault("epoll_ctl", 1, "ENOMEM")
        out.msg = err_of(function() ep:set(r, "in|oneshot") end)
        out.still = { ep:wait(0), ep:find(r), invariant(ep) }
        ep:set(r, "in|oneshot")
        out.rearmed = { ep:wait(0), ready(ep), invariant(ep) }
        ep:close()
        T.close(r) T.close(w)
        return out
      ]]
      local r = f.r
      assert.are.same({
        r = r,
        first = { "ok", { { r, IN } } },
        disarmed = "timeout",
        msg = ("lepoll: set fd %d: Cannot allocate memory (ENOMEM)"):format(r),
        still = { "timeout", H.bor(IN, ONESHOT), "ok" },
        rearmed = { "ok", { { r, IN } }, "ok" },
      }, f)
    end)

    it("fails on exactly the Nth call, and for as many calls as asked", function()
      local f = child [[
        local ep = lepoll.create(64)
        local fds = {}
        for i = 1, 4 do fds[2 * i - 1], fds[2 * i] = T.pipe() end
        local a, b, c, d = fds[1], fds[3], fds[5], fds[7]
        local out = { a = a, b = b, c = c, d = d, epfd = ep:getfd() }
        fault("epoll_ctl", 3, "ENOSPC")      -- the third call from now
        ep:set(a, "in")
        ep:set(b, "in")
        out.third = err_of(function() ep:set(c, "in") end)
        ep:set(d, "in")                       -- one failure only
        out.table = tostring(ep)
        out.calls = calls("epoll_ctl")
        fault("epoll_ctl", 1, "ENOSPC", -1)  -- every call until disarmed
        out.all = { err_of(function() ep:set(c, "in") end), err_of(function() ep:set(a, "out") end),
                    err_of(function() ep:set(b, "in|et") end) }
        out.during = tostring(ep)
        out.all_calls = calls("epoll_ctl")
        fault("epoll_ctl", 0)
        ep:set(c, "in")
        out.after = { tostring(ep), invariant(ep) }
        ep:close()
        for _, fd in ipairs(fds) do T.close(fd) end
        return out
      ]]
      assert.are.same({
        a = f.a, b = f.b, c = f.c, d = f.d, epfd = f.epfd,
        third = ("lepoll: set fd %d: No space left on device (ENOSPC)"):format(f.c),
        table = set_string(f.epfd, ('[%d]="in", [%d]="in", [%d]="in"'):format(f.a, f.b, f.d)),
        calls = 4,
        all = {
          ("lepoll: set fd %d: No space left on device (ENOSPC)"):format(f.c),
          ("lepoll: set fd %d: No space left on device (ENOSPC)"):format(f.a),
          ("lepoll: set fd %d: No space left on device (ENOSPC)"):format(f.b),
        },
        during = set_string(f.epfd, ('[%d]="in", [%d]="in", [%d]="in"'):format(f.a, f.b, f.d)),
        all_calls = 3,
        after = { set_string(f.epfd, ('[%d]="in", [%d]="in", [%d]="in", [%d]="in"')
          :format(f.a, f.b, f.c, f.d)), "ok" },
      }, f)
    end)

    it("in remove, after the kernel dropped the entry: the entry is dropped, set works again",
      function()
        local f = child [[
          local ep = lepoll.create(64)
          local r, w = T.pipe()
          T.write(w, "x")
          local out = { r = r, epfd = ep:getfd() }
          for _, e in ipairs(ERRNOS) do
            ep:set(r, "in")
            fault("epoll_ctl", 1, e, 1, true)  -- the kernel removes it, then the call fails
            out[e] = {
              msg = err_of(function() ep:remove(r) end),
              n = #ep, find = ep:find(r) or "nil", str = tostring(ep), invariant = invariant(ep),
              res = ep:wait(0),
            }
          end
          ep:set(r, "in")
          out.after = { ep:wait(0), ready(ep), invariant(ep) }
          ep:close()
          T.close(r) T.close(w)
          return out
        ]]
        local r = f.r
        for _, e in ipairs(ERRNOS) do
          assert.are.same({
            msg = ("lepoll: remove fd %d: %s (%s)"):format(r, TEXT[e], e),
            n = 0, find = "nil", str = set_string(f.epfd), invariant = "ok", res = "timeout",
          }, f[e], e)
        end
        assert.are.same({ "ok", { { r, IN } }, "ok" }, f.after)
      end)

    it("in remove, refused before the kernel acted: the entry is dropped from the table but stays in "
      .. "the kernel's set until the fd is closed", function()
      local f = child [[
        local ep = lepoll.create(64)
        local r, w = T.pipe()
        T.write(w, "x")
        ep:set(r, "in")
        local out = { r = r, w = w, epfd = ep:getfd() }
        fault("epoll_ctl", 1, "ENOMEM")
        out.msg = err_of(function() ep:remove(r) end)
        out.table = { #ep, ep:find(r) or "nil", tostring(ep) }
        out.invariant = invariant(ep)
        -- The kernel still reports it: the ready set is not filtered.
        out.wait = { ep:wait(0), ready(ep) }
        out.again = err_of(function() ep:set(r, "in") end)
        local n = calls("epoll_ctl")
        ep:remove(r)                         -- not in the table: no system call
        out.remove_calls = calls("epoll_ctl") - n
        -- Closing the fd makes the kernel forget it; its number is free again.
        T.close(r)
        out.closed = invariant(ep)
        local r2, w2 = T.pipe()
        T.write(w2, "y")
        ep:set(r2, "in")
        out.reused = { r2, ep:wait(0), ready(ep), invariant(ep) }
        ep:close()
        T.close(w) T.close(r2) T.close(w2)
        return out
      ]]
      local r = f.r
      assert.are.same({
        r = r, w = f.w, epfd = f.epfd,
        msg = ("lepoll: remove fd %d: Cannot allocate memory (ENOMEM)"):format(r),
        table = { 0, "nil", set_string(f.epfd) },
        invariant = ("lepoll: invariant: fd %d is in the kernel's set (in|err|hup) but not in the table")
          :format(r),
        wait = { "ok", { { r, IN } } },
        again = ("lepoll: set fd %d: File exists (EEXIST)"):format(r),
        remove_calls = 0,
        closed = "ok",
        reused = { r, "ok", { { r, IN } }, "ok" },
      }, f)
    end)

    it("inside iter_ready: the error ends the iteration, and the set is not left busy", function()
      local f = child [[
        local ep = lepoll.create(64)
        local r1, w1 = T.pipe()
        local r2, w2 = T.pipe()
        T.write(w1, "x") T.write(w2, "y")
        ep:set(r1, "in")
        ep:set(r2, "in")
        local out = { r1 = r1, r2 = r2, epfd = ep:getfd() }
        out.res = ep:wait(0)
        local seen = {}
        fault("epoll_ctl", 1, "ENOSPC")
        out.msg = err_of(function()
          ep:iter_ready(function(fd) seen[#seen + 1] = fd ep:set(fd, "in|out") end)
        end)
        out.seen = #seen
        out.str = tostring(ep)
        out.after = { ep:wait(0), #ready(ep), invariant(ep) }
        ep:close()
        T.close(r1) T.close(w1) T.close(r2) T.close(w2)
        return out
      ]]
      -- Written in pipe order, the events come in that order: r1 first.
      local entries = ('[%d]="in", [%d]="in"'):format(f.r1, f.r2)
      assert.are.same({
        r1 = f.r1, r2 = f.r2, epfd = f.epfd, res = "ok",
        msg = ("lepoll: set fd %d: No space left on device (ENOSPC)"):format(f.r1),
        seen = 1,
        str = set_string(f.epfd, entries, entries),
        after = { "ok", 2, "ok" },
      }, f)
    end)

    it("under lepoll.loop: no watcher is made, and the loop goes on", function()
      local f = child [[
        local loop = require "lepoll.loop"
        local l = loop.new({ num_file_descrs = 64 })
        local r, w = T.pipe()
        T.write(w, "x")
        local out = { r = r }
        fault("epoll_ctl", 1, "ENOSPC")
        out.msg = err_of(function() l:io(r, "in", function() end) end)
        out.str = tostring(l):match("^(loop{.-), epoll{")
        out.invariant = invariant(l)
        local got
        local watcher = l:io(r, "in", function(wt, fd, flags) got = { fd, flags } wt:stop() end)
        out.run = l:run()
        out.got = got
        out.active = watcher:is_active()
        l:close()
        T.close(r) T.close(w)
        return out
      ]]
      assert.are.same({
        r = f.r,
        msg = ("lepoll: set fd %d: No space left on device (ENOSPC)"):format(f.r),
        str = "loop{watchers=0, timers=0, tasks=0",
        invariant = "ok",
        run = false,
        got = { f.r, IN },
        active = false,
      }, f)
    end)
  end)

  describe("epoll_wait failing", function()
    it("raises an error naming the errno and empties the ready set; the events are not lost",
      function()
        local f = child [[
          local ep = lepoll.create(64)
          local r, w = T.pipe()
          local e1, e2 = T.pipe()
          T.write(w, "x")
          ep:set(r, "in")
          ep:set(e1, "in|et")
          local out = { r = r, e1 = e1, epfd = ep:getfd() }
          for _, e in ipairs(ERRNOS) do
            if e ~= "EINTR" then
              T.write(e2, "y")                 -- a new edge each time
              ep:clear_ready()
              out.before = ep:wait(0)         -- fills the ready set: r and e1
              fault("epoll_wait", 1, e)
              T.write(e2, "y")
              out[e] = {
                msg = err_of(function() return (ep:wait(0)) end),
                ready = ready(ep), folded = ep:fold_ready(0, function(n) return n + 1 end),
                str = tostring(ep),
              }
              -- The fault is gone: the edge of e1 is still pending.
              local res = ep:wait(0)
              local list = ready(ep)
              table.sort(list, function(x, y) return x[1] < y[1] end)
              out[e].next = { res, list, invariant(ep) }
            end
          end
          ep:close()
          T.close(r) T.close(w) T.close(e1) T.close(e2)
          return out
        ]]
        local r, e1 = f.r, f.e1
        local entries = ('[%d]="in", [%d]="in|et"'):format(r, e1)
        assert.are.equal("ok", f.before)
        for _, e in ipairs(ERRNOS) do
          if e ~= "EINTR" then
            assert.are.same({
              msg = ("lepoll: wait: %s (%s)"):format(TEXT[e], e),
              ready = {}, folded = 0, str = set_string(f.epfd, entries),
              next = { "ok", { { r, IN }, { e1, IN } }, "ok" },
            }, f[e], e)
          end
        end
      end)

    it("EINTR is 'interrupted', not an error: the ready set is empty, the next wait reports", function()
      local f = child [[
        local ep = lepoll.create(64)
        local r, w = T.pipe()
        T.write(w, "x")
        ep:set(r, "in|et")
        local out = { r = r, epfd = ep:getfd() }
        out.filled = { ep:wait(0), ready(ep) }                 -- the edge is taken
        T.write(w, "y")                                        -- a new edge
        fault("epoll_wait", 1, "EINTR")
        out.first = { ep:wait(nil), ready(ep), tostring(ep) }  -- does not block
        out.second = { ep:wait(0), ready(ep) }                 -- the new edge
        out.third = ep:wait(0)                                 -- et: reported once
        out.calls = calls("epoll_wait")
        ep:close()
        T.close(r) T.close(w)
        return out
      ]]
      local r = f.r
      assert.are.same({
        r = r, epfd = f.epfd,
        filled = { "ok", { { r, IN } } },
        first = { "interrupted", {}, set_string(f.epfd, ('[%d]="in|et"'):format(r)) },
        second = { "ok", { { r, IN } } },
        third = "timeout",
        calls = 3,
      }, f)
    end)

    it("under lepoll.loop: run raises the error, and runs again once the fault is gone", function()
      local f = child [[
        local loop = require "lepoll.loop"
        local l = loop.new({ num_file_descrs = 64 })
        local r, w = T.pipe()
        T.write(w, "x")
        local got = {}
        l:io(r, "in", function(wt, fd) got[#got + 1] = fd wt:stop() end)
        local out = { r = r }
        fault("epoll_wait", 1, "EBADF")
        local ok, err = pcall(l.run, l)
        out.err = ok and "no error" or err:gsub("^.-:%d+: ", "")
        out.got_before = #got
        out.invariant = invariant(l)
        out.run = l:run()
        out.got = { (table.unpack or unpack)(got) }
        fault("epoll_wait", 1, "EINTR")
        l:timer(0, function() got[#got + 1] = "timer" end)
        out.interrupted_run = l:run()
        out.after = got
        l:close()
        T.close(r) T.close(w)
        return out
      ]]
      assert.are.same({
        r = f.r,
        err = "lepoll: wait: Bad file descriptor (EBADF)",
        got_before = 0,
        invariant = "ok",
        run = false,
        got = { f.r },
        interrupted_run = false,
        after = { f.r, "timer" },
      }, f)
    end)
  end)

  describe("real exhaustion of descriptors (RLIMIT_NOFILE lowered in the child)", function()
    it("creates sets until EMFILE, with a clear error, and leaks nothing", function()
      local f = child [[
        local LIMIT = 32
        local free = {}
        for fd = 0, LIMIT - 1 do
          if T.cloexec(fd) == nil then free[#free + 1] = fd end
        end
        local open = T.fdcount() -- some may be above the limit: they stay open
        local old = assert(T.setnofile(LIMIT))
        local sets, fds, msg = {}, {}, nil
        local n0 = calls("epoll_create1")
        while #sets <= LIMIT do
          local ok, ep = pcall(function() return (lepoll.create()) end)
          if not ok then msg = ep break end
          sets[#sets + 1] = ep
          fds[#fds + 1] = ep:getfd()
        end
        local out = {
          free = free, fds = fds,
          msg = msg:match("^scenario:%d+: (.*)$") or msg,
          -- the attempt that failed, and its retry after a full collection
          failed_calls = calls("epoll_create1") - n0 - #sets,
          num_file_descrs = sets[1] and tostring(sets[1]):match("num_file_descrs=(%d+)"),
        }
        -- At the limit, a closed set frees its descriptor for the next.
        local last = fds[#fds]
        sets[#sets]:close()
        sets[#sets] = lepoll.create()
        out.reused = sets[#sets]:getfd() == last
        for _, ep in ipairs(sets) do ep:close() end
        assert(T.setnofile(old))
        out.fds_back = T.fdcount() == open
        local ep = lepoll.create()
        out.after = { ep:wait(0), invariant(ep) }
        ep:close()
        return out
      ]]
      assert.is_true(#f.free >= 3, "too few free descriptors below the limit: " .. #f.free)
      assert.are.same({
        free = f.free,
        fds = f.free, -- every free number below the limit, lowest first
        msg = "lepoll: create: Too many open files (EMFILE)",
        failed_calls = 2,
        num_file_descrs = "32",
        reused = true,
        fds_back = true,
        after = { "timeout", "ok" },
      }, f)
    end)
  end)
end)
