-- lepoll.net.connect: l:connect, a TCP connection made in a task without
-- blocking the loop: the name resolved off the loop's thread
-- (lepoll.net.resolve), then each address tried in turn, non-blocking.
local wrapped = require "lepoll.net.socket"
local resolve = require "lepoll.net.resolve"

local M = {}

local type, error, tostring, require = type, error, tostring, require
local format, find = string.format, string.find

local socket_module -- LuaSocket's, loaded on first use

local function luasocket()
  if not socket_module then socket_module = require "socket" end
  return socket_module
end

-- A new TCP socket for an address of `family`.
local function tcp_for(family)
  local socket = luasocket()
  local make = family == "inet6" and socket.tcp6 or socket.tcp4 or socket.tcp
  return make()
end

-- l:connect(host, port [, timeout]) -> a connected wrapped TCP socket (no
-- timeout of its own), or nil and the error. timeout bounds the whole of
-- it: the lookup and every try.
function M.connect(l, host, port, timeout)
  if not l:running() then
    error("connect must be called from a task of the loop (see spawn)", 3)
  end
  if type(host) ~= "string" then
    error(format("bad argument #1 to 'connect' (host name or address expected, got %s)", type(host)), 3)
  end
  if type(port) ~= "number" and type(port) ~= "string" then
    error(format("bad argument #2 to 'connect' (port expected, got %s)", type(port)), 3)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    error(format("bad argument #3 to 'connect' (timeout (seconds) expected, got %s)", tostring(timeout)), 3)
  end
  if find(host, "\0", 1, true) then error("bad argument #1 to 'connect' (host name contains a zero byte)", 3) end
  if timeout and timeout < 0 then timeout = nil end -- as LuaSocket's: no limit
  local deadline = timeout and l:now() + timeout
  local addresses, err = resolve.addresses(l, host, nil, timeout)
  if not addresses then return nil, err end
  for k = 1, #addresses do
    local a = addresses[k]
    local sock, why = tcp_for(a.family)
    if not sock then return nil, why end
    local conn = wrapped.wrap(l, sock, 2)
    if deadline then conn:settimeout(deadline - l:now(), "t") end
    local ok
    ok, err = conn:connect(a.address, port)
    if ok then
      conn:settimeout(nil, "t")
      return conn
    end
    conn:close()
    if err == "timeout" then break end
  end
  return nil, err
end

return M
