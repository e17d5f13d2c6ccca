# Fault injection for the specs (build/spec/libfaults.so)
# No target of its own: the library is added to the prerequisites of the
# targets that run the specs (test, sanitize, valgrind).
#
# spec/support/faults.c, preloaded (LD_PRELOAD), makes epoll_create1,
# epoll_ctl and epoll_wait fail with a chosen errno on the Nth call, armed
# at run time from Lua (lepoll_test's T.fault). spec/42-faults_spec.lua
# starts a child lua5.4 per scenario with it preloaded.
FAULTS_SO := $(BUILD)/spec/libfaults.so

$(FAULTS_SO): spec/support/faults.c | deps
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) $(LIBFLAG) -o $@ $< -ldl

test sanitize valgrind: $(FAULTS_SO)
