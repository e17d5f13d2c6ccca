-- The non-raising forms: try_create, try_flags, set:try_tofd, set:try_set
-- and set:try_remove do what create, flags, tofd, set and remove do, and
-- give every failure those raise as nil, message, errname: an argument's
-- reason (the text inside "bad argument #n to 'f' (...)") with "EINVAL",
-- a system error's whole message with its errno's name. Code built on
-- lepoll composes it through these values, never through error text.
local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local IN, OUT = lepoll.IN, lepoll.OUT
local CLOSED = { nil, "attempt to use a closed epoll set", "EBADF" }

-- All results of f(...), as a list ({n = ...} is not needed: nil, msg, name).
local function results(f, ...)
  return { f(...) }
end

describe("the try_ forms", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  describe("lepoll.try_create", function()
    it("makes a set as create does", function()
      local ep = assert(lepoll.try_create(64, 8))
      finally(function() ep:close() end)
      assert.matches("^epoll{fd=%d+, num_file_descrs=64, max_ready_events=8, ", tostring(ep))
      local d = assert(lepoll.try_create())
      d:close()
    end)

    it("returns the reasons create raises with, naming the option", function()
      local range = "[1, 2147483647]"
      assert.are.same({ nil, "num_file_descrs must be in " .. range .. ", got 0", "EINVAL" },
        results(lepoll.try_create, 0))
      assert.are.same({ nil, "num_file_descrs must be an integer", "EINVAL" },
        results(lepoll.try_create, 1.5))
      assert.are.same({ nil, "num_file_descrs must be an integer, got string", "EINVAL" },
        results(lepoll.try_create, "10"))
      assert.are.same({ nil, "max_ready_events must be an integer, got table", "EINVAL" },
        results(lepoll.try_create, 64, {}))
      -- The same text create puts in its argument error.
      assert.are.equal("bad argument #2 to 'create' (max_ready_events must be an integer, got table)",
        H.msg_of(function() lepoll.create(64, {}) end))
    end)

    it("returns EMFILE when the process is out of descriptors, and leaks nothing", function()
      local soft = T.nofile()
      local held = {}
      finally(function()
        T.setnofile(soft)
        for _, fd in ipairs(held) do T.close(fd) end
      end)
      -- Lower the limit to what is open now: no descriptor is free.
      local probe = assert(T.dup(0))
      T.close(probe)
      assert(T.setnofile(probe))
      local res = results(lepoll.try_create, 64)
      T.setnofile(soft)
      assert.are.same({ nil, "lepoll: create: Too many open files (EMFILE)", "EMFILE" }, res)
    end)
  end)

  describe("lepoll.try_flags", function()
    it("parses as flags does, and returns its reasons", function()
      assert.are.equal(H.bor(IN, OUT), lepoll.try_flags("in|out"))
      assert.are.equal(IN, lepoll.try_flags({ "in" }))
      assert.are.equal(0, lepoll.try_flags(""))
      assert.are.same({ nil, "unknown flag name 'inn'", "EINVAL" }, results(lepoll.try_flags, "in|inn"))
      assert.are.same({ nil, "flags -1 out of range [0, 0xffffffff]", "EINVAL" },
        results(lepoll.try_flags, -1))
      assert.are.same({ nil, "flags 1.5 are not an integer", "EINVAL" }, results(lepoll.try_flags, 1.5))
      assert.are.same({ nil, "flag list item 2 is boolean, not a name", "EINVAL" },
        results(lepoll.try_flags, { "in", true }))
      assert.are.same({ nil, "flags (integer, string of names or list of names) expected, got nil",
        "EINVAL" }, results(lepoll.try_flags))
    end)
  end)

  describe("set:try_tofd", function()
    it("resolves every descriptor form tofd takes", function()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      assert.are.equal(5, ep:try_tofd(5))
      assert.are.equal(5, ep:try_tofd(5.0))
      assert.are.equal(0, ep:try_tofd(io.stdin))
      assert.are.equal(7, ep:try_tofd({ getfd = function() return 7 end }))
      assert.are.equal(8, ep:try_tofd({ fileno = function() return 8 end }))
    end)

    it("returns the reasons tofd raises with", function()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      local FD_KINDS = "file descriptor (integer, file handle or object with getfd/pollfd/fileno)"
      assert.are.same({ nil, "fd 64 out of range [0, 64)", "EINVAL" }, results(ep.try_tofd, ep, 64))
      assert.are.same({ nil, "fd -1 out of range [0, 64)", "EINVAL" }, results(ep.try_tofd, ep, -1))
      assert.are.same({ nil, "fd 1.5 is not an integer (valid range [0, 64))", "EINVAL" },
        results(ep.try_tofd, ep, 1.5))
      assert.are.same({ nil, FD_KINDS .. " expected, got string", "EINVAL" },
        results(ep.try_tofd, ep, "3"))
      assert.are.same({ nil, "getfd returned string, not an fd", "EINVAL" },
        results(ep.try_tofd, ep, { getfd = function() return "x" end }))
      assert.are.same({ nil, "getfd is number, not a method", "EINVAL" },
        results(ep.try_tofd, ep, { getfd = 1 }))
      local fh = assert(io.tmpfile())
      fh:close()
      assert.are.same({ nil, "closed file handle (valid range [0, 64))", "EINVAL" },
        results(ep.try_tofd, ep, fh))
      assert.are.equal("bad argument #1 to 'tofd' (fd 64 out of range [0, 64))",
        H.msg_of(function() ep:tofd(64) end))
    end)

    it("lets an object's own error through, and reports a set its getfd closed", function()
      local ep = lepoll.create(64)
      finally(function() ep:close() end)
      local err = { "mine" }
      local ok, got = pcall(ep.try_tofd, ep, { getfd = function() error(err) end })
      assert.is_false(ok)
      assert.are.equal(err, got)
      assert.are.same(CLOSED, results(ep.try_tofd, ep, { getfd = function() ep:close() return 3 end }))
    end)
  end)

  describe("set:try_set and set:try_remove", function()
    it("add, modify and remove as set and remove do", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      assert.is_true(ep:try_set(r, "in"))
      assert.are.equal(IN, ep:find(r))
      assert.is_true(ep:try_set(r, { "in", "out" }))
      assert.are.equal(H.bor(IN, OUT), ep:find(r))
      assert.is_true(ep:try_remove(r))
      assert.is_nil(ep:find(r))
      assert.is_true(ep:try_remove(r)) -- not watched: nothing to do
      ep:invariant()
    end)

    it("return argument reasons with EINVAL, the set unchanged", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      local before = tostring(ep)
      assert.are.same({ nil, "unknown flag name 'inn'", "EINVAL" }, results(ep.try_set, ep, w, "inn"))
      assert.are.same({ nil, "fd 99 out of range [0, 64)", "EINVAL" }, results(ep.try_set, ep, 99, "in"))
      assert.are.same({ nil, ("exclusive can only be set when fd %d is added; remove it first"):format(r),
        "EINVAL" }, results(ep.try_set, ep, r, "in|exclusive"))
      assert.are.same({ nil, "fd 99 out of range [0, 64)", "EINVAL" }, results(ep.try_remove, ep, 99))
      assert.are.equal(before, tostring(ep))
      ep:remove(r)
      assert.is_true(ep:try_set(r, "in|exclusive"))
      assert.are.same({ nil, ("fd %d was added with exclusive, which the kernel never modifies; "
        .. "remove it first"):format(r), "EINVAL" }, results(ep.try_set, ep, r, "in"))
      ep:invariant()
    end)

    it("return the kernel's refusals with their errno names, as set and remove raise them", function()
      local path = os.tmpname()
      local file = assert(T.open(path))
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(file, w); os.remove(path) end)
      local eperm = ("lepoll: set fd %d: Operation not permitted (EPERM)"):format(file)
      assert.are.same({ nil, eperm, "EPERM" }, results(ep.try_set, ep, file, "in"))
      assert.are.equal(eperm, H.msg_of(function() ep:set(file, "in") end))
      assert.is_nil(ep:find(file))
      -- A descriptor closed behind the table's back: EBADF, the entry dropped.
      ep:set(r, "in")
      T.close(r)
      assert.are.same({ nil, ("lepoll: set fd %d: Bad file descriptor (EBADF)"):format(r), "EBADF" },
        results(ep.try_set, ep, r, "out"))
      assert.are.equal(IN, ep:find(r))
      assert.are.same({ nil, ("lepoll: remove fd %d: Bad file descriptor (EBADF)"):format(r), "EBADF" },
        results(ep.try_remove, ep, r))
      assert.is_nil(ep:find(r))
      ep:invariant()
    end)

    it("return the closed-set results on a closed set, and raise for a wrong self", function()
      local ep = lepoll.create(64)
      ep:close()
      assert.are.same(CLOSED, results(ep.try_set, ep, 0, "in"))
      assert.are.same(CLOSED, results(ep.try_remove, ep, 0))
      assert.are.same(CLOSED, results(ep.try_tofd, ep, 0))
      for _, name in ipairs({ "try_set", "try_remove", "try_tofd" }) do
        assert.matches("lepoll.set expected, got table", H.error_of(ep[name], {}, 0, "in"), 1, true)
      end
    end)

    it("allocate nothing when they succeed", function()
      local r, w = T.pipe()
      local ep = lepoll.create(64)
      finally(function() ep:close(); H.close(r, w) end)
      ep:set(r, "in")
      local growth = H.alloc_growth(function(n)
        for _ = 1, n do
          ep:try_set(r, IN)
          ep:try_tofd(r)
          ep:try_remove(w)
        end
      end, 100, 10000)
      assert.are.equal(0, growth)
    end)
  end)
end)
