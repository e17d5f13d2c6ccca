-- lepoll.net.tls: LuaSec (Debian's lua-sec), loaded when TLS is first
-- used, so that plain sockets never need it; and the server side's
-- context, made once from a params table rather than per connection.
local M = {}

local ssl_module -- LuaSec's "ssl", once loaded

-- -> LuaSec's module; raises, saying what to install, when it is missing.
function M.luasec()
  if ssl_module then return ssl_module end
  local ok, ssl = pcall(require, "ssl")
  if not ok or type(ssl) ~= "table" or type(ssl.wrap) ~= "function" then
    error("TLS needs LuaSec (require \"ssl\"; Debian package lua-sec), which could not be loaded:\n\t"
      .. tostring(ssl), 3)
  end
  ssl_module = ssl
  return ssl
end

-- A LuaSec context for params (made by ssl.newcontext; certificate and
-- key files are read there), or params as they are when they already are
-- one (LuaSec's contexts are userdata). -> context, or nil and why: what
-- LuaSec refused, raised or returned.
function M.context(params)
  local t = type(params)
  if t == "userdata" then return params end
  if t ~= "table" then return nil, "a table of parameters or a context (ssl.newcontext) expected, got " .. t end
  local ssl = M.luasec()
  local ok, context, err = pcall(ssl.newcontext, params)
  if not ok then return nil, context end
  return context, err
end

return M
