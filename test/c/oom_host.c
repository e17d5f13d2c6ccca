/*
 * A C host with a failing allocator, for lepoll.loop's memory errors
 * (doc/loop.md, "Memory errors"). The state is made by lua_newstate with
 * an allocator of the host's that fails exactly the k-th allocation
 * counted from oom.arm(k), then succeeds again. The script it runs
 * (test/c/oom_loop.lua) sweeps k = 1, 2, ... over each loop operation
 * until the operation completes without meeting the failure, and checks
 * what the loop is left with.
 *
 * An allocation is a call that asks for memory: a new block, or a block
 * made larger. Frees and shrinks are never counted and never fail. Lua
 * 5.2 to 5.4 answer a failed allocation with an emergency collection and
 * one retry of the same request; the retry (the next request for more
 * memory, when it is the very same one) fails too, so that Lua raises its
 * memory error: one allocation fails, as a memory limit would make it.
 * Lua 5.1 and LuaJIT raise at once.
 *
 * The script sees a table `oom` (global):
 *   oom.arm(k)       counting starts; the k-th allocation fails (k = 0:
 *                    counting only). The window is open until disarm.
 *   oom.arm(rank, osize, nsize)  the rank-th request for nsize bytes
 *                    with that osize fails: a traced rerun fails the
 *                    request that failed untraced, though the hook makes
 *                    Lua allocate more (stack for the hook)
 *   oom.disarm()  -> failed, count, k [, rank, osize, nsize]: whether the
 *                    failure happened in the window, the allocations
 *                    counted in it, the number of the failed one (0 when
 *                    none), and that request (for oom.arm). Idempotent:
 *                    again, the same answers, until the next arm.
 *   oom.trace(on)    a line and call hook on the calling thread (threads
 *                    made afterwards inherit it): while a window is open
 *                    and before the failure, each event records the
 *                    stack (no allocation); the failure keeps the last
 *                    record, for oom.where().
 *   oom.where()   -> the stack where the failed allocation happened (the
 *                    last line or call before it), or nil.
 *   oom.pipe()    -> r, w         non-blocking, close-on-exec
 *   oom.socketpair() -> a, b      (AF_UNIX, SOCK_STREAM), the same
 *   oom.write(fd, s) -> n | nil   oom.read(fd, n) -> s | nil
 *   oom.close(fd)
 *   oom.alarm(s)     alarm(s): a point that hangs ends the run, naming
 *                    the label below
 *   oom.label(s)     what is being done (printed when the alarm fires)
 *   oom.info()    -> a table: retries (the retries Lua made and that
 *                    failed too), warnings, version
 *
 *   build/oom_host test/c/oom_loop.lua [pattern]
 *
 * The script prints its report; the host exits 0 when the script
 * returns 0 (the number of inconsistencies found), else 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lepoll.h"

#ifndef LUA_OK
#define LUA_OK 0
#endif

/* Lua 5.2 to 5.4 retry a failed allocation once, after an emergency
 * collection; LuaJIT (LUA_VERSION_NUM 501) and 5.1 do not. */
#if LUA_VERSION_NUM >= 502
#define LUA_RETRIES 1
#else
#define LUA_RETRIES 0
#endif

/* ------------------------------------------------------------ allocator */

#define RECORD_SIZE 4096
#define MAX_SEEN 100000

static struct {
	int armed;            /* a window is open */
	unsigned long k;      /* the allocation that fails; 0: none */
	unsigned long count;  /* allocations counted in the window */
	unsigned long failed; /* the number of the failed one, 0 if none */
	int paused;           /* in the hook: not counted */
	/* The failed request, while its retry may come. */
	int retry_pending;
	void *rptr;
	size_t rosize, rnsize;
	unsigned long retries;
	unsigned long warnings;
	/* The requests counted in the window (their osize and nsize), for the
	 * failed one's rank among the requests like it; and, for a rerun, the
	 * request to fail: the rank-th like it (nsize 0: the k-th of all). */
	size_t seen_osize[MAX_SEEN], seen_nsize[MAX_SEEN];
	unsigned long rank;
	size_t sig_osize, sig_nsize;
	char record[RECORD_SIZE]; /* the stack at the last hook event */
	char where[RECORD_SIZE];  /* the record when the failure happened */
} st;

static void *oom_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	int growing;

	(void)ud;
	if (nsize == 0) {
		free(ptr);
		return NULL;
	}
	/* For a new block (ptr NULL) Lua passes a type tag as osize. */
	growing = ptr == NULL || nsize > osize;
	if (growing && st.retry_pending) {
		st.retry_pending = 0;
		if (ptr == st.rptr && osize == st.rosize && nsize == st.rnsize) {
			st.retries++;
			return NULL;
		}
	}
	if (growing && st.armed && !st.paused && st.failed == 0) {
		unsigned long i, rank = 1;
		int fail;

		st.count++;
		if (st.sig_nsize == 0) {
			fail = st.count == st.k;
		} else {
			if (osize == st.sig_osize && nsize == st.sig_nsize)
				st.rank++;
			fail = st.rank == st.k;
		}
		if (st.count <= MAX_SEEN) {
			st.seen_osize[st.count - 1] = osize;
			st.seen_nsize[st.count - 1] = nsize;
		}
		if (fail) {
			for (i = 0; i + 1 < st.count && i < MAX_SEEN; i++)
				rank += st.seen_osize[i] == osize && st.seen_nsize[i] == nsize;
			st.rank = rank;
			st.sig_osize = osize;
			st.sig_nsize = nsize;
			st.failed = st.count;
			memcpy(st.where, st.record, sizeof st.where);
			st.retry_pending = LUA_RETRIES;
			st.rptr = ptr;
			st.rosize = osize;
			st.rnsize = nsize;
			return NULL;
		}
	}
	return realloc(ptr, nsize);
}

