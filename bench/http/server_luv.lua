-- bench/http/server_luv.lua: luv (libuv), a read callback per chunk.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local uv = require "luv"
local work = require "work"

local opts = work.options(arg)
local feed, new_state = work.feed, work.new_state
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
assert(server:listen(1024, function(err)
	assert(not err, err)
	local client = uv.new_tcp()
	server:accept(client)
	client:nodelay(true)
	local st = new_state()
	client:read_start(function(rerr, data)
		if rerr or not data then
			client:close()
			return
		end
		local out = feed(st, data)
		if out == nil then
			client:close()
		elseif out ~= "" then
			if st.closing then
				client:write(out, function() client:close() end)
			else
				client:write(out)
			end
		end
	end)
end))

if opts.stdin then
	local stdin = uv.new_pipe(false)
	stdin:open(0)
	stdin:read_start(function(_, data) if not data then os.exit(0) end end)
end
work.ready(server:getsockname().port)
uv.run()
