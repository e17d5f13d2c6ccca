-- examples/prefork_echo.lua, run as documented, in both ways of sharing
-- the port (one listening socket watched with exclusive, a socket per
-- worker with SO_REUSEPORT): its line, every byte back on many concurrent
-- connections (clients of this spec, the project's load generator, curl
-- and bash), the connections counted by the workers, a dead worker
-- replaced, SIGTERM and SIGINT stopping every worker, a killed master's
-- workers stopping on their own, and no process left behind.
local lepoll = require "lepoll"
local socket = require "socket"
local H = require "support.helpers"

local C = H.cleanups(function(fn) finally(fn) end)

local EXAMPLE = "examples/prefork_echo.lua"
local LOADGEN = H.BUILD .. "/bench/echo-loadgen" -- make test builds it (mk/bench.mk)
local LIMIT = 10 -- seconds any one step may take
local SIGKILL, SIGINT = 9, 2

local MODES = { { name = "one socket, exclusive", args = {} }, { name = "SO_REUSEPORT", args = { "--reuseport" } } }

local child_env = H.child_env

-- The argument lists a and b, one after the other.
local function concat(a, b)
  local t = {}
  for _, v in ipairs(a) do t[#t + 1] = v end
  for _, v in ipairs(b) do t[#t + 1] = v end
  return t
end

-- Starts argv (its output, stdout and stderr, read through m.p.stdout and
-- m.p.stderr). -> m, with m.out and m.err, the output so far
local function start_process(argv)
  argv.stdout, argv.stderr, argv.env = "pipe", "pipe", child_env()
  local p = assert(lepoll.spawn(argv))
  C.defer(function() p:close() end)
  return { p = p, out = "", err = "", ended = {} }
end

-- Reads m's stdout and stderr until until_fn(m) holds, or without it until
-- both end; LIMIT seconds at most.
local function read_until(m, until_fn)
  local ep = C.new_set()
  for _, name in ipairs({ "stdout", "stderr" }) do
    if not m.ended[name] then ep:set(m.p[name], "in") end
  end
  local deadline = lepoll.now() + LIMIT
  while lepoll.now() < deadline do
    if until_fn and until_fn(m) then return end
    if m.ended.stdout and m.ended.stderr then
      assert(not until_fn, "the output ended first; stdout: " .. m.out .. "; stderr: " .. m.err)
      return
    end
    ep:wait(0.1)
    for name, field in pairs({ stdout = "out", stderr = "err" }) do
      if not m.ended[name] then
        local s, err = lepoll.read(m.p[name])
        if s == "" then
          m.ended[name] = true
          ep:remove(m.p[name])
        elseif s then
          m[field] = m[field] .. s
        else
          assert.are.equal("again", err)
        end
      end
    end
  end
  error("not done within " .. LIMIT .. " s; stdout: " .. m.out .. "; stderr: " .. m.err)
end

-- Process pid's start time (field 22 of /proc/PID/stat), or nil once it
-- has ended (gone, or a zombie): with the pid it names one process.
local function start_time(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local fields = f:read("*a"):match("^%d+ %b() (.*)$")
  f:close()
  local list = {}
  for w in fields:gmatch("%S+") do list[#list + 1] = w end
  if list[1] == "Z" then return nil end
  return list[20]
end

-- The master's children now: pid -> start time.
local function workers_of(m)
  local f = assert(io.open(("/proc/%d/task/%d/children"):format(m.p.pid, m.p.pid)))
  local list = {}
  for pid in f:read("*a"):gmatch("%d+") do list[tonumber(pid)] = start_time(pid) end
  f:close()
  return list
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Starts the example; returns once it printed its line. -> m, with
-- m.port, m.nworkers, m.workers (pid -> start time, as workers_of)
local function start(args)
  local m = start_process(concat({ H.LUA, EXAMPLE }, args))
  read_until(m, function() return m.out:find("\n") end)
  local port, n = m.out:match("^listening on 127%.0%.0%.1:(%d+) %((%d+) workers%)\n$")
  assert(port, "unexpected first line: " .. m.out)
  m.port, m.nworkers = tonumber(port), tonumber(n)
  m.workers = workers_of(m)
  assert.are.equal(m.nworkers, count(m.workers))
  return m
end

-- Whether any of the processes (pid -> start time) still runs, waiting
-- until none does (LIMIT seconds at most).
local function none_left(procs)
  local deadline = lepoll.now() + LIMIT
  repeat
    local left = {}
    for pid, t in pairs(procs) do
      if start_time(pid) == t then left[#left + 1] = pid end
    end
    if #left == 0 then return true end
    socket.sleep(0.02)
  until lepoll.now() > deadline
  return false
end

-- The workers' closing lines: pid -> connections it accepted.
local function accepted_by(err)
  local t = {}
  for pid, n in err:gmatch("prefork_echo: worker (%d+): (%d+) connections, %d+ accepts found none\n") do
    t[tonumber(pid)] = tonumber(n)
  end
  return t
end

local function sum(t)
  local n = 0
  for _, v in pairs(t) do n = n + v end
  return n
end

-- Stops the example with signal sig; it must exit 0 with no worker left,
-- each having said how many connections it accepted. -> those, pid -> n
local function stop(m, sig, name)
  assert(m.p:kill(sig))
  read_until(m)
  assert.are.same({ "exit", 0 }, { m.p:wait() })
  assert.is_true(none_left(m.workers), "a worker outlived the master")
  assert.matches("prefork_echo: SIG" .. name .. ": stopping " .. m.nworkers .. " workers\n", m.err, 1, true)
  local accepted = accepted_by(m.err)
  local pids = {}
  for pid in pairs(m.workers) do pids[pid] = accepted[pid] or "no line" end
  assert.are.same(pids, accepted, m.err)
  return accepted
end

-- Every byte value but the newline's.
local BYTES = {}
for b = 0, 255 do
  if b ~= 10 then BYTES[#BYTES + 1] = string.char(b) end
end
BYTES = table.concat(BYTES)

-- Line i of connection c: BYTES over and over from a point that differs by
-- connection and line, to a length that does too (the third up to 100 KB,
-- more than a socket buffer takes at once), and the newline.
local function line_of(c, i)
  local len = (c * 7919 + i * 104729) % (i == 3 and 100000 or 2000)
  local from = (c * 31 + i * 17) % #BYTES + 1
  return BYTES:rep(math.floor(len / #BYTES) + 2):sub(from, from + len - 1) .. "\n"
end

-- nconn clients of this process at once, each writing three lines while
-- it reads the echo. -> what went wrong, a line per client
local function echo_clients(port, nconn)
  local l = C.new_loop()
  local wrong, done = {}, 0
  local function client(c)
    local conn = l:wrap(socket.tcp())
    conn:settimeout(LIMIT)
    local ok, err = conn:connect("127.0.0.1", port)
    if ok then
      local lines = { line_of(c, 1), line_of(c, 2), line_of(c, 3) }
      local all = table.concat(lines)
      local writer = l:spawn(function()
        for _, line in ipairs(lines) do
          local sent, werr = conn:send(line)
          if not sent then return werr end
        end
      end)
      local back, rerr, partial = conn:receive(#all)
      local _, werr = writer:join()
      back = back or partial
      if back ~= all then
        local at = 1
        while back:byte(at) == all:byte(at) do at = at + 1 end
        err = ("%d of %d bytes back, the first wrong at %d (%s)"):format(#back, #all, at, tostring(rerr or werr))
      end
    end
    if err then wrong[#wrong + 1] = ("connection %d: %s"):format(c, err) end
    conn:close()
    done = done + 1
  end
  for c = 1, nconn do l:spawn(client, c) end
  H.step_until(l, function() return done == nconn end, 2 * LIMIT)
  return wrong
end

describe("examples/prefork_echo.lua", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)
  H.no_child_leaks(lazy_setup, lazy_teardown)

  it("starts a worker per online CPU when not told how many, and stops on SIGINT", function()
    local ncpu = tonumber((H.run("env -u LD_PRELOAD getconf _NPROCESSORS_ONLN")))
    local m = start({})
    assert.are.equal(ncpu, m.nworkers)
    assert.are.same({}, echo_clients(m.port, 2))
    assert.are.equal(2, sum(stop(m, SIGINT, "INT")))
  end)

  for _, mode in ipairs(MODES) do
    describe(mode.name, function()
      it("sends every byte back on 200 connections at once, spread over the workers; SIGTERM stops them", function()
        local m = start(concat({ "--workers", "4" }, mode.args))
        assert.are.same({}, echo_clients(m.port, 200))
        local accepted = stop(m, 15, "TERM")
        assert.are.equal(200, sum(accepted))
      end)

      it("under the project's load generator: 200 connections, every byte checked", function()
        local f = io.open(LOADGEN)
        assert(f, LOADGEN .. " is missing: make test builds it")
        f:close()
        local m = start_process(concat({ LOADGEN, "-c", "200", "-w", "0.2", "-d", "0.5", "--", H.LUA, EXAMPLE,
          "--workers", "3" }, mode.args))
        read_until(m)
        assert.are.same({ "exit", 0 }, { m.p:wait() })
        assert.matches("^rtps=[%d.]+ conns=200 errors=0 roundtrips=%d+ ", m.out)
        local accepted = accepted_by(m.err)
        assert.are.equal(3, count(accepted), m.err)
        assert.are.equal(200, sum(accepted))
        local pids = {}
        for pid in pairs(accepted) do pids[pid] = start_time(pid) end
        assert.are.same({}, pids) -- every worker has ended
      end)

      it("answers clients nobody here wrote: curl's telnet and bash's /dev/tcp", function()
        local m = start(concat({ "--workers", "2" }, mode.args))
        -- curl waits for more until --max-time (status 28): its output tells
        local cmd = ("for i in 1 2 3 4 5 6 7 8; do (printf 'curl line %%s\\n' $i | env -u LD_PRELOAD " ..
          "curl -sN --max-time 1 telnet://127.0.0.1:%d) & done; " ..
          "for i in 1 2 3 4; do env -u LD_PRELOAD bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d && " ..
          "printf \"bash line %%s\\n\" '$i' >&3 && IFS= read -r line <&3 && echo \"$line\"' & done; wait")
          :format(m.port, m.port)
        local out = H.run(cmd)
        local lines = {}
        for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
        table.sort(lines)
        local expected = {}
        for i = 1, 4 do expected[#expected + 1] = "bash line " .. i end
        for i = 1, 8 do expected[#expected + 1] = "curl line " .. i end
        assert.are.same(expected, lines)
        assert.are.equal(12, sum(stop(m, 15, "TERM")))
      end)

      it("replaces a worker that dies, and goes on serving", function()
        local m = start(concat({ "--workers", "3" }, mode.args))
        local victim = next(m.workers)
        assert(H.T.kill(victim, SIGKILL))
        read_until(m, function() return m.err:find("\n") end)
        local new = tonumber(m.err:match("^prefork_echo: worker " .. victim ..
          " killed by signal 9; started worker (%d+)\n$"))
        assert(new, "unexpected: " .. m.err)
        local now = workers_of(m)
        assert.is_nil(now[victim])
        assert.is_not_nil(now[new])
        assert.are.equal(3, count(now))
        assert.are.same({}, echo_clients(m.port, 50))
        m.workers = now
        assert.are.equal(50, sum(stop(m, 15, "TERM")))
      end)

      it("a master killed outright leaves no worker: each stops at the end of its stdin", function()
        local m = start(concat({ "--workers", "3" }, mode.args))
        assert(m.p:kill(SIGKILL))
        assert.are.same({ "signal", SIGKILL }, { m.p:wait() })
        assert.is_true(none_left(m.workers), "a worker outlived the master")
      end)
    end)
  end

  it("is the code doc/cores.md shows", function()
    -- each line without its indentation: the page shows pieces of functions
    local function lines_of(text)
      return "\n" .. text:gsub("\n[ \t]+", "\n"):gsub("^[ \t]+", ""):gsub("\n$", "") .. "\n"
    end
    local source = lines_of(H.slurp(EXAMPLE))
    local blocks = 0
    for block in H.slurp("doc/cores.md"):gmatch("```lua\n(.-)```") do
      blocks = blocks + 1
      assert(source:find(lines_of(block), 1, true), "not in " .. EXAMPLE .. ":\n" .. block)
    end
    assert.are.equal(3, blocks)
  end)

  it("refuses bad arguments with its usage, exiting 2", function()
    for _, args in ipairs({ { "--workers" }, { "--workers", "0" }, { "--workers", "1.5" }, { "--bogus" },
      { "port" }, { "1", "127.0.0.1", "extra" } }) do
      local m = start_process(concat({ H.LUA, EXAMPLE }, args))
      read_until(m)
      assert.are.same({ "exit", 2 }, { m.p:wait() })
      assert.are.equal("", m.out)
      assert.matches("^usage: .* examples/prefork_echo.lua %[%-%-workers N%] %[%-%-reuseport%] %[port %[host%]%]\n$",
        m.err)
    end
  end)

  it("exits 1 with the error when the port is taken, either way", function()
    local taken, port = H.listener()
    C.defer(function() taken:close() end)
    for _, mode in ipairs(MODES) do
      local m = start_process(concat(concat({ H.LUA, EXAMPLE, "--workers", "2" }, mode.args), { tostring(port) }))
      read_until(m)
      assert.are.same({ "exit", 1 }, { m.p:wait() })
      assert.are.equal("", m.out)
      assert.are.equal("prefork_echo: address already in use\n", m.err)
    end
  end)
end)
