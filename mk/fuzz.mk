# Fuzzing the C core (src/core/) with libFuzzer, under ASan and UBSan
#   make fuzz         FUZZ_SECONDS (60) of fuzzing from the seed corpus
#   make fuzz-smoke   a short bounded pass for CI (FUZZ_SMOKE_SECONDS, 10)
#   make deps-fuzz    clang and its libFuzzer runtime, when missing
# test/fuzz/core_fuzz.c decodes operations on a few sets and descriptors
# from each input and checks the core against its own model after each one.
# Both runs work on a copy of test/fuzz/corpus/ under build/fuzz/ (the
# repository's corpus is never written), fail on any crash, leak or
# sanitizer report, and end with "N passed, N failed". A crashing input is
# saved under build/fuzz/artifacts/; replay it with build/fuzz/core_fuzz FILE
# (add LEPOLL_FUZZ_TRACE=1 to see each operation). FUZZ_FLAGS adds libFuzzer
# options, e.g. FUZZ_FLAGS=-jobs=4 or FUZZ_FLAGS=-runs=100000.
# clang and its libFuzzer runtime come from Debian (clang-14,
# libclang-rt-14-dev).
FUZZ_CC            ?= $(shell command -v clang-14 || command -v clang || echo clang-14)
FUZZ_DIR           := $(BUILD)/fuzz
FUZZ_BIN           := $(FUZZ_DIR)/core_fuzz
FUZZ_SANITIZE      := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS        := -std=c99 -g -O1 -fno-omit-frame-pointer $(WARN)
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_FLAGS         ?=

.PHONY: fuzz fuzz-smoke deps-fuzz

## install clang and its libFuzzer runtime when missing
deps-fuzz: deps
	@tools/ensure-deps clang-14 libclang-rt-14-dev

$(FUZZ_BIN): test/fuzz/core_fuzz.c $(CORE_SRC) $(CORE_HDR) | deps-fuzz
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) $(INCLUDES) -o $@ test/fuzz/core_fuzz.c $(CORE_SRC) -lm

# The long run keeps what it finds in build/fuzz/corpus (seeds added anew);
# the smoke run starts from the seeds alone each time.
## fuzz the C core for FUZZ_SECONDS (60), keeping the corpus in build/fuzz/corpus
fuzz: $(FUZZ_BIN)
	@test/fuzz/run $(FUZZ_BIN) test/fuzz/corpus $(FUZZ_DIR)/corpus $(FUZZ_SECONDS) $(FUZZ_FLAGS)

## fuzz the C core briefly from the seeds alone (FUZZ_SMOKE_SECONDS, 10), for CI
fuzz-smoke: $(FUZZ_BIN)
	@rm -rf $(FUZZ_DIR)/corpus-smoke
	@test/fuzz/run $(FUZZ_BIN) test/fuzz/corpus $(FUZZ_DIR)/corpus-smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_FLAGS)
