local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local F = lepoll.flags
local ERR_HUP = H.bor(lepoll.ERR, lepoll.HUP)

local C = H.cleanups(function(fn) finally(fn) end)
local defer, new_set, pipe, socketpair = C.defer, C.new_set, C.pipe, C.socketpair

-- The kernel's own view of the set: fd -> events, from the tfd lines of
-- /proc/self/fdinfo/<epoll fd>. Independent of the module's parser.
local function kernel_view(ep)
  local f = assert(io.open("/proc/self/fdinfo/" .. ep:getfd()))
  local text = f:read("*a") -- "*a": 5.1 and LuaJIT know no "a"
  f:close()
  local view = {}
  for fd, events in text:gmatch("tfd:%s*(%d+)%s+events:%s*(%x+)") do
    view[tonumber(fd)] = tonumber(events, 16)
  end
  return view
end

-- Passes: returns nothing, raises nothing.
local function passes(ep)
  assert.are.equal(0, select("#", ep:invariant()))
end

-- The invariant's error message, which must name exactly `fd N`.
local function fails_naming(ep, fd)
  local ok, err = pcall(ep.invariant, ep)
  assert.is_false(ok)
  assert.are.equal("string", type(err))
  assert.matches("^lepoll: invariant: ", err)
  assert.matches("fd " .. fd .. "%f[%D]", err)
  return err
end

