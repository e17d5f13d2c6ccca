-- lepoll.select: LuaSocket's socket.select, with its exact contract, on a
-- persistent epoll set: no FD_SETSIZE ceiling (1024 descriptors), and a
-- call costs what changed since the last one, not what is watched.
--
--   socket.select = require "lepoll.select"   -- the whole migration
--
-- One set per Lua state (this module's function, made when it is first
-- required); see doc/select.md.
local lepoll = require "lepoll"

return lepoll.selector()
