-- lepoll.select, LuaSocket's socket.select on a persistent epoll set: the
-- same scripts run against both, results compared (below 1024
-- descriptors, where socket.select works), then what socket.select cannot
-- do. The scenarios follow LuaSocket's own select tests (test_selectbugs
-- in its test/testclnt.lua, test/test_socket_error.lua) and its select.c.
local socket = require "socket"
local lselect = require "lepoll.select"
local H = require "support.helpers"
local T = H.T

local HOST = "127.0.0.1"

-- A connected TCP pair: client, server side, and the listener.
local function tcp_pair()
  local listener = assert(socket.bind(HOST, 0))
  local _, port = listener:getsockname()
  local c = assert(socket.connect(HOST, port))
  local a = assert(listener:accept())
  return c, a, listener
end

-- What a select call gave, as plain values: the positions of the given
-- objects in each result (in result order), whether each maps back to its
-- position, and the third result.
local function view(objs, r, w, e)
  local function list(t)
    local out = {}
    for i, obj in ipairs(t) do
      local name = "?"
      for k, o in pairs(objs) do if o == obj then name = k end end
      out[#out + 1] = name .. (t[obj] == i and "" or " (no map)")
    end
    table.sort(out)
    return out
  end
  return { type(r), type(w), r and list(r), w and list(w), e }
end

-- Each scenario gets a select function and returns plain values.
local SCENARIOS = {
  ["both nil"] = function(sel)
    return view({}, sel(nil, nil, 0.05))
  end,
  ["empty tables"] = function(sel)
    return view({}, sel({}, {}, 0))
  end,
  ["closed sockets are ignored"] = function(sel)
    local udp = socket.udp()
    udp:close()
    return view({ udp = udp }, sel({ udp }, { udp }, 0.05))
  end,
  ["invalid input raises"] = function(sel)
    return { pcall(sel, "wrong", 1, 0.1) == false, pcall(sel, {}, 1, 0.1) == false,
      pcall(sel, {}, nil, "soon") == false, pcall(sel, { 42 }, nil, 0) == false }
  end,
  ["objects without a usable getfd are skipped"] = function(sel)
    local none = {}
    local bad = { getfd = function() return "x" end }
    local neg = { getfd = function() return -1 end }
    return view({ none = none, bad = bad, neg = neg }, sel({ none, bad, neg }, { none }, 0))
  end,
  ["a connected pair: writable, then readable, read-ahead counted"] = function(sel)
    local c, a, l = tcp_pair()
    local objs = { c = c, a = a, l = l }
    local out = { view(objs, sel({ a, l }, { c }, 0.5)) }
    c:send("one\ntwo\n")
    out[2] = view(objs, sel({ a, l }, nil, 0.5))
    out[3] = a:receive() -- LuaSocket reads both lines from the kernel
    out[4] = view(objs, sel({ a }, nil, 5)) -- "two" is in LuaSocket's buffer: dirty
    out[5] = a:receive()
    out[6] = view(objs, sel({ a }, { a, c }, 0))
    c:close()
    out[7] = view(objs, sel({ a }, nil, 0.5)) -- the end is readable
    a:close()
    l:close()
    return out
  end,
  ["a pending connection makes the listener readable"] = function(sel)
    local l = assert(socket.bind(HOST, 0))
    local _, port = l:getsockname()
    local before = view({ l = l }, sel({ l }, nil, 0))
    local c = assert(socket.connect(HOST, port))
    local after = view({ l = l }, sel({ l }, nil, 1))
    local a = l:accept()
    a:close()
    c:close()
    l:close()
    return { before, after }
  end,
  ["a failed connect is writable"] = function(sel)
    local l = assert(socket.bind(HOST, 0))
    local _, port = l:getsockname()
    l:close()
    local sock = socket.tcp()
    sock:settimeout(0)
    local ok, err = sock:connect(HOST, port)
    local r = view({ sock = sock }, sel(nil, { sock }, 1))
    sock:close()
    return { ok, err, r }
  end,
  ["several ready: each once, in descriptor order, mapped back"] = function(sel)
    local pairs_ = {}
    local objs = {}
    for i = 1, 5 do
      local c, a, l = tcp_pair()
      l:close()
      pairs_[i] = { c, a }
      objs["a" .. i], objs["c" .. i] = a, c
    end
    for i = 1, 5, 2 do pairs_[i][1]:send("x") end
    local reads = { pairs_[5][2], pairs_[3][2], pairs_[1][2], pairs_[2][2], pairs_[1][2] }
    local r, w, e = sel(reads, { pairs_[4][1], pairs_[4][1] }, 1)
    -- descriptor order
    local ordered = true
    for i = 2, #r do ordered = ordered and r[i - 1]:getfd() < r[i]:getfd() end
    local out = { view(objs, r, w, e), ordered }
    for _, p in ipairs(pairs_) do p[1]:close() p[2]:close() end
    return out
  end,
}

describe("lepoll.select", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  for name, scenario in pairs(SCENARIOS) do
    it("gives what socket.select gives: " .. name, function()
      local want = scenario(socket.select)
      local got = scenario(lselect)
      assert.are.same(want, got)
    end)
  end

  it("returns the mapped positions as numbers of the same kind as LuaSocket's", function()
    local c, a, l = tcp_pair()
    local _, w1 = socket.select(nil, { c }, 0)
    local _, w2 = lselect(nil, { c }, 0)
    assert.are.equal(math.type and math.type(w1[c]), math.type and math.type(w2[c]))
    c:close()
    a:close()
    l:close()
  end)

  it("goes on past descriptor 1024, where socket.select refuses", function()
    local hard = select(2, T.nofile())
    if not hard or hard < 2400 then
      pending("the hard RLIMIT_NOFILE is below 2400")
      return
    end
    local soft0 = T.nofile()
    assert(T.setnofile(2400))
    local fds = {}
    local ok, err = pcall(function()
      local objs = {}
      for i = 1, 560 do -- 1,120 descriptors
        local x, y = assert(T.socketpair())
        fds[#fds + 1], fds[#fds + 2] = x, y
        objs[i] = { fd = y, getfd = function(self) return self.fd end }
      end
      local last = objs[#objs]
      assert(last.fd >= 1024, "descriptor " .. last.fd)
      local refused, why = pcall(socket.select, objs, nil, 0)
      assert.is_false(refused)
      assert.matches("descriptor too large for set size", why, 1, true)
      assert.are.same({ {}, {}, "timeout" }, { lselect(objs, nil, 0) })
      assert(T.write(last.fd - 1, "x")) -- the other end of the last pair
      local r = lselect(objs, nil, 1)
      assert.are.equal(1, #r)
      assert.are.equal(last, r[1])
      assert.are.equal(1, r[last])
    end)
    for _, fd in ipairs(fds) do T.close(fd) end
    lselect(nil, nil, 0) -- forgets them
    T.setnofile(soft0)
    assert(ok, err)
  end)

  it("makes an epoll_ctl call only for what changed since the call before", function()
    -- In a child with the fault library preloaded, which counts the
    -- process's epoll_ctl calls (after any preload of this process: the
    -- sanitizers' runtimes come first).
    local faults = H.BUILD .. "/spec/libfaults.so"
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([==[
      local socket = require "socket"
      local lselect = require "lepoll.select"
      local T = require "lepoll_test"
      local function ctl() return T.fault_calls("epoll_ctl") end
      local l = assert(socket.bind("127.0.0.1", 0))
      local _, port = l:getsockname()
      local reads, writes, all = {}, {}, {}
      for i = 1, 50 do
        local c = assert(socket.connect("127.0.0.1", port))
        local a = assert(l:accept())
        reads[i], writes[i] = a, c
        all[#all + 1], all[#all + 2] = a, c
      end
      local n0 = ctl()
      lselect(reads, writes, 0)
      local first = ctl() - n0
      local n1 = ctl()
      for _ = 1, 100 do lselect(reads, writes, 0) end
      local same = ctl() - n1
      local n2 = ctl()
      table.remove(reads)                        -- one socket no longer read: a DEL
      writes[#writes + 1] = reads[1]             -- one read socket now also written: a MOD
      lselect(reads, writes, 0)
      local changed = ctl() - n2
      for _, s in ipairs(all) do s:close() end
      l:close()
      io.write(("first=%d same=%d changed=%d\n"):format(first, same, changed))
    ]==])
    f:close()
    local out = H.run(("%s %s timeout 30 %s %s"):format(H.CHILD_ENV, H.preload(faults), H.LUA, H.quote(script)))
    os.remove(script)
    assert.are.equal("first=100 same=0 changed=2\n", out)
  end)

  it("after fork, a child's calls leave the parent's registrations alone", function()
    -- The parent's set holds a; a child that asks only for b would, on the
    -- shared kernel set, take a out of it behind the parent's table.
    local c, a, l = tcp_pair()
    local c2, b, l2 = tcp_pair()
    assert.are.same({ {}, {}, "timeout" }, { lselect({ a }, nil, 0) })
    local r, w = assert(T.pipe(true))
    local pid = assert(T.fork())
    if pid == 0 then
      local ok, res = pcall(function()
        c2:send("y")
        local got = lselect({ b }, nil, 1)
        return got[1] == b and "b" or "none"
      end)
      T.write(w, ok and res or "error: " .. tostring(res))
      T._exit(0)
    end
    T.close(w)
    assert.are.same({ "exit", 0 }, { T.waitpid(pid) })
    local child = T.read(r)
    T.close(r)
    assert.are.equal("b", child) -- the child's own set works
    c:send("x")
    local got = lselect({ a }, nil, 1) -- no change for the parent: no system call but the wait
    assert.are.equal(a, got[1])
    for _, s in ipairs({ c, a, l, c2, b, l2 }) do s:close() end
    lselect(nil, nil, 0)
  end)

  it("notices a descriptor number given to another object", function()
    local c, a, l = tcp_pair()
    assert(#lselect({ a }, nil, 0) == 0)
    local fd = a:getfd()
    a:close()
    -- a new socket that takes the number: readable as soon as data comes
    local c2, a2, l2 = tcp_pair()
    local taken = a2:getfd() == fd or c2:getfd() == fd or l2:getfd() == fd
    c2:send("x")
    local r = lselect({ a2 }, nil, 1)
    assert.are.equal(a2, r[1])
    for _, s in ipairs({ c, l, c2, a2, l2 }) do s:close() end
    assert.is_boolean(taken)
  end)
end)
