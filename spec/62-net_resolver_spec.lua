-- Host names resolved without blocking: lepoll.resolver (worker threads,
-- answers on an eventfd) and l:resolve on top of it. Each case runs in a
-- child interpreter with build/spec/libslowdns.so preloaded
-- (spec/support/slowdns.c), so that lookups take a known time and fail on
-- request: "msN.slow.test" is 127.0.0.1 after N ms, "failN.slow.test"
-- does not exist (EAI_NONAME) after N ms. No lookup leaves the machine.
local H = require "support.helpers"

local SLOWDNS = H.BUILD .. "/spec/libslowdns.so"

-- Runs src (Lua, with `lepoll`, `loop`, `now`, `T` and `check` defined)
-- in a child interpreter, bounded to 30 s; its output must end with "ok".
-- -> the output.
local PRELUDE = [[
local lepoll = require "lepoll"
local loop = require "lepoll.loop"
local T = require "lepoll_test"
local now = lepoll.now
local function check(cond, ...)
  if not cond then io.stderr:write("check failed: ", string.format(...), "\n") os.exit(1) end
end
]]

local function child(src)
  local f = assert(io.open(SLOWDNS, "rb"), SLOWDNS .. " is missing: make test builds it (mk/faults.mk)")
  f:close()
  local path = os.tmpname()
  local out = assert(io.open(path, "w"))
  out:write(PRELUDE, src, '\nio.write("ok\\n")\n')
  out:close()
  local output = H.run(("%s %s timeout 30 %s %s"):format(H.CHILD_ENV, H.preload(SLOWDNS), H.LUA, H.quote(path)))
  os.remove(path)
  assert.matches("ok\n$", output, 1)
  return output
end

