local lepoll = require "lepoll"
local H = require "support.helpers"
local T = H.T

local C = H.cleanups(function(fn) finally(fn) end)
local defer, new_set, pipe, socketpair = C.defer, C.new_set, C.pipe, C.socketpair

-- `[fd]="names", ...` from a list of {fd, names}, in the list's order.
local function entries(list)
  local parts = {}
  for i, e in ipairs(list) do parts[i] = string.format('[%d]="%s"', e[1], e[2]) end
  return table.concat(parts, ", ")
end

-- The same from a map fd -> names, in ascending fd order.
local function sorted_entries(map)
  local list = {}
  for fd, names in pairs(map) do list[#list + 1] = { fd, names } end
  table.sort(list, function(x, y) return x[1] < y[1] end)
  return entries(list)
end

local function rendering(ep, num, max, watched, ready)
  return string.format("epoll{fd=%d, num_file_descrs=%d, max_ready_events=%d, flags_by_fd={%s}, ready={%s}}",
    ep:getfd(), num, max, watched, ready)
end

-- The rendering read back as a Lua table constructor, as text only and in
-- an empty environment (H.load_in).
local function load_back(s)
  assert.are.equal("epoll", s:sub(1, 5))
  local chunk = assert(H.load_in("return " .. s:sub(6), "=tostring", {}))
  return chunk()
end

describe("tostring(set)", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("renders an empty set", function()
    local ep = new_set(1024)
    local s = tostring(ep)
    assert.are.equal("epoll{fd=" .. ep:getfd() ..
      ", num_file_descrs=1024, max_ready_events=256, flags_by_fd={}, ready={}}", s)
    assert.are.same({ fd = ep:getfd(), num_file_descrs = 1024, max_ready_events = 256,
      flags_by_fd = {}, ready = {} }, load_back(s))
  end)

  it("renders the defaults and explicit sizes", function()
    local ep = new_set()
    local num = H.default_num_file_descrs()
    assert.are.equal(rendering(ep, num, 256, "", ""), tostring(ep))
    local small = new_set(7, 3)
    assert.are.equal(rendering(small, 7, 3, "", ""), tostring(small))
  end)

  it("renders a populated set in ascending fd order", function()
    local ep = new_set(1024)
    local r1, w1 = pipe()
    local a, b = socketpair()
    local r2, w2 = pipe()
    -- Added in descending order: the rendering must sort them.
    local want = {
      [w2] = "out",
      [r2] = "in",
      [b] = "in|rdhup|oneshot",
      [a] = "in|out|et",
      [w1] = "out|err|hup",
      [r1] = "in|pri",
    }
    local fds = {}
    for fd in pairs(want) do fds[#fds + 1] = fd end
    table.sort(fds, function(x, y) return x > y end)
    for _, fd in ipairs(fds) do ep:set(fd, want[fd]) end
    local s = tostring(ep)
    assert.are.equal(rendering(ep, 1024, 256, sorted_entries(want), ""), s)
    -- The issue's own example shape, spelled out for two of them.
    assert.matches(string.format('flags_by_fd={[%d]="in|pri", [%d]="out|err|hup", ', r1, w1), s, 1, true)
    assert.is_nil(s:find("\n", 1, true))
    -- A change of flags shows at once; a removed fd disappears.
    ep:set(a, "in")
    ep:remove(w2)
    want[a], want[w2] = "in", nil
    assert.are.equal(rendering(ep, 1024, 256, sorted_entries(want), ""), tostring(ep))
  end)

  it("renders every flag name, and exclusive", function()
    local ep = new_set(1024)
    local r = pipe()
    local d1 = socketpair("dgram")
    -- The kernel takes exclusive only with in, out, err, hup and et.
    ep:set(r, "exclusive|et|hup|err|out|in")
    ep:set(d1, H.bor(lepoll.ONESHOT, lepoll.RDHUP, lepoll.PRI, lepoll.IN))
    local want = { [r] = "in|out|err|hup|et|exclusive", [d1] = "in|pri|rdhup|oneshot" }
    assert.are.equal(rendering(ep, 1024, 256, sorted_entries(want), ""), tostring(ep))
  end)

  it('renders an fd watched with flags 0 as ""', function()
    local ep = new_set(1024)
    local r, w = pipe()
    ep:set(r, 0)
    ep:set(w, lepoll.NONE)
    assert.are.equal(rendering(ep, 1024, 256, sorted_entries({ [r] = "", [w] = "" }), ""), tostring(ep))
  end)

  it("renders the events of the last wait in the kernel's order", function()
    local ep = new_set(1024)
    local a = socketpair()
    local r1, w1 = pipe()
    local r2, w2 = pipe()
    local r3, w3 = assert(T.pipe())
    defer(function() H.close(r3, w3) end)
    -- a is writable when added: first in the kernel's ready list. Then the
    -- pipes become ready in the order r2, r1, r3 (r3 by its writer closing).
    ep:set(r1, "in")
    ep:set(r2, "in|et")
    ep:set(r3, "in")
    ep:set(a, "out")
    T.write(w2, "x")
    T.write(w1, "y")
    assert.is_true(T.close(w3))
    w3 = nil
    local watched = sorted_entries({ [r1] = "in", [r2] = "in|et", [r3] = "in", [a] = "out" })
    assert.are.equal(rendering(ep, 1024, 256, watched, ""), tostring(ep))
    assert.are.equal("ok", ep:wait(0))
    local ready = entries({ { a, "out" }, { r2, "in" }, { r1, "in" }, { r3, "hup" } })
    assert.are.equal(rendering(ep, 1024, 256, watched, ready), tostring(ep))
    -- Exactly the order iter_ready gives.
    local order = {}
    for i, e in ipairs(H.ready(ep)) do order[i] = { e[1], lepoll.flagnames(e[2]) } end
    assert.are.equal(ready, entries(order))
    -- Not filtered against the table, like iter_ready; cleared by clear_ready.
    ep:remove(r1)
    watched = sorted_entries({ [r2] = "in|et", [r3] = "in", [a] = "out" })
    assert.are.equal(rendering(ep, 1024, 256, watched, ready), tostring(ep))
    ep:clear_ready()
    assert.are.equal(rendering(ep, 1024, 256, watched, ""), tostring(ep))
    -- A wait that times out leaves ready={} too.
    assert.are.equal("x", T.read(r2))
    ep:set(a, "in") -- nothing was written to b
    ep:remove(r3)
    watched = sorted_entries({ [r2] = "in|et", [a] = "in" })
    assert.are.equal("timeout", ep:wait(0))
    assert.are.equal(rendering(ep, 1024, 256, watched, ""), tostring(ep))
  end)

  it("renders a closed set as epoll{closed}", function()
    local r = pipe()
    local ep = lepoll.create(1024)
    ep:set(r, "in")
    ep:close()
    assert.are.equal("epoll{closed}", tostring(ep))
    assert.are.equal("epoll{closed}", tostring(ep))
  end)

  it("uses the names of lepoll.flagnames", function()
    local ep = new_set(1024)
    local specs = { "in", "out", "in|out", "pri|rdhup", "in|et|oneshot", "err|hup", 0 }
    for _, spec in ipairs(specs) do
      local r = pipe()
      ep:set(r, spec)
    end
    local t = load_back(tostring(ep))
    local n = 0
    for fd, names in pairs(t.flags_by_fd) do
      n = n + 1
      assert.are.equal(lepoll.flagnames(ep:find(fd)), names)
      assert.are.equal(ep:find(fd), lepoll.flags(names))
    end
    assert.are.equal(#specs, n)
  end)

  it("loads back as a table constructor with the same data", function()
    local ep = new_set(512, 16)
    local r1, w1 = pipe()
    local a, b = socketpair()
    local r2 = pipe()
    ep:set(r1, "in")
    ep:set(a, "in|out|et")
    ep:set(r2, 0)
    T.write(w1, "x")
    T.write(b, "y")
    assert.are.equal("ok", ep:wait(0))
    local t = load_back(tostring(ep))
    local watched = {}
    ep:iter(function(fd, flags) watched[fd] = lepoll.flagnames(flags) end)
    assert.are.same({
      fd = ep:getfd(),
      num_file_descrs = 512,
      max_ready_events = 16,
      flags_by_fd = watched,
      ready = H.ready_names(ep),
    }, t)
    assert.are.same({ [r1] = "in", [a] = "in|out" }, t.ready)
    assert.are.same({ [r1] = "in", [a] = "in|out|et", [r2] = "" }, t.flags_by_fd)
  end)
end)
