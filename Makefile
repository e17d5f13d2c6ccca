# The module's build, its tests, the demo and install
#   make            build build/lepoll.so and build/liblepoll.a
#   make test       the C core's tests, then the specs (busted, Lua 5.4)
#   make help       every target, with one line each
# LUA=lua5.1|lua5.2|lua5.3|luajit builds and tests under another Lua.
#
# This file holds the configuration, the sources, how lepoll is compiled,
# and the everyday targets. The other targets live in mk/, one file per
# concern (benchmarks, fuzzing, sanitizers, ...). An mk/ file may use what
# this file defines, never what another mk/ file defines, so the order they
# are included in does not matter.
#
# make help lists the targets from the files themselves: a "## " comment on
# the line above a rule is that target's line (tools/make-help).
# Missing Debian packages are installed first (tools/ensure-deps).
# LuaRocks' variable names are honoured: LUA_INCDIR, CFLAGS, LIBFLAG.

.DEFAULT_GOAL := all

# ----------------------------------------------------------------------------
# Configuration.
LUA        ?= lua5.4
PKG_CONFIG ?= pkg-config
BUSTED     ?= busted
VALGRIND   ?= valgrind
CFLAGS     ?= -O2
LIBFLAG    ?= -shared
LUA_INCDIR ?=
PREFIX     ?= /usr/local
DESTDIR    ?=

# The Lua versions lepoll supports, and the Debian packages of each:
# the interpreter and its headers.
SUPPORTED_LUAS      := lua5.1 lua5.2 lua5.3 lua5.4 luajit
LUA_PACKAGES_lua5.1 := lua5.1 liblua5.1-0-dev
LUA_PACKAGES_lua5.2 := lua5.2 liblua5.2-dev
LUA_PACKAGES_lua5.3 := lua5.3 liblua5.3-dev
LUA_PACKAGES_lua5.4 := lua5.4 liblua5.4-dev
LUA_PACKAGES_luajit := luajit libluajit-5.1-dev

# Each interpreter builds apart, so several coexist: lua5.4, the default,
# in build/, any other (make LUA=lua5.1|lua5.2|lua5.3|luajit) in build/LUA/.
BUILD := build$(if $(filter lua5.4,$(LUA)),,/$(LUA))

