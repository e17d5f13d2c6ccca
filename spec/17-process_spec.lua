-- lepoll.spawn: child processes, their pipes, descriptors and ends, run
-- for real; every test ends with the descriptors and the child processes
-- this process started with (none running, none unreaped).
local lepoll = require "lepoll"
local socket = require "socket"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)

-- Everything from fd until its end of file, waiting at most 10 s.
local function read_all(fd)
  local ep = C.new_set()
  ep:set(fd, "in")
  local got = {}
  local deadline = lepoll.now() + 10
  while lepoll.now() < deadline do
    ep:wait(1)
    local s, err = lepoll.read(fd)
    if s == "" then return table.concat(got) end
    if s then got[#got + 1] = s else assert.are.equal("again", err) end
  end
  error("no end of file within 10 s")
end

-- A process from spec, closed when the test ends.
local function spawn(spec)
  local p = assert(lepoll.spawn(spec))
  C.defer(function() p:close() end)
  return p
end

-- Process pid's state letter and process group, from /proc; nil once gone.
local function proc_stat(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local line = f:read("*l")
  f:close()
  -- pid (comm) state ppid pgrp ...: comm may hold spaces, so after its ")"
  local state, pgrp = line:match("%) (%S) %d+ (%d+)")
  return { state = state, pgrp = tonumber(pgrp) }
end

-- The descriptors process pid has, as "0 1 2 ...".
local function fds_of(pid)
  local out = H.run("env -u LD_PRELOAD ls /proc/" .. pid .. "/fd")
  local fds = {}
  for n in out:gmatch("%d+") do fds[#fds + 1] = tonumber(n) end
  table.sort(fds)
  return table.concat(fds, " ")
end

describe("lepoll.spawn", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)
  H.no_child_leaks(lazy_setup, lazy_teardown)

  it("runs a program with its streams as pipes, and tells how it ended", function()
    local p = spawn { "sh", "-c", "read line; echo \"got $line\"; echo oops >&2; exit 3",
      stdin = "pipe", stdout = "pipe", stderr = "pipe" }
    assert.is_true(math.floor(p.pid) == p.pid and p.pid > 0)
    assert.are.equal(("process %d (running)"):format(p.pid), tostring(p))
    assert.are.equal(6, lepoll.write(p.stdin, "hello\n"))
    assert.are.equal("got hello\n", read_all(p.stdout))
    assert.are.equal("oops\n", read_all(p.stderr))
    assert.are.same({ "exit", 3 }, { p:wait() })
    assert.are.same({ "exit", 3 }, { p:status() }) -- the same, again
    assert.are.equal(("process %d (exit 3)"):format(p.pid), tostring(p))
    p:close()
    assert.are.equal("process (closed)", tostring(p))
    assert.is_nil(p.pid)
    assert.is_nil(p.stdout)
  end)

  it("closepipe('stdin') gives the child the end of its input", function()
    local p = spawn { "cat", stdin = "pipe", stdout = "pipe" }
    assert.are.equal(4, lepoll.write(p.stdin, "abc\n"))
    local fd = p.stdin
    p:closepipe("stdin")
    assert.is_nil(p.stdin)
    assert.is_false(H.is_open(fd))
    assert.are.equal("abc\n", read_all(p.stdout))
    assert.are.same({ "exit", 0 }, { p:wait() })
  end)

  it("status is nil while it runs; kill ends it; kill after the end is ESRCH", function()
    local p = spawn { "sleep", "30" }
    assert.is_nil(p:status())
    assert.is_true(p:kill())
    assert.are.same({ "signal", 15 }, { p:wait() })
    local ok, msg, name = p:kill(9)
    assert.are.same({ nil, "ESRCH" }, { ok, name })
    assert.matches("^lepoll: kill: No such process", msg)
    local q = spawn { "sh", "-c", "kill -KILL $$" }
    assert.are.same({ "signal", 9 }, { q:wait() })
  end)

  it("its pidfd becomes readable when it ends", function()
    local p = spawn { "sh", "-c", "read x; exit 0", stdin = "pipe" }
    local fd = assert(p:getfd())
    local ep = C.new_set()
    ep:set(fd, "in")
    ep:wait(0.05)
    assert.are.same({}, H.ready(ep))
    p:closepipe("stdin")
    ep:wait(10)
    assert.are.same({ { fd, lepoll.IN } }, H.ready(ep))
    assert.are.same({ "exit", 0 }, { p:status() })
  end)

  it("gives the environment, working directory and standard streams asked for", function()
    local p = spawn { "env", env = { A = "one two", B = "" }, stdout = "pipe" }
    local lines = {}
    for line in read_all(p.stdout):gmatch("[^\n]+") do lines[#lines + 1] = line end
    table.sort(lines)
    assert.are.same({ "A=one two", "B=" }, lines)
    p:wait()
    local q = spawn { "sh", "-c", "pwd; cat", cwd = "/", stdout = "pipe", stdin = "null" }
    assert.are.equal("/\n", read_all(q.stdout))
    q:wait()
    local r, w = C.pipe()
    local e = spawn { "sh", "-c", "echo to-stderr >&2", stderr = w, stdout = "null" }
    e:wait()
    assert.are.equal("to-stderr\n", T.read(r))
  end)

  it("stderr = 'stdout' sends both streams to one pipe", function()
    local p = spawn { "sh", "-c", "echo out; echo err >&2; echo out2", stdout = "pipe", stderr = "stdout" }
    assert.is_nil(p.stderr)
    assert.are.equal("out\nerr\nout2\n", read_all(p.stdout))
    p:wait()
  end)

  it("newgroup: the child leads a process group, which killgroup ends whole", function()
    local p = spawn { "sh", "-c", "sleep 30 & echo $!; wait", stdout = "pipe", newgroup = true }
    local ep = C.new_set()
    ep:set(p.stdout, "in")
    ep:wait(10)
    local grandchild = assert(tonumber(lepoll.read(p.stdout):match("%d+")))
    assert.are.equal(p.pid, proc_stat(grandchild).pgrp)
    assert.is_true(p:killgroup())
    assert.are.same({ "signal", 15 }, { p:wait() })
    local gone = false
    for _ = 1, 200 do -- the grandchild is init's to reap
      local st = proc_stat(grandchild)
      gone = st == nil or st.state == "Z"
      if gone then break end
      ep:wait(0.01)
    end
    assert.is_true(gone, "the grandchild still runs")
    local q = spawn { "true" }
    assert.has_error(function() q:killgroup() end)
    q:wait()
  end)

  it("gives descriptors at the numbers asked for, and no other", function()
    local r1, w1 = C.pipe()
    local r2, w2 = C.pipe()
    local leaky = socket.tcp() -- LuaSocket's descriptors are not close-on-exec
    C.defer(function() leaky:close() end)
    local p = spawn { "sh", "-c", "read x; echo one >&3; echo two >&9",
      stdin = "pipe", stdout = "null", stderr = "null", fds = { [3] = w1, [9] = w2 } }
    assert.are.equal("0 1 2 3 9", fds_of(p.pid))
    p:closepipe("stdin")
    p:wait()
    assert.are.equal("one\n", T.read(r1))
    assert.are.equal("two\n", T.read(r2))
  end)

  it("gives two descriptors each other's numbers", function()
    local r1, w1 = C.pipe()
    local r2, w2 = C.pipe()
    local p = spawn { "sh", "-c", ("echo to-%d >&%d; echo to-%d >&%d"):format(w1, w1, w2, w2),
      fds = { [w1] = w2, [w2] = w1 } }
    p:wait()
    assert.are.equal(("to-%d\n"):format(w2), T.read(r1))
    assert.are.equal(("to-%d\n"):format(w1), T.read(r2))
  end)

  it("reports a program that cannot run as values, with nothing left behind", function()
    local dir = C.tmpname()
    local cases = {
      { { "lepoll-no-such-program" }, "ENOENT", "No such file or directory" },
      { { dir }, "EACCES", "Permission denied" }, -- a file without execute permission
      { { "true", cwd = "/lepoll-no-such-directory" }, "ENOENT", "No such file or directory" },
    }
    for _, case in ipairs(cases) do
      local p, msg, name = lepoll.spawn(case[1])
      assert.is_nil(p)
      assert.are.equal(case[2], name)
      assert.are.equal(("lepoll: spawn '%s': %s (%s)"):format(case[1][1], case[3], case[2]), msg)
    end
  end)

  it("refuses a bad spec with a clear error, before starting anything", function()
    local cases = {
      { nil, "table expected, got nil" },
      { {}, "[1]: the program to run expected" },
      { { "sh", {} }, "[2]: string expected, got table" },
      { { "sh", "a\0b" }, "[2]: contains a zero byte" },
      { { "sh", env = 1 }, "field 'env': table expected, got number" },
      { { "sh", env = { [1] = "x" } }, "field 'env': names must be strings, got number" },
      { { "sh", env = { ["A=B"] = "x" } }, "field 'env': bad variable name 'A=B'" },
      { { "sh", env = { A = true } }, "field 'env': string expected, got boolean" },
      { { "sh", cwd = {} }, "field 'cwd': string expected, got table" },
      { { "sh", stdout = "file" },
        "field 'stdout': \"pipe\", \"inherit\", \"null\" or a descriptor expected, got \"file\"" },
      { { "sh", stdin = -1 }, "field 'stdin': descriptor must be an integer in [0, 2147483647]" },
      { { "sh", fds = { [2] = 1 } }, "field 'fds': keys are the child's descriptor numbers, integers from 3" },
      { { "sh", fds = { [3] = {} } }, "field 'fds': [3]: descriptor (integer, file handle or object with getfd)" },
      { { "sh", fds = { [2147483647] = 1 } }, "field 'fds': [2147483647]: beyond the descriptor limit" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(lepoll.spawn, case[1])
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[^']*' %(", err)
      assert.matches(case[2], err, 1, true)
    end
    -- a descriptor that is not open: EBADF, as values
    local p, _, name = lepoll.spawn { "true", fds = { [3] = 1000000 } }
    assert.are.same({ nil, "EBADF" }, { p, name })
  end)

  it("closing, or collecting, a process still running kills and reaps it", function()
    local p = assert(lepoll.spawn { "sleep", "30" })
    local pid = p.pid
    p:close()
    p:close() -- closing twice is nothing
    assert.is_nil(H.children():find(tostring(pid), 1, true))
    assert.are.equal("attempt to use a closed process", select(2, pcall(p.status, p)))
    assert.has_error(function() p:kill() end, "attempt to use a closed process")
    local q = assert(lepoll.spawn { "sleep", "30" }) -- dropped: the collector closes it
    pid = q.pid
    q = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    assert.is_nil(H.children():find(tostring(pid), 1, true))
  end)

  H.it_if(it, pending, H.has.toclose, "needs <close>")("a <close> variable closes it", function()
    local f = assert(H.load([[
      local lepoll = ...
      local pid
      do
        local p <close> = assert(lepoll.spawn { "sleep", "30" })
        pid = p.pid
      end
      return pid
    ]]))
    local pid = f(lepoll)
    assert.is_nil(H.children():find(tostring(pid), 1, true))
  end)

  it("a forked copy of this process closing its copy leaves the child alone", function()
    local p = spawn { "sleep", "30" }
    local pid = assert(T.fork())
    if pid == 0 then
      p:close()
      T._exit(0)
    end
    assert.are.same({ "exit", 0 }, { T.waitpid(pid) })
    assert.is_nil(p:status()) -- still running: the copy did not kill it
    p:kill()
    assert.are.same({ "signal", 15 }, { p:wait() })
  end)

  describe("under injected failures", function()
    it("a pipe or the start failing leaves no descriptor and no process", function()
      local out = H.run_lua([[
        local lepoll = require "lepoll"
        local T = require "lepoll_test"
        local function children()
          local f = assert(io.open("/proc/self/stat"))
          local pid = f:read("*l"):match("^%d+")
          f:close()
          f = assert(io.open(("/proc/%s/task/%s/children"):format(pid, pid)))
          local s = f:read("*a")
          f:close()
          return s
        end
        local before = T.fdcount()
        for _, case in ipairs({ { "pipe2", 1, "EMFILE" }, { "pipe2", 3, "EMFILE" },
                                { "posix_spawnp", 1, "EAGAIN" }, { "posix_spawnp", 1, "ENOMEM" } }) do
          T.fault(case[1], case[2], case[3])
          local p, msg, name = lepoll.spawn { "true", stdin = "pipe", stdout = "pipe", stderr = "pipe" }
          T.fault(case[1], 0)
          io.write(tostring(p), " ", name, " ", tostring(T.fdcount() == before), " [", children(), "] ",
            msg, "\n")
        end
      ]], true)
      assert.are.equal(table.concat({
        "nil EMFILE true [] lepoll: spawn 'true': Too many open files (EMFILE)",
        "nil EMFILE true [] lepoll: spawn 'true': Too many open files (EMFILE)",
        "nil EAGAIN true [] lepoll: spawn 'true': Resource temporarily unavailable (EAGAIN)",
        "nil ENOMEM true [] lepoll: spawn 'true': Cannot allocate memory (ENOMEM)",
      }, "\n") .. "\n", out)
    end)

    it("without pidfd_open (an older kernel) a process has no getfd, and the rest works", function()
      local out = H.run_lua([[
        local lepoll = require "lepoll"
        local T = require "lepoll_test"
        T.fault("pidfd_open", 1, "ENOSYS", -1)
        local p = assert(lepoll.spawn { "sh", "-c", "exit 4" })
        io.write(tostring(p:getfd()), " ", table.concat({ p:wait() }, " "), "\n")
        local q = assert(lepoll.spawn { "sleep", "30" })
        io.write(tostring(q:kill()), " ", table.concat({ q:wait() }, " "), "\n")
      ]], true)
      assert.are.equal("nil exit 4\ntrue signal 15\n", out)
    end)
  end)
end)
