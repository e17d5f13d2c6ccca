-- The rockspec, built offline with LuaRocks into a temporary tree, gives a
-- fresh interpreter of the Lua under test every module it lists, from that
-- tree. LuaRocks knows LuaJIT as Lua 5.1 (--lua-version=5.1); Debian's
-- configuration for 5.1 names lua5.1's headers, so under LuaJIT the rock
-- is built with LuaJIT's (LUA_INCDIR, a LuaRocks variable) and loaded by
-- luajit.
local H = require "support.helpers"

local ROCKSPEC = "rockspec/lepoll-scm-1.rockspec"
local V = _VERSION:match("^Lua (%d+%.%d+)$")

local sh = H.sh

-- The rockspec's fields, in a table of their own.
local function load_rockspec(path)
  local spec = {}
  assert(H.load_in(H.slurp(path), "@" .. path, spec))()
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

  it("lists every C source of the module and every Lua module of the checkout", function()
    local spec = load_rockspec(ROCKSPEC)
    local listed = {}
    for _, src in ipairs(spec.build.modules.lepoll.sources) do listed[src] = true end
    local ok, out = sh("ls src/core/*.c src/binding/*.c")
    assert(ok, out)
    for src in out:gmatch("[^\n]+") do
      assert.is_true(listed[src] == true, src .. " is missing from the rockspec's sources")
      listed[src] = nil
    end
    assert.are.same({}, listed)
    ok, out = sh("cd lua && find . -name '*.lua' | sort")
    assert(ok, out)
    for file in out:gmatch("[^\n]+") do
      local name = file:gsub("^%./", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.are.equal("lua/" .. file:gsub("^%./", ""), spec.build.modules[name], name)
    end
  end)
end)
