-- lepoll.read and lepoll.write: one non-blocking read or write on a
-- descriptor, the outcome as values, on real pipes and sockets; and the
-- descriptors a script owns: lepoll.pipe, lepoll.eventfd, lepoll.close.
local lepoll = require "lepoll"
local socket = require "socket"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)

describe("lepoll.read and lepoll.write", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("read gives what is there, up to max, then 'again', then '' at the end", function()
    local r, w = assert(T.pipe())
    C.defer(function() H.close(r) end)
    assert.are.same({ nil, "again" }, { lepoll.read(r) })
    assert.are.equal(5, lepoll.write(w, "hello world", 1, 5))
    assert.are.equal("hel", lepoll.read(r, 3))
    assert.are.equal("lo", lepoll.read(r))
    assert.are.equal(3, lepoll.write(w, "abcdef", -3))
    assert.are.equal("def", lepoll.read(r, 100))
    assert.are.equal(0, lepoll.write(w, "abc", 3, 2))
    H.close(w)
    assert.are.equal("", lepoll.read(r))
  end)

  it("reads more than 64 KiB at once where that much is there", function()
    local a, b = C.socketpair()
    local data = ("0123456789abcdef"):rep(8192) -- 128 KiB
    local sent = 0
    while sent < #data do
      local n = assert(lepoll.write(a, data, sent + 1))
      sent = sent + n
    end
    local got = {}
    local total = 0
    while total < #data do
      local s = lepoll.read(b, 1024 * 1024)
      if s then
        got[#got + 1] = s
        total = total + #s
      end
    end
    assert.is_true(table.concat(got) == data)
  end)

  it("write gives a partial count, then 'again', when the buffer fills", function()
    local r, w = C.pipe()
    local chunk = ("x"):rep(65536)
    local total, again = 0, false
    for _ = 1, 64 do
      local n, err = lepoll.write(w, chunk)
      if not n then
        assert.are.equal("again", err)
        again = true
        break
      end
      total = total + n
    end
    assert.is_true(again)
    assert.is_true(total > 0)
    local drained = 0
    while true do
      local s = lepoll.read(r, 1024 * 1024)
      if not s then break end
      drained = drained + #s
    end
    assert.are.equal(total, drained)
  end)

  it("reports failures as nil, message, errname; a socket's closed peer is EPIPE, not SIGPIPE", function()
    local listener = assert(socket.bind("127.0.0.1", 0))
    local _, port = listener:getsockname()
    local c = assert(socket.connect("127.0.0.1", port))
    local a = assert(listener:accept())
    listener:close()
    a:close()
    local fd = c:getfd()
    local last
    for _ = 1, 50 do -- the first writes may still go, until the RST comes back
      local n, msg, name = lepoll.write(fd, "x")
      if not n then
        assert.matches("^lepoll: write fd %d+: ", msg)
        last = name
        break
      end
      socket.sleep(0.01)
    end
    c:close()
    assert.is_true(last == "EPIPE" or last == "ECONNRESET", tostring(last))
    local ok, msg, name = lepoll.read(1000000)
    assert.are.same({ nil, "EBADF" }, { ok, name })
    assert.matches("lepoll: read fd 1000000: Bad file descriptor %(EBADF%)", msg)
  end)

  it("takes Lua file handles, and refuses what is no descriptor", function()
    local path = C.tmpname()
    local f = assert(io.open(path, "w+"))
    assert.are.equal(6, lepoll.write(f, "abcdef"))
    f:close()
    f = assert(io.open(path))
    assert.are.equal("abc", lepoll.read(f, 3))
    f:close()
    local cases = {
      { function() return lepoll.read(-1) end, "descriptor must be an integer in [0, 2147483647]" },
      { function() return lepoll.read(1.5) end, "descriptor must be an integer in [0, 2147483647]" },
      { function() return lepoll.read({}) end,
        "descriptor (integer, file handle or object with getfd) expected, got table" },
      { function() return lepoll.read({ getfd = function() return -1 end }) end,
        "getfd returned no descriptor (closed?)" },
      { function() return lepoll.read(f) end, "attempt to use a closed file" },
      { function() return lepoll.read(0, 0) end, "byte count out of range [1, 2^30]" },
      { function() return lepoll.write(1) end, "string expected, got no value" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(case[1])
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
    assert.is_truthy(T)
  end)

  it("takes objects with a getfd method (a LuaSocket socket)", function()
    local listener = assert(socket.bind("127.0.0.1", 0))
    local _, port = listener:getsockname()
    local c = assert(socket.connect("127.0.0.1", port))
    local a = assert(listener:accept())
    listener:close()
    assert.are.equal(2, lepoll.write(c, "hi"))
    local got
    for _ = 1, 100 do
      got = lepoll.read(a)
      if got then break end
      socket.sleep(0.01)
    end
    assert.are.equal("hi", got)
    c:close()
    a:close()
  end)
end)

describe("lepoll.pipe, lepoll.eventfd and lepoll.close", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("pipe gives a non-blocking, close-on-exec pair; close closes each once", function()
    local r, w = lepoll.pipe()
    assert.is_true(H.is_open(r) and H.is_open(w))
    assert.is_true(T.cloexec(r) and T.cloexec(w))
    assert.are.same({ nil, "again" }, { lepoll.read(r) })
    assert.are.equal(3, lepoll.write(w, "abc"))
    assert.are.equal("abc", lepoll.read(r))
    assert.is_true(lepoll.close(w))
    assert.are.equal("", lepoll.read(r))
    assert.is_true(lepoll.close(r))
    local ok, msg, name = lepoll.close(r)
    assert.are.same({ nil, "EBADF" }, { ok, name })
    assert.are.equal(("lepoll: close fd %d: Bad file descriptor (EBADF)"):format(r), msg)
  end)

  it("a full pipe takes no more: write says 'again'", function()
    local r, w = lepoll.pipe()
    local total = 0
    for _ = 1, 1024 do
      local n, err = lepoll.write(w, ("x"):rep(65536))
      if not n then
        assert.are.equal("again", err)
        break
      end
      total = total + n
    end
    assert.is_true(total >= 4096)
    lepoll.close(r)
    lepoll.close(w)
  end)

  it("eventfd counts; in semaphore mode a read takes one", function()
    local ONE = "\1\0\0\0\0\0\0\0"
    local fd = lepoll.eventfd(2)
    assert.are.equal("\2\0\0\0\0\0\0\0", lepoll.read(fd, 8))
    assert.are.same({ nil, "again" }, { lepoll.read(fd, 8) })
    assert.are.equal(8, lepoll.write(fd, ONE))
    assert.are.equal(8, lepoll.write(fd, ONE))
    assert.are.equal("\2\0\0\0\0\0\0\0", lepoll.read(fd, 8))
    assert.is_true(T.cloexec(fd))
    lepoll.close(fd)
    local sem = lepoll.eventfd(2, "semaphore")
    assert.are.equal(ONE, lepoll.read(sem, 8))
    assert.are.equal(ONE, lepoll.read(sem, 8))
    assert.are.same({ nil, "again" }, { lepoll.read(sem, 8) })
    lepoll.close(sem)
  end)

  it("refuses bad arguments with a clear error", function()
    local cases = {
      { function() return lepoll.eventfd(-1) end, "initial count out of range [0, 4294967295]" },
      { function() return lepoll.eventfd(0, "mutex") end, "invalid option 'mutex'" },
      { function() return lepoll.close(-3) end, "descriptor must be an integer in [0, 2147483647]" },
      { function() return lepoll.close(io.stdout) end, "descriptor (integer) expected, got " },
      { function() return lepoll.close() end, "descriptor (integer) expected, got no value" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(case[1])
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
  end)

  it("pipe and eventfd report EMFILE as values, leaving nothing open", function()
    local script = [[
      local lepoll = require "lepoll"
      local T = require "lepoll_test"
      local before = T.fdcount()
      T.fault("pipe2", 1, "EMFILE")
      local a, msg, name = lepoll.pipe()
      io.write(tostring(a), "|", msg, "|", name, "|", tostring(T.fdcount() == before), "\n")
    ]]
    local out = H.run_lua(script, true)
    assert.are.equal("nil|lepoll: pipe: Too many open files (EMFILE)|EMFILE|true\n", out)
  end)
end)
