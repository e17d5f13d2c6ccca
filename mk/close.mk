# lua_close with live sets, under valgrind (an embedding test)
#   make test-close   build/close_host under valgrind
#
# test/c/close_host.c closes Lua states that still hold open sets, loops
# and pending events, under valgrind's memcheck (VALGRIND_FLAGS, in the
# Makefile): any memory error or definite leak fails the run.

.PHONY: test-close

$(BUILD)/close_host: test/c/close_host.c test/c/fds.h src/lepoll.h $(BUILD)/liblepoll.a | deps-valgrind
	$(call host_cc,-g)

## lua_close with live sets, loops and pending events, under valgrind (test/c/close_host.c)
test-close: $(BUILD)/close_host | deps-valgrind
	LUA_PATH='$(LUA_MODS_PATH)' $(VALGRIND) $(VALGRIND_FLAGS) $(BUILD)/close_host
