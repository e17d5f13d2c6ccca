# ----------------------------------------------------------------------------
# Fault injection for the specs (issue 6): build/spec/libfaults.so, an
# LD_PRELOAD library (spec/support/faults.c) that makes epoll_create1,
# epoll_ctl and epoll_wait fail with a chosen errno on the Nth call, armed
# at run time from Lua (lepoll_test's T.fault). spec/42-faults_spec.lua
# starts a child lua5.4 per scenario with it preloaded. It is built before
# the specs run (make test, and make sanitize, whose specs are the same).
FAULTS_SO := $(BUILD)/spec/libfaults.so

$(FAULTS_SO): spec/support/faults.c | deps
	@mkdir -p $(BUILD)/spec
	$(CC) -std=c99 -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) $(LIBFLAG) -o $@ $< -ldl

test: $(FAULTS_SO)
sanitize: $(FAULTS_SO)
