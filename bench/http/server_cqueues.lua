-- bench/http/server_cqueues.lua: cqueues, a coroutine per connection.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local work = require "work"

local opts = work.options(arg)
local feed, new_state = work.feed, work.new_state
local cq = cqueues.new()
local server = socket.listen({ host = "127.0.0.1", port = 0, backlog = 1024 })
assert(server:listen())
local _, _, port = server:localname()

cq:wrap(function()
	for con in server:clients({ nodelay = true }) do
		cq:wrap(function()
			con:setmode("b", "bn")
			con:onerror(function(_, _, why) return why end)
			local st = new_state()
			while true do
				local data = con:read(-65536)
				if not data then break end
				local out = feed(st, data)
				if out == nil or (out ~= "" and not con:write(out)) or st.closing then break end
			end
			con:close()
		end)
	end
end)

if opts.stdin then
	local stdin = { pollfd = function() return 0 end, events = function() return "r" end }
	cq:wrap(function()
		while true do
			cqueues.poll(stdin)
			if io.stdin:read(1) == nil then os.exit(0) end
		end
	end)
end
work.ready(port)
assert(cq:loop())
