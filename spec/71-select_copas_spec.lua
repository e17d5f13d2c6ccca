-- Debian's copas (lua-copas), unmodified, as an echo server in a child
-- process: with socket.select it dies once a descriptor reaches 1024
-- (`descriptor too large for set size`); with socket.select replaced by
-- lepoll.select (one line, before the server starts) it serves 5,000
-- concurrent connections, every byte checked. The clients are tasks of a
-- lepoll.loop in this process, on wrapped sockets. RLIMIT_NOFILE is raised
-- within the hard limit for both processes.
local lepoll = require "lepoll"
local socket = require "socket"
local loop = require "lepoll.loop"
local H = require "support.helpers"
local T = H.T

local now = lepoll.now
local quote = H.quote
local HOST = "127.0.0.1"

-- copas is packaged for Lua 5.1 and 5.2; it is plain Lua, so the other
-- versions take it from there.
local COPAS_PATH = "/usr/share/lua/5.2/?.lua;/usr/share/lua/5.1/?.lua;"

-- The server: copas' echo of what comes, until the peer closes. The only
-- line that is not copas' own is the replacement, when asked for.
local SERVER = [[
local socket = require "socket"
if arg[1] == "lepoll" then socket.select = require "lepoll.select" end
local copas = require "copas"
local server = assert(socket.bind("127.0.0.1", 0, 4096))
copas.addserver(server, function(c)
  while true do
    local data, err, partial = copas.receivePartial(c, 65536)
    data = data or partial
    if data and data ~= "" and not copas.send(c, data) then break end
    if err and err ~= "timeout" then break end
  end
  c:close()
end)
io.stdout:write(select(2, server:getsockname()), "\n")
io.stdout:flush()
copas.loop()
]]

local function copas_available()
  local ok = H.run(("%s LUA_PATH=%s %s -e 'require \"copas\"'"):format(H.CHILD_ENV, quote(COPAS_PATH .. package.path),
    H.LUA))
  return ok == ""
end

-- Starts the server (mode "lepoll" or "socket"); -> pid, port, its output file.
local function start(mode)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(SERVER)
  f:close()
  local out = os.tmpname()
  local p = assert(io.popen(("echo $$; exec %s LUA_PATH=%s %s %s %s > %s 2>&1 < /dev/null"):format(H.CHILD_ENV,
    quote(COPAS_PATH .. package.path), H.LUA, quote(script), mode, quote(out))))
  local pid = assert(tonumber(p:read("*l")))
  local port
  local deadline = now() + 10
  repeat
    local o = io.open(out)
    port = o and tonumber((o:read("*a") or ""):match("^(%d+)\n"))
    if o then o:close() end
    if not port then socket.sleep(0.02) end
  until port or now() > deadline
  return { pid = pid, port = port, out = out, script = script, p = p }
end

local function stop(srv)
  os.execute("kill " .. srv.pid .. " 2>/dev/null")
  srv.p:close()
  local o = io.open(srv.out)
  local text = o and o:read("*a") or ""
  if o then o:close() end
  os.remove(srv.out)
  os.remove(srv.script)
  return (text:gsub("^%d+\n", "")) -- what it said after its port
end

-- n clients at once, each a task: connect, send a message of its own (its
-- number, then bytes up to `size`), read it back whole, compare; all of
-- them connected before any sends, and none closing before all are
-- echoed (or the time is up), so that the server holds n at once.
-- -> how many came back intact, the first failure, how many connected
local function clients(port, n, size, limit)
  local l = loop.new()
  local conns, intact, failure = {}, 0, nil
  local connected, go = 0, l:condition()
  local answered, all_answered = 0, l:condition()
  for i = 1, n do
    l:spawn(function()
      local c, err = l:connect(HOST, port, limit)
      if not c then
        failure = failure or ("connect: " .. tostring(err))
        return
      end
      conns[#conns + 1] = c
      c:settimeout(limit)
      connected = connected + 1
      if connected < n then go:wait() else go:broadcast() end
      local msg = (("%d:"):format(i) .. ("x"):rep(size)):sub(1, size)
      if c:send(msg) then
        local back, e = c:receive(#msg)
        if back == msg then intact = intact + 1 else failure = failure or ("echo: " .. tostring(e)) end
      end
      answered = answered + 1
      if answered < n then all_answered:wait(limit) else all_answered:broadcast() end
      c:close()
    end)
  end
  local deadline = now() + limit
  while l:stats().tasks > 0 and now() < deadline do l:step(0.5) end
  l:close()
  return intact, failure, connected
end

describe("copas, unmodified, with socket.select replaced by lepoll.select", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)
  local soft0
  lazy_setup(function()
    soft0 = T.nofile()
    local _, hard = T.nofile()
    if hard < 0 or hard >= 12000 then T.setnofile(12000) end
  end)
  lazy_teardown(function() if soft0 then T.setnofile(soft0) end end)

  local function enough()
    if not copas_available() then return false, "copas (lua-copas) cannot be loaded" end
    if T.nofile() < 12000 then return false, "RLIMIT_NOFILE cannot be raised to 12000" end
    return true
  end

  it("dies at descriptor 1024 on socket.select", function()
    local ok, why = enough()
    if not ok then return pending(why) end
    local srv = start("socket")
    assert(srv.port, "the server printed no port")
    local intact = clients(srv.port, 1100, 100, 15)
    local text = stop(srv)
    assert.is_true(intact < 1100)
    assert.matches("descriptor too large for set size", text, 1, true)
  end)

  it("serves 5,000 concurrent connections on lepoll.select, every byte checked", function()
    local ok, why = enough()
    if not ok then return pending(why) end
    local srv = start("lepoll")
    assert(srv.port, "the server printed no port")
    local t0 = now()
    local intact, failure, connected = clients(srv.port, 5000, 1000, 120)
    local took = now() - t0
    local text = stop(srv)
    assert.are.equal("", text)
    assert.are.equal(5000, connected, failure)
    assert.are.equal(5000, intact, failure)
    print(("71-select_copas: 5000 connections at once, 5000 echoes intact in %.1f s"):format(took))
  end)
end)
