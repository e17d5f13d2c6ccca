-- What sets and loops show, read out as plain values for tests to compare:
-- the ready set, the default size, the counts in a loop's rendering.
local T = require "lepoll_test"
local lepoll = require "lepoll"

local M = {}

-- The ready set of the last wait as a list of {fd, flags}, kernel order.
function M.ready(ep)
  local list = {}
  ep:iter_ready(function(fd, flags) list[#list + 1] = { fd, flags } end)
  return list
end

-- The ready set as a map fd -> flag names.
function M.ready_names(ep)
  local map = {}
  ep:iter_ready(function(fd, flags) map[fd] = lepoll.flagnames(flags) end)
  return map
end

-- num_file_descrs of lepoll.create() without arguments: the soft
-- RLIMIT_NOFILE, capped to INT_MAX (unlimited, which T.nofile gives as -1,
-- cannot be a range).
function M.default_num_file_descrs()
  local soft = T.nofile()
  return (soft < 0 or soft > 0x7fffffff) and 0x7fffffff or soft
end

-- The counts at the start of a loop's rendering: {watchers, timers, tasks}.
function M.loop_counts(l)
  local w, t, k = tostring(l):match("^loop{watchers=(%d+), timers=(%d+), tasks=(%d+), ")
  return { tonumber(w), tonumber(t), tonumber(k) }
end

return M
