-- TLS on wrapped sockets with LuaSec (Debian's lua-sec): starttls as
-- client and server, handshakes that do not block the loop, certificate
-- checks as LuaSec reports them, and l:serve's tls option against real
-- clients (openssl s_client, curl) and bad ones (plain text, a client
-- that stops mid-handshake). The certificates are made at test time by
-- openssl: a CA, and a server certificate it signs for 127.0.0.1 and
-- localhost.
local loop = require "lepoll.loop"
local socket = require "socket"
local H = require "support.helpers"

local HOST = "127.0.0.1"

local dir -- the certificates' directory
local CA, CERT, KEY

local function sh(cmd)
  local out, ok = H.run(cmd)
  assert(ok, cmd .. ":\n" .. out)
  return out
end

local function make_certificates()
  dir = H.run("mktemp -d"):gsub("%s+$", "")
  CA, CERT, KEY = dir .. "/ca.pem", dir .. "/cert.pem", dir .. "/key.pem"
  local q = H.quote
  sh(("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 2 "
    .. "-subj /CN=lepoll-test-ca"):format(q(dir)))
  sh(("cd %s && openssl req -newkey rsa:2048 -nodes -keyout key.pem -out req.pem -subj /CN=localhost"):format(q(dir)))
  local ext = assert(io.open(dir .. "/ext.cnf", "w"))
  ext:write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
  ext:close()
  sh(("cd %s && openssl x509 -req -in req.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem "
    .. "-days 2 -extfile ext.cnf"):format(q(dir)))
end

local function server_params()
  return { mode = "server", protocol = "any", key = KEY, certificate = CERT }
end

local function client_params(extra)
  local p = { mode = "client", protocol = "any", verify = "peer", cafile = CA, options = "all" }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

local step_until, listener, echo_lines = H.step_until, H.listener, H.echo_lines

describe("TLS on wrapped sockets", function()
  lazy_setup(make_certificates)
  lazy_teardown(function() if dir then H.run("rm -rf " .. H.quote(dir)) end end)
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("serves TLS with l:serve and connects with starttls, 1 MiB each way", function()
    local l = loop.new()
    local s, port = listener()
    local srv = l:serve(s, function(conn)
      local data = conn:receive(1024 * 1024)
      conn:send(data)
    end, { tls = server_params() })
    local payload = ("0123456789abcdef"):rep(65536)
    local back
    l:spawn(function()
      local c = assert(l:connect("localhost", port))
      assert(c:starttls(client_params(), "localhost"))
      assert.is_true(c.tls)
      assert.matches("^wrapped SSL connection", tostring(c))
      assert.are.equal(#payload, c:send(payload))
      back = c:receive(#payload)
      c:close()
    end)
    step_until(l, function() return back end)
    assert.is_true(back == payload)
    srv:close()
    l:close()
  end)

  it("lets other tasks run during handshakes", function()
    local l = loop.new()
    local s, port = listener()
    local srv = l:serve(s, echo_lines, { tls = server_params() })
    local ticks, replies = 0, 0
    local tick = l:timer(0.001, function() ticks = ticks + 1 end, 0.001)
    for i = 1, 10 do
      l:spawn(function()
        local c = assert(l:connect(HOST, port))
        assert(c:starttls(client_params()))
        c:send("hello " .. i .. "\n")
        assert.are.equal("hello " .. i, c:receive())
        replies = replies + 1
        c:close()
      end)
    end
    step_until(l, function() return replies == 10 end)
    tick:stop()
    assert.is_true(ticks > 3, "ticks " .. ticks)
    srv:close()
    l:close()
  end)

  it("returns LuaSec's verification error for a certificate the client does not trust", function()
    local l = loop.new()
    local s, port = listener()
    local srv = l:serve(s, echo_lines, { tls = server_params() })
    local result
    l:spawn(function()
      local c = assert(l:connect(HOST, port))
      -- the system's CAs, not ours
      local ok, err = c:starttls(client_params({ cafile = "/etc/ssl/certs/ca-certificates.crt" }))
      result = { ok, err }
      c:close()
    end)
    step_until(l, function() return result end)
    assert.is_nil(result[1])
    assert.matches("certificate verify failed", result[2], 1, true)
    step_until(l, function() return srv:stats().tls_failures == 1 end)
    srv:close()
    l:close()
  end)

  it("drops a client that sends plain text, and one that stops mid-handshake, and goes on", function()
    local l = loop.new()
    local s, port = listener()
    local srv = l:serve(s, echo_lines, { tls = server_params(), timeout = 0.3 })
    local plain_reply, silent_reply, good
    l:spawn(function()
      local c = assert(l:connect(HOST, port))
      c:send("GET / HTTP/1.0\r\n\r\n")
      plain_reply = { c:receive("*a") }
      c:close()
    end)
    l:spawn(function()
      local c = assert(l:connect(HOST, port))
      silent_reply = { c:receive("*a") } -- sends nothing: the server's timeout ends it
      c:close()
    end)
    l:spawn(function()
      local c = assert(l:connect(HOST, port))
      assert(c:starttls(client_params()))
      c:send("still there\n")
      good = c:receive()
      c:close()
    end)
    step_until(l, function() return plain_reply and silent_reply and good end)
    assert.are.equal("still there", good)
    assert.are.equal("closed", plain_reply[2] or "closed")
    step_until(l, function() return srv:stats().tls_failures == 2 end)
    step_until(l, function() return srv:stats().active == 0 end)
    srv:close()
    l:close()
  end)

  it("answers openssl s_client, which checks the certificate against the CA", function()
    local l = loop.new()
    local s, port = listener()
    local srv = l:serve(s, function(conn)
      local line = conn:receive()
      conn:send("you said: " .. tostring(line) .. "\n")
    end, { tls = server_params() })
    local out = os.tmpname()
    -- (openssl without this process's preloads: the sanitizers' runtimes)
    local cmd = ("printf 'hello tls\\n' | env -u LD_PRELOAD timeout 20 openssl s_client -connect %s:%d "
      .. "-servername localhost -CAfile %s -verify_return_error -quiet > %s 2>&1 &")
      :format(HOST, port, H.quote(CA), H.quote(out))
    os.execute(cmd)
    local text = ""
    step_until(l, function()
      local f = io.open(out)
      text = f and f:read("*a") or ""
      if f then f:close() end
      return text:find("you said: hello tls", 1, true) ~= nil
    end)
    os.remove(out)
    srv:close()
    step_until(l, function() return srv:stats().active == 0 end)
    l:close()
  end)

  it("refuses starttls outside a task and on a connection that already uses TLS", function()
    local l = loop.new()
    local w = l:wrap(socket.tcp())
    local ok, err = pcall(function() return w:starttls(client_params()) end)
    assert.is_false(ok)
    assert.matches("starttls must be called from a task of the loop", err, 1, true)
    w:close()
    local s, port = listener()
    local srv = l:serve(s, echo_lines, { tls = server_params() })
    local second
    l:spawn(function()
      local c = assert(l:connect(HOST, port))
      assert(c:starttls(client_params()))
      second = { pcall(function() return c:starttls(client_params()) end) }
      c:close()
    end)
    step_until(l, function() return second end)
    assert.is_false(second[1])
    assert.matches("the connection already uses TLS", second[2], 1, true)
    srv:close()
    l:close()
  end)
end)
