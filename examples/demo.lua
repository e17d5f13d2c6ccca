-- A short tour of lepoll: one epoll set watching a pipe (from a child
-- process) and a loopback TCP pair, moving a few bytes through them and
-- printing the set after every wait.  Run with `make demo` (any Lua from
-- 5.1 to 5.4, or LuaJIT: make demo LUA=lua5.1).
local lepoll = require "lepoll"
local socket = require "socket"

local ep = lepoll.create()
print("created      ", ep)

-- The read end of a pipe: two lines from a child process, then EOF.
local pipe = assert(io.popen("printf 'line one\\n'; sleep 0.05; printf 'line two\\n'", "r"))
ep:set(pipe, "in")
local pipe_fd = ep:tofd(pipe) -- file handles have no getfd, but the set knows it

-- A TCP pair on loopback: the client sends "ping", the server answers "pong".
local server = assert(socket.bind("127.0.0.1", 0))
local host, port = server:getsockname()
local client = assert(socket.connect(host, port))
local conn = assert(server:accept())
server:close()
client:settimeout(0)
conn:settimeout(0)
ep:set(conn, "in|rdhup")
ep:set(client, "out")
print("watching     ", ep)

-- Names for the fds, to dispatch on: iter_ready gives them as tofd does.
local fds = {
  [pipe_fd] = "pipe",
  [ep:tofd(conn)] = "server side",
  [ep:tofd(client)] = "client side",
}

local handlers = {
  ["client side"] = function(flags)
    if lepoll.has(flags, "out") then
      client:send("ping")
      ep:set(client, "in") -- now wait for the answer
    elseif lepoll.has(flags, "in") then
      print("               client got", (client:receive(4)))
      client:shutdown("send") -- the server sees rdhup
      ep:remove(client)
    end
  end,
  ["server side"] = function(flags)
    if lepoll.has(flags, "in") then
      local data = conn:receive(4)
      if data then
        print("               server got", data)
        conn:send("pong")
      end
    end
    if lepoll.has(flags, "rdhup") then
      print("               client shut down its side")
      ep:remove(conn)
    end
  end,
  ["pipe"] = function()
    -- Ready means a read will not block: a line, or EOF once the child
    -- exits (flags "hup"). The lines are short writes, each read whole.
    local line = pipe:read("*l") -- "*l": Lua 5.1 and 5.2 know no "l"
    if line then
      print("               pipe said", line)
    else
      print("               pipe closed by the child")
      ep:remove(pipe)
    end
  end,
}

local step = 0
while #ep > 0 and step < 20 do
  step = step + 1
  local result = ep:wait(2)
  print(string.format("wait %-2d %-7s", step, result), ep)
  assert(result ~= "timeout", "nothing happened within 2 seconds")
  ep:iter_ready(function(fd, flags) handlers[fds[fd]](flags) end)
end

ep:invariant()
ep:close()
pipe:close()
client:close()
conn:close()
print("closed       ", ep)