/* ----------------------------------------------------------------- hook */

/* Appends a traceback line to st.record, truncating. */
static void record_add(size_t *len, const char *src, int line, const char *name)
{
	int n;

	if (*len >= sizeof st.record - 1)
		return;
	n = snprintf(st.record + *len, sizeof st.record - *len, "\n\t%s:%d: in %s", src, line, name);
	if (n > 0)
		*len += (size_t)n;
	if (*len > sizeof st.record - 1)
		*len = sizeof st.record - 1;
}

/* The stack of the running thread, as a traceback: lua_getstack and
 * lua_getinfo without "f" or "L" allocate nothing. */
static void hook(lua_State *L, lua_Debug *ar)
{
	lua_Debug d;
	size_t len = 0;
	int level;

	(void)ar;
	if (!st.armed || st.failed != 0)
		return;
	st.paused++;
	st.record[0] = '\0';
	for (level = 0; level < 24 && lua_getstack(L, level, &d); level++) {
		if (!lua_getinfo(L, "Sln", &d))
			break;
		record_add(&len, d.short_src, d.currentline,
		           d.name != NULL ? d.name : (*d.what == 'm' ? "main chunk" : "?"));
	}
	st.paused--;
}

/* ----------------------------------------------------- the host's functions */

/* oom.arm(k [, osize, nsize]): with osize and nsize, the k-th request for
 * nsize bytes with that osize fails (a rerun's way to fail the request
 * that failed before, whatever else the hook made Lua allocate). */
static int l_arm(lua_State *L)
{
	lua_Integer k = luaL_checkinteger(L, 1);

	luaL_argcheck(L, k >= 0, 1, "k must be >= 0");
	st.sig_osize = (size_t)luaL_optinteger(L, 2, 0);
	st.sig_nsize = (size_t)luaL_optinteger(L, 3, 0);
	st.rank = 0;
	st.k = (unsigned long)k;
	st.count = 0;
	st.failed = 0;
	st.retry_pending = 0;
	st.where[0] = '\0';
	st.record[0] = '\0';
	st.armed = 1;
	return 0;
}

static int l_disarm(lua_State *L)
{
	st.armed = 0;
	lua_pushboolean(L, st.failed != 0);
	lua_pushinteger(L, (lua_Integer)st.count);
	lua_pushinteger(L, (lua_Integer)st.failed);
	if (st.failed == 0)
		return 3;
	/* The failed request: its rank among those like it, and what it asked. */
	lua_pushinteger(L, (lua_Integer)st.rank);
	lua_pushinteger(L, (lua_Integer)st.sig_osize);
	lua_pushinteger(L, (lua_Integer)st.sig_nsize);
	return 6;
}

static int l_trace(lua_State *L)
{
	if (lua_toboolean(L, 1))
		lua_sethook(L, hook, LUA_MASKCALL | LUA_MASKLINE, 0);
	else
		lua_sethook(L, NULL, 0, 0);
	return 0;
}

static int l_where(lua_State *L)
{
	if (st.failed == 0 || st.where[0] == '\0')
		return 0;
	lua_pushstring(L, st.where);
	return 1;
}

static int set_flags(int fd)
{
	return fcntl(fd, F_SETFL, O_NONBLOCK) == 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) == 0;
}

static int push_pair(lua_State *L, int fds[2], const char *what)
{
	if (!set_flags(fds[0]) || !set_flags(fds[1])) {
		close(fds[0]);
		close(fds[1]);
		return luaL_error(L, "%s: fcntl: %s", what, strerror(errno));
	}
	lua_pushinteger(L, fds[0]);
	lua_pushinteger(L, fds[1]);
	return 2;
}

static int l_pipe(lua_State *L)
{
	int fds[2];

	if (pipe(fds) != 0)
		return luaL_error(L, "pipe: %s", strerror(errno));
	return push_pair(L, fds, "pipe");
}

