# lepoll: Linux epoll for Lua.
#   make         build build/lepoll.so
#   make test    build and run the specs (busted under Lua 5.4)
#   make demo    run examples/demo.lua
# Missing Debian packages are installed first (tools/ensure-deps).
# LuaRocks' variable names are honoured: LUA_INCDIR, CFLAGS, LIBFLAG.

LUA        ?= lua5.4
PKG_CONFIG ?= pkg-config
BUSTED     ?= busted
CC         ?= cc
CFLAGS     ?= -O2
LIBFLAG    ?= -shared
LUA_INCDIR ?=

BUILD    := build
SRC      := src/lepoll.c src/lepoll_core.c
HDR      := src/lepoll.h src/lepoll_core.h
WARN     := -Wall -Wextra -Wpedantic -Wmissing-prototypes -Wstrict-prototypes \
            -Wshadow -Wformat=2 -Werror
# Recursive on purpose: pkg-config is asked only after ensure-deps ran.
LUA_CFLAGS = $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell $(PKG_CONFIG) --cflags $(LUA)))
ALL_CFLAGS = -std=c99 -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) $(LUA_CFLAGS)

.PHONY: all deps test demo clean

all: $(BUILD)/lepoll.so

deps:
	@tools/ensure-deps

$(BUILD)/lepoll.so: $(SRC) $(HDR) | deps
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) $(LIBFLAG) -o $@ $(SRC)

$(BUILD)/spec/lepoll_test.so: spec/support/lepoll_test.c | deps
	@mkdir -p $(BUILD)/spec
	$(CC) $(ALL_CFLAGS) $(LIBFLAG) -o $@ $<

$(BUILD)/core_test: test/c/core_test.c src/lepoll_core.c src/lepoll_core.h | deps
	@mkdir -p $(BUILD)
	$(CC) -std=c99 $(WARN) $(CFLAGS) -Isrc -o $@ test/c/core_test.c src/lepoll_core.c

test: $(BUILD)/lepoll.so $(BUILD)/spec/lepoll_test.so $(BUILD)/core_test
	$(BUILD)/core_test
	$(BUSTED) --lua=$(LUA)

demo: $(BUILD)/lepoll.so
	LUA_CPATH="$(BUILD)/?.so;;" LUA_PATH="lua/?.lua;lua/?/init.lua;;" $(LUA) examples/demo.lua

clean:
	rm -rf $(BUILD)
