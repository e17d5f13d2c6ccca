# ----------------------------------------------------------------------------
# Instruction counts of the dispatch paths (issue 5), for the hot path's
# work: callgrind counts repeatably where timings are noisy.
#   make bench-profile  user-space instructions per event at N=64 for
#                       wait(0) alone, the plain-Lua floor, iter_ready,
#                       fold_ready and luv; writes build/bench/profile.md
BENCH_PROFILE := $(BUILD)/bench/profile.md

.PHONY: bench-profile

bench-profile: $(BUILD)/lepoll.so $(BENCH_SO) | deps-bench
	@tools/ensure-deps valgrind
	$(BENCH_ENV) $(LUA) bench/profile.lua --out $(BENCH_PROFILE)
	@cat $(BENCH_PROFILE)
