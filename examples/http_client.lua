-- An HTTP client on lepoll.loop: fetches several URLs at once, a task
-- each, over connections made by l:connect (names resolved without
-- blocking the loop), TLS for https:// URLs.
--
--     lua examples/http_client.lua [--cacert FILE] [--timeout SECONDS] URL...
--
-- (any Lua from 5.1 to 5.4, or LuaJIT; https needs LuaSec, Debian lua-sec)
--
-- URLs are http://HOST[:PORT][/PATH] or https://...; --cacert names the
-- PEM file of the certificate authorities https servers are checked
-- against (default: the system's). --timeout (default 30) bounds each
-- fetch as a whole. Prints one line per URL, in the order given:
--
--     200 1048576 http://127.0.0.1:8080/big
--
-- (the status and the body's length), or `error MESSAGE URL`. Exits 0 when
-- every fetch got an answer, 1 otherwise, 2 on bad arguments.
local loop = require "lepoll.loop"

local format, match, find, lower = string.format, string.match, string.find, string.lower

local function usage()
  io.stderr:write("usage: lua examples/http_client.lua [--cacert FILE] [--timeout SECONDS] URL...\n")
  os.exit(2)
end

-- -> scheme, host, port, path; or nil.
local function parse_url(url)
  local scheme, rest = match(url, "^(https?)://(.+)$")
  if not scheme then return nil end
  local authority, path = match(rest, "^([^/]+)(.*)$")
  if not authority then return nil end
  local host, port = match(authority, "^%[(.+)%]:?(%d*)$") -- [IPv6]:port
  if not host then host, port = match(authority, "^([^:]+):?(%d*)$") end
  if not host then return nil end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  return scheme, host, port, path ~= "" and path or "/"
end

-- Reads the answer: the status and the body's length (Content-Length, or
-- up to the end). -> status, length; or nil and the error.
local function read_answer(conn)
  local status_line, err = conn:receive("*l")
  if not status_line then return nil, err end
  local status = tonumber(match(status_line, "^HTTP/%d%.%d (%d%d%d)"))
  if not status then return nil, "not an HTTP answer: " .. status_line end
  local length
  while true do
    local line
    line, err = conn:receive("*l")
    if not line then return nil, err end
    if line == "" then break end
    local name, value = match(line, "^([^:]+):%s*(.-)%s*$")
    if name and lower(name) == "content-length" then length = tonumber(value) end
  end
  local body
  if length then
    body, err = conn:receive(length)
  else
    body, err = conn:receive("*a")
  end
  if not body then return nil, err end
  return status, #body
end

local function fetch(l, url, cacert, timeout)
  local scheme, host, port, path = parse_url(url)
  if not scheme then return nil, "not an http:// or https:// URL" end
  local conn, err = l:connect(host, port, timeout)
  if not conn then return nil, err end
  conn:settimeout(timeout, "t")
  local ok = true
  if scheme == "https" then
    ok, err = conn:starttls({
      mode = "client", protocol = "any", verify = "peer", options = "all",
      cafile = cacert or "/etc/ssl/certs/ca-certificates.crt",
    }, host)
  end
  local status, length
  if ok then
    ok, err = conn:send(format("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host))
    if ok then status, length = read_answer(conn) end
    if not status then err = length end
  end
  conn:close()
  if not status then return nil, err end
  return status, length
end

local function main(...)
  local argv, urls = { ... }, {}
  local cacert, timeout = nil, 30
  local i = 1
  while argv[i] do
    if argv[i] == "--cacert" then
      cacert, i = argv[i + 1] or usage(), i + 2
    elseif argv[i] == "--timeout" then
      timeout, i = tonumber(argv[i + 1]) or usage(), i + 2
    else
      urls[#urls + 1], i = argv[i], i + 1
    end
  end
  if #urls == 0 then usage() end

  local l = loop.new()
  local results = {}
  for k, url in ipairs(urls) do
    l:spawn(function()
      local status, info = fetch(l, url, cacert, timeout)
      results[k] = status and format("%d %d %s", status, info, url) or format("error %s %s", tostring(info), url)
    end)
  end
  l:run()
  l:close()
  local failed = false
  for k, url in ipairs(urls) do
    local line = results[k] or ("error no answer " .. url)
    if find(line, "^error") then failed = true end
    print(line)
  end
  os.exit(failed and 1 or 0)
end

main(...)
