-- The specs' one entry to their helpers (local H = require "support.helpers"):
-- the support modules below merged into one table. Each module has one job;
-- its functions are the same function values here, so that the stack
-- levels the error helpers count are those of a direct call.
--
--   support.compat    Lua versions: H.LUA_VERSION, H.JIT, H.has, H.it_if,
--                     H.load, H.load_in, H.bor/band/bclear, H.popen,
--                     H.exit_status, H.SEARCHPATH_SRC, H.numtype, H.tointeger
--   support.settings  the environment: H.LUA, H.BUILD, H.env_number,
--                     H.env_integer, H.seed
--   support.fixtures  things made and cleaned up: H.T, H.close, H.slurp,
--                     H.cleanups (defer, new_set, pipe, socketpair,
--                     watched_pipes, new_loop, tmpname); for the network
--                     specs H.step_until, H.listener, H.echo_lines
--   support.process   child processes: H.quote, H.CHILD_ENV, H.child_env, H.preload,
--                     H.run, H.run_lua, H.sh, H.in_child
--   support.views     values to compare: H.ready, H.ready_names,
--                     H.default_num_file_descrs, H.loop_counts
--   support.expect    expectations: H.error_of, H.msg_of, H.msg_anywhere,
--                     H.no_fd_leaks, H.no_child_leaks, H.children,
--                     H.is_open, H.alloc_growth
local MODULES = { "compat", "settings", "fixtures", "process", "views", "expect" }

local H = {}
for _, name in ipairs(MODULES) do
  for k, v in pairs(require("support." .. name)) do
    assert(H[k] == nil, "support." .. name .. ": H." .. k .. " is defined twice")
    H[k] = v
  end
end

return H
