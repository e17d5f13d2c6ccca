local lepoll = require "lepoll"
local H = require "support.helpers"

describe("the lepoll module", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("has the kernel's flag values", function()
    assert.are.equal(0, lepoll.NONE)
    assert.are.equal(0x001, lepoll.IN)
    assert.are.equal(0x002, lepoll.PRI)
    assert.are.equal(0x004, lepoll.OUT)
    assert.are.equal(0x008, lepoll.ERR)
    assert.are.equal(0x010, lepoll.HUP)
    assert.are.equal(0x2000, lepoll.RDHUP)
    assert.are.equal(0x10000000, lepoll.EXCLUSIVE) -- bit 28
    assert.are.equal(0x40000000, lepoll.ONESHOT) -- bit 30
    assert.are.equal(0x80000000, lepoll.ET) -- bit 31
    -- Integers (before 5.3, doubles with an integer value).
    for _, name in ipairs({ "NONE", "IN", "PRI", "OUT", "ERR", "HUP", "RDHUP", "EXCLUSIVE", "ONESHOT", "ET" }) do
      assert.are.equal("integer", H.numtype(lepoll[name]), name)
    end
  end)

  it("reads the monotonic clock", function()
    local T = H.T
    local before = T.now()
    local a = lepoll.now()
    local b = lepoll.now()
    local after = T.now()
    if H.has.integers then
      assert.are.equal("float", math.type(a))
    else
      -- Before 5.3 every number is a double: nothing more to tell.
      assert.are.equal("number", type(a))
    end
    -- Same clock as clock_gettime(CLOCK_MONOTONIC), never going back.
    assert.is_true(before <= a and a <= b and b <= after)
  end)

  it("names its version", function()
    assert.matches("^lepoll %d+%.%d+%.%d+$", lepoll._VERSION)
  end)
end)
