-- examples/http_server.lua and examples/http_client.lua as programs, with
-- real clients nobody here wrote: curl (HTTP and HTTPS, a certificate made
-- at test time by openssl), ab (Apache's benchmark, 1,000 concurrent
-- connections), and raw sockets for what those clients will not send:
-- pipelined and split requests, oversized heads, resets, a client that
-- never reads. The server's descriptors are counted in /proc/PID/fd.
local lepoll = require "lepoll"
local socket = require "socket"
local H = require "support.helpers"

local now = lepoll.now
local quote = H.quote
local LUA, ENV = H.LUA, H.CHILD_ENV
local HOST = "127.0.0.1"

local BIG
do
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  BIG = table.concat(bytes):rep(4096)
end

local function sh(cmd)
  local out, ok = H.run(cmd)
  assert(ok, cmd .. ":\n" .. out)
  return out
end

-------------------------------------------------------------- the server

-- The server as documented, `LUA examples/http_server.lua ARGS`, its
-- stdin a named pipe this process writes (closing it ends the server),
-- with RLIMIT_NOFILE raised to 4096 within the hard limit.
local Server = {}
Server.__index = Server

local function start_server(args)
  local s = setmetatable({}, Server)
  s.fifo = os.tmpname()
  os.remove(s.fifo)
  sh("mkfifo " .. quote(s.fifo))
  local cmd = ("echo $$; ulimit -n $(( $(ulimit -Hn) < 4096 ? $(ulimit -Hn) : 4096 )); exec %s %s "
    .. "examples/http_server.lua %s < %s"):format(ENV, LUA, args or "", quote(s.fifo))
  s.out = assert(io.popen(cmd))
  s.pid = assert(tonumber(s.out:read("*l")), "no pid")
  s.stdin = assert(io.open(s.fifo, "w"))
  local line = s.out:read("*l") or ""
  s.scheme, s.port = line:match("^listening on (https?)://127%.0%.0%.1:(%d+)$")
  assert(s.port, "the server said: " .. line)
  s.port = tonumber(s.port)
  s.url = ("%s://%s:%d"):format(s.scheme, s.scheme == "https" and "localhost" or HOST, s.port)
  s.fds0 = s:fdcount()
  return s
end

function Server:fdcount()
  return #sh("ls /proc/" .. self.pid .. "/fd"):gsub("[^\n]", "")
end

function Server:rss_kib()
  local status = assert(io.open("/proc/" .. self.pid .. "/status")):read("*a")
  return tonumber(status:match("VmRSS:%s*(%d+)"))
end

-- Waits until the server holds as many descriptors as when it started.
function Server:fds_back()
  local deadline = now() + 10
  local n
  repeat
    n = self:fdcount()
    if n == self.fds0 then return true end
    socket.sleep(0.05)
  until now() > deadline
  error(("the server holds %d descriptors, %d at its start"):format(n, self.fds0))
end

-- Ends the server by the end of its input. -> p:close()'s results.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  self.stdin:close()
  local rest = self.out:read("*a")
  local ok, how, code = self.out:close()
  os.remove(self.fifo)
  return rest, ok, how, code
end

function Server:kill()
  if not self.stopped then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    self:stop()
  end
end

------------------------------------------------------------ the clients

-- The clients run without this process's preloads (the sanitizers'
-- runtimes, under make sanitize): they are not lepoll.
local CLIENT = "env -u LD_PRELOAD "

local function curl(args)
  return sh(CLIENT .. "timeout 30 curl -sS " .. args)
end

-- Sends raw bytes on a new connection, then reads until the server closes
-- it or `limit` seconds pass. -> what came back.
local function raw(port, data, limit)
  local c = assert(socket.connect(HOST, port))
  c:settimeout(limit or 5)
  if data ~= "" then assert(c:send(data)) end
  local got, err, partial = c:receive("*a")
  c:close()
  return got or partial, err
end

local function certificates()
  local dir = sh("mktemp -d"):gsub("%s+$", "")
  sh(("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 "
    .. "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost"):format(quote(dir)))
  return dir, dir .. "/cert.pem", dir .. "/key.pem"
end

