# Hardening: the specs under sanitizers and valgrind, static analysis
#   make sanitize   lepoll and the specs' helper module built again with
#                   AddressSanitizer and UBSan into build/asan/; the C core
#                   tests, then the whole spec suite, run with them
#   make valgrind   the whole spec suite under memcheck, with the
#                   generational collector at its most frequent
#   make lint       cppcheck and clang-tidy on src/ (with the headers of
#                   every supported Lua: lint-c), luacheck on the Lua code
#                   (lint-lua)
#   make deps-lint  the analysers, when missing
# Each installs what it needs first (tools/ensure-deps PACKAGE...).

.PHONY: sanitize valgrind lint lint-c lint-lua deps-lint

# busted as a script of this Lua, so that it runs in this process (with the
# sanitizer runtime or under valgrind) instead of starting $(LUA) again.
BUSTED_IN = $(LUA) $(shell command -v $(BUSTED)) --ignore-lua

# ----------------------------------------------------------------------------
# make sanitize. lua5.4 itself is not instrumented, so the sanitizer
# runtimes are preloaded (LD_PRELOAD: they must come first in the process);
# the instrumented modules are found through busted's --cpath, which
# replaces .busted's build/ paths, and spec/support/hardening.lua checks,
# from the cpath and at the end from /proc/self/maps, that build/asan/'s
# modules are the ones loaded. Any report stops the process with exit
# status 86 (ASan, LeakSanitizer) or 87 (UBSan), and the run fails.
#
# Leaks: the interpreter frees its whole state when busted exits
# (lua_close, also after failures), so LeakSanitizer runs in lua5.4 with
# nothing suppressed: a block lepoll lost is reported. The processes the
# specs start (sh, mktemp, make, luarocks, build/host, ...) inherit the
# preload and ASAN_OPTIONS, and some of those tools do not free what they
# allocate before exiting, which LeakSanitizer would turn into a failed
# exit status. So ASAN_OPTIONS turns leak checking off, then includes
# $(ASAN_DIR)/options.%b, where %b is the executable's name: only the file
# for lua5.4 exists, and it turns it back on. Every other check stays on
# in every process.
ASAN_DIR    := $(BUILD)/asan
ASAN_CFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
               -fno-omit-frame-pointer -g
ASAN_RUN    := abort_on_error=0:exitcode=86:detect_stack_use_after_return=1
UBSAN_RUN   := print_stacktrace=1:halt_on_error=1:exitcode=87
ASAN_PRELOAD = $(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)

# build/asan/: lepoll.so, spec/lepoll_test.so, core_test (the Makefile's
# lepoll_build).
$(eval $(call lepoll_build,$(ASAN_DIR),$(ASAN_CFLAGS)))

# The specs also use build/host, make install and luarocks: what make test
# builds first is built too. mk/faults.mk adds the fault-injection library.
## the C core's tests, then every spec, under ASan and UBSan (build/asan/)
sanitize: all $(BUILD)/host $(ASAN_DIR)/lepoll.so $(ASAN_DIR)/spec/lepoll_test.so \
          $(ASAN_DIR)/core_test | deps
	ASAN_OPTIONS=detect_leaks=1:$(ASAN_RUN) UBSAN_OPTIONS=$(UBSAN_RUN) $(ASAN_DIR)/core_test
	@lua=$$(readlink -f "$$(command -v $(LUA))") && \
	    echo "detect_leaks=1" > "$(ASAN_DIR)/options.$${lua##*/}"
	LD_PRELOAD="$(ASAN_PRELOAD)" \
	ASAN_OPTIONS=detect_leaks=0:include_if_exists=$(CURDIR)/$(ASAN_DIR)/options.%b:$(ASAN_RUN) \
	UBSAN_OPTIONS=$(UBSAN_RUN) LEPOLL_MODULE_DIR=$(ASAN_DIR) LEPOLL_KEEP_CLIBS=1 \
	    $(BUSTED_IN) --cpath='$(ASAN_DIR)/?.so;$(ASAN_DIR)/spec/?.so' \
	    --helper=spec/support/hardening.lua

