-- make install / make uninstall into a temporary DESTDIR, for the Lua under
-- test (make install LUA=...): its module directories, and that Lua loads
-- the installed module from there.
local H = require "support.helpers"

-- The version directory of the Lua under test: "5.1" for LuaJIT.
local V = _VERSION:match("^Lua (%d+%.%d+)$")

local sh = H.sh

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

  it(("puts everything where %s and C compilers look, and uninstall takes it back"):format(H.LUA),
    function()
      local make = "make -s LUA=" .. H.LUA .. " PREFIX=/usr/local DESTDIR='" .. root .. "' "
      local ok, out = sh(make .. "install")
      assert(ok, out)
      local expected = {
        "usr/local/include/lepoll.h",
        "usr/local/lib/liblepoll.a",
        "usr/local/lib/lua/" .. V .. "/lepoll.so",
      }
      -- Every Lua module under lua/, at its depth (lepoll/loop/heap.lua, ...).
      local _, mods = sh("cd lua && find . -name '*.lua'")
      for path in mods:gmatch("[^\n]+") do
        expected[#expected + 1] = "usr/local/share/lua/" .. V .. "/" .. path:gsub("^%./", "")
      end
      table.sort(expected)
      assert.are.same(expected, files_under(root))
      -- The module installed is this Lua's build.
      ok, out = sh("cmp '" .. H.BUILD .. "/lepoll.so' '" .. root .. "/usr/local/lib/lua/" .. V
        .. "/lepoll.so'")
      assert(ok, out)

      -- A plain interpreter finds the module there once DESTDIR is stripped:
      -- the directories are ones its default paths name under /usr/local.
      ok, out = sh(H.LUA .. [[ -e 'print(package.cpath:find("/usr/local/lib/lua/]] .. V
        .. [[/?.so", 1, true) ~= nil, package.path:find("/usr/local/share/lua/]] .. V
        .. [[/?.lua", 1, true) ~= nil)']])
      assert(ok, out)
      assert.are.equal("true\ttrue\n", out)
      -- Loaded from there, and only from there: package.searchpath where
      -- the interpreter has it (not 5.1), else the same search written out.
      local searchpath = H.SEARCHPATH_SRC
      ok, out = sh("LUA_CPATH='" .. root .. "/usr/local/lib/lua/" .. V .. "/?.so' LUA_PATH='" .. root
        .. "/usr/local/share/lua/" .. V .. "/?.lua' " .. H.LUA .. " -e \"" .. searchpath
        .. "local l = require 'lepoll' local loop = require 'lepoll.loop' "
        .. "print(l._VERSION, searchpath('lepoll', package.cpath), type(loop.new))\"")
      assert(ok, out)
      assert.matches("^lepoll %d+%.%d+%.%d+\t" .. root:gsub("%p", "%%%0")
        .. "/usr/local/lib/lua/" .. V:gsub("%p", "%%%0") .. "/lepoll.so\tfunction\n$", out)

      ok, out = sh(make .. "uninstall")
      assert(ok, out)
      assert.are.same({}, files_under(root))
    end)

  it("uses pkg-config's module directories for a prefix Lua searches", function()
    local args = " " .. H.LUA .. " " .. H.LUA
    local ok, out = sh("tools/lua-moddir cmod /usr" .. args .. " && tools/lua-moddir lmod /usr" .. args)
    assert(ok, out)
    local _, cmod = sh("pkg-config --variable=INSTALL_CMOD " .. H.LUA)
    local _, lmod = sh("pkg-config --variable=INSTALL_LMOD " .. H.LUA)
    assert.are.equal(cmod .. lmod, out)
    -- And the plain layout where pkg-config's is not searched.
    ok, out = sh("tools/lua-moddir cmod /opt/lepoll" .. args .. " && tools/lua-moddir lmod /opt/lepoll" .. args)
    assert(ok, out)
    assert.are.equal(("/opt/lepoll/lib/lua/%s\n/opt/lepoll/share/lua/%s\n"):format(V, V), out)
  end)
end)
