-- The example C host (examples/host): Lua embedded in C, lepoll linked
-- statically, a descriptor of the host's handed to a script, and the set
-- handed back and polled by the host with the C API. The host is built
-- against the Lua under test (make LUA=... $(BUILD)/host), into H.BUILD.
local H = require "support.helpers"

local HOST = H.BUILD .. "/host"
local unpack = table.unpack or rawget(_G, "unpack")

local run = H.run

describe("the example C host", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("hands its pipe to the script and dispatches the set the script returns", function()
    local out, ok, how, code = run(HOST .. " examples/host/script.lua 3")
    assert.are.same({ true, "exit", 0 }, { ok, how, code }, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(6, #lines, out)
    assert.matches("^script: watching the host's fd (%d+): epoll{fd=%d+, num_file_descrs=%d+, "
      .. "max_ready_events=256, flags_by_fd={%[%d+%]=\"in\"}, ready={}}$", lines[1])
    assert.are.same({
      "script: in: message 1",
      "script: in: message 2",
      "script: in: message 3",
      "script: the host closed its end",
      "host: the script's set is closed",
    }, { unpack(lines, 2) })
  end)

  it("embeds the Lua under test", function()
    local script = os.tmpname()
    finally(function() os.remove(script) end)
    local f = assert(io.open(script, "w"))
    -- on stderr, unbuffered as the host's own message
    f:write("local jit = rawget(_G, 'jit')\n"
      .. "io.stderr:write(_VERSION, '\\t', jit and jit.version or 'no jit', '\\n')\n")
    f:close()
    local out, ok, how, code = run(HOST .. " " .. script)
    assert.are.same({ nil, "exit", 1 }, { ok, how, code }, out)
    local jit = rawget(_G, "jit")
    assert.are.equal(("%s\t%s\nhost: script: the script returned no epoll set\n")
      :format(_VERSION, jit and jit.version or "no jit"), out)
  end)

  it("reports a script that returns no set, and exits non-zero", function()
    local script = os.tmpname()
    finally(function() os.remove(script) end)
    local f = assert(io.open(script, "w"))
    f:write("return 42, function() end\n")
    f:close()
    local out, ok, how, code = run(HOST .. " " .. script)
    assert.are.same({ nil, "exit", 1 }, { ok, how, code }, out)
    assert.are.equal("host: script: the script returned no epoll set\n", out)
  end)

  -- The documented C API: the LEPOLL_API functions src/lepoll.h declares,
  -- sorted, one a line.
  local function declared()
    local names = {}
    for line in io.lines("src/lepoll.h") do
      local decl = line:match("^%s*LEPOLL_API%s+([^%(]-)%s*%(")
      if decl then names[#names + 1] = decl:match("([%a_][%w_]*)$") end
    end
    table.sort(names)
    return table.concat(names, "\n") .. "\n"
  end

  it("exports the documented C API from the static library", function()
    local out = run("nm -g --defined-only " .. H.BUILD .. "/liblepoll.a | awk 'NF == 3 { print $3 }' | sort")
    -- The core's functions are hidden in the shared module but are linked
    -- from the archive; the documented names must be there.
    for name in declared():gmatch("[^\n]+") do
      assert.matches("\n" .. name .. "\n", "\n" .. out, nil, true)
    end
  end)

  it("exports exactly the documented C API from the shared module", function()
    local out = run("nm -D --defined-only " .. H.BUILD .. "/lepoll.so | awk '{ print $3 }' | sort")
    assert.is_truthy(declared():find("luaopen_lepoll\n", 1, true))
    assert.are.equal(declared(), out)
  end)
end)
