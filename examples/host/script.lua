-- Run by build/host (examples/host/host.c): receives a pipe's read end from
-- the host, watches it, and returns the set and a dispatcher that the host
-- calls whenever the set's own descriptor is readable.
local lepoll = require "lepoll"

local fd = ...
local ep = lepoll.create()
ep:set(fd, "in")
print("script: watching the host's fd " .. fd .. ": " .. tostring(ep))

local function on_event(rfd, flags)
  local data = host.read(rfd)
  if data and data ~= "" then
    io.write("script: ", lepoll.flagnames(flags), ": ", data)
  elseif lepoll.has(flags, "hup") then
    print("script: the host closed its end")
    ep:remove(rfd)
    ep:close()
  end
end

local function dispatch()
  assert(ep:wait(0) == "ok", "the host called with nothing ready")
  ep:iter_ready(on_event)
end

return ep, dispatch
