-- busted helper (--helper) for the hardening runs of mk/hardening.mk:
-- `make sanitize` and `make valgrind`. Plain `make test` does not load it.
-- What it does is chosen by environment variables:
--
--   LEPOLL_MODULE_DIR=DIR   the C modules lepoll and lepoll_test must come
--       from DIR (lepoll_test from DIR/spec), not from build/: checked now,
--       with package.searchpath on the cpath busted was given, and again
--       when the suite ends, from /proc/self/maps (what was really loaded).
--       A mismatch stops the run with a non-zero exit status.
--   LEPOLL_GC=generational  the generational collector, for the whole run;
--       LEPOLL_GC_MINORMUL and LEPOLL_GC_MAJORMUL, when set, are its
--       parameters (a minor collection each time the heap grows by that
--       many percent; a major one when it grew by that many percent over
--       the last major one). Lua's defaults are 20 and 100.
--   LEPOLL_GC=pause0        the incremental collector starting a new cycle
--       as soon as one ends (setpause 0).
--   LEPOLL_KEEP_CLIBS=1     C modules stay mapped until the process exits:
--       lua_close normally unloads them (dlclose) before the leak checkers
--       of AddressSanitizer and valgrind report, which then cannot name
--       lepoll's functions in a leak's stack.
local busted = require "busted"

local function fail(msg)
  io.stderr:write("spec/support/hardening.lua: ", msg, "\n")
  io.stderr:flush()
  os.exit(1, true)
end

local gc = os.getenv("LEPOLL_GC")
if gc == "pause0" then
  collectgarbage("incremental")
  collectgarbage("setpause", 0)
elseif gc == "generational" then
  -- 0 keeps Lua's value.
  collectgarbage("generational", tonumber(os.getenv("LEPOLL_GC_MINORMUL")) or 0,
    tonumber(os.getenv("LEPOLL_GC_MAJORMUL")) or 0)
elseif gc ~= nil and gc ~= "" then
  fail("LEPOLL_GC must be pause0 or generational, not '" .. gc .. "'")
end

if os.getenv("LEPOLL_KEEP_CLIBS") == "1" then
  -- Lua unloads the libraries of C modules in the __gc of the registry's
  -- _CLIBS table; without the field, that finalizer does nothing.
  local clibs = debug.getregistry()._CLIBS
  local mt = type(clibs) == "table" and getmetatable(clibs)
  if type(mt) ~= "table" or mt.__gc == nil then
    fail("no _CLIBS finalizer in the registry: not Lua 5.4's loadlib")
  end
  mt.__gc = nil
end

-- At the end of the suite: what was loaded, and the collector's mode.
local checks = {}
busted.subscribe({ "suite", "end" }, function()
  for _, check in ipairs(checks) do check() end
  return nil, true
end, { priority = 1 }) -- before the summary line, which stays the last

if gc == "pause0" or gc == "generational" then
  checks[#checks + 1] = function()
    -- Switching to a mode returns the mode it was in.
    local mode = collectgarbage(gc == "pause0" and "incremental" or "generational")
    if mode ~= (gc == "pause0" and "incremental" or "generational") then
      io.stderr:write("spec/support/hardening.lua: warning: a spec left the collector in "
        .. mode .. " mode\n")
    end
  end
end

local dir = os.getenv("LEPOLL_MODULE_DIR")
if dir ~= nil and dir ~= "" then
  local want = {
    lepoll = dir .. "/lepoll.so",
    lepoll_test = dir .. "/spec/lepoll_test.so",
  }
  for name, file in pairs(want) do
    local found = package.searchpath(name, package.cpath)
    if found ~= file then
      fail(string.format("require '%s' would load %s, not %s (cpath %s)",
        name, tostring(found), file, package.cpath))
    end
  end

  -- Every lepoll.so and lepoll_test.so mapped into this process must be
  -- DIR's, and both must have been loaded by the specs.
  checks[#checks + 1] = function()
    local seen = {}
    for line in io.lines("/proc/self/maps") do
      local file = line:match("%s(/%S*/lepoll[_%w]*%.so)$")
      if file then
        local name = file:match("([^/]+)%.so$")
        local expected = want[name]
        if expected and file:sub(-#expected - 1) ~= "/" .. expected then
          fail("loaded " .. file .. ", not " .. expected)
        end
        seen[name] = file
      end
    end
    for name, file in pairs(want) do
      if not seen[name] then fail(file .. " was never loaded") end
    end
    io.write("\nmodules loaded: ", seen.lepoll, ", ", seen.lepoll_test, "\n")
  end
end
