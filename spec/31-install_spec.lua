-- make install / make uninstall into a temporary DESTDIR.
local H = require "support.helpers"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

local function files_under(dir)
  local _, out = sh("cd '" .. dir .. "' && find . -type f | sort")
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = line:sub(3) end
  return list
end

describe("make install", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  local root
  before_each(function()
    local ok, out = sh("mktemp -d")
    assert(ok, out)
    root = out:gsub("\n$", "")
  end)
  after_each(function() sh("rm -rf '" .. root .. "'") end)

  it("puts everything where Lua 5.4 and C compilers look, and uninstall takes it back", function()
    local ok, out = sh("make -s install PREFIX=/usr/local DESTDIR='" .. root .. "'")
    assert(ok, out)
    local expected = {
      "usr/local/include/lepoll.h",
      "usr/local/lib/liblepoll.a",
      "usr/local/lib/lua/5.4/lepoll.so",
    }
    local _, mods = sh("ls lua/lepoll/*.lua 2>/dev/null")
    for path in mods:gmatch("[^\n]+") do
      expected[#expected + 1] = "usr/local/share/lua/5.4/lepoll/" .. path:match("[^/]+$")
    end
    table.sort(expected)
    assert.are.same(expected, files_under(root))

    -- A plain lua5.4 finds the module there once DESTDIR is stripped: the
    -- directories are ones its default paths name under /usr/local.
    ok, out = sh([[lua5.4 -e 'print(package.cpath:find("/usr/local/lib/lua/5.4/?.so", 1, true) ~= nil,
      package.path:find("/usr/local/share/lua/5.4/?.lua", 1, true) ~= nil)']])
    assert(ok, out)
    assert.are.equal("true\ttrue\n", out)
    ok, out = sh("LUA_CPATH='" .. root .. "/usr/local/lib/lua/5.4/?.so' LUA_PATH='" .. root
      .. "/usr/local/share/lua/5.4/?.lua' lua5.4 -e 'local l = require \"lepoll\" "
      .. "print(l._VERSION, package.searchpath(\"lepoll\", package.cpath))'")
    assert(ok, out)
    assert.matches("^lepoll %d+%.%d+%.%d+\t" .. root:gsub("%p", "%%%0")
      .. "/usr/local/lib/lua/5.4/lepoll.so\n$", out)

    ok, out = sh("make -s uninstall PREFIX=/usr/local DESTDIR='" .. root .. "'")
    assert(ok, out)
    assert.are.same({}, files_under(root))
  end)

  it("uses pkg-config's module directories for a prefix Lua searches", function()
    local ok, out = sh("tools/lua-moddir cmod /usr && tools/lua-moddir lmod /usr")
    assert(ok, out)
    local _, cmod = sh("pkg-config --variable=INSTALL_CMOD lua5.4")
    local _, lmod = sh("pkg-config --variable=INSTALL_LMOD lua5.4")
    assert.are.equal(cmod .. lmod, out)
    -- And the plain layout where pkg-config's is not searched.
    ok, out = sh("tools/lua-moddir cmod /opt/lepoll && tools/lua-moddir lmod /opt/lepoll")
    assert(ok, out)
    assert.are.equal("/opt/lepoll/lib/lua/5.4\n/opt/lepoll/share/lua/5.4\n", out)
  end)
end)
