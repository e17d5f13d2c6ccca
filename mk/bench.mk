# Benchmarks of lepoll against raw C, luv, cqueues and socket.select
#   make bench          every benchmark, full sizes, several interleaved
#                       rounds; writes bench/RESULTS.md (BENCH_ROUNDS,
#                       BENCH_BUDGET_MS: the time each contender runs per
#                       round), with the echo section (bench-echo), the
#                       tasks section (bench-tasks), the instruction counts
#                       (bench-profile), the LuaJIT section (bench-luajit)
#                       and bench/scaling.png
#   make bench-smoke    every benchmark at tiny sizes, one short round, for
#                       CI; ends with "N passed, N failed" (benchmarks that ran)
#   make bench-echo     the echo-server benchmark alone (ECHO_ROUNDS,
#                       ECHO_SECONDS: measured seconds per run); writes
#                       build/bench/echo.md, the section bench/RESULTS.md
#                       takes in
#   make bench-tasks    one server in two styles on lepoll.loop, watchers
#                       against tasks, under the echo load generator and
#                       wrk (TASKS_ROUNDS, TASKS_SECONDS: measured seconds
#                       per run): CPU per request and epoll_ctl calls per
#                       request (perf stat), then user-space instructions
#                       per request, counted by callgrind
#                       (bench/tasks_profile.lua); writes build/bench/tasks.md
#   make bench-http     one HTTP server on lepoll.loop's wrapped sockets and
#                       watchers, luv, cqueues and copas, under wrk
#                       (HTTP_ROUNDS, HTTP_SECONDS): CPU per request against
#                       luv's; writes build/bench/http.md
#   make bench-prefork  examples/prefork_echo.lua with 1, 2, N and 2N workers
#                       (N: the online CPUs), one listening socket watched
#                       with exclusive or one per worker with SO_REUSEPORT,
#                       under the echo load generator: round trips per
#                       second, CPU per round trip, connections per worker
#                       (PREFORK_ROUNDS, PREFORK_SECONDS); writes
#                       build/bench/prefork.md
#   make bench-select   lepoll.select against socket.select, ns per call at
#                       100 and 1,000 watched, and lepoll.select at 10,000;
#                       writes build/bench/select.md
#   make bench-profile  user-space instructions per event at N=64, counted by
#                       callgrind, for wait(0) alone, the plain-Lua floor,
#                       iter_ready, fold_ready, ready_into and luv; writes
#                       build/bench/profile.md
#   make bench-luajit   the dispatch, scaling, churn and memory benchmarks
#                       (bench/run.lua) under LuaJIT, against lepoll and
#                       benchc built for it in build/luajit/ (a make of its
#                       own, LUA=luajit); writes build/bench/luajit.md
#   make deps-bench     the peers, gnuplot, wrk and perf, when missing
# The peers come from Debian's packages (lua-luv, lua-cqueues, lua-socket;
# gnuplot-nox for the plot; wrk and linux-perf for bench-tasks). The raw C
# contender lives in build/bench/benchc.so (bench/benchc.c), a bench-only
# module, so it runs in the driver's process, interleaved with the rest.
# The echo benchmark (bench/echo.lua, bench/echo/) runs separate processes:
# a C load generator and each server in turn; so does bench-tasks
# (bench/tasks.lua, bench/tasks/), with wrk as a second load, and so does
# bench-prefork (bench/prefork.lua), whose server is several. Instruction
# counts are repeatable where timings are noisy.
BENCH_DIR       := $(BUILD)/bench
BENCH_SO        := $(BENCH_DIR)/benchc.so
BENCH_PROFILE   := $(BENCH_DIR)/profile.md
BENCH_PACKAGES  := lua-luv lua-cqueues lua-socket lua-copas gnuplot-nox wrk linux-perf
BENCH_ROUNDS    ?= 15
BENCH_BUDGET_MS ?= 20
ECHO_BIN        := $(BENCH_DIR)/echo-loadgen $(BENCH_DIR)/echo-server
ECHO_ROUNDS     ?= 5
ECHO_SECONDS    ?= 2
TASKS_ROUNDS    ?= 9
TASKS_SECONDS   ?= 3
HTTP_ROUNDS     ?= 5
HTTP_SECONDS    ?= 3
PREFORK_ROUNDS  ?= 5
PREFORK_SECONDS ?= 2
BENCH_ENV        = LUA_CPATH="$(BENCH_DIR)/?.so;$(BUILD)/?.so;;" LUA_PATH="$(LUA_MODS_PATH)"
# LuaJIT's build, whatever LUA is: the Makefile's BUILD for LUA=luajit.
BENCH_JIT_BUILD := build/luajit
BENCH_JIT_ENV    = LUA_CPATH="$(BENCH_JIT_BUILD)/bench/?.so;$(BENCH_JIT_BUILD)/?.so;;" LUA_PATH="$(LUA_MODS_PATH)"

.PHONY: bench bench-smoke bench-echo bench-tasks bench-http bench-prefork bench-select bench-profile \
        bench-luajit bench-luajit-build deps-bench

## install the benchmarks' peers (luv, cqueues, LuaSocket), gnuplot, wrk and perf when missing
deps-bench: deps
	@tools/ensure-deps $(BENCH_PACKAGES)

$(BENCH_SO): bench/benchc.c | deps-bench
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LIBFLAG) -o $@ $<

