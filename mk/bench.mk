# ----------------------------------------------------------------------------
# Benchmarks (issue 5): lepoll against raw C, luv, cqueues and socket.select.
#   make bench        every benchmark, full sizes, several interleaved rounds;
#                     writes bench/RESULTS.md (BENCH_ROUNDS, BENCH_BUDGET_MS:
#                     the time each contender runs per round)
#   make bench-smoke  every benchmark at tiny sizes, one short round, for CI;
#                     ends with "N passed, N failed" (benchmarks that ran)
# The peers come from Debian's packages (lua-luv, lua-cqueues, lua-socket;
# gnuplot-nox for the plot to come), installed when missing. The raw C
# contender lives in build/bench/benchc.so (bench/benchc.c), a bench-only
# module, so it runs in the driver's process, interleaved with the rest.
BENCH_DIR       := $(BUILD)/bench
BENCH_SO        := $(BENCH_DIR)/benchc.so
BENCH_PACKAGES  := lua-luv lua-cqueues lua-socket gnuplot-nox
BENCH_ROUNDS    ?= 7
BENCH_BUDGET_MS ?= 40
BENCH_ENV        = LUA_CPATH="$(BENCH_DIR)/?.so;$(BUILD)/?.so;;" LUA_PATH="lua/?.lua;lua/?/init.lua;;"

.PHONY: bench bench-smoke deps-bench

deps-bench: deps
	@tools/ensure-deps $(BENCH_PACKAGES)

$(BENCH_SO): bench/benchc.c | deps-bench
	@mkdir -p $(BENCH_DIR)
	$(CC) $(ALL_CFLAGS) $(LIBFLAG) -o $@ $<

bench: $(BUILD)/lepoll.so $(BENCH_SO) | deps-bench
	$(BENCH_ENV) $(LUA) bench/run.lua --rounds $(BENCH_ROUNDS) --budget-ms $(BENCH_BUDGET_MS) \
	    --out bench/RESULTS.md

bench-smoke: $(BUILD)/lepoll.so $(BENCH_SO) | deps-bench
	$(BENCH_ENV) $(LUA) bench/run.lua --smoke
