# ----------------------------------------------------------------------------
# Fuzzing the C core (src/lepoll_core.c) with libFuzzer, under ASan and UBSan:
# test/fuzz/core_fuzz.c decodes operations on a few sets and descriptors
# from each input and checks the core against its own model after each one.
#   make fuzz         FUZZ_SECONDS (60) of fuzzing from the seed corpus
#   make fuzz-smoke   a short bounded pass for CI (FUZZ_SMOKE_SECONDS, 10)
# Both work on a copy of test/fuzz/corpus/ under build/fuzz/ (the repository's
# corpus is never written), fail on any crash, leak or sanitizer report, and
# end with "N passed, N failed". A crashing input is saved under
# build/fuzz/artifacts/; replay it with build/fuzz/core_fuzz FILE (add
# LEPOLL_FUZZ_TRACE=1 to see each operation). FUZZ_FLAGS adds libFuzzer
# options, e.g. FUZZ_FLAGS=-jobs=4 or FUZZ_FLAGS=-runs=100000.
# clang and its libFuzzer runtime come from Debian (clang-14,
# libclang-rt-14-dev), installed when missing.
FUZZ_CC            ?= $(shell command -v clang-14 || command -v clang || echo clang-14)
FUZZ_DIR           := $(BUILD)/fuzz
FUZZ_BIN           := $(FUZZ_DIR)/core_fuzz
FUZZ_SANITIZE      := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS        := -std=c99 -g -O1 -fno-omit-frame-pointer $(WARN)
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_FLAGS         ?=
FUZZ_SEEDS         := $(wildcard test/fuzz/corpus/*)

.PHONY: fuzz fuzz-smoke deps-fuzz

deps-fuzz: deps
	@tools/ensure-deps clang-14 libclang-rt-14-dev

$(FUZZ_BIN): test/fuzz/core_fuzz.c $(CORE_SRC) $(CORE_HDR) | deps-fuzz
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) -Isrc/core -o $@ test/fuzz/core_fuzz.c $(CORE_SRC) -lm

# The long run keeps what it finds in build/fuzz/corpus (seeds added anew);
# the smoke run starts from the seeds alone each time.
fuzz: $(FUZZ_BIN)
	@test/fuzz/run $(FUZZ_BIN) test/fuzz/corpus $(FUZZ_DIR)/corpus $(FUZZ_SECONDS) $(FUZZ_FLAGS)

fuzz-smoke: $(FUZZ_BIN)
	@rm -rf $(FUZZ_DIR)/corpus-smoke
	@test/fuzz/run $(FUZZ_BIN) test/fuzz/corpus $(FUZZ_DIR)/corpus-smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_FLAGS)
