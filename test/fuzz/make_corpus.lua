-- Writes the seed corpus of the core fuzzer (test/fuzz/core_fuzz.c):
--   lua5.4 test/fuzz/make_corpus.lua [DIR]     (default test/fuzz/corpus)
-- Each seed is a small program in the harness's input format, spelled here
-- with the opcode names of core_fuzz.c. Regenerate after changing the format.
local dir = arg[1] or "test/fuzz/corpus"

local OPEN, CLOSE, SET, REMOVE, FIND, NEXT, WAIT, CLEAR_READY, WRITE, READ,
      SHUTDOWN, CLOSE_FD, REOPEN, FLAGNAMES, PARSE, TIMEOUT, TIMEOUT_INT, FAIL,
      CHECK, REINIT, ERRNAME, BY_NAME, SET2, WAIT2, CORRUPT, CLOCK,
      OPEN_EMFILE = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
      17, 18, 19, 20, 21, 22, 23, 24, 25, 26

-- Pool slots: 0/1 pipe read/write, 2/3 the high pipe, 4/5 socketpair,
-- 6 eventfd, 7 /dev/null. Sets' epoll fds: EP(k). Literal numbers: NUM(n).
local function EP(k) return 0x40 + k end
local function SPECIAL(i) return 0x60 + i end -- -1, INT_MIN, INT_MAX, num_fds, ...
local function NUM(n) return string.char(0xc0 | (n >> 8), n & 0xff) end

-- Flags: a selector byte (in out pri rdhup et oneshot exclusive) and a byte
-- of extras (err hup wakeup 0x400 0x40), or a raw word.
local IN, OUTF, PRI, RDHUP, ET, ONESHOT, EXCL = 1, 2, 4, 8, 16, 32, 64
local function F(sel, extra) return string.char(sel, extra or 0) end
local function RAW(w) return string.char(0x80) .. string.pack("<I4", w) end

