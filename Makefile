# lepoll: Linux epoll for Lua.
#   make            build build/lepoll.so and build/liblepoll.a
#   make test       the C core's tests, then the specs (busted, Lua 5.4;
#                   LUA=lua5.1|lua5.2|lua5.3|luajit for another version)
#   make test-all   make test under every supported Lua (mk/matrix.mk)
#   make demo       run examples/demo.lua
#   make host       build build/host, the example C host (examples/host)
#   make install    PREFIX=/usr/local DESTDIR= : module, Lua modules,
#                   header and static library; make uninstall reverses it
#   make test-threads  Lua states in several threads at once, under
#                   ThreadSanitizer (test/c/threads_host.c, build/tsan/)
#   make test-close    lua_close with live sets, under valgrind
#                   (test/c/close_host.c)
# Missing Debian packages are installed first (tools/ensure-deps).
# LuaRocks' variable names are honoured: LUA_INCDIR, CFLAGS, LIBFLAG.

LUA        ?= lua5.4
PKG_CONFIG ?= pkg-config
BUSTED     ?= busted
CFLAGS     ?= -O2
LIBFLAG    ?= -shared
LUA_INCDIR ?=
PREFIX     ?= /usr/local
DESTDIR    ?=

# Each interpreter builds apart, so several coexist: lua5.4, the default,
# in build/, any other (make LUA=lua5.1|lua5.2|lua5.3|luajit) in build/LUA/.
BUILD    := build$(if $(filter lua5.4,$(LUA)),,/$(LUA))
# The Debian packages of each interpreter: itself and its headers.
LUA_PACKAGES_lua5.1 := lua5.1 liblua5.1-0-dev
LUA_PACKAGES_lua5.2 := lua5.2 liblua5.2-dev
LUA_PACKAGES_lua5.3 := lua5.3 liblua5.3-dev
LUA_PACKAGES_lua5.4 := lua5.4 liblua5.4-dev
LUA_PACKAGES_luajit := luajit libluajit-5.1-dev
# src/core: the Lua-free core; src/binding: the Lua binding; src/lepoll.h:
# the public C API.
CORE_SRC    := $(sort $(wildcard src/core/*.c))
BINDING_SRC := $(sort $(wildcard src/binding/*.c))
SRC      := $(CORE_SRC) $(BINDING_SRC)
OBJ      := $(SRC:src/%.c=$(BUILD)/obj/%.o)
CORE_HDR := $(wildcard src/core/*.h)
HDR      := src/lepoll.h $(CORE_HDR) $(wildcard src/binding/*.h)
INCLUDES := -Isrc -Isrc/core -Isrc/binding
LUA_MODS := $(wildcard lua/lepoll/*.lua)
WARN     := -Wall -Wextra -Wpedantic -Wmissing-prototypes -Wstrict-prototypes \
            -Wshadow -Wformat=2 -Werror
# Recursive on purpose: pkg-config is asked only after ensure-deps ran.
LUA_CFLAGS = $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell $(PKG_CONFIG) --cflags $(LUA)))
LUA_LIBS   = $(shell $(PKG_CONFIG) --libs $(LUA))
ALL_CFLAGS = -std=c99 -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) $(LUA_CFLAGS)

# Install places: where this Lua searches under PREFIX (tools/lua-moddir).
LUA_CMODDIR = $(shell tools/lua-moddir cmod $(PREFIX) $(LUA) $(LUA))
LUA_LMODDIR = $(shell tools/lua-moddir lmod $(PREFIX) $(LUA) $(LUA))
INCDIR      = $(PREFIX)/include
LIBDIR      = $(PREFIX)/lib

.PHONY: all deps test demo host install uninstall clean test-threads test-close deps-valgrind

all: $(BUILD)/lepoll.so $(BUILD)/liblepoll.a

deps:
	@tools/ensure-deps $(LUA_PACKAGES_$(LUA))

$(BUILD)/obj/%.o: src/%.c $(HDR) | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(INCLUDES) -c -o $@ $<

$(BUILD)/lepoll.so: $(OBJ)
	$(CC) $(LIBFLAG) -o $@ $(OBJ)

$(BUILD)/liblepoll.a: $(OBJ)
	rm -f $@
	ar rcs $@ $(OBJ)

$(BUILD)/spec/lepoll_test.so: spec/support/lepoll_test.c src/binding/compat.h | deps
	@mkdir -p $(BUILD)/spec
	$(CC) $(ALL_CFLAGS) $(INCLUDES) $(LIBFLAG) -o $@ $<

$(BUILD)/core_test: test/c/core_test.c $(CORE_SRC) $(CORE_HDR) | deps
	@mkdir -p $(BUILD)
	$(CC) -std=c99 $(WARN) $(CFLAGS) -Isrc/core -o $@ test/c/core_test.c $(CORE_SRC)

host: $(BUILD)/host

$(BUILD)/host: examples/host/host.c src/lepoll.h $(BUILD)/liblepoll.a
	$(CC) -std=c99 $(WARN) $(CFLAGS) $(LUA_CFLAGS) -Isrc -o $@ $< $(BUILD)/liblepoll.a $(LUA_LIBS)

# The specs find this version's build through .busted's task and
# LEPOLL_BUILD, and start child processes with LEPOLL_LUA.
test: all $(BUILD)/spec/lepoll_test.so $(BUILD)/core_test $(BUILD)/host
	$(BUILD)/core_test
	LEPOLL_BUILD=$(BUILD) LEPOLL_LUA=$(LUA) $(BUSTED) --run=$(LUA)

demo: $(BUILD)/lepoll.so
	LUA_CPATH="$(BUILD)/?.so;;" LUA_PATH="lua/?.lua;lua/?/init.lua;;" $(LUA) examples/demo.lua
	LUA_CPATH="$(BUILD)/?.so;;" LUA_PATH="lua/?.lua;lua/?/init.lua;;" $(LUA) examples/roundtrip.lua

install: all
	install -d $(DESTDIR)$(LUA_CMODDIR) $(DESTDIR)$(LUA_LMODDIR)/lepoll \
	        $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)
	install -m 755 $(BUILD)/lepoll.so $(DESTDIR)$(LUA_CMODDIR)/lepoll.so
	$(if $(LUA_MODS),install -m 644 $(LUA_MODS) $(DESTDIR)$(LUA_LMODDIR)/lepoll/)
	install -m 644 src/lepoll.h $(DESTDIR)$(INCDIR)/lepoll.h
	install -m 644 $(BUILD)/liblepoll.a $(DESTDIR)$(LIBDIR)/liblepoll.a

uninstall:
	rm -f $(DESTDIR)$(LUA_CMODDIR)/lepoll.so $(DESTDIR)$(INCDIR)/lepoll.h \
	      $(DESTDIR)$(LIBDIR)/liblepoll.a \
	      $(addprefix $(DESTDIR)$(LUA_LMODDIR)/lepoll/,$(notdir $(LUA_MODS)))
	rmdir $(DESTDIR)$(LUA_LMODDIR)/lepoll 2>/dev/null || true

clean:
	rm -rf $(BUILD)

# Further targets, one file per concern (sanitizers, fuzzing, ...).
include $(wildcard mk/*.mk)

# ----------------------------------------------------------------------------
# make test-threads: several threads, each with its own lua_State running
# lepoll at the same time (test/c/threads_host.c), under ThreadSanitizer.
# lepoll is compiled again from src/ with -fsanitize=thread into build/tsan/,
# apart from the normal objects. Any report fails the run: the host counts
# them, and TSan's exit status is then 66. When TSan's runtime cannot start
# (GCC 12's fails to on kernels with more mmap randomization than Debian
# 12's, vm.mmap_rnd_bits 32), the host is run with it off (setarch -R).
TSAN_DIR     := $(BUILD)/tsan
TSAN_OBJ     := $(SRC:src/%.c=$(TSAN_DIR)/obj/%.o)
TSAN_CFLAGS  := -fsanitize=thread -g
TSAN_RUN     := halt_on_error=0:exitcode=66
TEST_THREADS ?= 4
TEST_ROUNDS  ?= 5000
TEST_LUA_PATH := lua/?.lua;lua/?/init.lua;;

$(TSAN_DIR)/obj/%.o: src/%.c $(HDR) | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(INCLUDES) $(TSAN_CFLAGS) -c -o $@ $<

$(TSAN_DIR)/liblepoll.a: $(TSAN_OBJ)
	rm -f $@
	ar rcs $@ $(TSAN_OBJ)

$(TSAN_DIR)/threads_host: test/c/threads_host.c test/c/fds.h src/lepoll.h $(TSAN_DIR)/liblepoll.a | deps
	$(CC) -std=c99 $(WARN) $(CFLAGS) $(TSAN_CFLAGS) $(LUA_CFLAGS) -Isrc -pthread -o $@ $< \
	      $(TSAN_DIR)/liblepoll.a $(LUA_LIBS)

test-threads: $(TSAN_DIR)/threads_host
	@run=; if ! $(TSAN_DIR)/threads_host --probe >/dev/null 2>&1; then \
	    echo "ThreadSanitizer cannot start here: running with address randomization off"; \
	    run="setarch $$(uname -m) -R"; \
	fi; \
	echo "LUA_PATH='$(TEST_LUA_PATH)' TSAN_OPTIONS=$(TSAN_RUN) $$run$${run:+ }$(TSAN_DIR)/threads_host $(TEST_THREADS) $(TEST_ROUNDS)"; \
	LUA_PATH='$(TEST_LUA_PATH)' TSAN_OPTIONS=$(TSAN_RUN) $$run $(TSAN_DIR)/threads_host $(TEST_THREADS) $(TEST_ROUNDS)

# make test-close: lua_close with live sets, loops and pending events
# (test/c/close_host.c), under valgrind: any error or definite leak fails.
VALGRIND       ?= valgrind
VALGRIND_FLAGS := -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
                  --show-leak-kinds=definite

deps-valgrind: deps
	@tools/ensure-deps valgrind

$(BUILD)/close_host: test/c/close_host.c test/c/fds.h src/lepoll.h $(BUILD)/liblepoll.a | deps-valgrind
	$(CC) -std=c99 $(WARN) $(CFLAGS) -g $(LUA_CFLAGS) -Isrc -o $@ $< $(BUILD)/liblepoll.a $(LUA_LIBS)

test-close: $(BUILD)/close_host | deps-valgrind
	LUA_PATH='$(TEST_LUA_PATH)' $(VALGRIND) $(VALGRIND_FLAGS) $(BUILD)/close_host