describe("examples/http_server.lua", function()
  local server
  lazy_setup(function() server = start_server() end)
  lazy_teardown(function() if server then server:kill() end end)

  it("answers curl: hello, 1 MiB byte for byte, 404, on one kept connection", function()
    assert.are.equal("hello", curl(server.url .. "/"))
    local file = os.tmpname()
    curl(("-o %s %s/big"):format(quote(file), server.url))
    local body = assert(io.open(file, "rb")):read("*a")
    os.remove(file)
    assert.are.equal(#BIG, #body)
    assert.is_true(body == BIG)
    assert.are.equal("404", curl(("-o /dev/null -w '%%{http_code}' %s/missing"):format(server.url)))
    -- two URLs, one connection: curl made one connect in all
    local connects = curl(("-o /dev/null -o /dev/null -w '%%{num_connects}\\n' %s/ %s/big"):format(server.url,
      server.url))
    assert.are.equal("1\n0\n", connects)
    server:fds_back()
  end)

  it("answers pipelined requests in order, split anywhere, and HTTP/1.0 as 1.0", function()
    local reqs = "GET / HTTP/1.1\r\nHost: x\r\n\r\n" .. "\r\nGET /missing HTTP/1.1\r\n\r\n"
      .. "HEAD /big HTTP/1.1\r\n\r\n" .. "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
    local c = assert(socket.connect(HOST, server.port))
    c:settimeout(5)
    for i = 1, #reqs, 7 do -- in pieces of 7 bytes
      assert(c:send(reqs:sub(i, i + 6)))
      socket.sleep(0.001)
    end
    local all = c:receive("*a")
    c:close()
    local statuses = {}
    for status in all:gmatch("HTTP/1%.1 (%d+)") do statuses[#statuses + 1] = status end
    assert.are.same({ "200", "404", "200", "200" }, statuses)
    assert.matches("Content%-Length: 1048576\r\nConnection: keep%-alive\r\n\r\nHTTP/1%.1 200", all)
    assert.matches("Connection: close\r\n\r\nhello$", all)
    -- HTTP/1.0: closed after the answer, unless keep-alive is asked for
    local got = raw(server.port, "GET / HTTP/1.0\r\n\r\n")
    assert.matches("Connection: close\r\n\r\nhello$", got)
    got = raw(server.port, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n")
    local n = select(2, got:gsub("hello", ""))
    assert.are.equal(2, n)
    server:fds_back()
  end)

  it("serves 1,000 concurrent keep-alive connections from ab without an error", function()
    local out = sh(("ulimit -n $(( $(ulimit -Hn) < 4096 ? $(ulimit -Hn) : 4096 )); "
      .. CLIENT .. "timeout 120 ab -q -n 20000 -c 1000 -k -s 30 %s/ 2>&1"):format(server.url))
    assert.matches("Complete requests:%s+20000", out)
    assert.matches("Failed requests:%s+0\n", out)
    assert.matches("Keep%-Alive requests:%s+20000", out)
    assert.is_nil(out:match("Non%-2xx"))
    assert.matches("Document Length:%s+5 bytes", out)
    server:fds_back()
  end)

  it("refuses bad requests with the right status and goes on", function()
    local got = raw(server.port, "GET / HTTP/1.1\r\nX-Big: " .. ("x"):rep(20000) .. "\r\n\r\n")
    assert.matches("^HTTP/1%.1 431 ", got)
    got = raw(server.port, "NONSENSE\r\n\r\n")
    assert.matches("^HTTP/1%.1 400 ", got)
    got = raw(server.port, "GET / HTTP/1.1\r\nBad header line\r\n\r\n")
    assert.matches("^HTTP/1%.1 400 ", got)
    got = raw(server.port, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert.matches("^HTTP/1%.1 501 ", got)
    got = raw(server.port, "POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n")
    assert.matches("^HTTP/1%.1 413 ", got)
    -- a body is read and dropped; the next request is answered
    got = raw(server.port, "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n12345"
      .. "GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert.matches("^HTTP/1%.1 405 .*HTTP/1%.1 200 .*hello$", got)
    assert.are.equal("hello", curl(server.url .. "/"))
    server:fds_back()
  end)

  it("survives peers that reset mid-request or vanish, and clients that never read", function()
    for _ = 1, 20 do
      local c = assert(socket.connect(HOST, server.port))
      c:setoption("linger", { on = true, timeout = 0 })
      c:send("GET /big HTTP/1.1\r\nHost: x\r\n") -- half a head
      c:close() -- RST
    end
    for _ = 1, 20 do
      local c = assert(socket.connect(HOST, server.port))
      c:setoption("linger", { on = true, timeout = 0 })
      c:send("GET /big HTTP/1.1\r\n\r\n") -- the answer is being sent
      socket.sleep(0.001)
      c:close()
    end
    -- 30 clients ask for 1 MiB 40 times each and never read: the server
    -- holds one answer per connection, not 40
    local rss0 = server:rss_kib()
    local stalled = {}
    for i = 1, 30 do
      local c = assert(socket.connect(HOST, server.port))
      c:settimeout(1)
      c:send(("GET /big HTTP/1.1\r\n\r\n"):rep(40))
      stalled[i] = c
    end
    socket.sleep(1)
    local grown = server:rss_kib() - rss0
    assert.is_true(grown < 48 * 1024, ("the server grew by %d KiB"):format(grown))
    assert.are.equal("hello", curl(server.url .. "/"))
    for _, c in ipairs(stalled) do c:close() end
    server:fds_back()
  end)

  it("ends with status 0 at the end of its input", function()
    local rest, ok, how, code = server:stop()
    assert.are.equal("", rest)
    if H.has.popen_status then assert.are.same({ true, "exit", 0 }, { ok, how, code }) end
    server = nil
  end)
end)

describe("examples/http_server.lua with --cert and --key", function()
  local server, dir, cert, key
  lazy_setup(function()
    dir, cert, key = certificates()
    server = start_server(("--cert %s --key %s"):format(quote(cert), quote(key)))
  end)
  lazy_teardown(function()
    if server then server:kill() end
    if dir then H.run("rm -rf " .. quote(dir)) end
  end)

  it("answers curl over HTTPS, checking the certificate, and 1 MiB byte for byte", function()
    assert.are.equal("https", server.scheme)
    assert.are.equal("hello", curl(("--cacert %s %s/"):format(quote(cert), server.url)))
    local file = os.tmpname()
    curl(("--cacert %s -o %s %s/big"):format(quote(cert), quote(file), server.url))
    local body = assert(io.open(file, "rb")):read("*a")
    os.remove(file)
    assert.is_true(body == BIG)
    -- without the certificate's authority, curl refuses the server
    local out, ok = H.run(("%stimeout 30 curl -sS %s/"):format(CLIENT, server.url))
    assert.is_falsy(ok)
    assert.matches("certificate", out)
    server:fds_back()
  end)

  it("drops clients that speak plain HTTP or stop mid-handshake, and goes on", function()
    local got = raw(server.port, "GET / HTTP/1.1\r\n\r\n", 5)
    assert.is_nil(got:match("hello"))
    local c = assert(socket.connect(HOST, server.port))
    c:send("\22\3\1") -- the start of a TLS record, then nothing
    socket.sleep(0.05)
    c:close()
    assert.are.equal("hello", curl(("--cacert %s %s/"):format(quote(cert), server.url)))
    server:fds_back()
  end)

  it("ends with status 0 on Ctrl-C (SIGINT)", function()
    os.execute("kill -INT " .. server.pid)
    local _, ok, how, code = server:stop()
    if H.has.popen_status then assert.are.same({ true, "exit", 0 }, { ok, how, code }) end
    server = nil
  end)
end)

describe("examples/http_client.lua", function()
  local server
  lazy_setup(function() server = start_server() end)
  lazy_teardown(function() if server then server:kill() end end)

  local function client(args, preload)
    local env = preload and (H.preload(H.BUILD .. "/spec/libslowdns.so") .. " ") or ""
    return H.run(("%s %stimeout 60 %s examples/http_client.lua %s"):format(ENV, env, LUA, args))
  end

  it("fetches several URLs at once and prints each answer in order", function()
    local u = server.url
    local out, ok = client(("%s/ http://localhost:%d/big %s/missing"):format(u, server.port, u))
    assert.are.equal(("200 5 %s/\n200 1048576 http://localhost:%d/big\n404 10 %s/missing\n"):format(u, server.port, u),
      out)
    assert.is_truthy(ok or not H.has.popen_status)
  end)

  it("reports a closed port, a name that does not resolve and a bad URL, exiting 1", function()
    local closed = assert(socket.bind(HOST, 0))
    local port = select(2, closed:getsockname())
    closed:close()
    local out, ok, how, code = client(("http://%s:%d/ http://fail10.slow.test/ ftp://x %s/"):format(HOST, port,
      server.url), true)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(("error connection refused http://%s:%d/"):format(HOST, port), lines[1])
    assert.matches("^error .+ http://fail10%.slow%.test/$", lines[2])
    assert.are.equal("error not an http:// or https:// URL ftp://x", lines[3])
    assert.are.equal(("200 5 %s/"):format(server.url), lines[4])
    if H.has.popen_status then assert.are.same({ nil, "exit", 1 }, { ok, how, code }) end
  end)
end)