describe("set:invariant", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("passes on a fresh set, whatever its sizes", function()
    passes(new_set())
    passes(new_set(1))
    passes(new_set(8, 1))
    passes(new_set(100000, 4096))
  end)

  it("passes on a populated set with every kind of flags, as the kernel agrees", function()
    local ep = new_set()
    local r1, w1 = pipe()
    local r2, w2 = pipe()
    local s1, s2 = socketpair("stream")
    local d1, d2 = socketpair("dgram")
    local q1 = socketpair("seqpacket")
    local efd = assert(T.eventfd())
    local tfd = assert(T.timerfd(3600))
    defer(function() H.close(efd, tfd) end)
    local want = {
      [r1] = F("in"),
      [w1] = F("out"),
      [r2] = F("in|et"),
      [w2] = F("out|oneshot"),
      [s1] = F("in|out|rdhup|et"),
      [s2] = F("in|rdhup|oneshot"),
      [d1] = F("in|out|err|hup|et|exclusive"),
      [d2] = F("in|exclusive"),
      [q1] = F("pri|err|hup"),
      [efd] = 0,
      [tfd] = F("in|out|pri|rdhup|et|oneshot"),
    }
    local fds = {}
    for fd in pairs(want) do fds[#fds + 1] = fd end
    table.sort(fds)
    for _, fd in ipairs(fds) do
      ep:set(fd, want[fd])
      passes(ep)
    end
    assert.are.equal(#fds, #ep)
    -- The kernel holds the same set, plus its err|hup (no wait yet, so no
    -- ONESHOT entry has fired).
    local expected = {}
    for fd, flags in pairs(want) do expected[fd] = H.bor(flags, ERR_HUP) end
    assert.are.same(expected, kernel_view(ep))
    -- Changing flags (MOD) keeps it consistent.
    ep:set(r1, "in|out|et")
    ep:set(s1, 0)
    ep:set(efd, "in|oneshot")
    passes(ep)
    expected[r1], expected[s1], expected[efd] =
      H.bor(F("in|out|et"), ERR_HUP), ERR_HUP, H.bor(F("in|oneshot"), ERR_HUP)
    assert.are.same(expected, kernel_view(ep))
    -- Removing keeps it consistent, down to empty.
    for _, fd in ipairs(fds) do
      ep:remove(fd)
      passes(ep)
    end
    assert.are.same({}, kernel_view(ep))
  end)

  it("passes after a ONESHOT fired, which the kernel shows disarmed", function()
    local ep = new_set()
    local r, w = pipe()
    local a, b = socketpair()
    ep:set(r, "in|oneshot")
    ep:set(a, "in|et|oneshot")
    passes(ep)
    T.write(w, "x")
    T.write(b, "y")
    assert.are.equal("ok", ep:wait(0))
    assert.are.same({ [r] = "in", [a] = "in" }, H.ready_names(ep))
    -- Disarmed: the kernel keeps only its private bits.
    assert.are.same({ [r] = lepoll.ONESHOT, [a] = H.bor(lepoll.ONESHOT, lepoll.ET) }, kernel_view(ep))
    passes(ep)
    assert.are.equal("timeout", ep:wait(0)) -- really disarmed
    passes(ep)
    -- set with the same flags re-arms: consistent again, with full flags.
    ep:set(r, "in|oneshot")
    ep:set(a, "in|et|oneshot")
    assert.are.same({ [r] = H.bor(F("in|oneshot"), ERR_HUP), [a] = H.bor(F("in|et|oneshot"), ERR_HUP) },
      kernel_view(ep))
    passes(ep)
    assert.are.equal("ok", ep:wait(0))
    passes(ep)
  end)

  it("passes after waits of every outcome", function()
    local ep = new_set(1024, 2)
    local pipes = {}
    for i = 1, 3 do
      local r, w = pipe()
      pipes[i] = { r = r, w = w }
      ep:set(r, i == 2 and "in|et" or "in")
    end
    assert.are.equal("timeout", ep:wait(0))
    passes(ep)
    for _, p in ipairs(pipes) do T.write(p.w, "x") end
    -- Three ready, two per wait.
    assert.are.equal("ok", ep:wait(0))
    assert.are.equal(2, #H.ready(ep))
    passes(ep)
    assert.are.equal("ok", ep:wait(0.001))
    passes(ep)
    ep:clear_ready()
    passes(ep)
    -- A removed fd still in the ready set is fine: it is not filtered.
    assert.are.equal("ok", ep:wait(0))
    ep:remove(pipes[1].r)
    passes(ep)
    T.read(pipes[3].r)
    assert.are.equal("timeout", ep:wait(0))
    passes(ep)
  end)

  it("passes on a closed set", function()
    local r = pipe()
    local ep = lepoll.create()
    ep:set(r, "in")
    ep:close()
    passes(ep)
    passes(ep)
  end)

  it("fails naming the fd when a watched descriptor was closed behind its back", function()
    local ep = new_set()
    local r1, w1 = pipe()
    -- The victim: its read end is closed by the test itself.
    local vr, vw = assert(T.pipe())
    local vr_open = true
    defer(function() H.close(vr_open and vr, vw) end)
    ep:set(r1, "in")
    ep:set(vr, "in")
    ep:set(w1, "out")
    passes(ep)
    assert.is_true(T.close(vr)) -- the only reference: the kernel drops it
    vr_open = false
    assert.is_nil(kernel_view(ep)[vr])
    local err = fails_naming(ep, vr)
    assert.are.equal('lepoll: invariant: fd ' .. vr .. ' is in the table ("in") but not in the kernel\'s set',
      err)
    -- Still failing on a second check; the set still works.
    fails_naming(ep, vr)
    assert.are.equal("ok", ep:wait(0))
    -- remove reports EBADF, drops the entry, and the set is consistent.
    local ok, rerr = pcall(ep.remove, ep, vr)
    assert.is_false(ok)
    assert.are.equal("lepoll: remove fd " .. vr .. ": Bad file descriptor (EBADF)", rerr)
    assert.is_nil(ep:find(vr))
    passes(ep)
  end)

  it("fails naming the fd when the kernel still watches one the table dropped", function()
    local ep = new_set()
    local r, w = pipe()
    local vr, vw = assert(T.pipe())
    local alive = assert(T.dup(vr))
    local vr_open = true
    defer(function() H.close(vr_open and vr, vw, alive) end)
    ep:set(vr, "in")
    -- Closing the number while a dup keeps the file open: the kernel keeps
    -- its entry under the old number, for a number that is closed.
    assert.is_true(T.close(vr))
    vr_open = false
    assert.matches("is watched but closed", fails_naming(ep, vr), 1, true)
    -- remove: the table drops it, the kernel refuses (EBADF) and keeps it.
    local ok, rerr = pcall(ep.remove, ep, vr)
    assert.is_false(ok)
    assert.are.equal("lepoll: remove fd " .. vr .. ": Bad file descriptor (EBADF)", rerr)
    assert.are.same({ [vr] = H.bor(F("in"), ERR_HUP) }, kernel_view(ep))
    local err = fails_naming(ep, vr)
    assert.matches("not in the table", err, 1, true)
    -- The last reference goes: the kernel forgets it, consistent again.
    H.close(alive)
    alive = nil
    assert.are.same({}, kernel_view(ep))
    passes(ep)
    ep:set(r, "in")
    T.write(w, "x")
    assert.are.equal("ok", ep:wait(0))
    passes(ep)
  end)

  it("fails naming the fd when its number was closed while a dup kept the file, then reused", function()
    local ep = new_set()
    local vr, vw = assert(T.pipe())
    local alive = assert(T.dup(vr))
    local reused, other_w
    defer(function() H.close(vw, alive, reused, other_w) end)
    local r2, w2 = assert(T.pipe())
    other_w = w2
    ep:set(vr, "in")
    passes(ep)
    assert.is_true(T.close(vr))
    -- The number goes to another pipe's read end; the kernel's entry still
    -- watches the first pipe, whose data now comes under the new file's number.
    reused = assert(T.dup(r2, vr))
    assert.are.equal(vr, reused)
    H.close(r2)
    assert.are.same({ [vr] = H.bor(F("in"), ERR_HUP) }, kernel_view(ep))
    assert.matches("names another file than the kernel's entry watches",
      fails_naming(ep, vr), 1, true)
    -- The phantom: the old pipe is written, the reused number is reported.
    T.write(vw, "x")
    assert.are.equal("ok", ep:wait(0))
    assert.are.same({ { vr, F("in") } }, H.ready(ep))
    -- remove: the kernel looks the entry up by number and file, finds
    -- none for the new file (ENOENT); the table drops it, the kernel keeps
    -- the stale entry until the old file's last descriptor goes.
    assert.are.equal("lepoll: remove fd " .. vr .. ": No such file or directory (ENOENT)",
      H.msg_of(function() ep:remove(vr) end))
    assert.matches("not in the table", fails_naming(ep, vr), 1, true)
    H.close(alive)
    alive = nil
    assert.are.same({}, kernel_view(ep))
    passes(ep)
  end)
end)
