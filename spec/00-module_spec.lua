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
    assert.are.equal(1 << 28, lepoll.EXCLUSIVE)
    assert.are.equal(1 << 30, lepoll.ONESHOT)
    assert.are.equal(1 << 31, lepoll.ET)
  end)

  it("reads the monotonic clock", function()
    local T = H.T
    local before = T.now()
    local a = lepoll.now()
    local b = lepoll.now()
    local after = T.now()
    assert.are.equal("float", math.type(a))
    -- Same clock as clock_gettime(CLOCK_MONOTONIC), never going back.
    assert.is_true(before <= a and a <= b and b <= after)
  end)

  it("names its version", function()
    assert.matches("^lepoll %d+%.%d+%.%d+$", lepoll._VERSION)
  end)
end)
