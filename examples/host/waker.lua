-- Run by build/waker_host (examples/host/waker.c): receives a waker that a
-- thread of the host posts values to, prints each one from a lepoll.loop,
-- and ends at "done". The loop watches the waker as any descriptor:
-- readable while values wait.
local loop = require "lepoll.loop"

local waker = ...
local l = loop.new()
local received = 0

l:io(waker, "in", function(watcher)
  while true do
    local value = waker:read()
    if value == nil then return end -- nil, "again": every value taken
    if value == "done" then
      print(("script: done after %d messages"):format(received))
      watcher:stop()
      waker:close() -- the host's later posts fail with EPIPE
      return
    end
    received = received + 1
    print("script: " .. value)
  end
end)

l:run() -- until the watcher stops
l:close()