# The echo programs are plain C: no Lua, no peers. The specs run the
# prefork example under the load generator too (spec/83).
$(BENCH_DIR)/echo-%: bench/echo/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) $(CFLAGS) -o $@ $<

# The echo and tasks sections and the instruction counts are written first,
# so that the report can take them in.
## every benchmark, full sizes; writes bench/RESULTS.md and bench/scaling.png
bench: bench-echo bench-tasks bench-http bench-prefork bench-select bench-profile bench-luajit \
       $(BUILD)/lepoll.so $(BENCH_SO) | deps-bench
	$(BENCH_ENV) $(LUA) bench/run.lua --rounds $(BENCH_ROUNDS) --budget-ms $(BENCH_BUDGET_MS) \
	    --echo $(BENCH_DIR)/echo.md --tasks $(BENCH_DIR)/tasks.md --http $(BENCH_DIR)/http.md \
	    --prefork $(BENCH_DIR)/prefork.md --select $(BENCH_DIR)/select.md \
	    --profile $(BENCH_PROFILE) --luajit $(BENCH_DIR)/luajit.md \
	    --plot bench/scaling.png --out bench/RESULTS.md

## every benchmark at tiny sizes, one short round, for CI
bench-smoke: $(BUILD)/lepoll.so $(BENCH_SO) $(ECHO_BIN) bench-luajit-build | deps-bench deps-valgrind
	$(BENCH_ENV) $(LUA) bench/run.lua --smoke
	$(BENCH_JIT_ENV) luajit bench/run.lua --smoke
	$(BENCH_ENV) $(LUA) bench/echo.lua --lua $(LUA) --smoke
	$(BENCH_ENV) $(LUA) bench/tasks.lua --lua $(LUA) --smoke
	$(BENCH_ENV) $(LUA) bench/tasks_profile.lua --smoke
	$(BENCH_ENV) $(LUA) bench/http.lua --lua $(LUA) --smoke
	$(BENCH_ENV) $(LUA) bench/prefork.lua --lua $(LUA) --smoke
	$(BENCH_ENV) $(LUA) bench/select.lua --smoke

## the echo-server benchmark alone; writes build/bench/echo.md
bench-echo: $(BUILD)/lepoll.so $(ECHO_BIN) | deps-bench
	$(BENCH_ENV) $(LUA) bench/echo.lua --lua $(LUA) --rounds $(ECHO_ROUNDS) --seconds $(ECHO_SECONDS) \
	    --out $(BENCH_DIR)/echo.md

## watchers against tasks on lepoll.loop (echo and HTTP loads); writes build/bench/tasks.md
bench-tasks: $(BUILD)/lepoll.so $(BENCH_DIR)/echo-loadgen | deps-bench deps-valgrind
	$(BENCH_ENV) $(LUA) bench/tasks.lua --lua $(LUA) --rounds $(TASKS_ROUNDS) --seconds $(TASKS_SECONDS) \
	    --out $(BENCH_DIR)/tasks.md
	$(BENCH_ENV) $(LUA) bench/tasks_profile.lua --out $(BENCH_DIR)/tasks_profile.md
	cat $(BENCH_DIR)/tasks_profile.md >> $(BENCH_DIR)/tasks.md

## one HTTP server on five event libraries (wrapped sockets, watchers, luv, cqueues, copas); writes build/bench/http.md
bench-http: $(BUILD)/lepoll.so | deps-bench
	$(BENCH_ENV) $(LUA) bench/http.lua --lua $(LUA) --rounds $(HTTP_ROUNDS) --seconds $(HTTP_SECONDS) \
	    --out $(BENCH_DIR)/http.md

# lepoll and benchc for LuaJIT, by a make of their own: this one's rules
# are for $(BUILD) alone.
bench-luajit-build:
	$(MAKE) --no-print-directory LUA=luajit $(BENCH_JIT_BUILD)/lepoll.so $(BENCH_JIT_BUILD)/bench/benchc.so

## dispatch, scaling, churn and memory under LuaJIT; writes build/bench/luajit.md
bench-luajit: bench-luajit-build | deps-bench
	@mkdir -p $(BENCH_DIR)
	$(BENCH_JIT_ENV) luajit bench/run.lua --rounds $(BENCH_ROUNDS) --budget-ms $(BENCH_BUDGET_MS) \
	    --out $(BENCH_DIR)/luajit.md

## the prefork echo server with 1, 2, N and 2N workers (exclusive, SO_REUSEPORT); writes build/bench/prefork.md
bench-prefork: $(BUILD)/lepoll.so $(BENCH_DIR)/echo-loadgen | deps-bench
	$(BENCH_ENV) $(LUA) bench/prefork.lua --lua $(LUA) --rounds $(PREFORK_ROUNDS) --seconds $(PREFORK_SECONDS) \
	    --out $(BENCH_DIR)/prefork.md

test sanitize valgrind: $(BENCH_DIR)/echo-loadgen

## lepoll.select against socket.select, ns per call; writes build/bench/select.md
bench-select: $(BUILD)/lepoll.so $(BENCH_SO) | deps-bench
	$(BENCH_ENV) $(LUA) bench/select.lua --out $(BENCH_DIR)/select.md

## instructions per event of the dispatch paths (callgrind); writes build/bench/profile.md
bench-profile: $(BUILD)/lepoll.so $(BENCH_SO) | deps-bench deps-valgrind
	$(BENCH_ENV) $(LUA) bench/profile.lua --out $(BENCH_PROFILE)
	@cat $(BENCH_PROFILE)
