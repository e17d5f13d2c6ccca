-- The documentation against the code. The public names are found at run
-- time, so that whatever is added later is covered without a list to keep:
--   - every function of the `lepoll` module table, and its other public
--     fields (the flag constants);
--   - every method of an epoll set (the __index of its metatable), and of
--     a signal set;
--   - every function of `lepoll.loop`, and every method of a loop, an I/O
--     watcher, a timer and a task (real ones, made on a pipe and closed);
--   - every method of a waker (lepoll.waker());
--   - every LEPOLL_API function declared in src/lepoll.h.
-- Names starting with "_" (_VERSION) and metamethods are not functions to
-- document; the metamethods are checked apart, as behaviours.
--
-- What "documented" means:
--   - a function or method has an entry in one of the doc/*.md pages: a
--     code span in call form, RECEIVER.NAME(...) or RECEIVER:NAME(...),
--     that is bold (**`set:wait([timeout])`**) or in a heading. The
--     receivers are the names the pages use: `lepoll.` for the module,
--     `set:` for a set, `sigs:` for a signal set, `loop.` for
--     lepoll.loop, `l:`, `w:`, `t:` and `task:` for a loop, a watcher, a
--     timer and a task, `waker:` for a waker;
--   - another public field of the module (a constant) appears as a code
--     span `lepoll.NAME` (the flags table of doc/reference.md);
--   - a C function appears in a code span of doc/embedding.md as NAME(
--     (its prototype in the C API table);
--   - a metamethod is described on the object's page: __tostring as
--     `tostring(RECEIVER)`, __len as `#RECEIVER`, __pairs as
--     `pairs(RECEIVER)`, __close by `<close>`, __gc by "collected"
--     (__index and __name are mechanics, not behaviours). A metamethod
--     the table below does not know fails until it is added there.
-- Code in fenced blocks does not count. Each check fails with the list of
-- every name it misses.
--
-- The links: every relative link of README.md and doc/*.md must name an
-- existing file and, with a #fragment, an existing heading of that file
-- (anchors as GitHub makes them from the heading's text).
local lepoll = require "lepoll"
local loop = require "lepoll.loop"
local H = require "support.helpers"
local T = H.T

local PAGES_DIR = "doc"

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a") -- "*a": 5.1 and LuaJIT know no "a"
  f:close()
  return text
end

-- The doc/*.md pages, by file name.
local function page_names()
  local names = {}
  local p = assert(io.popen("ls -1 " .. PAGES_DIR))
  for name in p:lines() do
    if name:match("%.md$") then names[#names + 1] = name end
  end
  p:close()
  table.sort(names)
  return names
end

-- The text without its fenced code blocks (``` or ~~~ fences), so that
-- code shown there neither documents anything nor links anywhere.
local function prose(text)
  local out, fence = {}, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local mark = line:match("^%s*(```+)") or line:match("^%s*(~~~+)")
    if fence then
      if mark and mark:sub(1, 1) == fence:sub(1, 1) and #mark >= #fence then fence = nil end
      out[#out + 1] = ""
    elseif mark then
      fence = mark
      out[#out + 1] = ""
    else
      out[#out + 1] = line
    end
  end
  return table.concat(out, "\n")
end

-- The code spans of a text (already without fenced blocks): a list of
-- { code = content, bold = true/false, heading = true/false }. A span
-- opens with a run of backticks and closes with a run of the same length;
-- it may go on across a line break.
local function code_spans(text)
  local spans, pos = {}, 1
  while true do
    local s, e = text:find("`+", pos)
    if not s then break end
    local run = e - s + 1
    local close_s, close_e
    local from = e + 1
    while true do
      local cs, ce = text:find("`+", from)
      if not cs then break end
      if ce - cs + 1 == run then close_s, close_e = cs, ce break end
      from = ce + 1
    end
    if not close_s then
      pos = e + 1
    else
      local code = text:sub(e + 1, close_s - 1):gsub("\n", " ")
      if code:match("^ .* $") then code = code:sub(2, -2) end
      local line_start = s
      while line_start > 1 and text:sub(line_start - 1, line_start - 1) ~= "\n" do
        line_start = line_start - 1
      end
      spans[#spans + 1] = {
        code = code,
        bold = text:sub(s - 2, s - 1) == "**" and text:sub(close_e + 1, close_e + 2) == "**",
        heading = text:sub(line_start, line_start) == "#",
      }
      pos = close_e + 1
    end
  end
  return spans
end

-- Every page once: name -> { text = prose, spans = code spans }.
local pages
local function doc_pages()
  if not pages then
    pages = {}
    for _, name in ipairs(page_names()) do
      local text = prose(assert(slurp(PAGES_DIR .. "/" .. name)))
      pages[name] = { text = text, spans = code_spans(text) }
    end
  end
  return pages
end

-- Whether path names something that can be opened (a file, a directory).
local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function escape(s) return (s:gsub("%p", "%%%0")) end

-- Whether some page has an entry RECEIVER .. sep .. NAME(...) (sep "." or
-- ":"), bold or in a heading.
local function has_entry(qualified)
  local pattern = "^" .. escape(qualified) .. "%s*%("
  for _, page in pairs(doc_pages()) do
    for _, span in ipairs(page.spans) do
      if (span.bold or span.heading) and span.code:match(pattern) then return true end
    end
  end
  return false
end

-- Whether some page shows `qualified` as a code span of its own, or at
-- the start of one followed by no further name character.
local function has_span(qualified)
  local pattern = "^" .. escape(qualified) .. "[^%w_]"
  for _, page in pairs(doc_pages()) do
    for _, span in ipairs(page.spans) do
      if span.code == qualified or span.code:match(pattern) then return true end
    end
  end
  return false
end

-- The public functions of a table, sorted: no "_" names.
local function functions_of(t)
  local names = {}
  for k, v in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) == "function" then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  return names
end

-- The methods of an object: the functions of its metatable's __index.
local function methods_of(obj)
  local mt = getmetatable(obj)
  assert.are.equal("table", type(mt))
  assert.are.equal("table", type(mt.__index), "methods are expected in a table __index")
  return functions_of(mt.__index)
end

-- What a test found missing: lines of the message it fails with, so that
-- one failure lists everything.
local function report()
  local lines = {}
  return {
    add = function(line) lines[#lines + 1] = line end,
    check = function()
      assert.is_true(#lines == 0, "\n  " .. table.concat(lines, "\n  "))
    end,
  }
end

-- Adds to rep every name that `documented` refuses; `what` says what was
-- looked for. At least one name must have been found at all.
local function all_documented(rep, names, documented, what)
  assert.is_true(#names > 0, "nothing found to check: " .. what)
  local missing = {}
  for _, name in ipairs(names) do
    if not documented(name) then missing[#missing + 1] = name end
  end
  if #missing > 0 then
    rep.add(("not documented in %s/ (%s): %s"):format(PAGES_DIR, what, table.concat(missing, ", ")))
  end
end

-- Entries RECEIVER .. sep .. NAME(...) for every name.
local function entries(rep, receiver, sep, names)
  local qualified = {}
  for i, name in ipairs(names) do qualified[i] = receiver .. sep .. name end
  all_documented(rep, qualified, has_entry,
    ("each needs an entry **`%s%sNAME(...)`** or a heading with it"):format(receiver, sep))
end

-- How a metamethod is described on a page, for an object called receiver;
-- false for mechanics that are no behaviour.
local DESCRIBED = {
  __index = false,
  __name = false,
  __metatable = false,
  __tostring = function(r) return "`tostring(" .. r .. ")`" end,
  __len = function(r) return "`#" .. r .. "`" end,
  __pairs = function(r) return "`pairs(" .. r .. ")`" end,
  __close = function() return "<close>" end,
  __gc = function() return "collected" end,
}

-- Every metamethod of obj's metatable described on the page.
local function metamethods_described(rep, obj, receiver, page)
  local text = slurp(PAGES_DIR .. "/" .. page)
  assert(text, PAGES_DIR .. "/" .. page .. " is missing")
  local missing = {}
  for k in pairs(getmetatable(obj)) do
    if type(k) == "string" and k:sub(1, 2) == "__" then
      local how = DESCRIBED[k]
      if how == nil then
        missing[#missing + 1] = k .. " (unknown to DESCRIBED in spec/50-docs_spec.lua: add how it reads)"
      elseif how and not text:find(how(receiver), 1, true) then
        missing[#missing + 1] = ("%s (%s)"):format(k, how(receiver))
      end
    end
  end
  table.sort(missing)
  if #missing > 0 then
    rep.add(("metamethods of %s not described in %s/%s: %s"):format(receiver, PAGES_DIR, page,
      table.concat(missing, ", ")))
  end
end

-- A loop with one of each kind of object, all closed by the caller's
-- cleanup: the loop, a watcher on a pipe, a timer, a task and a signal
-- watcher.
local function loop_objects(cleanup)
  local r, w = assert(T.pipe())
  local l = loop.new()
  cleanup(function()
    l:close()
    T.close(r)
    T.close(w)
  end)
  local watcher = l:io(r, "in", function() end)
  local timer = l:timer(3600, function() end)
  local task = l:spawn(function() end)
  local signal = l:signal("USR2", function() end)
  return l, watcher, timer, task, signal
end

-- GitHub's anchor for a heading's text: lower case, punctuation out (the
-- backticks of code too), spaces to hyphens; bytes of UTF-8 characters
-- are kept.
local function anchor(heading)
  local a = heading:lower():gsub("[^%w%s_%-\128-\255]", ""):gsub("%s", "-")
  return a
end

-- The anchors of a Markdown file's headings (repeated ones as GitHub
-- numbers them: x, x-1, x-2).
local function anchors_of(text)
  local set, seen = {}, {}
  for line in (prose(text) .. "\n"):gmatch("([^\n]*)\n") do
    local heading = line:match("^#+%s+(.-)%s*#*%s*$")
    if heading then
      local a = anchor(heading)
      local n = seen[a]
      seen[a] = (n or -1) + 1
      set[n and (a .. "-" .. (n + 1)) or a] = true
    end
  end
  return set
end

-- path relative to the directory of `from`, with "." and ".." resolved.
local function resolve(from, path)
  local dir = from:match("^(.*)/[^/]*$")
  local parts = {}
  for part in ((dir and dir .. "/" or "") .. path):gmatch("[^/]+") do
    if part == ".." then
      if #parts == 0 or parts[#parts] == ".." then parts[#parts + 1] = part else parts[#parts] = nil end
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return table.concat(parts, "/")
end

describe("the documentation", function()
  H.no_fd_leaks(lazy_setup, lazy_teardown)

  it("has its pages in doc/", function()
    local names = {}
    for _, name in ipairs(page_names()) do names[name] = true end
    for _, name in ipairs({ "reference.md", "loop.md", "embedding.md", "internals.md" }) do
      assert.is_true(names[name] == true, PAGES_DIR .. "/" .. name .. " is missing")
    end
  end)

  it("documents every function and constant of the lepoll module", function()
    local rep = report()
    entries(rep, "lepoll", ".", functions_of(lepoll))
    local fields = {}
    for k, v in pairs(lepoll) do
      if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) ~= "function" then
        fields[#fields + 1] = "lepoll." .. k
      end
    end
    table.sort(fields)
    all_documented(rep, fields, has_span, "each needs a code span `lepoll.NAME`")
    rep.check()
  end)

  -- (Lua 5.1's debug.getupvalue cannot read a C function's upvalues.)
  H.it_if(it, pending, H.LUA_VERSION >= 502 or H.JIT, "cannot read a C function's upvalues")(
    "documents every method of a process, and describes its metamethods", function()
    local p = assert(lepoll.spawn { "true" })
    finally(function() p:close() end)
    -- Its __index is a function (the fields pid, stdin, ...), its methods
    -- that function's upvalue.
    local _, methods = debug.getupvalue(getmetatable(p).__index, 1)
    local rep = report()
    entries(rep, "p", ":", functions_of(methods))
    metamethods_described(rep, p, "p", "reference.md")
    rep.check()
  end)

  it("documents every method of a set, and describes its metamethods", function()
    local ep = lepoll.create()
    finally(function() ep:close() end)
    local methods = methods_of(ep)
    assert.is_true(#methods >= 10, "the set's methods were not found")
    local rep = report()
    entries(rep, "set", ":", methods)
    metamethods_described(rep, ep, "set", "reference.md")
    rep.check()
  end)

  it("documents every method of a signal set, and describes its metamethods", function()
    local sigs = lepoll.signals()
    finally(function() sigs:close() end)
    local rep = report()
    entries(rep, "sigs", ":", methods_of(sigs))
    metamethods_described(rep, sigs, "sigs", "reference.md")
    rep.check()
  end)

  it("documents lepoll.loop: its functions, the methods of loops, watchers, timers, tasks, signal watchers",
    function()
    local rep = report()
    entries(rep, "loop", ".", functions_of(loop))
    local l, watcher, timer, task, signal = loop_objects(finally)
    for _, obj in ipairs({ { l, "l" }, { watcher, "w" }, { timer, "t" }, { task, "task" }, { signal, "sw" } }) do
      entries(rep, obj[2], ":", methods_of(obj[1]))
      metamethods_described(rep, obj[1], obj[2], "loop.md")
    end
    rep.check()
  end)

  it("documents every method of a waker, and describes its metamethods", function()
    local waker = lepoll.waker()
    finally(function() waker:close() end)
    local rep = report()
    entries(rep, "waker", ":", methods_of(waker))
    metamethods_described(rep, waker, "waker", "embedding.md")
    rep.check()
  end)

  it("documents every LEPOLL_API function of src/lepoll.h in doc/embedding.md", function()
    local header = assert(slurp("src/lepoll.h"), "src/lepoll.h is missing")
    local names = {}
    for line in (header .. "\n"):gmatch("([^\n]*)\n") do
      local decl = line:match("^%s*LEPOLL_API%s+([^%(]-)%s*%(")
      if decl then names[#names + 1] = decl:match("([%a_][%w_]*)$") end
    end
    local spans = doc_pages()["embedding.md"]
    assert.is_truthy(spans, PAGES_DIR .. "/embedding.md is missing")
    local rep = report()
    all_documented(rep, names, function(name)
      for _, span in ipairs(spans.spans) do
        if span.code:find(name .. "(", 1, true) then return true end
      end
      return false
    end, "each needs a code span with NAME( in embedding.md, its prototype")
    rep.check()
  end)

  it("has relative links that reach a file and a heading, in README.md and doc/*.md", function()
    local files = { "README.md" }
    for _, name in ipairs(page_names()) do files[#files + 1] = PAGES_DIR .. "/" .. name end
    local anchors, broken, nlinks = {}, {}, 0
    local function anchors_for(path)
      if anchors[path] == nil then
        local text = slurp(path)
        anchors[path] = text and anchors_of(text) or false
      end
      return anchors[path]
    end
    for _, file in ipairs(files) do
      local text = prose(assert(slurp(file), file .. " is missing"))
      for target in text:gmatch("%]%(([^%)%s]+)[^%)]*%)") do
        if not target:match("^%a[%w+.%-]*:") then -- not http:, mailto: ...
          nlinks = nlinks + 1
          local path, fragment = target:match("^([^#]*)#?(.*)$")
          local dest = path == "" and file or resolve(file, path)
          if not exists(dest) then
            broken[#broken + 1] = ("%s: %s (no file %s)"):format(file, target, dest)
          elseif fragment ~= "" and dest:match("%.md$") and not anchors_for(dest)[fragment] then
            broken[#broken + 1] = ("%s: %s (no heading #%s in %s)"):format(file, target, fragment, dest)
          end
        end
      end
    end
    assert.is_true(nlinks > 0, "no relative links found")
    assert.is_true(#broken == 0, "broken links:\n  " .. table.concat(broken, "\n  "))
  end)
end)
