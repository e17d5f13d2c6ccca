-- An echo server on every core: a master process and N worker processes,
-- each worker a lepoll.loop of its own, all serving one port.
--
--     lua5.4 examples/prefork_echo.lua [--workers N] [--reuseport] [port [host]]
--
-- listens on host (default 127.0.0.1) and port (default 0: any free port),
-- starts N workers (default: the number of online CPUs), and once every
-- worker is ready prints `listening on HOST:PORT (N workers)`. Each worker
-- sends back every byte a client sends, as it comes: a line in, the same
-- line back. A worker that dies is replaced (after a second when it lived
-- less than a second, so that one failing at once does not spin). On
-- SIGTERM or SIGINT (Ctrl-C) the master stops every worker (SIGTERM, then
-- SIGKILL for one still running 2 seconds later), waits for them all and
-- exits with status 0. Bad arguments exit with status 2 and the usage; a
-- port that is taken, or a worker that fails before it is ready, with
-- status 1 and the error.
--
-- Two ways to share the port (doc/cores.md):
--
-- - by default the master opens one listening socket and hands it to every
--   worker as descriptor 3; each worker watches it in its own epoll set
--   with `exclusive` (EPOLLEXCLUSIVE), so that a new connection wakes one
--   waiting worker, not all of them. Waking is not accepting: a worker
--   whose `accept` finds nothing (another took the connection) goes back
--   to waiting;
-- - with --reuseport each worker binds a socket of its own to the port
--   (SO_REUSEPORT) and the kernel spreads connections across them by a
--   hash of their addresses. The master keeps a socket bound to the port,
--   not listening, so that the port stays reserved for restarted workers.
--
-- The master starts its workers as `INTERPRETER SCRIPT --worker MODE ...`,
-- the interpreter and script it was itself started with: `--worker` is
-- how a worker is told what it is, not an option for people. Each worker
-- leads a process group of its own, so that a terminal's Ctrl-C reaches
-- the master alone, which stops the workers in order. Its stdin is a pipe
-- from the master that is never written: a worker stops at the end of
-- that input too, so no worker outlives a master killed without the
-- chance to stop it. On stopping, a worker prints on stderr
-- `prefork_echo: worker PID: C connections, A accepts found none`.
local lepoll = require "lepoll"
local loop = require "lepoll.loop"
local socket = require "socket"

local LISTEN_FD = 3 -- the shared listening socket, in a worker
local BACKLOG = 1024
local CHUNK = 65536 -- bytes asked of receivesome at a time
local READY_TIMEOUT = 10 -- seconds a new worker has to say it is ready
local GRACE = 2 -- seconds between SIGTERM and SIGKILL when stopping
local RESTART_DELAY = 1 -- seconds before replacing a worker that lived less than this
local SIGTERM, SIGKILL = 15, 9

-- One write per line: the master and the workers share stderr.
local function say(text)
  io.stderr:write("prefork_echo: " .. text .. "\n")
end

local function usage()
  io.stderr:write(("usage: %s examples/prefork_echo.lua [--workers N] [--reuseport] [port [host]]\n")
    :format(arg[-1] or "lua"))
  os.exit(2)
end

-- This process's id (Lua has no getpid).
local function getpid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = tonumber(f:read("*l"):match("^(%d+)"))
  f:close()
  return pid
end

-- The number of online CPUs (/sys/devices/system/cpu/online: "0-3,6"), or 1.
local function online_cpus()
  local f = io.open("/sys/devices/system/cpu/online")
  local list = f and f:read("*l") or ""
  if f then f:close() end
  local n = 0
  for a, b in list:gmatch("(%d+)%-?(%d*)") do n = n + (tonumber(b) or tonumber(a)) - tonumber(a) + 1 end
  return math.max(n, 1)
end

-- A TCP socket bound to host and port, listening when backlog is given,
-- with SO_REUSEPORT when asked. -> socket, or nil and LuaSocket's error.
local function bind(host, port, reuseport, backlog)
  local addrs, err = socket.dns.getaddrinfo(host)
  for _, a in ipairs(addrs or {}) do
    local s = (a.family == "inet6" and socket.tcp6 or socket.tcp4)()
    local ok
    ok, err = s:setoption("reuseaddr", true)
    if ok and reuseport then ok, err = s:setoption("reuseport", true) end
    if ok then ok, err = s:bind(a.addr, port) end
    if ok and backlog then ok, err = s:listen(backlog) end
    if ok then return s end
    s:close()
  end
  return nil, err
