-- The rockspec, built offline with LuaRocks into a temporary tree, gives a
-- fresh lua5.4 every module it lists, from that tree.
local H = require "support.helpers"

local ROCKSPEC = "rockspec/lepoll-scm-1.rockspec"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
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
    ok, out = sh("cd '" .. tmp .. "/src' && luarocks --lua-version=5.4 make --tree '" .. tmp
      .. "/tree' " .. ROCKSPEC)
    assert(ok, out)
    assert.matches("lepoll scm%-1 is now installed", out)

    local spec = {}
    assert(loadfile(ROCKSPEC, "t", spec))()
    local names = {}
    for name in pairs(spec.build.modules) do names[#names + 1] = name end
    table.sort(names)
    assert.is_true(#names >= 1)

    -- Only the tree's paths and the system's: nothing of this checkout.
    local script = "for _, n in ipairs({ \"" .. table.concat(names, "\", \"") .. "\" }) do "
      .. "require(n) print(n, package.searchpath(n, package.cpath) "
      .. "or package.searchpath(n, package.path)) end"
    ok, out = sh("cd / && eval \"$(luarocks --lua-version=5.4 --tree '" .. tmp .. "/tree' path)\" "
      .. "&& lua5.4 -e '" .. script .. "'")
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
