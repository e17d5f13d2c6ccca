-- lepoll.loop.heap: the loop's timers in a binary min-heap, ordered by
-- deadline, equal deadlines in the order they were pushed. Entries are any
-- tables; the heap gives each its deadline, seq (push order) and hidx (its
-- index, nil when not in the heap). The heap is itself an array, h[1..h.n].
local floor = math.floor
local setmetatable, format = setmetatable, string.format

local Heap = {}
Heap.__index = Heap

local M = {}

function M.new()
  return setmetatable({ n = 0, seq = 0 }, Heap)
end

-- a comes before b.
local function less(a, b)
  local da, db = a.deadline, b.deadline
  return da < db or (da == db and a.seq < b.seq)
end

local function sift_up(h, i, t)
  while i > 1 do
    local p = floor(i / 2)
    local pt = h[p]
    if not less(t, pt) then break end
    h[i] = pt
    pt.hidx = i
    i = p
  end
  h[i] = t
  t.hidx = i
end

local function sift_down(h, n, i, t)
  while true do
    local c = i * 2
    if c > n then break end
    local ct = h[c]
    if c < n then
      local c2 = h[c + 1]
      if less(c2, ct) then c, ct = c + 1, c2 end
    end
    if not less(ct, t) then break end
    h[i] = ct
    ct.hidx = i
    i = c
  end
  h[i] = t
  t.hidx = i
end

-- Schedules t at deadline, after every entry with the same deadline.
function Heap:push(t, deadline)
  local seq = self.seq
  self.seq = seq + 1
  t.deadline, t.seq = deadline, seq
  local n = self.n + 1
  self.n = n
  sift_up(self, n, t)
end

-- Takes t, which is in the heap, out of it.
function Heap:remove(t)
  local i, n = t.hidx, self.n
  local last = self[n]
  self[n] = nil
  self.n = n - 1
  t.hidx = nil
  if i < n then
    if i > 1 and less(last, self[floor(i / 2)]) then
      sift_up(self, i, last)
    else
      sift_down(self, n - 1, i, last)
    end
  end
end

-- The first entry, or nil.
function Heap:peek()
  return self[1]
end

function Heap:clear()
  for i = 1, self.n do
    self[i].hidx = nil
    self[i] = nil
  end
  self.n = 0
end

-- nil when every entry is in its place, else what is wrong.
function Heap:check()
  for i = 1, self.n do
    local t = self[i]
    if t == nil or t.hidx ~= i then return format("timer heap entry %d misplaced", i) end
    if i > 1 and less(t, self[floor(i / 2)]) then return format("timer heap order broken at %d", i) end
  end
  if self[self.n + 1] ~= nil then return "timer heap holds entries past its end" end
  return nil
end

return M
