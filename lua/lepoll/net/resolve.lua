-- lepoll.net.resolve: host names to addresses without blocking the loop.
-- The lookups run on lepoll.resolver's threads. A loop has a resolver
-- while lookups are under way, made by the first and closed once none is
-- left (so that a loop holds no descriptor and no thread for names when it
-- is not resolving any, and an idle resolver never keeps run going); the
-- loop watches its descriptor meanwhile. The task that asked waits on a
-- condition until its answer comes. Addresses given as addresses (IPv4 or
-- IPv6 literals) never reach it.
local lepoll = require "lepoll"

local M = {}

local type, error, next, setmetatable = type, error, next, setmetatable
local format, find = string.format, string.find

-- Per loop, while lookups are under way: { resolver, watcher, lookups (id
-- -> the lookup's record) }. Weak keys: it goes with its loop.
local by_loop = setmetatable({}, { __mode = "k" })

-- Once no lookup is under way: the watcher stopped, the resolver closed
-- (a lookup still running on a thread finishes there, unheard).
local function release_if_idle(l, st)
  if next(st.lookups) ~= nil then return end
  st.watcher:stop()
  st.resolver:close()
  if by_loop[l] == st then by_loop[l] = nil end
end

-- The answers waiting, each to its lookup's task.
local function deliver(l, st)
  local r = st.resolver
  while true do
    local id, addresses, message = r:take()
    if not id then break end
    local lookup = st.lookups[id]
    if lookup then
      st.lookups[id] = nil
      lookup.addresses, lookup.message, lookup.done = addresses, message, true
      lookup.cond:signal()
    end
  end
  release_if_idle(l, st)
end

local function state(l)
  local st = by_loop[l]
  if st then return st end
  st = { resolver = lepoll.resolver(), watcher = false, lookups = {} }
  st.watcher = l:io(st.resolver, "in", function() deliver(l, st) end)
  by_loop[l] = st
  return st
end

-- Whether host is an address rather than a name (what inet_pton takes:
-- four dotted decimals, or an IPv6 form with colons).
local function literal(host)
  if find(host, "^%d+%.%d+%.%d+%.%d+$") then return "inet" end
  if find(host, ":", 1, true) and find(host, "^[%x:.]+$") then return "inet6" end
  return nil
end
M.literal = literal

-- addresses(l, host [, family [, timeout]]) in a task of l: -> an array of
-- { family = "inet" | "inet6", address = TEXT }, or nil and the error
-- (getaddrinfo's message, "timeout", or the loop's "closed").
-- The caller checked the arguments.
function M.addresses(l, host, family, timeout)
  local kind = literal(host)
  if kind then
    if family and family ~= "any" and family ~= kind then
      return nil, "Address family for hostname not supported" -- getaddrinfo's words (EAI_ADDRFAMILY)
    end
    return { { family = kind, address = host } }
  end
  if host == "" then return nil, "host name is empty" end
  local st = state(l)
  local id, err = st.resolver:submit(host, family or "any")
  if not id then
    release_if_idle(l, st)
    return nil, err
  end
  local lookup = { cond = l:condition(), done = false, addresses = nil, message = nil }
  st.lookups[id] = lookup
  local ok, why = lookup.cond:wait(timeout)
  if not lookup.done then
    -- Timed out (or woken otherwise): the lookup is forgotten.
    st.lookups[id] = nil
    st.resolver:cancel(id)
    release_if_idle(l, st)
    return nil, why or "timeout"
  end
  if not ok and why then return nil, why end
  if lookup.addresses then return lookup.addresses end
  return nil, lookup.message
end

local FAMILIES = { any = true, inet = true, inet6 = true }

-- l:resolve(host [, family [, timeout]]) in a task: addresses, checked.
function M.resolve(l, host, family, timeout)
  if not l:running() then
    error("resolve must be called from a task of the loop (see spawn)", 3)
  end
  if type(host) ~= "string" then
    error(format("bad argument #1 to 'resolve' (host name expected, got %s)", type(host)), 3)
  end
  if family ~= nil and not FAMILIES[family] then
    error(format("bad argument #2 to 'resolve' (\"any\", \"inet\" or \"inet6\" expected, got %s)",
      type(family) == "string" and "'" .. family .. "'" or type(family)), 3)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    error(format("bad argument #3 to 'resolve' (timeout (seconds) expected, got %s)", type(timeout)), 3)
  end
  if find(host, "\0", 1, true) then error("bad argument #1 to 'resolve' (host name contains a zero byte)", 3) end
  if timeout and timeout < 0 then timeout = nil end -- as LuaSocket's: no limit
  local addresses, err = M.addresses(l, host, family, timeout)
  return addresses, err
end

return M
