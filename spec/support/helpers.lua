-- Shared by the specs: raw descriptors, descriptor-leak guard, waiting.
local T = require "lepoll_test"
local lepoll = require "lepoll"
local luassert = require "luassert"

local H = { T = T }

-- Registers, in the calling describe block, a check that the block ends
-- with exactly the descriptors it started with. Sets left open are closed
-- by the collector, so a full collection runs first. Busted's functions
-- live in the spec file's environment, hence the arguments:
--   H.no_fd_leaks(lazy_setup, lazy_teardown)
function H.no_fd_leaks(lazy_setup, lazy_teardown)
  local before
  lazy_setup(function()
    collectgarbage()
    collectgarbage()
    before = assert(T.fdcount())
  end)
  lazy_teardown(function()
    collectgarbage()
    collectgarbage()
    luassert.are.equal(before, assert(T.fdcount()), "descriptors leaked")
  end)
end

-- Closes raw descriptors, ignoring ones already closed.
function H.close(...)
  for i = 1, select("#", ...) do
    local fd = select(i, ...)
    if fd then T.close(fd) end
  end
end

-- The ready set of the last wait as a list of {fd, flags}, kernel order.
function H.ready(ep)
  local list = {}
  ep:iter_ready(function(fd, flags) list[#list + 1] = { fd, flags } end)
  return list
end

-- The ready set as a map fd -> flag names.
function H.ready_names(ep)
  local map = {}
  ep:iter_ready(function(fd, flags) map[fd] = lepoll.flagnames(flags) end)
  return map
end

-- The error message raised by f(...), or fails when it raises nothing.
function H.error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return err
end

return H
