-- busted output: the usual terminal report, then one plain closing line
-- "N passed, N failed, N skipped" (errors count as failures).
return function(options)
  local busted = require "busted"
  local term_ok, term = pcall(require, "term")
  local tty = term_ok and io.type(io.stdout) == "file" and term.isatty(io.stdout)
  local base = tty and "utfTerminal" or "plainTerminal"
  local handler = require("busted.outputHandlers." .. base)(options)

  busted.subscribe({ "suite", "end" }, function()
    io.write(string.format("%d passed, %d failed, %d skipped\n",
      handler.successesCount, handler.failuresCount + handler.errorsCount,
      handler.pendingsCount))
    io.flush()
    return nil, true
  end)
  return handler
end
