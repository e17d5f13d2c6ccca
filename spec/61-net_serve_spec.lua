-- Connecting and serving in tasks: l:connect (a wrapped, connected TCP
-- socket, with a timeout over the whole of it) and l:serve (a task per
-- connection running a handler, a limit on concurrent connections). Real
-- loopback sockets; the clients are wrapped sockets in other tasks.
local lepoll = require "lepoll"
local loop = require "lepoll.loop"
local socket = require "socket"
local H = require "support.helpers"

local now = lepoll.now
local HOST = "127.0.0.1"

local step_until, listener, echo_lines = H.step_until, H.listener, H.echo_lines

-- What l:connect(HOST, port) returns in a task of l, as a list.
local function connect_result(l, port)
  local result
  l:spawn(function() result = { l:connect(HOST, port) } end)
  step_until(l, function() return result end)
  return result
end

describe("l:connect", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("connects to an address or a name and returns a wrapped socket", function()
    local l = loop.new()
    local s, port = listener()
    local srv = l:serve(s, echo_lines)
    local replies = {}
    for _, host in ipairs({ HOST, "localhost" }) do
      l:spawn(function()
        local c = assert(l:connect(host, port, 5))
        assert.matches("^wrapped tcp{client}", tostring(c))
        c:send("via " .. host .. "\n")
        local line = c:receive()
        replies[#replies + 1] = line
        assert.are.same({ -1, -1 }, { c:gettimeout() }) -- the connect timeout is not kept
        c:close()
      end)
    end
    step_until(l, function() return #replies == 2 end)
    table.sort(replies)
    assert.are.same({ "via 127.0.0.1", "via localhost" }, replies)
    srv:close()
    l:close()
  end)

  it("returns nil, 'connection refused' for a closed port", function()
    local l = loop.new()
    local s, port = listener()
    s:close()
    local result = connect_result(l, port)
    assert.are.same({ nil, "connection refused" }, { result[1], result[2] })
    l:close()
  end)

  it("times out when the listener's queue is full, and frees what it made", function()
    local l = loop.new()
    local s = assert(socket.tcp())
    assert(s:bind(HOST, 0))
    assert(s:listen(0)) -- one connection fills the queue
    local port = select(2, s:getsockname())
    local first, second
    l:spawn(function()
      first = assert(l:connect(HOST, port, 2))
      local t0 = now()
      local c, err = l:connect(HOST, port, 0.2)
      second = { c, err, now() - t0 }
    end)
    step_until(l, function() return second end)
    assert.is_nil(second[1])
    assert.are.equal("timeout", second[2])
    assert.is_true(second[3] >= 0.19 and second[3] < 2, "took " .. second[3])
    first:close()
    s:close()
    l:close()
  end)

  it("raises outside a task and on bad arguments", function()
    local l = loop.new()
    local ok, err = pcall(function() return l:connect(HOST, 80) end)
    assert.is_false(ok)
    assert.matches("connect must be called from a task of the loop", err, 1, true)
    local errs = {}
    l:spawn(function()
      for _, args in ipairs({ { nil, 80 }, { HOST, {} }, { HOST, 80, "soon" } }) do
        local _, e = pcall(function() return l:connect(args[1], args[2], args[3]) end)
        errs[#errs + 1] = e
      end
    end)
    step_until(l, function() return #errs == 3 end)
    assert.matches("bad argument #1 to 'connect' (host name or address expected, got nil)", errs[1], 1, true)
    assert.matches("bad argument #2 to 'connect' (port expected, got table)", errs[2], 1, true)
    assert.matches("bad argument #3 to 'connect' (timeout (seconds) expected, got soon)", errs[3], 1, true)
    l:close()
  end)
end)

describe("l:resolve", function()
  it("gives an address as it is, and refuses one of the other family as getaddrinfo does", function()
    local l = loop.new()
    local r
    l:spawn(function()
      r = { { l:resolve("127.0.0.1") }, { l:resolve("::1", "inet6") }, { l:resolve("127.0.0.1", "inet6") },
        { l:resolve("::1", "inet") }, { l:resolve("localhost", nil, -1) } }
    end)
    step_until(l, function() return r end)
    assert.are.same({ { family = "inet", address = "127.0.0.1" } }, r[1][1])
    assert.are.same({ { family = "inet6", address = "::1" } }, r[2][1])
    assert.are.same({ nil, "Address family for hostname not supported" }, r[3])
    assert.are.same({ nil, "Address family for hostname not supported" }, r[4])
    assert.are.equal("127.0.0.1", r[5][1][1].address) -- a negative timeout is no limit, as LuaSocket's
    l:close()
  end)
end)

describe("l:resolve's resolver", function()
  it("is there only while lookups are: no descriptor left once they are done", function()
    local T = H.T
    local l = loop.new()
    local before, after = T.fdcount(), nil
    l:spawn(function()
      assert(l:resolve("localhost"))
      after = T.fdcount()
    end)
    step_until(l, function() return after end)
    assert.are.equal(before, after)
    assert.is_false(l:run("nowait")) -- and nothing keeps the loop alive
    l:close()
  end)
end)

describe("l:serve", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("runs the handler in a task per connection and closes each connection after it", function()
    local l = loop.new()
    local s, port = listener()
    local srv = l:serve(s, echo_lines)
    local got = {}
    for i = 1, 20 do
      l:spawn(function()
        local c = assert(l:connect(HOST, port))
        for k = 1, 3 do
          c:send(("client %d line %d\n"):format(i, k))
          local line = c:receive() -- (got[#got + 1] = c:receive() would take the index before the wait)
          got[#got + 1] = line
        end
        c:close()
      end)
    end
    step_until(l, function() return #got == 60 end)
    step_until(l, function() return srv:stats().active == 0 end)
    local st = srv:stats()
    assert.are.equal(20, st.accepted)
    assert.are.equal(0, st.accept_errors)
    assert.matches("^server{tcp{server}: .*, active=0}$", tostring(srv))
    srv:close()
    assert.matches(", closed}$", tostring(srv))
    l:close()
  end)

  it("serves at most max_connections at once; the others wait for one to end", function()
    local l = loop.new()
    local s, port = listener()
    local active, most = 0, 0
    local release = l:condition()
    local srv = l:serve(s, function(conn)
      active = active + 1
      if active > most then most = active end
      conn:send("hello\n")
      release:wait()
      active = active - 1
    end, { max_connections = 2 })
    local greeted = 0
    for _ = 1, 5 do
      l:spawn(function()
        local c = assert(l:connect(HOST, port))
        assert.are.equal("hello", c:receive())
        greeted = greeted + 1
        c:close()
      end)
    end
    step_until(l, function() return greeted == 2 end)
    for _ = 1, 20 do l:step(0.01) end
    assert.are.equal(2, greeted) -- the third waits in the backlog
    assert.are.equal(2, srv:stats().active)
    step_until(l, function()
      release:broadcast()
      return greeted == 5
    end)
    assert.are.equal(2, most)
    srv:close()
    step_until(l, function() return srv:stats().active == 0 end)
    l:close()
  end)

  it("gives each connection the timeout of the options", function()
    local l = loop.new()
    local s, port = listener()
    local result
    local srv = l:serve(s, function(conn)
      local t0 = now()
      local line, err = conn:receive()
      result = { line, err, now() - t0 }
    end, { timeout = 0.1 })
    local c
    l:spawn(function() c = assert(l:connect(HOST, port)) end)
    step_until(l, function() return result end)
    assert.are.same({ nil, "timeout" }, { result[1], result[2] })
    assert.is_true(result[3] < 2)
    c:close()
    srv:close()
    l:close()
  end)

  it("reports a handler's error as a task's error and still closes its connection", function()
    local errors = {}
    local l = loop.new({ on_error = function(err) errors[#errors + 1] = tostring(err) end })
    local s, port = listener()
    local srv = l:serve(s, function(conn)
      conn:receive()
      error("handler failed")
    end)
    local reply
    l:spawn(function()
      local c = assert(l:connect(HOST, port))
      c:send("x\n")
      reply = { c:receive() }
      c:close()
    end)
    step_until(l, function() return reply end)
    assert.are.same({ nil, "closed" }, { reply[1], reply[2] })
    assert.are.equal(1, #errors)
    assert.matches("handler failed", errors[1], 1, true)
    srv:close()
    l:close()
  end)

  it("closes a connection and frees its place when its TLS start raises", function()
    -- A userdata that is no LuaSec context passes serve's check and makes
    -- LuaSec's wrap raise in the connection's task.
    local errors = {}
    local l = loop.new({ on_error = function(err) errors[#errors + 1] = tostring(err) end })
    local s, port = listener()
    local srv = l:serve(s, echo_lines, { tls = io.stdout, max_connections = 1 })
    local replies = {}
    for _ = 1, 3 do
      l:spawn(function()
        local c = assert(l:connect(HOST, port))
        c:settimeout(5)
        local _, err = c:receive()
        replies[#replies + 1] = err
        c:close()
      end)
    end
    step_until(l, function() return #replies == 3 end)
    assert.are.same({ "closed", "closed", "closed" }, replies)
    step_until(l, function() return srv:stats().active == 0 end)
    assert.are.equal(3, #errors)
    srv:close()
    l:close()
  end)

  it("stops accepting on close: new connections are refused", function()
    local l = loop.new()
    local s, port = listener()
    local srv = l:serve(s, echo_lines)
    srv:close()
    srv:close()
    local result = connect_result(l, port)
    assert.are.same({ nil, "connection refused" }, { result[1], result[2] })
    l:close()
  end)

  it("refuses bad arguments", function()
    local l = loop.new()
    local s = listener()
    local cases = {
      { function() l:serve(s, 42) end, "bad argument #2 to 'serve' (function expected, got number)" },
      { function() l:serve(s, echo_lines, 7) end,
        "bad argument #3 to 'serve' (table of options expected, got number)" },
      { function() l:serve(s, echo_lines, { max_connections = 0 }) end, "max_connections must be a number >= 1" },
      { function() l:serve(42, echo_lines) end,
        "bad argument #1 to 'serve' (listening LuaSocket TCP socket expected (socket.bind), got number)" },
      { function() l:serve(socket.tcp(), echo_lines) end,
        "bad argument #1 to 'serve' (listening LuaSocket TCP socket expected (socket.bind), got tcp{master})" },
      { function() l:serve(s, echo_lines, { tls = "nope" }) end,
        "serve: TLS parameters refused by LuaSec: a table of parameters or a context (ssl.newcontext) expected" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(case[1])
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
    s:close()
    l:close()
  end)
end)
