/* benchc: the bench-only Lua module (bench/, issue 5). Not part of lepoll.
 *
 * It holds the raw-C contender, timed in C with CLOCK_MONOTONIC in the
 * same process as the Lua contenders, so rounds interleave:
 *   raw_wait(fds, maxev, budget_ns)   epoll_wait(0) + a non-inlined handler
 *                                     per event, until budget_ns passed
 *                                     -> elapsed_ns, waits, events
 *   raw_churn(fds, budget_ns)         epoll_ctl ADD, MOD, DEL over fds, each
 *                                     phase timed apart -> ns_add, ns_mod,
 *                                     ns_del (totals), ops per phase
 * and the fixtures and the clock the Lua driver needs:
 *   now_ns()                          CLOCK_MONOTONIC, integer ns since
 *                                     benchc was loaded (so exact in a
 *                                     double: LuaJIT has no integers)
 *   pipes(n)                          n pipes, one byte written into each;
 *                                     -> list of read ends, list of write ends
 *   eventfds(n [, ready])             n eventfds, the first `ready` readable
 *   close(list)                       closes every descriptor of a list
 *   raise_nofile()                    soft RLIMIT_NOFILE to the hard one
 *   pin_cpu()                         binds the process to the last CPU it
 *                                     may run on -> that CPU, or nil
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

/* Built for every Lua the Makefile knows, LuaJIT included (its API is
 * 5.1's): only calls that 5.1 has, or these. */
#if LUA_VERSION_NUM < 502
#define lua_rawlen lua_objlen
#ifndef luaL_newlib /* LuaJIT 2.1 has it, 5.1 not */
#define luaL_newlib(L, l) (lua_newtable(L), luaL_register(L, NULL, l))
#endif
#endif

#define BENCH_API __attribute__((visibility("default")))

int BENCH_API luaopen_benchc(lua_State *L);

static volatile uint64_t sink;

/* The trivial callback: not inlined, so each event costs a real call. */
__attribute__((noinline)) static void handle(int fd, uint32_t events)
{
	sink += (uint64_t)fd ^ events;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t loaded_ns;

static int l_now_ns(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)(now_ns() - loaded_ns));
	return 1;
}

/* The integers of the list at idx, in a new malloc'd array. */
static int *tofds(lua_State *L, int idx, int *n)
{
	int i, *fds;

	luaL_checktype(L, idx, LUA_TTABLE);
	*n = (int)lua_rawlen(L, idx);
	fds = malloc(sizeof *fds * (size_t)(*n > 0 ? *n : 1));
	if (fds == NULL)
		luaL_error(L, "out of memory");
	for (i = 0; i < *n; i++) {
		lua_rawgeti(L, idx, i + 1);
		fds[i] = (int)lua_tointeger(L, -1);
		lua_pop(L, 1);
	}
	return fds;
}

static int fail(lua_State *L, const char *what, int *fds, struct epoll_event *evs, int ep)
{
	int err = errno;

	free(fds);
	free(evs);
	if (ep >= 0)
		close(ep);
	return luaL_error(L, "%s: %s", what, strerror(err));
}

static int l_raw_wait(lua_State *L)
{
	int n, i, ep;
	int *fds = tofds(L, 1, &n);
	int maxev = (int)luaL_checkinteger(L, 2);
	int64_t budget = (int64_t)luaL_checkinteger(L, 3), start, now;
	long long waits = 0, events = 0;
	struct epoll_event ev, *evs = malloc(sizeof *evs * (size_t)maxev);

	if (evs == NULL)
		return fail(L, "malloc", fds, NULL, -1);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return fail(L, "epoll_create1", fds, evs, -1);
	for (i = 0; i < n; i++) {
		memset(&ev, 0, sizeof ev);
		ev.events = EPOLLIN;
		ev.data.u64 = (uint64_t)fds[i];
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0)
			return fail(L, "epoll_ctl", fds, evs, ep);
	}
	start = now_ns();
	do {
		int k, j;

		for (k = 0; k < 16; k++) {
			int r = epoll_wait(ep, evs, maxev, 0);

			if (r < 0)
				return fail(L, "epoll_wait", fds, evs, ep);
			for (j = 0; j < r; j++)
				handle((int)evs[j].data.u64, evs[j].events);
			events += r;
		}
		waits += 16;
		now = now_ns();
	} while (now - start < budget);
	close(ep);
	free(fds);
	free(evs);
	lua_pushinteger(L, (lua_Integer)(now - start));
	lua_pushinteger(L, (lua_Integer)waits);
	lua_pushinteger(L, (lua_Integer)events);
	return 3;
}

