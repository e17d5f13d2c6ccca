-- examples/supervisor.lua, run as documented: commands side by side, their
-- lines prefixed, their ends reported, a timeout, and SIGINT or SIGTERM
-- stopping every child (and what each started) before exiting 0.
local lepoll = require "lepoll"
local H = require "support.helpers"

local C = H.cleanups(function(fn) finally(fn) end)

local EXAMPLE = "examples/supervisor.lua"

-- Starts the supervisor on the commands; -> the process.
local function supervise(args)
  local argv = { EXAMPLE }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return C.lua_child(argv, true)
end

-- Reads p's stdout until `until_fn(text so far)` holds or it ends (10 s at
-- most). -> the text.
local function read_until(p, until_fn)
  local ep = C.new_set()
  ep:set(p.stdout, "in")
  local got, deadline = "", lepoll.now() + 10
  while lepoll.now() < deadline do
    if until_fn and until_fn(got) then return got end
    ep:wait(0.5)
    local s, err = lepoll.read(p.stdout)
    if s == "" then return got end
    if s then got = got .. s else assert.are.equal("again", err) end
  end
  error("no end within 10 s; so far: " .. got)
end

-- The lines of child n, in order, without the prefix.
local function lines_of(out, n)
  local list = {}
  for line in out:gmatch("[^\n]+") do
    local k, rest = line:match("^%[(%d+)%] (.*)$")
    assert(k, "a line without the prefix: " .. line)
    if tonumber(k) == n then list[#list + 1] = rest end
  end
  return list
end

local function stderr_of(p)
  local s = lepoll.read(p.stderr)
  return s or ""
end

-- Whether any process of process group pgid is alive (zombies aside), from
-- /proc (procps, for ps, is not on every Debian system).
local function group_alive(pgid)
  for pid in H.run("env -u LD_PRELOAD ls /proc"):gmatch("%d+") do
    local f = io.open("/proc/" .. pid .. "/stat")
    local line = f and f:read("*l")
    if f then f:close() end
    -- pid (comm) state ppid pgrp ...: comm may hold spaces, so after its ")"
    local state, pgrp = (line or ""):match("%) (%S) %d+ (%d+)")
    if tonumber(pgrp) == pgid and state ~= "Z" then return true end
  end
  return false
end

describe("examples/supervisor.lua", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)
  H.no_child_leaks(lazy_setup, lazy_teardown)

  it("prints each child's lines with its number, then how it ended; exits 1 when one failed", function()
    local p = supervise { "echo a; echo b >&2; sleep 0.1; printf 'partial'; exit 3", "printf 'x\\ny\\n'",
      "kill -KILL $$" }
    local out = read_until(p)
    assert.are.same({ "exit", 1 }, { p:wait() })
    assert.are.same({ "a", "b", "partial", "exit status 3" }, lines_of(out, 1))
    assert.are.same({ "x", "y", "exit status 0" }, lines_of(out, 2))
    assert.are.same({ "killed by signal 9" }, lines_of(out, 3))
  end)

  it("exits 0 when every child exited 0", function()
    local p = supervise { "true", "echo done" }
    local out = read_until(p)
    assert.are.same({ "exit", 0 }, { p:wait() })
    assert.are.same({ "done", "exit status 0" }, lines_of(out, 2))
  end)

  it("stops a child at its timeout: SIGTERM, then SIGKILL for one that ignores it", function()
    local p = supervise { "--timeout", "0.3", "sleep 30", "trap '' TERM; sleep 30", "echo quick" }
    local out = read_until(p)
    assert.are.same({ "exit", 1 }, { p:wait() })
    assert.are.same({ "timeout after 0.3 s", "killed by signal 15" }, lines_of(out, 1))
    assert.are.same({ "timeout after 0.3 s", "killed by signal 9" }, lines_of(out, 2))
    assert.are.same({ "quick", "exit status 0" }, lines_of(out, 3))
  end)

  for _, sig in ipairs({ { "TERM", 15 }, { "INT", 2 } }) do
    it("on SIG" .. sig[1] .. " stops every child and what it started, waits, and exits 0", function()
      local cmds = {}
      for i = 1, 3 do cmds[i] = "echo $$; sleep 30 & sleep 30" end
      local p = supervise(cmds)
      local out = read_until(p, function(text)
        local n = 0
        for _ in text:gmatch("%] %d+\n") do n = n + 1 end
        return n == 3
      end)
      local groups = {}
      for i = 1, 3 do groups[i] = tonumber(lines_of(out, i)[1]) end
      assert.is_true(p:kill(sig[2]))
      out = out .. read_until(p)
      assert.are.same({ "exit", 0 }, { p:wait() })
      for i = 1, 3 do
        assert.are.same({ tostring(groups[i]), "killed by signal 15" }, lines_of(out, i))
        assert.is_false(group_alive(groups[i]), "child " .. i .. "'s group still runs")
      end
      assert.are.equal("supervisor: SIG" .. sig[1] .. ": stopping 3 children\n", stderr_of(p))
    end)
  end

  it("refuses bad arguments with its usage, exiting 2", function()
    for _, args in ipairs({ {}, { "--timeout", "0", "true" }, { "--timeout", "x", "true" } }) do
      local p = supervise(args)
      assert.are.equal("", read_until(p))
      assert.are.same({ "exit", 2 }, { p:wait() })
      assert.matches("^usage: .* examples/supervisor.lua %[%-%-timeout SECONDS%] CMD%.%.%.\n$", stderr_of(p))
    end
  end)
end)