# ----------------------------------------------------------------------------
# make valgrind: the whole spec suite in lua5.4 under memcheck, with the
# modules make test uses (build/*.so, as .busted says; the helper checks
# that they are the ones loaded). Any memory error or definite leak fails
# the run (VALGRIND_FLAGS, in the Makefile: --error-exitcode,
# --errors-for-leak-kinds=definite). Nothing is suppressed: lua5.4 and busted
# leak nothing definite (lua_close frees the state at exit).
#
# The collector: generational, with a minor collection each time the heap
# grows by 1% and a major one each time it grows by 10% over the last
# (LEPOLL_GC in spec/support/hardening.lua), so sets, guards and loops are
# finalized soon after they become garbage, while valgrind watches.
# setpause 0 (a new cycle as soon as one ends) was measured too: the suite
# alone, without valgrind, then takes minutes instead of seconds, and its
# specs that race a short alarm against a blocking wait lose the race.
#
# The C modules stay mapped until exit (LEPOLL_KEEP_CLIBS) and valgrind keeps
# their symbols (--keep-debuginfo), so a leak's stack names lepoll's
# functions. The processes the specs start are not traced. mk/faults.mk adds
# the fault-injection library spec/42 preloads to the prerequisites.
VALGRIND_GC := LEPOLL_GC=generational LEPOLL_GC_MINORMUL=1 LEPOLL_GC_MAJORMUL=10

## every spec under valgrind's memcheck, collector at its most frequent (minutes)
valgrind: all $(BUILD)/spec/lepoll_test.so $(BUILD)/host | deps-valgrind
	$(VALGRIND_GC) LEPOLL_MODULE_DIR=$(BUILD) LEPOLL_KEEP_CLIBS=1 \
	    $(VALGRIND) $(VALGRIND_FLAGS) --keep-debuginfo=yes \
	    $(BUSTED_IN) --helper=spec/support/hardening.lua

# ----------------------------------------------------------------------------
# make lint: static analysis, clean or failed.
#   cppcheck    src/, every configuration of the Lua headers (--force);
#               findings are errors (--error-exitcode), --inline-suppr lets
#               a justified // cppcheck-suppress stand in the source
#   clang-tidy  src/, the checks and their reasons in .clang-tidy (bugprone,
#               cert, clang-analyzer; warnings are errors), with the
#               build's flags
#   luacheck    lua/, spec/, examples/ and bench/, configured by .luacheckrc
LINT_C         := $(SRC)
LINT_LUA       := lua spec examples bench
CPPCHECK       ?= cppcheck
CLANG_TIDY     ?= clang-tidy
LUACHECK       ?= luacheck
CPPCHECK_FLAGS := --enable=warning,style,performance,portability --error-exitcode=1 \
                  --inline-suppr --std=c99 --force --quiet
LINT_PACKAGES  := cppcheck clang-tidy lua-check

## install cppcheck, clang-tidy and luacheck when missing
deps-lint: deps
	@tools/ensure-deps $(LINT_PACKAGES)

## static analysis: lint-c, then lint-lua
lint: lint-c lint-lua
	@echo "lint: cppcheck, clang-tidy and luacheck found nothing"

# cppcheck and clang-tidy see the sources once per Lua version's headers:
# src/binding/compat.h takes a different path through each.
LINT_LUAS ?= $(SUPPORTED_LUAS)

## cppcheck and clang-tidy on src/, once per supported Lua's headers (LINT_LUAS)
lint-c: | deps-lint
	@tools/ensure-deps $(foreach v,$(LINT_LUAS),$(LUA_PACKAGES_$(v)))
	@set -e; for v in $(LINT_LUAS); do \
		flags=$$($(PKG_CONFIG) --cflags $$v); \
		echo "lint-c: $$v ($$flags)"; \
		$(CPPCHECK) $(CPPCHECK_FLAGS) -ULUA_USER_H $$flags $(INCLUDES) $(LINT_C); \
		$(CLANG_TIDY) --quiet $(LINT_C) -- -std=c99 $$flags $(INCLUDES); \
	done

## luacheck on lua/, spec/, examples/ and bench/ (.luacheckrc)
lint-lua: | deps-lint
	$(LUACHECK) --quiet $(if $(MAKE_TERMOUT),,--no-color) $(LINT_LUA)
