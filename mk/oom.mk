# lepoll.loop under memory errors (an embedding test)
#   make test-oom            build/oom_host: every operation of the loop with
#                            the k-th allocation failing, for every k
#   make test-oom-valgrind   the same under valgrind's memcheck
#
# test/c/oom_host.c makes its Lua state with an allocator that fails
# exactly the k-th allocation counted from the script's oom.arm(k) (Lua's
# retry after an emergency collection fails too), then succeeds again;
# test/c/oom_loop.lua sweeps k over each operation and checks the loop is
# left as doc/loop.md ("Memory errors") says. make test builds the host
# and runs the sweep (spec/29-loop_oom_spec.lua).
OOM_HOST := $(BUILD)/oom_host

.PHONY: test-oom test-oom-valgrind

test: $(OOM_HOST)

$(OOM_HOST): test/c/oom_host.c src/lepoll.h $(BUILD)/liblepoll.a | deps
	$(call host_cc,-g)

## every loop operation with its k-th allocation failing, for each k (test/c/oom_host.c)
test-oom: $(OOM_HOST)
	LUA_PATH='$(LUA_MODS_PATH)' $(OOM_HOST) test/c/oom_loop.lua

## the same, under valgrind's memcheck
test-oom-valgrind: $(OOM_HOST) | deps-valgrind
	LUA_PATH='$(LUA_MODS_PATH)' $(VALGRIND) $(VALGRIND_FLAGS) $(OOM_HOST) test/c/oom_loop.lua
