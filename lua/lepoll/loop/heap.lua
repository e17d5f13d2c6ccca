-- lepoll.loop.heap: the loop's timers in a binary min-heap, ordered by
-- deadline, equal deadlines in the order they were pushed. Entries are any
-- tables with the fields deadline, seq (push order) and hidx (the entry's
-- index, false when not in the heap); the heap is itself an array,
-- h[1..h.n].
--
-- Memory errors: push makes its one allocation (the array's next cell)
-- and both make their one call (a sift) before they change anything, and
-- change nothing afterwards that can fail: either they complete or the
-- heap is as it was.
local floor = math.floor
local setmetatable, format = setmetatable, string.format

local Heap = {}
Heap.__index = Heap

local M = {}

function M.new()
  return setmetatable({ n = 0, seq = 0 }, Heap)
end

-- A new entry's fields, for tables that are to be pushed: made at once so
-- that pushing them never adds a field.
function M.entry(t)
  t.deadline, t.seq, t.hidx = 0, 0, false
  return t
end

-- Moves t up from cell i; the comparisons are inline (no calls).
local function sift_up(h, i, t)
  local d, s = t.deadline, t.seq
  while i > 1 do
    local p = floor(i / 2)
    local pt = h[p]
    local pd = pt.deadline
    if not (d < pd or (d == pd and s < pt.seq)) then break end
    h[i] = pt
    pt.hidx = i
    i = p
  end
  h[i] = t
  t.hidx = i
end

-- Moves t down from cell i of a heap of n entries.
local function sift_down(h, n, i, t)
  local d, s = t.deadline, t.seq
  while true do
    local c = i * 2
    if c > n then break end
    local ct = h[c]
    if c < n then
      local c2 = h[c + 1]
      local cd, d2 = ct.deadline, c2.deadline
      if d2 < cd or (d2 == cd and c2.seq < ct.seq) then c, ct = c + 1, c2 end
    end
    local cd = ct.deadline
    if not (cd < d or (cd == d and ct.seq < s)) then break end
    h[i] = ct
    ct.hidx = i
    i = c
  end
  h[i] = t
  t.hidx = i
end

-- Schedules t (not in the heap) at deadline, after every entry with the
-- same deadline; with seq (an entry's earlier place), back in that place.
function Heap:push(t, deadline, seq)
  local n = self.n + 1
  self[n] = t -- the one allocation, undone: the cell past the end exists
  self[n] = nil
  local next_seq = self.seq
  if not seq then seq, next_seq = next_seq, next_seq + 1 end
  t.deadline, t.seq = deadline, seq
  sift_up(self, n, t)
  self.seq, self.n = next_seq, n
end

-- Takes t, which is in the heap, out of it.
function Heap:remove(t)
  local i, n = t.hidx, self.n
  local last = self[n]
  if i < n then
    local p = floor(i / 2)
    local pt = self[p]
    local ld = last.deadline
    if i > 1 and (ld < pt.deadline or (ld == pt.deadline and last.seq < pt.seq)) then
      sift_up(self, i, last)
    else
      sift_down(self, n - 1, i, last)
    end
  end
  self[n] = nil
  self.n = n - 1
  t.hidx = false
end

-- The first entry, or nil.
function Heap:peek()
  return self[1]
end

function Heap:clear()
  for i = 1, self.n do
    self[i].hidx = false
    self[i] = nil
  end
  self.n = 0
end

-- nil when every entry is in its place, else what is wrong.
function Heap:check()
  for i = 1, self.n do
    local t = self[i]
    if t == nil or t.hidx ~= i then return format("timer heap entry %d misplaced", i) end
    if i > 1 then
      local p = self[floor(i / 2)]
      if t.deadline < p.deadline or (t.deadline == p.deadline and t.seq < p.seq) then
        return format("timer heap order broken at %d", i)
      end
    end
  end
  if self[self.n + 1] ~= nil then return "timer heap holds entries past its end" end
  return nil
end

return M