local function seq(...)
  local out = {}
  for _, v in ipairs({...}) do
    out[#out + 1] = type(v) == "number" and string.char(v) or v
  end
  return table.concat(out)
end
local function str(s) return string.char(#s) .. s end

-- OPEN set a b: num_fds a+1 (a < 0x80), max_ready b%16+1.
local seeds = {
  basic = seq(0, 0,
    OPEN, 0, 63, 3,
    SET, 0, 0, F(IN),
    WAIT, 0,
    WRITE, 1, 0,
    WAIT, 0,
    SET, 0, 1, F(OUTF),
    WAIT, 0,
    READ, 0, 1,
    WAIT, 0,
    FIND, 0, 0, NEXT, 0, 0,
    REMOVE, 0, 0, REMOVE, 0, 0,
    CLEAR_READY, 0,
    CLOSE, 0, CLOSE, 0),

  oneshot_et = seq(0, 0,
    OPEN, 1, 40, 7,
    SET, 1, 0, F(IN | ONESHOT),
    WRITE, 1, 0,
    WAIT, 1, WAIT, 1,
    SET, 1, 0, F(IN | ONESHOT),
    WAIT, 1,
    SET, 1, 4, F(IN | ET | RDHUP),
    WRITE, 5, 1,
    WAIT, 1, WAIT, 1,
    SHUTDOWN, 5, 1,
    WAIT, 1,
    READ, 4, 4,
    WAIT, 1),

  high_fds = seq(0, 100,
    OPEN, 0, 0xfd, 15,
    SET, 0, 2, F(IN),
    SET, 0, 3, F(OUTF),
    OPEN, 1, 15, 15,
    SET, 1, 2, F(IN),
    SET, 1, 0, F(IN),
    SET, 1, 1, F(OUTF),
    SET, 1, SPECIAL(4), F(IN),
    WRITE, 3, 3,
    WAIT, 0, WAIT, 1,
    NEXT, 0, SPECIAL(8),
    REMOVE, 0, 2, REMOVE, 0, 3,
    CLOSE, 0, CLOSE, 1),

  closed_behind = seq(0, 0,
    OPEN, 0, 127, 3,
    SET, 0, 0, F(IN),
    SET, 0, 6, F(IN | OUTF),
    CLOSE_FD, 0, 1,
    SET, 0, 0, F(IN),
    REOPEN, 0, 0x80,
    SET, 0, 0, F(IN),
    CHECK, 0, 10,
    REMOVE, 0, 0,
    SET, 0, 0, F(IN),
    CLOSE_FD, 6, 0,
    REOPEN, 6, 4,
    SET, 0, 6, F(IN),
    CHECK, 0, 0),

  alloc_fail = seq(0x41, 60,
    OPEN, 0, 0xfd, 1,
    SET, 0, 0, F(IN),
    SET, 0, 2, F(IN),
    SET, 0, 2, F(IN),
    FAIL, 0x20,
    OPEN, 1, 10, 1,
    CHECK, 0, 40,
    FAIL, 0x80,
    OPEN, 1, 0xfd, 1,
    FAIL, 1,
    SET, 1, 2, F(OUTF),
    SET, 1, 3, F(OUTF),
    FAIL, 0,
    CHECK, 1, 60),

  nested = seq(0, 0,
    OPEN, 0, 63, 3,
    OPEN, 1, 63, 3,
    OPEN, 2, 63, 3,
    SET, 0, EP(1), F(IN),
    SET, 1, EP(2), F(IN),
    SET, 2, EP(0), F(IN),
    SET, 1, EP(0), F(IN),
    SET, 0, EP(0), F(IN),
    SET, 2, 0, F(IN),
    WRITE, 1, 0,
    WAIT, 0, WAIT, 1, WAIT, 2,
    CLOSE, 1,
    CHECK, 0, 70,
    REMOVE, 0, EP(1),
    OPEN, 1, 63, 0,
    SET, 0, EP(1), F(IN | ET)),

  exclusive = seq(0, 0,
    OPEN, 0, 63, 7,
    SET, 0, 0, F(IN | EXCL),
    SET, 0, 0, F(IN),
    SET, 0, 4, F(IN | EXCL | ONESHOT),
    SET, 0, 4, F(IN | OUTF | ET | EXCL, 3),
    OPEN, 1, 63, 7,
    SET, 0, EP(1), F(IN | EXCL),
    SET, 0, 7, F(IN),
    SET, 0, 6, F(IN | OUTF, 4),
    WRITE, 6, 1,
    WAIT, 0,
    WRITE, 6, 2,
    WAIT, 0,
    READ, 6, 1,
    WAIT, 0,
    SET, 0, 5, RAW(0xffffffff),
    SET, 0, 5, RAW(0x0fffffff),
    SET, 0, 5, RAW(0x00000400)),

  names = seq(0, 0,
    FLAGNAMES, RAW(0xffffffff), 63,
    FLAGNAMES, F(IN | OUTF | ET), 5,
    FLAGNAMES, F(0), 0,
    FLAGNAMES, RAW(0x401), 4,
    PARSE, str("IN|out, et\trdhup oneshot,exclusive|pri err hup"),
    PARSE, str("in|inn|out"),
    PARSE, str(" ,| "),
    BY_NAME, str("OneShot"),
    BY_NAME, str("ou"),
    ERRNAME, 9, ERRNAME, 11, ERRNAME, 95, ERRNAME, 0x81,
    ERRNAME, 0xc0, string.pack("<i4", 100000),
    CLOCK, CLOCK),

  -- lep_check must find each kind of damage in a copy of a set.
  corrupt = seq(0, 0,
    OPEN, 0, 63, 1,
    SET2, 0, 0, F(IN),
    SET2, 0, 6, F(IN | ONESHOT),
    WRITE, 6, 2,
    WAIT2, 0,
    CORRUPT, 0, 0, 0, CORRUPT, 0, 1, 3, CORRUPT, 0, 2, 4, CORRUPT, 0, 3, 0,
    CORRUPT, 0, 4, 1, CORRUPT, 0, 5, 0, CORRUPT, 0, 6, 0, CORRUPT, 0, 7, 5,
    CORRUPT, 0, 8, 3, CORRUPT, 0, 9, 9, CORRUPT, 0, 10, 0, CORRUPT, 0, 11, 0,
    CLOSE_FD, 0, 1,
    CORRUPT, 0, 11, 0),

  -- lep_open with no descriptor left (EMFILE), then with one.
  emfile = seq(0x40 | 3, 0,
    OPEN_EMFILE, 0, 63, 1,
    OPEN_EMFILE, 1, 0xfd, 15,
    OPEN, 0, 63, 1,
    OPEN_EMFILE, 0, 63, 1,
    SET, 0, 0, F(IN)),

  timeouts = seq(0, 0,
    TIMEOUT, 0, TIMEOUT, 5, TIMEOUT, 7, TIMEOUT, 11, TIMEOUT, 12,
    TIMEOUT, 17, TIMEOUT, 18, TIMEOUT, 19,
    TIMEOUT, 0x20, string.pack("<d", 0.0025),
    TIMEOUT, 0x20, string.pack("<d", 2147483.6474),
    TIMEOUT_INT, 5, TIMEOUT_INT, 6, TIMEOUT_INT, 3,
    TIMEOUT_INT, 0x10, string.pack("<i8", 1234)),

  small_buffer = seq(0, 0,
    OPEN, 2, 63, 0,
    SET, 2, 1, F(OUTF),
    SET, 2, 4, F(OUTF),
    SET, 2, 5, F(OUTF),
    SET, 2, 6, F(OUTF),
    WAIT, 2, WAIT, 2, WAIT, 2, WAIT, 2, WAIT, 2,
    WRITE, 1, 4, WRITE, 1, 4, WRITE, 1, 4,
    WAIT, 2,
    CLOSE_FD, 0, 0,
    WAIT, 2),

  lifecycle = seq(0x80, 0,
    WAIT, 0,
    SET, 0, 0, F(IN),
    REMOVE, 0, 0,
    CHECK, 0, 5,
    OPEN, 0, 0xff, 0, OPEN, 0, 0xfe, 0, OPEN, 0, 3, 0xff, OPEN, 0, 3, 0xfd,
    REINIT, 0, 1,
    OPEN, 0, 3, 0,
    OPEN, 0, 3, 0,
    SET, 0, 0, F(IN),
    SET, 0, 0x80, 200, F(IN),
    SET, 0, NUM(5000), F(IN),
    SET, 0, SPECIAL(0), F(IN),
    OPEN, 2, 0xfd, 3,
    SET, 2, 2, F(IN),
    CLOSE, 0,
    REINIT, 0, 0,
    OPEN, 0, 3, 0),
}

local names = {}
for name in pairs(seeds) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(seeds[name])
  f:close()
  print(string.format("%-14s %4d bytes", name, #seeds[name]))
end
