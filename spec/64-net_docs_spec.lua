-- doc/net.md's first example, as printed there, run by the interpreter
-- under test in a child process: a client and a server in one program.
local H = require "support.helpers"

local function page_example()
  local page = assert(io.open("doc/net.md")):read("*a")
  local code = page:match("A client and a server in one program.-\n```lua\n(.-)```")
  assert(code, "no example")
  return code
end

describe("doc/net.md's example", function()
  it("as printed, says hello and exits 0", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(page_example())
    f:close()
    local out, ok, how, code = H.run(("%s timeout 20 %s %s"):format(H.CHILD_ENV, H.LUA, H.quote(path)))
    os.remove(path)
    assert.are.equal("hello, world\n", out)
    if H.has.popen_status then assert.are.same({ true, "exit", 0 }, { ok, how, code }) end
  end)
end)
