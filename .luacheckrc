-- luacheck configuration (make lint): Lua 5.4 everywhere, busted's
-- globals in the specs, the embedding host's global in its script.
std = "lua54"
-- Files here are only checked when named on the command line; the .luarocks
-- tree luarocks make may leave is not ours.
exclude_files = { ".luarocks/**", "build/**" }

files["spec/"] = { std = "+busted" }
files["examples/host/script.lua"] = { globals = { "host" } }
