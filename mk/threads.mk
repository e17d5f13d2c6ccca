# Lua states in threads, and host threads waking a script, under ThreadSanitizer
#   make test-threads   build/tsan/threads_host, then build/tsan/waker_threads,
#                       under ThreadSanitizer
#
# test/c/threads_host.c runs TEST_THREADS (4) threads, each with its own
# lua_State running lepoll for TEST_ROUNDS (5000) rounds.
# test/c/waker_threads.c has TEST_THREADS threads of the host post
# TEST_WAKES (20000) values each to one script's waker while its loop reads
# them, then close the waker under their posts (test/c/waker_threads.lua is
# the script). lepoll is compiled again from src/ with -fsanitize=thread
# into build/tsan/, apart from the normal objects. Any report fails the
# run: the hosts count them, and TSan's exit status is then 66. When TSan's runtime cannot start
# (GCC 12's fails to on kernels with more mmap randomization than Debian
# 12's, vm.mmap_rnd_bits 32), the host is run with it off (setarch -R).
TSAN_DIR     := $(BUILD)/tsan
TSAN_CFLAGS  := -fsanitize=thread -g
TSAN_RUN     := halt_on_error=0:exitcode=66
TEST_THREADS ?= 4
TEST_ROUNDS  ?= 5000
TEST_WAKES   ?= 20000

.PHONY: test-threads

# build/tsan/liblepoll.a (the Makefile's lepoll_build).
$(eval $(call lepoll_build,$(TSAN_DIR),$(TSAN_CFLAGS)))

$(TSAN_DIR)/threads_host: test/c/threads_host.c test/c/fds.h test/c/tsan.h src/lepoll.h $(TSAN_DIR)/liblepoll.a | deps
	$(call host_cc,$(TSAN_CFLAGS) -pthread)

$(TSAN_DIR)/waker_threads: test/c/waker_threads.c test/c/fds.h test/c/tsan.h src/lepoll.h $(TSAN_DIR)/liblepoll.a | deps
	$(call host_cc,$(TSAN_CFLAGS))

# Built plainly too: spec/33-waker_spec.lua runs it, under each Lua, with
# the example waker host and the failing-allocator host.
$(BUILD)/waker_threads: test/c/waker_threads.c test/c/fds.h test/c/tsan.h src/lepoll.h $(BUILD)/liblepoll.a | deps
	$(call host_cc,-g)

test sanitize valgrind: $(BUILD)/waker_threads $(BUILD)/waker_host $(BUILD)/oom_host

## Lua states in threads, and host threads waking a script, under ThreadSanitizer (test/c/threads_host.c, waker_threads.c)
test-threads: $(TSAN_DIR)/threads_host $(TSAN_DIR)/waker_threads
	@run=; if ! $(TSAN_DIR)/threads_host --probe >/dev/null 2>&1; then \
	    echo "ThreadSanitizer cannot start here: running with address randomization off"; \
	    run="setarch $$(uname -m) -R"; \
	fi; \
	status=0; \
	for host in "threads_host $(TEST_THREADS) $(TEST_ROUNDS)" \
	            "waker_threads test/c/waker_threads.lua $(TEST_THREADS) $(TEST_WAKES)"; do \
	    echo "LUA_PATH='$(LUA_MODS_PATH)' TSAN_OPTIONS=$(TSAN_RUN) $$run$${run:+ }$(TSAN_DIR)/$$host"; \
	    LUA_PATH='$(LUA_MODS_PATH)' TSAN_OPTIONS=$(TSAN_RUN) $$run $(TSAN_DIR)/$$host || status=1; \
	done; \
	exit $$status