end

-- The listening socket the master handed down, as a LuaSocket server
-- object: LuaSocket adopts a descriptor with setfd, which its manual lists
-- among its internal methods (as getfd, which every poller relies on).
local function adopt(fd)
  local s = assert(socket.tcp())
  s:close() -- LuaSocket 3.0's tcp() opens a descriptor, which setfd would not close (3.1's opens none)
  s:setfd(fd)
  assert(s:listen(BACKLOG)) -- it listens already: this only makes the object a server, with accept
  return s
end

-- ------------------------------------------------------------------ worker

local function worker(mode, host, port)
  local listener
  if mode == "exclusive" then
    listener = adopt(LISTEN_FD)
  else
    local err
    listener, err = bind(host, port, true, BACKLOG)
    if not listener then
      say("worker: " .. tostring(err))
      os.exit(1)
    end
  end
  -- An accept that finds no connection (another worker took it) returns
  -- at once, nil and "timeout": LuaSocket made the socket non-blocking (a
  -- flag of the open file, which the workers share), and with a timeout of
  -- 0 it does not wait either.
  listener:settimeout(0)

  local l = loop.new()
  local conns, accepted, found_none = {}, 0, 0

  local function serve(conn)
    while true do
      local data = conn:receivesome(CHUNK)
      if not data or not conn:send(data) then break end
    end
    conns[conn] = nil
    conn:close()
  end

  -- One accept per event: the set says again while connections wait. With
  -- exclusive the kernel may have told another worker as well (one whose
  -- set had no waiter at that moment), which may have taken it already.
  local acceptor = l:io(listener, mode == "exclusive" and "in|exclusive" or "in", function()
    local client = listener:accept()
    if not client then
      found_none = found_none + 1
      return
    end
    accepted = accepted + 1
    client:setoption("tcp-nodelay", true)
    local conn = l:wrap(client)
    conns[conn] = true
    l:spawn(serve, conn)
  end)

  local stoppers
  local function stop()
    if not acceptor:is_active() then return end
    acceptor:stop()
    listener:close()
    for conn in pairs(conns) do conn:close() end -- their tasks wake with nil, "closed" and end
    for _, w in ipairs(stoppers) do w:stop() end
  end
  stoppers = { l:signal("TERM", stop), l:signal("INT", stop), l:io(0, "in", stop) } -- stdin: see the top

  io.stdout:write("ready\n")
  io.stdout:flush()
  l:run() -- until stopped and every connection has ended
  l:close()
  say(("worker %d: %d connections, %d accepts found none"):format(getpid(), accepted, found_none))
  os.exit(0)
end

-- ------------------------------------------------------------------ master