describe("lepoll.resolver", function()
  it("answers lookups on its descriptor: addresses, or getaddrinfo's error", function()
    child [[
      local r = lepoll.resolver()
      check(tostring(r):match("^resolver{fd=%d+, pending=0, answers=0, threads=0}$"), "%s", tostring(r))
      local ep = lepoll.create()
      ep:set(r, "in")
      local a = r:submit("ms10.slow.test")
      local b = r:submit("fail10.slow.test")
      local c = r:submit("localhost", "inet")
      check(math.type == nil or math.type(a) == "integer", "id %s", tostring(a))
      local answers, n = {}, 0
      local deadline = now() + 10
      while n < 3 and now() < deadline do
        ep:wait(1)
        while true do
          local id, addresses, message, name = r:take()
          if not id then break end
          answers[id] = { addresses = addresses, message = message, name = name }
          n = n + 1
        end
      end
      check(n == 3, "%d answers", n)
      check(answers[a].addresses[1].address == "127.0.0.1" and answers[a].addresses[1].family == "inet", "a")
      check(answers[b].addresses == nil and answers[b].name == "EAI_NONAME"
        and type(answers[b].message) == "string" and #answers[b].message > 0, "b: %s", tostring(answers[b].message))
      check(answers[c].addresses[1].address == "127.0.0.1", "localhost")
      -- the descriptor is quiet again once every answer is taken
      check(ep:wait(0) == "timeout", "still readable")
      check(r:take() == nil, "an answer too many")
      r:close()
    ]]
  end)

  it("runs lookups side by side, up to max_threads, and the loop goes on meanwhile", function()
    local out = child [[
      -- four lookups of 300 ms on four threads: about 300 ms in all
      local l = loop.new()
      local ticks, done, t0 = 0, 0, now()
      local tick = l:timer(0.01, function() ticks = ticks + 1 end, 0.01)
      for _ = 1, 4 do
        l:spawn(function()
          local addresses = assert(l:resolve("ms300.slow.test"))
          check(addresses[1].address == "127.0.0.1", "address")
          done = done + 1
        end)
      end
      while done < 4 and now() - t0 < 10 do l:step(1) end
      local took = now() - t0
      check(done == 4, "%d done", done)
      check(took < 1.0, "four lookups took %.3f s", took)
      check(ticks >= 15, "the loop ticked %d times", ticks)
      tick:stop()
      l:close()
      -- one thread: two lookups of 200 ms one after the other
      local r = lepoll.resolver(1)
      local ep = lepoll.create()
      ep:set(r, "in")
      t0 = now()
      r:submit("ms200.slow.test")
      r:submit("ms200.slow.test")
      local _, _, threads = r:counts()
      check(threads == 1, "%d threads", threads)
      local got = 0
      while got < 2 and now() - t0 < 10 do
        ep:wait(1)
        while r:take() do got = got + 1 end
      end
      took = now() - t0
      check(got == 2 and took >= 0.39, "two lookups on one thread took %.3f s", took)
      r:close()
      print(("took %.3f"):format(took))
    ]]
    assert.matches("took", out)
  end)

  it("forgets a lookup that timed out or was cancelled", function()
    child [[
      local l = loop.new()
      local result
      l:spawn(function()
        local t0 = now()
        local a, err = l:resolve("ms3000.slow.test", nil, 0.1)
        result = { a, err, now() - t0 }
      end)
      while not result do l:step(1) end
      check(result[1] == nil and result[2] == "timeout" and result[3] < 1, "%s %s %s", tostring(result[1]),
        tostring(result[2]), tostring(result[3]))
      -- nothing keeps the loop alive once the lookup is forgotten
      check(l:run() == false, "the loop is still alive")
      l:close()
      local r = lepoll.resolver(1)
      local first = r:submit("ms300.slow.test")
      local queued = r:submit("ms10.slow.test")
      check(r:cancel(queued) == true, "cancel queued")
      check(r:cancel(first) == true, "cancel under way")
      check(r:cancel(12345) == false, "cancel unknown")
      local pending = r:counts()
      check(pending == 0, "%d pending", pending)
      local ep = lepoll.create()
      ep:set(r, "in")
      check(ep:wait(0.5) == "timeout", "a cancelled lookup answered")
      r:close()
    ]]
  end)

  it("closes with lookups under way, and the program ends cleanly, its descriptors back", function()
    child [[
      local before = T.fdcount()
      local r = lepoll.resolver()
      for _ = 1, 3 do r:submit("ms500.slow.test") end
      local fd = r:getfd()
      r:close()
      r:close() -- twice is allowed
      check(r:getfd() == -1, "getfd after close")
      check(tostring(r) == "resolver{closed}", "%s", tostring(r))
      check(T.fdcount() == before, "descriptors %d -> %d", before, T.fdcount())
      check(not T.cloexec(fd) or fd ~= fd, "the eventfd is still open")
      local ok, err = pcall(r.submit, r, "x")
      check(not ok and err:match("attempt to use a closed resolver"), "%s", tostring(err))
      -- and a resolver left to the collector with lookups under way
      local r2 = lepoll.resolver()
      r2:submit("ms500.slow.test")
      r2 = nil
      collectgarbage()
      collectgarbage()
      check(T.fdcount() == before, "descriptors after collection %d -> %d", before, T.fdcount())
      -- the state closes (and unloads its C modules) with a lookup running
      local r3 = lepoll.resolver()
      r3:submit("ms300.slow.test")
    ]]
  end)

  it("refuses bad arguments with clear errors", function()
    child [[
      local r = lepoll.resolver()
      local function err_of(f, ...) local ok, e = pcall(f, ...) check(not ok, "no error") return e end
      check(err_of(r.submit, r):match("bad argument #2 to '.-' %(string expected, got no value%)"), "%s",
        err_of(r.submit, r))
      check(err_of(r.submit, r, "x", "ipx"):match("invalid option 'ipx'"), "%s", err_of(r.submit, r, "x", "ipx"))
      check(err_of(r.submit, r, "a\0b"):match("host name contains a zero byte"), "zero byte")
      check(err_of(lepoll.resolver, 0):match("max_threads"), "%s", err_of(lepoll.resolver, 0))
      check(err_of(lepoll.resolver, 65):match("max_threads"), "%s", err_of(lepoll.resolver, 65))
      check(err_of(r.take, {}):match("lepoll.resolver expected"), "%s", err_of(r.take, {}))
      local l = loop.new()
      check(err_of(l.resolve, l, "localhost"):match("resolve must be called from a task of the loop"), "outside")
      local done
      l:spawn(function()
        check(err_of(l.resolve, l, 42):match("bad argument #1 to 'resolve' %(host name expected, got number%)"), "42")
        check(err_of(l.resolve, l, "x", "ipx"):match("bad argument #2 to 'resolve'"), "family")
        check(err_of(l.resolve, l, "x", nil, "soon"):match("bad argument #3 to 'resolve'"), "timeout")
        local a, e = l:resolve("fail20.slow.test")
        check(a == nil and type(e) == "string" and #e > 0, "failure: %s", tostring(e))
        local b = assert(l:resolve("::1"))
        check(b[1].family == "inet6" and b[1].address == "::1", "literal")
        done = true
      end)
      while not done do l:step(1) end
      l:close()
      r:close()
    ]]
  end)

  it("belongs to the process that made it: a forked child is refused, the parent goes on", function()
    child [[
      local r = lepoll.resolver()
      r:submit("ms10.slow.test") -- a thread exists at the fork
      local pid = T.fork()
      if pid == 0 then
        local id, message, name = r:submit("ms10.slow.test")
        local code = (id == nil and name == "ECHILD") and 0 or 1
        r:close()
        T._exit(code)
      end
      local how, code = T.waitpid(pid)
      check(how == "exit" and code == 0, "the child's submit: %s %s", tostring(how), tostring(code))
      local ep = lepoll.create()
      ep:set(r, "in")
      r:submit("ms10.slow.test")
      local got, t0 = 0, now()
      while got < 2 and now() - t0 < 5 do
        ep:wait(1)
        while r:take() do got = got + 1 end
      end
      check(got == 2, "the parent got %d answers", got)
      r:close()
    ]]
  end)
end)
