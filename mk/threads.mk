# Lua states in several threads at once, under ThreadSanitizer
#   make test-threads   build/tsan/threads_host under ThreadSanitizer
#
# test/c/threads_host.c runs TEST_THREADS (4) threads, each with its own
# lua_State running lepoll for TEST_ROUNDS (5000) rounds. lepoll is
# compiled again from src/ with -fsanitize=thread into build/tsan/, apart
# from the normal objects. Any report fails the run: the host counts them,
# and TSan's exit status is then 66. When TSan's runtime cannot start
# (GCC 12's fails to on kernels with more mmap randomization than Debian
# 12's, vm.mmap_rnd_bits 32), the host is run with it off (setarch -R).
TSAN_DIR     := $(BUILD)/tsan
TSAN_CFLAGS  := -fsanitize=thread -g
TSAN_RUN     := halt_on_error=0:exitcode=66
TEST_THREADS ?= 4
TEST_ROUNDS  ?= 5000

.PHONY: test-threads

# build/tsan/liblepoll.a (the Makefile's lepoll_build).
$(eval $(call lepoll_build,$(TSAN_DIR),$(TSAN_CFLAGS)))

$(TSAN_DIR)/threads_host: test/c/threads_host.c test/c/fds.h src/lepoll.h $(TSAN_DIR)/liblepoll.a | deps
	$(call host_cc,$(TSAN_CFLAGS) -pthread)

## Lua states in several threads at once under ThreadSanitizer (test/c/threads_host.c)
test-threads: $(TSAN_DIR)/threads_host
	@run=; if ! $(TSAN_DIR)/threads_host --probe >/dev/null 2>&1; then \
	    echo "ThreadSanitizer cannot start here: running with address randomization off"; \
	    run="setarch $$(uname -m) -R"; \
	fi; \
	echo "LUA_PATH='$(LUA_MODS_PATH)' TSAN_OPTIONS=$(TSAN_RUN) $$run$${run:+ }$(TSAN_DIR)/threads_host $(TEST_THREADS) $(TEST_ROUNDS)"; \
	LUA_PATH='$(LUA_MODS_PATH)' TSAN_OPTIONS=$(TSAN_RUN) $$run $(TSAN_DIR)/threads_host $(TEST_THREADS) $(TEST_ROUNDS)