# ----------------------------------------------------------------------------
# Sources. src/core: the Lua-free core; src/binding: the Lua binding;
# src/lepoll.h: the public C API. Every compile of lepoll's sources gets
# INCLUDES.
CORE_SRC    := $(sort $(wildcard src/core/*.c))
BINDING_SRC := $(sort $(wildcard src/binding/*.c))
SRC         := $(CORE_SRC) $(BINDING_SRC)
CORE_HDR    := $(wildcard src/core/*.h)
HDR         := src/lepoll.h $(CORE_HDR) $(wildcard src/binding/*.h)
INCLUDES    := -Isrc -Isrc/core -Isrc/binding
# lepoll's Lua modules, at any depth under lua/ (lua/lepoll/loop.lua is
# lepoll.loop, lua/lepoll/loop/heap.lua lepoll.loop.heap, ...).
LUA_MODS    := $(sort $(shell find lua -name '*.lua'))
# Where Lua finds those modules when run from this checkout.
LUA_MODS_PATH := lua/?.lua;lua/?/init.lua;;

# ----------------------------------------------------------------------------
# Compiler flags.
WARN := -Wall -Wextra -Wpedantic -Wmissing-prototypes -Wstrict-prototypes \
        -Wshadow -Wformat=2 -Werror
# Recursive on purpose: pkg-config is asked only after ensure-deps ran.
LUA_CFLAGS = $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell $(PKG_CONFIG) --cflags $(LUA)))
LUA_LIBS   = $(shell $(PKG_CONFIG) --libs $(LUA))
# The resolver's worker threads (src/core/resolver.c).
THREAD_FLAGS := -pthread
ALL_CFLAGS = -std=c99 -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) $(THREAD_FLAGS) $(LUA_CFLAGS)

# valgrind's memcheck, as make valgrind and make test-close run it: any
# memory error or definite leak fails the run.
VALGRIND_FLAGS := -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
                  --show-leak-kinds=definite

# Install places: where this Lua searches under PREFIX (tools/lua-moddir).
LUA_CMODDIR = $(shell tools/lua-moddir cmod $(PREFIX) $(LUA) $(LUA))
LUA_LMODDIR = $(shell tools/lua-moddir lmod $(PREFIX) $(LUA) $(LUA))
INCDIR      = $(PREFIX)/include
LIBDIR      = $(PREFIX)/lib

# ----------------------------------------------------------------------------
# One build of lepoll: $(eval $(call lepoll_build,DIR,FLAGS)) defines the
# rules for, in DIR,
#   obj/*.o               lepoll's objects
#   lepoll.so             the module
#   liblepoll.a           the static library, for C hosts
#   spec/lepoll_test.so   the specs' helper module (spec/support/)
#   core_test             the C core's tests (test/c/core_test.c)
# everything compiled with FLAGS added to the usual flags. The normal build
# is $(BUILD) with no FLAGS; mk/hardening.mk adds one with AddressSanitizer
# and mk/threads.mk one with ThreadSanitizer. ($$ delays a reference until
# the rule runs; $(1) and $(2) are DIR and FLAGS.)
define lepoll_build
$(1)/obj/%.o: src/%.c $$(HDR) | deps
	@mkdir -p $$(dir $$@)
	$$(CC) $$(ALL_CFLAGS) $$(INCLUDES) $(2) -c -o $$@ $$<

$(1)/lepoll.so: $$(SRC:src/%.c=$(1)/obj/%.o)
	$$(CC) $$(LIBFLAG) $(2) -o $$@ $$^ $$(THREAD_FLAGS)

$(1)/liblepoll.a: $$(SRC:src/%.c=$(1)/obj/%.o)
	rm -f $$@
	ar rcs $$@ $$^

$(1)/spec/lepoll_test.so: spec/support/lepoll_test.c src/binding/compat.h | deps
	@mkdir -p $$(dir $$@)
	$$(CC) $$(ALL_CFLAGS) $$(INCLUDES) $(2) $$(LIBFLAG) -o $$@ $$<

$(1)/core_test: test/c/core_test.c $$(CORE_SRC) $$(CORE_HDR) | deps
	@mkdir -p $$(dir $$@)
	$$(CC) -std=c99 $$(WARN) $$(CFLAGS) $(2) $$(INCLUDES) -o $$@ test/c/core_test.c $$(CORE_SRC) $$(THREAD_FLAGS)
endef

$(eval $(call lepoll_build,$(BUILD),))

# A C host that embeds Lua and lepoll (examples/host, test/c/*_host.c) is
# built from its .c, the rule's first prerequisite, and a liblepoll.a among
# the others, by $(call host_cc,FLAGS). It sees only the public header:
# -Isrc, for src/lepoll.h.
host_cc = $(CC) -std=c99 $(WARN) $(CFLAGS) $(1) $(LUA_CFLAGS) -Isrc -o $@ $< \
          $(filter %.a,$^) $(LUA_LIBS) $(THREAD_FLAGS)

# ----------------------------------------------------------------------------
# The everyday targets.
.PHONY: all test demo host install uninstall clean deps deps-valgrind help

## build build/lepoll.so and build/liblepoll.a (the default; build/LUA/ for another LUA)
all: $(BUILD)/lepoll.so $(BUILD)/liblepoll.a

# The specs find this version's build through .busted's task and
# LEPOLL_BUILD, and start child processes with LEPOLL_LUA. mk/faults.mk
# adds the fault-injection library to the prerequisites.
## the C core's tests, then the specs (busted; LUA=... for another Lua)
test: all $(BUILD)/spec/lepoll_test.so $(BUILD)/core_test $(BUILD)/host
	$(BUILD)/core_test
	LEPOLL_BUILD=$(BUILD) LEPOLL_LUA=$(LUA) $(BUSTED) --run=$(LUA)

DEMO_ENV = LUA_CPATH="$(BUILD)/?.so;;" LUA_PATH="$(LUA_MODS_PATH)"

## run examples/demo.lua, then examples/roundtrip.lua
demo: $(BUILD)/lepoll.so
	$(DEMO_ENV) $(LUA) examples/demo.lua
	$(DEMO_ENV) $(LUA) examples/roundtrip.lua

## build build/host and build/waker_host, the example C hosts (examples/host)
host: $(BUILD)/host $(BUILD)/waker_host

$(BUILD)/host: examples/host/host.c src/lepoll.h $(BUILD)/liblepoll.a
	$(call host_cc,)

$(BUILD)/waker_host: examples/host/waker.c src/lepoll.h $(BUILD)/liblepoll.a
	$(call host_cc,)

## install module, Lua modules, header and static library (PREFIX=/usr/local, DESTDIR=)
install: all
	install -d $(DESTDIR)$(LUA_CMODDIR) $(DESTDIR)$(LUA_LMODDIR) \
	        $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)
	install -m 755 $(BUILD)/lepoll.so $(DESTDIR)$(LUA_CMODDIR)/lepoll.so
	for m in $(LUA_MODS:lua/%=%); do \
	    install -D -m 644 lua/$$m $(DESTDIR)$(LUA_LMODDIR)/$$m || exit 1; \
	done
	install -m 644 src/lepoll.h $(DESTDIR)$(INCDIR)/lepoll.h
	install -m 644 $(BUILD)/liblepoll.a $(DESTDIR)$(LIBDIR)/liblepoll.a

## remove what make install put (same PREFIX and DESTDIR)
uninstall:
	rm -f $(DESTDIR)$(LUA_CMODDIR)/lepoll.so $(DESTDIR)$(INCDIR)/lepoll.h \
	      $(DESTDIR)$(LIBDIR)/liblepoll.a \
	      $(addprefix $(DESTDIR)$(LUA_LMODDIR)/,$(LUA_MODS:lua/%=%))
	cd $(DESTDIR)$(LUA_LMODDIR) 2>/dev/null && \
	    rmdir -p $(sort $(filter-out ./,$(dir $(LUA_MODS:lua/%=%)))) 2>/dev/null || true

## remove the build directory: build/ (every Lua's) for lua5.4, build/LUA/ for another
clean:
	rm -rf $(BUILD)

## install this Lua's interpreter and headers, and the build and test tools, when missing
deps:
	@tools/ensure-deps $(LUA_PACKAGES_$(LUA))

## install valgrind when missing
deps-valgrind: deps
	@tools/ensure-deps valgrind

## list every target, with one line each
help:
	@echo "make [TARGET...] [VARIABLE=value...]; with no TARGET: $(.DEFAULT_GOAL)"
	@echo "LUA=$(LUA) now; one of: $(SUPPORTED_LUAS)"
	@tools/make-help $(MAKEFILE_LIST)

# ----------------------------------------------------------------------------
# The other targets, one file per concern.
include $(wildcard mk/*.mk)
