local lepoll = require "lepoll"
local H = require "support.helpers"

local IN, OUT, PRI, ERR, HUP = lepoll.IN, lepoll.OUT, lepoll.PRI, lepoll.ERR, lepoll.HUP
local RDHUP, ET, ONESHOT, EXCLUSIVE = lepoll.RDHUP, lepoll.ET, lepoll.ONESHOT, lepoll.EXCLUSIVE
local ALL_NAMED = H.bor(IN, OUT, PRI, ERR, HUP, RDHUP, ET, ONESHOT, EXCLUSIVE)
local ALL_NAMES = "in|out|pri|err|hup|rdhup|et|oneshot|exclusive"
local FLAGS_KINDS = "flags (integer, string of names or list of names)"

-- Flag words are combined with H.bor, not |, which 5.1, 5.2 and LuaJIT
-- lack (H.bor gives an integer on 5.3+, as | would).

-- The calls that fail are never tail calls (`function() f() end`, not
-- `function() return f() end`): LuaJIT drops the caller's frame on a tail
-- call, and with it the error's position and the function's name.
local msg_of = H.msg_of

describe("lepoll flags", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  describe("lepoll.flags", function()
    it("returns integers from 0 to 0xffffffff as they are", function()
      assert.are.equal(0, lepoll.flags(0))
      assert.are.equal(1, lepoll.flags(1))
      assert.are.equal(H.bor(IN, ET), lepoll.flags(H.bor(IN, ET)))
      assert.are.equal(0x400, lepoll.flags(0x400))
      assert.are.equal(0xffffffff, lepoll.flags(0xffffffff))
      -- (H.numtype: math.type from 5.3; before it, an integral double)
      assert.are.equal("integer", H.numtype(lepoll.flags(0xffffffff)))
    end)

    it("counts an integral float as its integer", function()
      -- Before 5.3, 3.0 and 3 are the same number: an integer to lepoll.
      assert.are.equal(3, lepoll.flags(3.0))
      assert.are.equal("integer", H.numtype(lepoll.flags(3.0)))
      assert.are.equal(0, lepoll.flags(0.0))
      assert.are.equal(0xffffffff, lepoll.flags(4294967295.0))
    end)

    it("refuses numbers outside [0, 0xffffffff] and non-integers", function()
      assert.are.equal("bad argument #1 to 'flags' (flags -1 out of range [0, 0xffffffff])",
        msg_of(function() lepoll.flags(-1) end))
      assert.are.equal("bad argument #1 to 'flags' (flags 4294967296 out of range [0, 0xffffffff])",
        msg_of(function() lepoll.flags(2 ^ 32) end))
      -- 0x100000000 (1 << 32) is an integer on 5.3+, 2 ^ 32 a float; before
      -- 5.3 both are the same double.
      assert.are.equal("bad argument #1 to 'flags' (flags 4294967296 out of range [0, 0xffffffff])",
        msg_of(function() lepoll.flags(0x100000000) end))
      -- The smallest integer; before 5.3, -2^63 is that same value as a
      -- double, which lepoll takes as the integer (and prints as one).
      local min = H.has.integers and math.mininteger or -2 ^ 63
      assert.are.equal("bad argument #1 to 'flags' (flags -9223372036854775808 out of range [0, 0xffffffff])",
        msg_of(function() lepoll.flags(min) end))
      assert.are.equal("bad argument #1 to 'flags' (flags 1.5 are not an integer)",
        msg_of(function() lepoll.flags(1.5) end))
      assert.are.equal("bad argument #1 to 'flags' (flags inf are not an integer)",
        msg_of(function() lepoll.flags(math.huge) end))
      assert.matches("^bad argument #1 to 'flags' %(flags %-?nan are not an integer%)$",
        msg_of(function() lepoll.flags(0 / 0) end))
    end)

    it("parses names separated by '|', ',' or white space", function()
      assert.are.equal(IN, lepoll.flags("in"))
      assert.are.equal(H.bor(IN, OUT, ET), lepoll.flags("in|out|et"))
      assert.are.equal(H.bor(IN, OUT, ET), lepoll.flags("in,out,et"))
      assert.are.equal(H.bor(IN, OUT, ET), lepoll.flags("in out et"))
      assert.are.equal(H.bor(IN, OUT, ET), lepoll.flags("  in | out ,\tet\n"))
      assert.are.equal(H.bor(IN, OUT), lepoll.flags("in||out,,"))
      -- Every ASCII white-space byte separates: vertical tab, form feed, CR too.
      assert.are.equal(H.bor(IN, OUT, ET, RDHUP), lepoll.flags("in\vout\fet\r\nrdhup"))
      assert.are.equal(H.bor(IN, OUT), lepoll.flags({ "\fin\v", "out\f" }))
      -- Other control bytes do not; the refusal shows them escaped.
      assert.are.equal("bad argument #1 to 'flags' (unknown flag name 'in\\27out')",
        H.msg_of(function() lepoll.flags("in\27out") end))
      -- Repeating a name sets its bit once.
      assert.are.equal(IN, lepoll.flags("in|in"))
      assert.are.equal(ALL_NAMED, lepoll.flags(ALL_NAMES))
      assert.are.equal(ALL_NAMED, lepoll.flags("exclusive oneshot et rdhup hup err pri out in"))
    end)

    it("maps every name to its kernel bit", function()
      local each = {
        ["in"] = IN, out = OUT, pri = PRI, err = ERR, hup = HUP,
        rdhup = RDHUP, et = ET, oneshot = ONESHOT, exclusive = EXCLUSIVE,
      }
      for name, bit in pairs(each) do
        assert.are.equal(bit, lepoll.flags(name), name)
      end
      assert.are.equal(0xd000201f, ALL_NAMED)
    end)

    it("reads names case-insensitively", function()
      assert.are.equal(H.bor(IN, OUT, ET), lepoll.flags("IN|Out|eT"))
      assert.are.equal(H.bor(ONESHOT, RDHUP), lepoll.flags("ONESHOT RDHUP"))
      assert.are.equal(EXCLUSIVE, lepoll.flags({ "Exclusive" }))
    end)

    it("gives 0 for an empty string, blanks and an empty list", function()
      assert.are.equal(0, lepoll.flags(""))
      assert.are.equal(0, lepoll.flags("  , | "))
      assert.are.equal(0, lepoll.flags({}))
    end)

    it("takes a list of names", function()
      assert.are.equal(IN, lepoll.flags({ "in" }))
      assert.are.equal(H.bor(IN, OUT, ET), lepoll.flags({ "in", "out", "et" }))
      assert.are.equal(H.bor(IN, ONESHOT), lepoll.flags({ "ONESHOT", "in" }))
    end)

    it("names an unknown name in its error", function()
      assert.are.equal("bad argument #1 to 'flags' (unknown flag name 'bogus')",
        msg_of(function() lepoll.flags("bogus") end))
      assert.are.equal("bad argument #1 to 'flags' (unknown flag name 'inn')",
        msg_of(function() lepoll.flags("in|inn|out") end))
      -- No prefixes: "i" is not "in".
      assert.are.equal("bad argument #1 to 'flags' (unknown flag name 'i')",
        msg_of(function() lepoll.flags("i") end))
      assert.are.equal("bad argument #1 to 'flags' (unknown flag name 'EPOLLIN')",
        msg_of(function() lepoll.flags("EPOLLIN") end))
      -- Hex literals are what flagnames prints, not names.
      assert.are.equal("bad argument #1 to 'flags' (unknown flag name '0x400')",
        msg_of(function() lepoll.flags("in|0x400") end))
      assert.are.equal("bad argument #1 to 'flags' (unknown flag name 'nope')",
        msg_of(function() lepoll.flags({ "in", "nope" }) end))
      -- Control bytes are shown escaped: a raw NUL would cut the message.
      assert.are.equal("bad argument #1 to 'flags' (unknown flag name 'in\\0x')",
        msg_of(function() lepoll.flags("out|in\0x") end))
      -- A very long name is cut, not copied whole into the message.
      local long = msg_of(function() lepoll.flags(("x"):rep(1000)) end)
      assert.matches("^bad argument #1 to 'flags' %(unknown flag name 'x+%.%.%.'%)$", long)
      assert.is_true(#long < 120)
    end)

    it("refuses other types, and lists holding other types", function()
      assert.are.equal("bad argument #1 to 'flags' (" .. FLAGS_KINDS .. " expected, got no value)",
        msg_of(function() lepoll.flags() end))
      assert.are.equal("bad argument #1 to 'flags' (" .. FLAGS_KINDS .. " expected, got nil)",
        msg_of(function() lepoll.flags(nil) end))
      assert.are.equal("bad argument #1 to 'flags' (" .. FLAGS_KINDS .. " expected, got boolean)",
        msg_of(function() lepoll.flags(true) end))
      assert.are.equal("bad argument #1 to 'flags' (" .. FLAGS_KINDS .. " expected, got function)",
        msg_of(function() lepoll.flags(print) end))
      assert.are.equal("bad argument #1 to 'flags' (flag list item 2 is boolean, not a name)",
        msg_of(function() lepoll.flags({ "in", true }) end))
      assert.are.equal("bad argument #1 to 'flags' (flag list item 1 is table, not a name)",
        msg_of(function() lepoll.flags({ {} }) end))
    end)
  end)

  describe("lepoll.flagnames", function()
    it("names the flags in canonical order", function()
      assert.are.equal(ALL_NAMES, lepoll.flagnames(ALL_NAMED))
      -- Canonical order is not bit order: PRI (0x2) comes after OUT (0x4).
      assert.are.equal("in|out|pri", lepoll.flagnames(H.bor(PRI, OUT, IN)))
      assert.are.equal("in|out|et", lepoll.flagnames(H.bor(ET, OUT, IN)))
      assert.are.equal("err|hup", lepoll.flagnames(H.bor(HUP, ERR)))
      assert.are.equal("rdhup|oneshot|exclusive", lepoll.flagnames(H.bor(EXCLUSIVE, ONESHOT, RDHUP)))
      assert.are.equal("in", lepoll.flagnames(IN))
      assert.are.equal("et", lepoll.flagnames(ET))
    end)

    it("gives the empty string for 0", function()
      assert.are.equal("", lepoll.flagnames(0))
      assert.are.equal("", lepoll.flagnames(lepoll.NONE))
      assert.are.equal("", lepoll.flagnames(""))
    end)

    it("puts unnamed bits as one lowercase hex literal at the end", function()
      assert.are.equal("in|0x400", lepoll.flagnames(H.bor(IN, 0x400)))
      assert.are.equal("0x400", lepoll.flagnames(0x400))
      -- Several unnamed bits make one literal, after all the names.
      assert.are.equal("in|et|0xc00", lepoll.flagnames(H.bor(ET, 0x800, IN, 0x400)))
      assert.are.equal("0xa8c00", lepoll.flagnames(0xA8C00))
      assert.are.equal(ALL_NAMES .. "|0x2fffdfe0", lepoll.flagnames(0xffffffff))
    end)

    it("takes a spec as lepoll.flags does", function()
      assert.are.equal("in|out", lepoll.flagnames("OUT, in"))
      assert.are.equal("in|oneshot", lepoll.flagnames({ "oneshot", "in" }))
      assert.are.equal("in|out", lepoll.flagnames(5.0))
    end)

    it("round-trips through lepoll.flags for named bits", function()
      for _, flags in ipairs({
        0, IN, H.bor(IN, OUT, ET), ALL_NAMED, H.bor(ERR, HUP, RDHUP), H.bor(ONESHOT, PRI),
      }) do
        assert.are.equal(flags, lepoll.flags(lepoll.flagnames(flags)))
      end
    end)

    it("refuses what lepoll.flags refuses", function()
      assert.are.equal("bad argument #1 to 'flagnames' (flags -1 out of range [0, 0xffffffff])",
        msg_of(function() lepoll.flagnames(-1) end))
      assert.are.equal("bad argument #1 to 'flagnames' (flags 1.5 are not an integer)",
        msg_of(function() lepoll.flagnames(1.5) end))
      assert.are.equal("bad argument #1 to 'flagnames' (unknown flag name 'bogus')",
        msg_of(function() lepoll.flagnames("bogus") end))
      assert.are.equal("bad argument #1 to 'flagnames' (" .. FLAGS_KINDS .. " expected, got nil)",
        msg_of(function() lepoll.flagnames(nil) end))
    end)
  end)

  describe("lepoll.has", function()
    it("is true when any bit of the mask is set", function()
      assert.is_true(lepoll.has(H.bor(IN, OUT), IN))
      assert.is_true(lepoll.has(H.bor(IN, OUT), OUT))
      assert.is_true(lepoll.has(H.bor(IN, OUT), H.bor(OUT, ET)))
      assert.is_true(lepoll.has(ALL_NAMED, EXCLUSIVE))
      assert.is_true(lepoll.has(0xffffffff, 0x400))
    end)

    it("is false when no bit of the mask is set", function()
      assert.is_false(lepoll.has(IN, OUT))
      assert.is_false(lepoll.has(H.bor(IN, OUT), H.bor(ET, ONESHOT)))
      assert.is_false(lepoll.has(0, IN))
      -- An empty mask matches nothing, even in full flags.
      assert.is_false(lepoll.has(0xffffffff, 0))
      assert.is_false(lepoll.has(0, 0))
    end)

    it("takes specs for both arguments", function()
      assert.is_true(lepoll.has("in|out", "out"))
      assert.is_true(lepoll.has({ "in", "et" }, "et|oneshot"))
      assert.is_false(lepoll.has({ "in" }, "et"))
      assert.is_false(lepoll.has("in", ""))
      assert.is_true(lepoll.has(H.bor(IN, ERR), "ERR"))
      assert.is_true(lepoll.has(3.0, 2.0))
    end)

    it("refuses a bad spec in either argument", function()
      assert.are.equal("bad argument #1 to 'has' (unknown flag name 'bogus')",
        msg_of(function() lepoll.has("bogus", IN) end))
      assert.are.equal("bad argument #2 to 'has' (unknown flag name 'nope')",
        msg_of(function() lepoll.has(IN, "in|nope") end))
      assert.are.equal("bad argument #2 to 'has' (" .. FLAGS_KINDS .. " expected, got no value)",
        msg_of(function() lepoll.has(IN) end))
      assert.are.equal("bad argument #2 to 'has' (flags -1 out of range [0, 0xffffffff])",
        msg_of(function() lepoll.has(IN, -1) end))
      assert.are.equal("bad argument #1 to 'has' (flags 0.5 are not an integer)",
        msg_of(function() lepoll.has(0.5, IN) end))
    end)
  end)
end)
