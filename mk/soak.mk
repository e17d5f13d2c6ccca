# Soak testing, the random specs run long
#   make soak   runs, one after the other,
#     spec/40-model_spec.lua  runs of SOAK_STEPS (40000) random operations,
#                             each with a new seed, until SOAK_SECONDS (60)
#                             have passed (at least one run)
#     spec/41-scale_spec.lua  10,000 watched descriptors churned for
#                             SOAK_SCALE_SECONDS (20)
# Each run prints its seed; the first failure stops the soak, and its message
# says how to replay it (LEPOLL_SEED=N LEPOLL_MODEL_STEPS=N busted FILE).
# With LEPOLL_SEED set, the model runs once, with that seed.
# A short pass: make soak SOAK_SECONDS=5 SOAK_STEPS=5000 SOAK_SCALE_SECONDS=2
SOAK_SECONDS       ?= 60
SOAK_STEPS         ?= 40000
SOAK_SCALE_SECONDS ?= 20

# The Lua under test, as make test runs it (LUA=lua5.1 and the like too).
SOAK_ENV = LEPOLL_BUILD=$(BUILD) LEPOLL_LUA=$(LUA)

.PHONY: soak

## the model and scale specs, long (SOAK_SECONDS, SOAK_STEPS, SOAK_SCALE_SECONDS)
soak: all $(BUILD)/spec/lepoll_test.so
	@start=$$(date +%s); runs=0; \
	while :; do \
	    runs=$$((runs + 1)); \
	    echo "soak: model run $$runs, $(SOAK_STEPS) steps"; \
	    LEPOLL_MODEL_STEPS=$(SOAK_STEPS) $(SOAK_ENV) $(BUSTED) --run=$(LUA) spec/40-model_spec.lua \
	        || { echo "soak: model run $$runs failed (seed and replay above)"; exit 1; }; \
	    [ -z "$$LEPOLL_SEED" ] || break; \
	    [ $$(( $$(date +%s) - start )) -lt $(SOAK_SECONDS) ] || break; \
	done; \
	echo "soak: scale, $(SOAK_SCALE_SECONDS) s of churn"; \
	LEPOLL_SCALE_SECONDS=$(SOAK_SCALE_SECONDS) $(SOAK_ENV) $(BUSTED) --run=$(LUA) spec/41-scale_spec.lua \
	    || { echo "soak: scale failed (seed and replay above)"; exit 1; }; \
	echo "soak: passed in $$(( $$(date +%s) - start )) s: model runs $$runs (of $(SOAK_STEPS) steps each), scale run 1"