static int l_raw_churn(lua_State *L)
{
	int n, i, ep;
	int *fds = tofds(L, 1, &n);
	int64_t budget = (int64_t)luaL_checkinteger(L, 2), start, t0, t1, t2, t3;
	int64_t tadd = 0, tmod = 0, tdel = 0;
	long long ops = 0;
	struct epoll_event ev;

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return fail(L, "epoll_create1", fds, NULL, -1);
	start = now_ns();
	do {
		t0 = now_ns();
		for (i = 0; i < n; i++) {
			memset(&ev, 0, sizeof ev);
			ev.events = EPOLLIN;
			ev.data.u64 = (uint64_t)fds[i];
			if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0)
				return fail(L, "epoll_ctl ADD", fds, NULL, ep);
		}
		t1 = now_ns();
		for (i = 0; i < n; i++) {
			memset(&ev, 0, sizeof ev);
			ev.events = EPOLLIN;
			ev.data.u64 = (uint64_t)fds[i];
			if (epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &ev) != 0)
				return fail(L, "epoll_ctl MOD", fds, NULL, ep);
		}
		t2 = now_ns();
		for (i = 0; i < n; i++)
			if (epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], &ev) != 0)
				return fail(L, "epoll_ctl DEL", fds, NULL, ep);
		t3 = now_ns();
		tadd += t1 - t0;
		tmod += t2 - t1;
		tdel += t3 - t2;
		ops += n;
	} while (t3 - start < budget);
	close(ep);
	free(fds);
	lua_pushinteger(L, (lua_Integer)tadd);
	lua_pushinteger(L, (lua_Integer)tmod);
	lua_pushinteger(L, (lua_Integer)tdel);
	lua_pushinteger(L, (lua_Integer)ops);
	return 4;
}

static int l_pipes(lua_State *L)
{
	int n = (int)luaL_checkinteger(L, 1), i, p[2];

	lua_createtable(L, n, 0);
	lua_createtable(L, n, 0);
	for (i = 1; i <= n; i++) {
		if (pipe2(p, O_CLOEXEC) != 0)
			return luaL_error(L, "pipe2: %s (after %d)", strerror(errno), i - 1);
		if (write(p[1], "x", 1) != 1)
			return luaL_error(L, "write: %s", strerror(errno));
		lua_pushinteger(L, p[0]);
		lua_rawseti(L, -3, i);
		lua_pushinteger(L, p[1]);
		lua_rawseti(L, -2, i);
	}
	return 2;
}

static int l_eventfds(lua_State *L)
{
	int n = (int)luaL_checkinteger(L, 1), ready = (int)luaL_optinteger(L, 2, 0), i;

	lua_createtable(L, n, 0);
	for (i = 1; i <= n; i++) {
		int fd = eventfd(i <= ready ? 1 : 0, EFD_CLOEXEC | EFD_NONBLOCK);

		if (fd < 0)
			return luaL_error(L, "eventfd: %s (after %d)", strerror(errno), i - 1);
		lua_pushinteger(L, fd);
		lua_rawseti(L, -2, i);
	}
	return 1;
}

static int l_close(lua_State *L)
{
	lua_Integer i, n;

	luaL_checktype(L, 1, LUA_TTABLE);
	n = (lua_Integer)lua_rawlen(L, 1);
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, 1, (int)i);
		close((int)lua_tointeger(L, -1));
		lua_pop(L, 1);
	}
	return 0;
}

static int l_raise_nofile(lua_State *L)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	lua_pushinteger(L, (lua_Integer)rl.rlim_cur);
	return 1;
}

/* One CPU for the whole run: no migrations between rounds, and every
 * contender sees the same caches and the same frequency. */
static int l_pin_cpu(lua_State *L)
{
	cpu_set_t allowed, one;
	int cpu;

	if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
		return 0;
	for (cpu = CPU_SETSIZE - 1; cpu >= 0; cpu--) {
		if (CPU_ISSET(cpu, &allowed))
			break;
	}
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (cpu < 0 || sched_setaffinity(0, sizeof one, &one) != 0)
		return 0;
	lua_pushinteger(L, cpu);
	return 1;
}

int luaopen_benchc(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"now_ns", l_now_ns},       {"raw_wait", l_raw_wait}, {"raw_churn", l_raw_churn},
		{"pipes", l_pipes},         {"eventfds", l_eventfds}, {"close", l_close},
		{"raise_nofile", l_raise_nofile}, {"pin_cpu", l_pin_cpu}, {NULL, NULL},
	};
	loaded_ns = now_ns();
	luaL_newlib(L, fns);
	return 1;
}