local function master(args)
  local nworkers, mode = online_cpus(), "exclusive"
  while args[1] and args[1]:sub(1, 2) == "--" do
    local opt = table.remove(args, 1)
    if opt == "--workers" then
      nworkers = tonumber(args[1] or "")
      table.remove(args, 1)
      if not nworkers or nworkers < 1 or nworkers % 1 ~= 0 then usage() end
    elseif opt == "--reuseport" then
      mode = "reuseport"
    else
      usage()
    end
  end
  local port, host = tonumber(args[1] or 0), args[2] or "127.0.0.1"
  if not port or #args > 2 then usage() end

  -- exclusive: the listening socket itself; reuseport: the port, held.
  local sock, err = bind(host, port, mode == "reuseport", mode == "exclusive" and BACKLOG or nil)
  if not sock then
    say(tostring(err))
    os.exit(1)
  end
  local addr
  addr, port = sock:getsockname()

  local interpreter = arg[-1]
  for i = -2, -math.huge, -1 do
    if arg[i] == nil then break end
    interpreter = arg[i]
  end

  local l = loop.new()
  local slots = {} -- one per worker: { proc =, started =, ready =, generation =, timers }
  local nready, stopping, failed = 0, false, false
  local signal_watchers, grace_timer = {}, nil
  local start -- defined below

  local function running()
    local n = 0
    for _, s in ipairs(slots) do if s.proc then n = n + 1 end end
    return n
  end

  -- Once stopping and no worker is left, the loop has nothing more to do.
  local function finish_if_done()
    if not stopping or running() > 0 then return end
    for _, w in ipairs(signal_watchers) do w:stop() end
    if grace_timer then grace_timer:stop() end
  end

  local function stop_timers(s)
    for _, key in ipairs({ "ready_watcher", "ready_timer", "restart_timer" }) do
      if s[key] then s[key]:stop() end
      s[key] = nil
    end
  end

  local function stop_all(why)
    if stopping then return end
    stopping = true
    if why then say(why .. ": stopping " .. running() .. " workers") end
    for _, s in ipairs(slots) do
      stop_timers(s)
      if s.proc then s.proc:kill(SIGTERM) end
    end
    grace_timer = l:timer(GRACE, function()
      for _, s in ipairs(slots) do
        if s.proc then s.proc:kill(SIGKILL) end
      end
    end)
    finish_if_done()
  end

  local function on_exit(s, proc, how, code)
    stop_timers(s)
    s.proc = nil
    local ended = ("worker %d %s"):format(proc.pid, how == "exit" and "exited with status " .. code
      or "killed by signal " .. code)
    proc:close()
    if stopping then
      finish_if_done()
    elseif not s.ready and s.generation == 1 then
      failed = true -- a first worker that never got ready: the program cannot serve
      stop_all(ended .. " before it was ready")
    else
      local lived = l:now() - s.started
      s.restart_timer = l:timer(lived < RESTART_DELAY and RESTART_DELAY or 0, function()
        s.restart_timer = nil
        local p = start(s)
        say(ended .. "; started worker " .. (p and p.pid or "none"))
      end)
    end
  end

  -- Reads the worker's first line: "ready" once it serves.
  local function on_ready_line(s, p, w)
    local data = lepoll.read(p.stdout)
    if data == nil then return end -- "again"
    s.line = s.line .. data
    if data ~= "" and not s.line:find("\n") then return end
    w:stop()
    s.ready_watcher = nil
    p:closepipe("stdout")
    if s.line ~= "ready\n" then return end -- it is ending: on_exit tells
    s.ready_timer:stop()
    s.ready = true
    if s.generation > 1 then return end
    nready = nready + 1
    if nready == nworkers then
      io.stdout:write(("listening on %s:%d (%d workers)\n"):format(addr, port, nworkers))
      io.stdout:flush()
    end
  end

  -- Starts a worker in slot s. -> its process, or nil (then stopping).
  function start(s)
    s.started, s.ready, s.line = l:now(), false, ""
    s.generation = (s.generation or 0) + 1
    local spec = { interpreter, arg[0], "--worker", mode, stdin = "pipe", stdout = "pipe", newgroup = true }
    if mode == "exclusive" then
      spec.fds = { [LISTEN_FD] = sock }
    else
      spec[#spec + 1], spec[#spec + 2] = addr, port
    end
    local p, perr = l:process(spec, function(proc, how, code) on_exit(s, proc, how, code) end)
    if not p then
      failed = true
      stop_all("cannot start a worker: " .. tostring(perr))
      return nil
    end
    s.proc = p
    s.ready_watcher = l:io(p.stdout, "in", function(w) on_ready_line(s, p, w) end)
    s.ready_timer = l:timer(READY_TIMEOUT, function()
      s.ready_timer = nil
      say(("worker %d not ready after %d s"):format(p.pid, READY_TIMEOUT))
      p:kill(SIGKILL)
    end)
    return p
  end

  local function on_signal(_, name) stop_all("SIG" .. name) end
  signal_watchers = { l:signal("INT", on_signal), l:signal("TERM", on_signal) }
  for n = 1, nworkers do
    slots[n] = {}
    if not stopping then start(slots[n]) end
  end
  l:run() -- until stopping and every worker has ended
  l:close()
  sock:close()
  os.exit(failed and 1 or 0)
end

local args = { ... }
if args[1] == "--worker" then
  worker(args[2], args[3], tonumber(args[4]))
else
  master(args)
end
