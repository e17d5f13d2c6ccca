# Fault injection for the specs (build/spec/libfaults.so,
# build/spec/libslowdns.so). No target of their own: the libraries are
# added to the prerequisites of the targets that run the specs (test,
# sanitize, valgrind).
#
# spec/support/faults.c, preloaded (LD_PRELOAD), makes epoll_create1,
# epoll_ctl, epoll_wait and signalfd fail with a chosen errno on the Nth
# call, armed at run time from Lua (lepoll_test's T.fault).
# spec/42-faults_spec.lua (and spec/16 for signalfd) starts a child lua5.4
# per scenario with it preloaded.
#
# spec/support/slowdns.c, preloaded, makes lookups of names such as
# ms300.slow.test take 300 ms (spec/62-net_resolver_spec.lua).
FAULTS_SO  := $(BUILD)/spec/libfaults.so
SLOWDNS_SO := $(BUILD)/spec/libslowdns.so

$(BUILD)/spec/lib%.so: spec/support/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) $(LIBFLAG) -o $@ $< -ldl

test sanitize valgrind: $(FAULTS_SO) $(SLOWDNS_SO)
