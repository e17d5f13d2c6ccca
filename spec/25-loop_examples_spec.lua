-- The examples, run as documented: examples/tail.lua following pipes (with
-- its heartbeat), and what `make demo` runs: examples/demo.lua (the core's
-- tour) and examples/roundtrip.lua. Each runs in a child process under
-- `timeout`, so that nothing can hang, under the interpreter that runs the
-- suite (H.LUA): the examples are written for every version.
local H = require "support.helpers"
local lepoll = require "lepoll"

local C = H.cleanups(function(fn) finally(fn) end)
local tmpname = C.tmpname -- a temporary path, removed when the test ends

local LUA = H.LUA
local quote, slurp = H.quote, H.slurp

-- The children find lepoll where this process does.
local ENV = H.CHILD_ENV

-- Runs a shell command; returns its stdout, its stderr and how it exited.
local function run(cmd)
  local err = tmpname()
  local p, close = H.popen(("%s 2>%s"):format(cmd, quote(err)))
  local out = p:read("*a")
  local how = { close() }
  return out, slurp(err), how
end

local EXIT_0 = { true, "exit", 0 }

-- `timeout 20 LUA examples/NAME.lua ARGS`, for a shell command line.
local function example(name, args)
  return ("%s timeout 20 %s examples/%s.lua%s"):format(ENV, LUA, name, args and " " .. args or "")
end

