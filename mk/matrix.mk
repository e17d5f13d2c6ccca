# The test matrix, make test under every Lua lepoll supports
#   make test-all   make test LUA=V for each V of TEST_ALL_LUAS
#
# One version after the other, each with its own build (build/ for 5.4,
# build/VERSION/ for the rest); the interpreters and headers come from
# Debian's packages, which make test installs when missing. Every version
# runs even when one fails; the target fails if any did.
TEST_ALL_LUAS ?= $(SUPPORTED_LUAS)

.PHONY: test-all

## make test under every supported Lua (TEST_ALL_LUAS), one after the other
test-all:
	@failed=""; \
	for v in $(TEST_ALL_LUAS); do \
		echo "== make test LUA=$$v"; \
		$(MAKE) --no-print-directory test LUA=$$v || failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-all: failed under:$$failed"; exit 1; fi; \
	echo "test-all: passed under $(TEST_ALL_LUAS)"
