rockspec_format = "3.0"
package = "lepoll"
version = "scm-1"
source = {
   url = "git+https://example.invalid/lepoll.git",
}
description = {
   summary = "Linux epoll for Lua: an exact, fast binding with an inspectable table",
   detailed = [[
lepoll gives Lua scripts, and C programs that embed Lua, the epoll set
itself: a map from file descriptor to flags, mirrored with the kernel's
set, that can be inspected and printed. Level-triggered by default;
edge-triggered and one-shot on request. Modelled on Linux_ext.Epoll.
]],
   license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
   "lua >= 5.1",
}
build = {
   type = "builtin",
   modules = {
      lepoll = {
         sources = {
            "src/core/check.c", "src/core/child.c", "src/core/epset.c", "src/core/fdio.c", "src/core/names.c",
            "src/core/resolver.c", "src/core/signals.c", "src/core/timeouts.c", "src/core/waker.c",
            "src/binding/args.c", "src/binding/errors.c", "src/binding/fdio.c", "src/binding/methods.c",
            "src/binding/module.c", "src/binding/process.c", "src/binding/ready.c", "src/binding/resolver.c",
            "src/binding/select.c", "src/binding/signals.c", "src/binding/tostring.c", "src/binding/waker.c",
         },
         libraries = { "pthread" },
         incdirs = { "src", "src/core", "src/binding" },
      },
      ["lepoll.loop"] = "lua/lepoll/loop.lua",
      ["lepoll.loop.common"] = "lua/lepoll/loop/common.lua",
      ["lepoll.loop.condition"] = "lua/lepoll/loop/condition.lua",
      ["lepoll.loop.heap"] = "lua/lepoll/loop/heap.lua",
      ["lepoll.loop.invariant"] = "lua/lepoll/loop/invariant.lua",
      ["lepoll.loop.processes"] = "lua/lepoll/loop/processes.lua",
      ["lepoll.loop.rounds"] = "lua/lepoll/loop/rounds.lua",
      ["lepoll.loop.signals"] = "lua/lepoll/loop/signals.lua",
      ["lepoll.loop.slots"] = "lua/lepoll/loop/slots.lua",
      ["lepoll.loop.tasks"] = "lua/lepoll/loop/tasks.lua",
      ["lepoll.loop.timers"] = "lua/lepoll/loop/timers.lua",
      ["lepoll.loop.waits"] = "lua/lepoll/loop/waits.lua",
      ["lepoll.loop.watchers"] = "lua/lepoll/loop/watchers.lua",
      ["lepoll.select"] = "lua/lepoll/select.lua",
      ["lepoll.net.connect"] = "lua/lepoll/net/connect.lua",
      ["lepoll.net.resolve"] = "lua/lepoll/net/resolve.lua",
      ["lepoll.net.server"] = "lua/lepoll/net/server.lua",
      ["lepoll.net.socket"] = "lua/lepoll/net/socket.lua",
      ["lepoll.net.tls"] = "lua/lepoll/net/tls.lua",
   },
}
