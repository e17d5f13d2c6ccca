-- The rockspec, built offline with LuaRocks into a temporary tree, gives a
-- fresh interpreter of the Lua under test every module it lists, from that
-- tree. LuaRocks knows LuaJIT as Lua 5.1 (--lua-version=5.1); Debian's
-- configuration for 5.1 names lua5.1's headers, so under LuaJIT the rock
-- is built with LuaJIT's (LUA_INCDIR, a LuaRocks variable) and loaded by
-- luajit.
local H = require "support.helpers"

local ROCKSPEC = "rockspec/lepoll-scm-1.rockspec"
local V = _VERSION:match("^Lua (%d+%.%d+)$")

local popen = H.popen

local function sh(cmd)
  local p, close = popen(cmd .. " 2>&1")
  local out = p:read("*a")
  local ok = close()
  return ok, out
end

-- The rockspec's fields, in a table of their own.
local function load_rockspec(path)
  local spec = {}
  if H.LUA_VERSION >= 502 then
    assert(loadfile(path, "t", spec))()
  else -- 5.1's loadfile takes no environment
    rawget(_G, "setfenv")(assert(loadfile(path)), spec)()
  end
  return spec
end

describe("the rockspec", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("installs with luarocks make, and every module it lists can be required", function()
    local ok, tmp = sh("mktemp -d")
    assert(ok, tmp)
    tmp = tmp:gsub("\n$", "")
    finally(function() sh("rm -rf '" .. tmp .. "'") end)
    -- Built from a copy: luarocks make leaves objects in the source tree.
    local out
    ok, out = sh("mkdir '" .. tmp .. "/src' && cp -r src lua rockspec '" .. tmp .. "/src/'")
    assert(ok, out)
    local vars = ""
    if H.JIT then
      ok, out = sh("pkg-config --cflags " .. H.LUA)
      assert(ok, out)
      vars = " LUA_INCDIR='" .. assert(out:match("%-I(%S+)"), out) .. "'"
    end
    ok, out = sh("cd '" .. tmp .. "/src' && luarocks --lua-version=" .. V .. " make --tree '" .. tmp
      .. "/tree' " .. ROCKSPEC .. vars)
    assert(ok, out)
    assert.matches("lepoll scm%-1 is now installed", out)
    if H.JIT then assert.matches(" %-I" .. vars:match("'(.*)'"):gsub("%p", "%%%0") .. " ", out) end

    local spec = load_rockspec(ROCKSPEC)
    local names = {}
    for name in pairs(spec.build.modules) do names[#names + 1] = name end
    table.sort(names)
    assert.is_true(#names >= 1)

    -- Only the tree's paths and the system's: nothing of this checkout.
    -- package.searchpath where the interpreter has it (not 5.1), else the
    -- same search written out.
    local script = "local searchpath = package.searchpath or function(name, path) "
      .. "for t in path:gmatch(\"[^;]+\") do local f = t:gsub(\"%?\", (name:gsub(\"%.\", \"/\"))) "
      .. "local h = io.open(f) if h then h:close() return f end end end "
      .. "for _, n in ipairs({ \"" .. table.concat(names, "\", \"") .. "\" }) do "
      .. "require(n) print(n, searchpath(n, package.cpath) "
      .. "or searchpath(n, package.path)) end"
    ok, out = sh("cd / && eval \"$(luarocks --lua-version=" .. V .. " --tree '" .. tmp .. "/tree' path)\" "
      .. "&& " .. H.LUA .. " -e '" .. script .. "'")
    assert(ok, out)
    local n = 0
    for name, where in out:gmatch("([^\t\n]+)\t([^\n]+)") do
      n = n + 1
      assert.are.equal(names[n], name)
      assert.are.equal(tmp .. "/tree/", where:sub(1, #tmp + 6), where)
    end
    assert.are.equal(#names, n, out)
  end)
end)