static int l_socketpair(lua_State *L)
{
	int fds[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
		return luaL_error(L, "socketpair: %s", strerror(errno));
	return push_pair(L, fds, "socketpair");
}

static int l_write(lua_State *L)
{
	size_t len;
	int fd = (int)luaL_checkinteger(L, 1);
	const char *s = luaL_checklstring(L, 2, &len);
	ssize_t n = write(fd, s, len);

	if (n < 0)
		return 0;
	lua_pushinteger(L, (lua_Integer)n);
	return 1;
}

static int l_read(lua_State *L)
{
	char buf[65536];
	int fd = (int)luaL_checkinteger(L, 1);
	lua_Integer want = luaL_optinteger(L, 2, (lua_Integer)sizeof buf);
	ssize_t n;

	if (want < 1 || want > (lua_Integer)sizeof buf)
		want = (lua_Integer)sizeof buf;
	n = read(fd, buf, (size_t)want);
	if (n < 0)
		return 0;
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

static int l_close(lua_State *L)
{
	lua_pushboolean(L, close((int)luaL_checkinteger(L, 1)) == 0);
	return 1;
}

static char label[256];

static void on_alarm(int sig)
{
	static const char msg[] = "\noom: ALARM: the point hung: ";
	size_t n = strlen(label);
	ssize_t ignored;

	(void)sig;
	ignored = write(STDOUT_FILENO, msg, sizeof msg - 1);
	ignored = write(STDOUT_FILENO, label, n);
	ignored = write(STDOUT_FILENO, "\n", 1);
	(void)ignored;
	_exit(3);
}

static int l_alarm(lua_State *L)
{
	alarm((unsigned)luaL_checkinteger(L, 1));
	return 0;
}

static int l_label(lua_State *L)
{
	snprintf(label, sizeof label, "%s", luaL_checkstring(L, 1));
	return 0;
}

static int l_info(lua_State *L)
{
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, (lua_Integer)st.retries);
	lua_setfield(L, -2, "retries");
	lua_pushinteger(L, (lua_Integer)st.warnings);
	lua_setfield(L, -2, "warnings");
	lua_pushboolean(L, LUA_RETRIES);
	lua_setfield(L, -2, "lua_retries");
	return 1;
}

static const luaL_Reg oom_functions[] = {
	{"arm", l_arm},
	{"disarm", l_disarm},
	{"trace", l_trace},
	{"where", l_where},
	{"pipe", l_pipe},
	{"socketpair", l_socketpair},
	{"write", l_write},
	{"read", l_read},
	{"close", l_close},
	{"alarm", l_alarm},
	{"label", l_label},
	{"info", l_info},
	{NULL, NULL},
};

/* ------------------------------------------------------------------ main */

#if LUA_VERSION_NUM >= 504
/* Errors in finalizers come as warnings; lua_newstate sets no warn
 * function. Printed, one line each, and counted. */
static void warnf(void *ud, const char *msg, int tocont)
{
	static int continued;

	(void)ud;
	if (!continued) {
		st.warnings++;
		fputs("oom: warning: ", stdout);
	}
	fputs(msg, stdout);
	continued = tocont;
	if (!tocont)
		fputc('\n', stdout);
}
#endif

static int panic(lua_State *L)
{
	fprintf(stderr, "oom_host: panic: %s\n", lua_tostring(L, -1));
	fflush(stdout);
	abort();
	return 0;
}

/* The message handler of the script's call: debug.traceback (5.1 has no
 * luaL_traceback). */
static int traceback(lua_State *L)
{
	if (lua_tostring(L, 1) == NULL) {
		lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
		lua_replace(L, 1);
	}
	lua_getglobal(L, "debug");
	lua_getfield(L, -1, "traceback");
	lua_pushvalue(L, 1);
	lua_pushinteger(L, 2);
	lua_call(L, 2, 1);
	return 1;
}

int main(int argc, char **argv)
{
	lua_State *L;
	int i, status, result = 1;

	if (argc < 2) {
		fprintf(stderr, "usage: oom_host SCRIPT [ARGS...]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	L = lua_newstate(oom_alloc, NULL);
	if (L == NULL) {
		printf("oom: skip: lua_newstate with a custom allocator is not available here\n");
		return 0;
	}
	lua_atpanic(L, panic);
#if LUA_VERSION_NUM >= 504
	lua_setwarnf(L, warnf, NULL);
#endif
	luaL_openlibs(L);
#if LUA_VERSION_NUM >= 502
	luaL_requiref(L, "lepoll", luaopen_lepoll, 0);
	lua_pop(L, 1);
	luaL_newlib(L, oom_functions);
	lua_setglobal(L, "oom");
#else
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "loaded");
	lua_pushcfunction(L, luaopen_lepoll);
	lua_pushstring(L, "lepoll");
	lua_call(L, 1, 1);
	lua_setfield(L, -2, "lepoll");
	lua_pop(L, 2);
	lua_newtable(L);
	luaL_register(L, NULL, oom_functions);
	lua_setglobal(L, "oom");
#endif
	lua_pushcfunction(L, traceback);
	if (luaL_loadfile(L, argv[1]) != LUA_OK) {
		printf("oom: load: %s\n", lua_tostring(L, -1));
		lua_close(L);
		return 1;
	}
	for (i = 2; i < argc; i++)
		lua_pushstring(L, argv[i]);
	status = lua_pcall(L, argc - 2, 1, 1);
	if (status != LUA_OK) {
		printf("oom: script: %s\n", lua_tostring(L, -1));
	} else if (lua_isnumber(L, -1) && lua_tonumber(L, -1) == 0) {
		result = 0;
	}
	lua_close(L);
	return result;
}