local function lines(s)
  local list = {}
  for line in s:gmatch("([^\n]*)\n") do list[#list + 1] = line end
  return list
end

-- A Lua example of doc/loop.md, the first after the text `lead`, as
-- printed there; before 5.4, without `<close>`, as that page says to write
-- it there.
local function loop_page_example(lead)
  local page = assert(io.open("doc/loop.md")):read("*a")
  local code = assert(page:match(lead .. ".-\n```lua\n(.-)```"), "no example after " .. lead)
  if not H.has.toclose then code = code:gsub("local l <close> = ", "local l = ") end
  return code
end

-- Echoes each message through the server at port, one connection per
-- message, then all the messages again on one connection, with a client
-- loop of two tasks per connection (one writes, one reads back and
-- compares). Returns the number of bytes that came back intact.
local function echo_through(port, messages)
  local socket = require "socket"
  local loop = require "lepoll.loop"
  local l = loop.new()
  local intact = 0
  local function converse(list)
    local c = assert(socket.tcp())
    c:settimeout(5)
    assert(c:connect("127.0.0.1", port))
    c:settimeout(0)
    local want = table.concat(list)
    local writer = l:spawn(function()
      local i = 1
      while i <= #want do
        local last, err, partial = c:send(want, i)
        assert(err == nil or err == "timeout", err)
        i = (last or partial) + 1
        if i <= #want then assert(l:writable(c, 10), "the server stopped reading") end
      end
    end)
    l:spawn(function()
      local got, n = {}, 0
      while n < #want do
        if not c:dirty() then assert(l:readable(c, 10), "no echo for 10 s") end
        local data, err, partial = c:receive(65536)
        data = data or partial
        assert(err == nil or err == "timeout", err)
        got[#got + 1] = data
        n = n + #data
      end
      assert(writer:join(10))
      assert(table.concat(got) == want, "the echo differs from what was sent")
      intact = intact + n
      c:close()
    end)
  end
  for _, m in ipairs(messages) do converse({ m }) end
  converse(messages)
  local deadline = lepoll.now() + 60
  while l:run("once") do assert(lepoll.now() < deadline, "the echoes took over 60 s") end
  l:close()
  return intact
end

describe("the examples", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  describe("tail", function()
    it("prints lines as they come, partial lines too, with a heartbeat while it waits", function()
      -- The writer pauses 0.3 s after a line, after two, and in the middle
      -- of one; heartbeats come every 0.05 s.
      local input = "one\ntwo\nthree\npartial\nlast, no newline"
      local writer = "printf 'one\\n'; sleep 0.3; printf 'two\\nthree\\n'; sleep 0.3; printf 'par'; sleep 0.3; "
        .. "printf 'tial\\nlast, no newline'"
      local out, err, how = run(("{ %s; } | %s"):format(writer, example("tail", "0.05")))
      assert.are.same(EXIT_0, how, err)
      assert.are.equal(input, out) -- stdout is a copy of the input
      local report = lines(err)
      local reads = tonumber(table.remove(report):match("^tail: end of input: 5 lines, 38 bytes, (%d+) reads$"))
      assert.is_true(reads and reads >= 2 and reads <= 6, err) -- the writer wrote 5 times
      -- Every heartbeat, numbered from 1, tells the lines printed and the
      -- bytes read so far: states the input went through, in order.
      local seen, last_bytes = {}, 0
      for i, line in ipairs(report) do
        local n, nlines, nbytes = line:match("^tail: heartbeat (%d+): (%d+) lines, (%d+) bytes$")
        assert(n, "not a heartbeat: " .. line)
        assert.are.equal(i, tonumber(n))
        nlines, nbytes = tonumber(nlines), tonumber(nbytes)
        assert(nbytes >= last_bytes and nbytes <= #input, line)
        assert.are.equal(select(2, input:sub(1, nbytes):gsub("\n", "")), nlines, line)
        seen[nlines .. "/" .. nbytes] = true
        last_bytes = nbytes
      end
      -- The three pauses each saw heartbeats: after "one\n", after
      -- "three\n", and after "par", the loop not blocked by half a line.
      assert.is_true(seen["1/4"], err)
      assert.is_true(seen["3/14"], err)
      assert.is_true(seen["3/17"], err)
    end)

    it("reads in chunks: 1 MiB of lines in a few hundred reads at most", function()
      local out, err, how = run("yes 'a line of the input' | head -c 1048576 | " .. example("tail", "5"))
      assert.are.same(EXIT_0, how, err)
      assert.are.equal(("a line of the input\n"):rep(52429):sub(1, 1048576), out)
      local nlines, reads = err:match("^tail: end of input: (%d+) lines, 1048576 bytes, (%d+) reads\n$")
      assert.are.equal(52429, tonumber(nlines), err) -- the last one partial
      assert.is_true(tonumber(reads) <= 257, err) -- at least 4 KiB a read (a pipe's page), and the end
    end)

    it("ends at once on an empty pipe, before any heartbeat", function()
      local out, err, how = run("printf '' | " .. example("tail", "5"))
      assert.are.same({ "", "tail: end of input: 0 lines, 0 bytes, 1 read\n", EXIT_0 }, { out, err, how })
    end)

    it("follows a named pipe given as its path", function()
      local fifo = tmpname()
      os.remove(fifo)
      assert(os.execute("mkfifo " .. quote(fifo)))
      -- The writer opens the pipe under `timeout` too, and holds no end of
      -- the pipe `run` reads.
      local writer = ("timeout 20 sh -c 'exec >\"$0\"; printf \"alpha\\n\"; sleep 0.1; printf \"beta\\n\"' %s "
        .. ">/dev/null &"):format(quote(fifo))
      local out, err, how = run(("%s %s"):format(writer, example("tail", "5 " .. quote(fifo))))
      assert.are.same({ "alpha\nbeta\n", EXIT_0 }, { out, how })
      assert.matches("^tail: end of input: 2 lines, 11 bytes, [23] reads\n$", err)
    end)

    it("refuses what epoll cannot watch (a regular file), exiting 2", function()
      local path = tmpname()
      local f = assert(io.open(path, "w"))
      f:write("a regular file\n")
      f:close()
      local out, err, how = run(example("tail", "5 " .. quote(path)))
      assert.are.same({ "", { nil, "exit", 2 } }, { out, how })
      assert.matches("^tail: cannot follow " .. path:gsub("%p", "%%%0")
        .. ": lepoll: set fd %d+: Operation not permitted %(EPERM%)\n$", err)
    end)

    it("refuses a bad interval with its usage, exiting 2", function()
      local out, err, how = run("printf '' | " .. example("tail", "0"))
      assert.are.same({ "", ("usage: %s examples/tail.lua [interval [path]]\n"):format(LUA), { nil, "exit", 2 } },
        { out, err, how })
    end)
  end)

  -- The page's two echo servers: on wrapped sockets (its first example),
  -- and on the loop's own waits.
  local PAGE_EXAMPLES = {
    { "on wrapped sockets", "An echo server, a task per client" },
    { "on l:readable and l:writable", "### Waiting on descriptors yourself" },
  }
  for _, case in ipairs(PAGE_EXAMPLES) do
    describe("doc/loop.md's echo server " .. case[1], function()
      it("as printed, echoes messages of 1 byte to 1 MiB whole, LuaSocket's read-ahead included", function()
        local script = tmpname()
        local f = assert(io.open(script, "w"))
        f:write(loop_page_example(case[2]))
        f:close()
        -- A shell prints its pid, then becomes `timeout` running the example
        -- with stdout unbuffered (so its first line comes at once).
        local p = assert(io.popen(("echo $$; exec %s timeout 120 %s -e 'io.stdout:setvbuf(\"no\")' %s")
          :format(ENV, LUA, quote(script))))
        local pid = assert(tonumber(p:read("*l")), "no pid")
        local stopped = false
        finally(function()
          if not stopped then os.execute("kill " .. pid) end
          p:close()
        end)
        local port = tonumber((p:read("*l") or ""):match("^listening on port (%d+)$"))
        assert(port, "the example did not say its port")
        local messages, total = {}, 0
        for i, size in ipairs({ 1, 2, 100, 4095, 4096, 4097, 6000, 8192, 8193, 65536, 65537, 200000, 1048576 }) do
          messages[i] = (string.char(33 + i % 90) .. string.char(48 + i % 10)):rep(size):sub(1, size)
          total = total + size
        end
        assert.are.equal(2 * total, echo_through(port, messages))
        assert(os.execute("kill " .. pid))
        stopped = true
      end)
    end)
  end

  describe("demo", function()
    it("tours the core on a pipe and a TCP pair, printing the set, and exits 0", function()
      local out, err, how = run(example("demo"))
      assert.are.same({ "", EXIT_0 }, { err, how })
      local said = lines(out)
      assert.matches("^created      \tepoll{fd=%d+, num_file_descrs=%d+, max_ready_events=256, flags_by_fd={}, "
        .. "ready={}}$", said[1])
      assert.are.equal("closed       \tepoll{closed}", said[#said])
      local events = {}
      for _, line in ipairs(said) do
        local what = line:match("^               (.*)$")
        if what then events[#events + 1] = what end
      end
      -- The pipe's lines and the TCP exchange interleave as the kernel says.
      local pipe, tcp = {}, {}
      for _, what in ipairs(events) do
        table.insert(what:find("^pipe") and pipe or tcp, what)
      end
      assert.are.same({ "pipe said\tline one", "pipe said\tline two", "pipe closed by the child" }, pipe)
      assert.are.same({ "server got\tping", "client got\tpong", "client shut down its side" }, tcp)
    end)
  end)

  describe("roundtrip", function()
    it("runs the echo server and its clients in one process, prints what happened and exits 0", function()
      local out, err, how = run(example("roundtrip"))
      assert.are.same({ "", EXIT_0 }, { err, how })
      local port = out:match("^echo server listening on 127%.0%.0%.1:(%d+)\n")
      assert(port, out)
      assert.are.same({
        "echo server listening on 127.0.0.1:" .. port,
        'client 1: sent "hello, epoll", got "hello, epoll" back',
        "client 2: sent 4194304 bytes while reading, got every byte back, in order",
        "client 3: sent 3 lines and shut down its side, got 3 lines back, then the end",
        "server: 3 clients accepted, 0 connected",
        "client 4: sent data, read nothing and reset the connection: the server dropped it",
        "server: 4 clients accepted, 0 connected",
        "done",
      }, lines(out))
    end)
  end)
end)
