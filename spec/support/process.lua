-- Child processes: shell commands and child interpreters of the Lua under
-- test, their command lines, their output and how they ended.
local compat = require "support.compat"
local T = require "lepoll_test"

local M = {}

-- s as one word of a shell command line, in single quotes.
function M.quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The start of a shell command line (`env LUA_PATH=... LUA_CPATH=...`)
-- that has a child interpreter find lepoll where this process does.
M.CHILD_ENV = ("env LUA_PATH=%s LUA_CPATH=%s"):format(M.quote(package.path), M.quote(package.cpath))

-- The environment, as lepoll.spawn's `env` takes it, for a child
-- interpreter to find lepoll where this process does, with this process's
-- preload (the sanitizers' runtimes under make sanitize) and PATH.
function M.child_env()
  return { LUA_PATH = package.path, LUA_CPATH = package.cpath, LD_PRELOAD = os.getenv("LD_PRELOAD"),
    PATH = os.getenv("PATH") }
end

-- `LD_PRELOAD=...` for a child's command line that preloads lib after
-- whatever this process preloads (the sanitizers' runtimes, under make
-- sanitize, must come first).
function M.preload(lib)
  local inherited = os.getenv("LD_PRELOAD")
  return "LD_PRELOAD=" .. M.quote((inherited and inherited ~= "" and inherited .. " " or "") .. lib)
end

-- Runs a shell command, its stderr merged into its stdout; returns that
-- output and how the command ended, as p:close() says it from Lua 5.2 on:
-- out, true or nil, "exit" or "signal", the code (H.popen).
function M.run(cmd)
  local p, close = compat.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  local ok, how, code = close()
  return out, ok, how, code
end

-- Lua code run by a child interpreter of the Lua under test (H.run's
-- results), with the fault-injection library preloaded when `faults` is
-- true (lepoll_test's T.fault arms it there).
function M.run_lua(code, faults)
  local settings = require "support.settings"
  local preload = faults and M.preload(settings.BUILD .. "/spec/libfaults.so") .. " " or ""
  return M.run(("%s %s%s -e %s"):format(M.CHILD_ENV, preload, settings.LUA, M.quote(code)))
end

-- The same, as whether it exited 0 (true or nil) and its output.
function M.sh(cmd)
  local out, ok = M.run(cmd)
  return ok, out
end

-- Runs fn() in a forked child of this process, which then ends with
-- _exit (busted's state, copied, never runs on). Returns what fn returned
-- (a string) or "error: " and its error, and how the child ended.
function M.in_child(fn)
  local r, w = assert(T.pipe(true)) -- blocking: the parent reads once the child is gone
  local pid = assert(T.fork())
  if pid == 0 then
    local ok, res = pcall(fn)
    T.write(w, ok and tostring(res) or "error: " .. tostring(res))
    T._exit(ok and 0 or 1)
  end
  T.close(w)
  local how, code = T.waitpid(pid)
  local out = T.read(r)
  T.close(r)
  return out, how, code
end

return M
