/*
 * slowdns: slow host-name lookups for the resolver specs
 * (spec/62-net_resolver_spec.lua), an LD_PRELOAD library built into
 * build/spec/libslowdns.so by mk/faults.mk.
 *
 * It wraps getaddrinfo. A name of the form "msN.slow.test" is looked up
 * as "127.0.0.1" after N milliseconds; "failN.slow.test" fails with
 * EAI_NONAME after N milliseconds. Every other name goes to the next
 * definition (normally glibc's). No state: any thread may call it.
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res);

static void sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&t, &t) != 0) {
	}
}

/* N of "PREFIXN.slow.test", or -1. */
static long delay_of(const char *node, const char *prefix)
{
	size_t plen = strlen(prefix);
	char *end;
	if (!node || strncmp(node, prefix, plen) != 0)
		return -1;
	long ms = strtol(node + plen, &end, 10);
	if (end == node + plen || strcmp(end, ".slow.test") != 0 || ms < 0)
		return -1;
	return ms;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
	void *p = dlsym(RTLD_NEXT, "getaddrinfo");
	getaddrinfo_fn real;
	memcpy(&real, &p, sizeof real); /* ISO C has no object-to-function cast */
	long ms = delay_of(node, "ms");
	if (ms >= 0) {
		sleep_ms(ms);
		return real("127.0.0.1", service, hints, res);
	}
	ms = delay_of(node, "fail");
	if (ms >= 0) {
		sleep_ms(ms);
		return EAI_NONAME;
	}
	return real(node, service, hints, res);
}
