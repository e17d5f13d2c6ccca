-- lepoll.read and lepoll.write: one non-blocking read or write on a
-- descriptor, the outcome as values, on real pipes and sockets.
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
      { function() return lepoll.read({}) end, "descriptor (integer or file handle) expected, got table" },
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
end)
