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
-- one. -> context, or nil and LuaSec's error.
function M.context(params)
  if type(params) ~= "table" then return params end
  local ssl = M.luasec()
  return ssl.newcontext(params)
end

return M
