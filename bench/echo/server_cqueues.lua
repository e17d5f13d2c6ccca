-- bench/echo/server_cqueues.lua: the echo server on cqueues
-- (bench/echo.lua), as a cqueues user writes it: a coroutine per
-- connection reading what is there (read(-n): 1 to n bytes) and writing
-- it back, binary and unbuffered. Prints its port, then serves until
-- SIGTERM.
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local cq = cqueues.new()
local server = socket.listen("127.0.0.1", 0)
assert(server:listen()) -- binds now, so the port is known
local _, _, port = server:localname()

cq:wrap(function()
	for con in server:clients({ nodelay = true }) do
		cq:wrap(function()
			con:setmode("b", "bn")
			-- errors come back as values: a connection that fails just ends
			con:onerror(function(_, _, why) return why end)
			while true do
				local data = con:read(-4096)
				if not data or not con:write(data) then break end
			end
			con:close()
		end)
	end
end)

io.stdout:write(port, "\n")
io.stdout:flush()
assert(cq:loop())
