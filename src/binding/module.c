/*
 * lepoll: the Lua binding of the core (lepoll_core.c). It turns Lua values
 * into core calls and the core's errno results into Lua values and errors.
 */
#define _POSIX_C_SOURCE 200809L /* XSI strerror_r, fileno */

#include "lepoll.h"
#include "lepoll_core.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "compat.h"

#define LEPOLL_VERSION "lepoll 0.1.0"

/* Upvalues shared by every function of the module. Keeping the wait
 * results referenced here means wait never creates a string. */
#define UV_SETMT       lua_upvalueindex(1)
#define UV_OK          lua_upvalueindex(2)
#define UV_TIMEOUT     lua_upvalueindex(3)
#define UV_INTERRUPTED lua_upvalueindex(4)
#define UV_ITER_PROTECTED lua_upvalueindex(5)
#define UV_FOLD_PROTECTED lua_upvalueindex(6)
#define NUM_UPVALUES   6

#if LEPOLL_HAVE_TOCLOSE
#define GUARD_MT "lepoll.ready_guard" /* the busy guard's metatable (5.4) */
#endif
#define DEFAULT_MAX_READY 256
#define FD_KINDS "file descriptor (integer, file handle or object with getfd/pollfd/fileno)"

/* ---------------------------------------------------------------- errors */

static int syserror(lua_State *L, const char *op, int fd, int err)
{
	char text[128];
	const char *name = lep_errname(err);
	char unknown[32];

	if (strerror_r(err, text, sizeof text) != 0)
		(void)snprintf(text, sizeof text, "Unknown error %d", err);
	if (name == NULL) {
		(void)snprintf(unknown, sizeof unknown, "errno %d", err);
		name = unknown;
	}
	if (fd >= 0)
		return luaL_error(L, "lepoll: %s fd %d: %s (%s)", op, fd, text, name);
	return luaL_error(L, "lepoll: %s: %s (%s)", op, text, name);
}

/* ------------------------------------------------------------ the object */

/* Any set, open or closed: the one type check. */
static lep_set *toset(lua_State *L)
{
	lep_set *s = lua_touserdata(L, 1);

	if (lua_type(L, 1) != LUA_TUSERDATA || !lua_getmetatable(L, 1) ||
	    !lua_rawequal(L, -1, UV_SETMT))
		luaL_typeerror(L, 1, LEPOLL_SET_MT);
	lua_pop(L, 1);
	return s;
}

/* The one place that rejects a closed set. */
static void reject_closed(lua_State *L, const lep_set *s)
{
	if (s->epfd < 0)
		luaL_error(L, "attempt to use a closed epoll set");
}

static lep_set *checkset(lua_State *L)
{
	lep_set *s = toset(L);

	reject_closed(L, s);
	return s;
}

/* ------------------------------------------------------------- arguments */

/* An integer as text for messages: lua_pushfstring's %I is 5.3's. */
#define INTSTR_SIZE 24
static const char *intstr(char *buf, lua_Integer v)
{
	(void)snprintf(buf, INTSTR_SIZE, "%lld", (long long)v);
	return buf;
}

/* Finite with no fraction; beyond 2^53 every double is. */
static int is_integral(lua_Number n)
{
	if (!(n - n == 0))
		return 0; /* NaN or infinite */
	if (n >= 9007199254740992.0 || n <= -9007199254740992.0)
		return 1;
	return (lua_Number)(long long)n == n;
}

static lua_Integer number_to_fd(lua_State *L, int idx, const lep_set *s)
{
	lua_Integer fd = -1;

	if (lua_isinteger(L, idx))
		return lua_tointeger(L, idx);
	lua_Number n = lua_tonumber(L, idx);

	if (lua_numbertointeger(n, &fd) && (lua_Number)fd == n)
		return fd;
	if (is_integral(n))
		luaL_argerror(L, idx, lua_pushfstring(L, "fd %s out of range [0, %d)", lua_tostring(L, idx),
		                                      s->num_fds));
	luaL_argerror(L, idx, lua_pushfstring(L, "fd %s is not an integer (valid range [0, %d))",
	                                      lua_tostring(L, idx), s->num_fds));
	return fd;
}

/* Descriptors that are not plain integers: file handles and objects with
 * a getfd, pollfd or fileno method (LuaSocket, cqueues and the like). */
static lua_Integer object_to_fd(lua_State *L, int idx, const lep_set *s)
{
	static const char *const methods[] = {"getfd", "pollfd", "fileno"};
	FILE *file = NULL;
	int is_file, top = lua_gettop(L);

	if (lua_type(L, idx) == LUA_TNUMBER)
		return number_to_fd(L, idx, s);
#if LUA_VERSION_NUM >= 502
	{
		luaL_Stream *stream = luaL_testudata(L, idx, LUA_FILEHANDLE);

		is_file = stream != NULL;
		if (is_file && stream->closef != NULL)
			file = stream->f;
	}
#else
	{
		FILE **filep = lepoll_tofilep(L, idx);

		is_file = filep != NULL;
		if (is_file)
			file = *filep;
	}
#endif
	if (is_file) {
		if (file == NULL)
			luaL_argerror(L, idx, lua_pushfstring(L, "closed file handle (valid range [0, %d))",
			                                      s->num_fds));
		return fileno(file);
	}
	if (lua_type(L, idx) == LUA_TTABLE ||
	    (lua_type(L, idx) == LUA_TUSERDATA && luaL_getmetafield(L, idx, "__index") != LUA_TNIL)) {
		size_t i;

		lua_settop(L, top);
		for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
			int t = lua_getfield(L, idx, methods[i]);
			if (t == LUA_TNIL) {
				lua_pop(L, 1);
				continue;
			}
			if (t != LUA_TFUNCTION && luaL_getmetafield(L, -1, "__call") == LUA_TNIL)
				luaL_argerror(L, idx, lua_pushfstring(L, "%s is %s, not a method", methods[i],
				                                      luaL_typename(L, -1)));
			lua_settop(L, top + 1);
			lua_pushvalue(L, idx);
			lua_call(L, 1, 1);
			if (lua_type(L, -1) != LUA_TNUMBER)
				luaL_argerror(L, idx, lua_pushfstring(L, "%s returned %s, not an fd", methods[i],
				                                      luaL_typename(L, -1)));
			reject_closed(L, s); /* the method may have closed the set */
			lua_replace(L, idx);  /* judge the result as if it had been passed */
			return number_to_fd(L, idx, s);
		}
	}
	luaL_typeerror(L, idx, FD_KINDS);
	return -1;
}

static int checkfd(lua_State *L, int idx, const lep_set *s)
{
	lua_Integer fd = lua_isinteger(L, idx) ? lua_tointeger(L, idx) : object_to_fd(L, idx, s);

	if (fd < 0 || fd >= s->num_fds) {
		char num[INTSTR_SIZE];

		luaL_argerror(L, idx, lua_pushfstring(L, "fd %s out of range [0, %d)", intstr(num, fd),
		                                      s->num_fds));
	}
	return (int)fd;
}

static uint32_t flags_from_number(lua_State *L, int idx, int arg)
{
	lua_Integer v = 0;

	if (!lua_isinteger(L, idx) &&
	    (!lua_numbertointeger(lua_tonumber(L, idx), &v) || (lua_Number)v != lua_tonumber(L, idx)))
		luaL_argerror(L, arg, lua_pushfstring(L, "flags %s are not an integer", lua_tostring(L, idx)));
	v = lua_tointeger(L, idx);
	if (v < 0 || v > (lua_Integer)UINT32_MAX) {
		char num[INTSTR_SIZE];

		luaL_argerror(L, arg, lua_pushfstring(L, "flags %s out of range [0, 0xffffffff]",
		                                      intstr(num, v)));
	}
	return (uint32_t)v;
}

/* A name as it can be shown in a message: control bytes (NUL included,
 * which would cut the message short) as \ddd, long names cut with "...". */
static void printable(const char *name, size_t len, char *out, size_t n)
{
	size_t i, k = 0;

	for (i = 0; i < len && k + 8 < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c == 0x7f)
			k += (size_t)snprintf(out + k, n - k, "\\%d", c);
		else
			out[k++] = (char)c;
	}
	if (i < len)
		k += (size_t)snprintf(out + k, n - k, "...");
	out[k] = '\0';
}

static uint32_t flags_from_string(lua_State *L, int idx, int arg)
{
	size_t len, bad = 0, badlen = 0;
	const char *str = lua_tolstring(L, idx, &len);
	uint32_t flags;

	if (lep_parse_flags(str, len, &flags, &bad, &badlen) != 0) {
		char shown[64];
		printable(str + bad, badlen, shown, sizeof shown);
		luaL_argerror(L, arg, lua_pushfstring(L, "unknown flag name '%s'", shown));
	}
	return flags;
}

/* An integer, a string of names or a list of names (or integers). */
static uint32_t checkflags(lua_State *L, int idx)
{
	uint32_t flags = 0;
	lua_Integer i, n;
	char num[INTSTR_SIZE];

	switch (lua_type(L, idx)) {
	case LUA_TNUMBER:
		return flags_from_number(L, idx, idx);
	case LUA_TSTRING:
		return flags_from_string(L, idx, idx);
	case LUA_TTABLE:
		n = (lua_Integer)lua_rawlen(L, idx);
		for (i = 1; i <= n; i++) {
			int t = lua_rawgeti(L, idx, i);
			if (t == LUA_TSTRING)
				flags |= flags_from_string(L, -1, idx);
			else if (t == LUA_TNUMBER)
				flags |= flags_from_number(L, -1, idx);
			else
				luaL_argerror(L, idx, lua_pushfstring(L, "flag list item %s is %s, not a name",
				                                      intstr(num, i), luaL_typename(L, -1)));
			lua_pop(L, 1);
		}
		return flags;
	default:
		luaL_typeerror(L, idx, "flags (integer, string of names or list of names)");
		return 0;
	}
}

static int is_literal(const char *s, size_t len, const char *lit)
{
	return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

/* nil or "never": -1; 0 or "immediately": 0; else seconds. */
static int checktimeout(lua_State *L, int idx)
{
	const char *str;
	size_t len;
	lua_Number span;

	switch (lua_type(L, idx)) {
	case LUA_TNONE:
	case LUA_TNIL:
		return -1;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			return lep_timeout_ms_int((long long)lua_tointeger(L, idx));
		}
		span = lua_tonumber(L, idx);
		if (span != span)
			luaL_argerror(L, idx, "timeout is NaN");
		return lep_timeout_ms((double)span);
	case LUA_TSTRING:
		str = lua_tolstring(L, idx, &len);
		if (is_literal(str, len, "never"))
			return -1;
		if (is_literal(str, len, "immediately"))
			return 0;
		return luaL_argerror(L, idx, lua_pushfstring(L, "invalid timeout '%s' (expected seconds, "
		                                                "'never' or 'immediately')", str));
	default:
		return luaL_typeerror(L, idx, "timeout (seconds, 'never', 'immediately' or nil)");
	}
}

static void checkcallable(lua_State *L, int idx)
{
	if (lua_type(L, idx) != LUA_TFUNCTION) {
		if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL)
			luaL_typeerror(L, idx, "function");
		lua_pop(L, 1);
	}
}

static int optcount(lua_State *L, int idx, int def, int max, const char *what)
{
	lua_Integer v;
	int isint;

	if (lua_isnoneornil(L, idx))
		return def;
	if (lua_type(L, idx) != LUA_TNUMBER)
		return luaL_typeerror(L, idx, "integer");
	v = lua_tointegerx(L, idx, &isint);
	if (!isint && is_integral(lua_tonumber(L, idx)))
		return luaL_argerror(L, idx, lua_pushfstring(L, "%s must be in [1, %d], got %s", what, max,
		                                             lua_tostring(L, idx)));
	if (!isint)
		return luaL_argerror(L, idx, lua_pushfstring(L, "%s must be an integer", what));
	if (v < 1 || v > max) {
		char num[INTSTR_SIZE];

		return luaL_argerror(L, idx, lua_pushfstring(L, "%s must be in [1, %d], got %s", what, max,
		                                             intstr(num, v)));
	}
	return (int)v;
}

/* --------------------------------------------------------------- module */

static int l_create(lua_State *L)
{
	int num_fds = optcount(L, 1, lep_default_num_fds(), INT_MAX, "num_file_descrs");
	int max_ready = optcount(L, 2, DEFAULT_MAX_READY, LEP_MAX_READY, "max_ready_events");
	void *ud;
	lua_Alloc alloc = lua_getallocf(L, &ud);
	lep_set *s = lua_newuserdatauv(L, sizeof *s, 1);
	int err;

	/* Closed first: if opening fails, __gc finds a set with nothing to free. */
	lep_init(s, alloc, ud);
	lua_pushvalue(L, UV_SETMT);
	lua_setmetatable(L, -2);
#if LEPOLL_HAVE_TOCLOSE
	*(lep_set **)lua_newuserdatauv(L, sizeof(lep_set *), 0) = s;
	luaL_setmetatable(L, GUARD_MT);
	lua_setiuservalue(L, -2, 1);
#endif
	err = lep_open(s, num_fds, max_ready);
	if (err == EMFILE || err == ENFILE) {
		/* Unreachable sets may hold descriptors until collected. */
		lua_gc(L, LUA_GCCOLLECT, 0);
		err = lep_open(s, num_fds, max_ready);
	}
	if (err != 0)
		return syserror(L, "create", -1, err);
	return 1;
}

static int l_flags(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)checkflags(L, 1));
	return 1;
}

static int l_flagnames(lua_State *L)
{
	char buf[LEP_FLAGNAMES_MAX];
	size_t len = lep_flagnames(checkflags(L, 1), buf, sizeof buf);

	lua_pushlstring(L, buf, len);
	return 1;
}

static int l_has(lua_State *L)
{
	uint32_t flags = checkflags(L, 1);

	lua_pushboolean(L, (flags & checkflags(L, 2)) != 0);
	return 1;
}

static int l_timeout_ms(lua_State *L)
{
	lua_pushinteger(L, checktimeout(L, 1));
	return 1;
}

static int l_now(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)lep_now());
	return 1;
}

/* ------------------------------------------------------------ the table */

static int m_set(lua_State *L)
{
	lep_set *s = checkset(L);
	int fd = checkfd(L, 2, s);
	uint32_t flags = checkflags(L, 3), old;
	int err;

	if (lep_find(s, fd, &old)) {
		/* The kernel takes EXCLUSIVE only with EPOLL_CTL_ADD, and refuses
		 * every EPOLL_CTL_MOD of an entry added with it. */
		if (flags & LEP_EXCLUSIVE)
			return luaL_argerror(L, 3, lua_pushfstring(L, "exclusive can only be set when fd %d is "
			                                              "added; remove it first", fd));
		if (old & LEP_EXCLUSIVE)
			return luaL_argerror(L, 3, lua_pushfstring(L, "fd %d was added with exclusive, which "
			                                              "the kernel never modifies; remove it first",
			                                           fd));
	}
	err = lep_set_flags(s, fd, flags);
	if (err != 0)
		return syserror(L, "set", fd, err);
	return 0;
}

static int m_remove(lua_State *L)
{
	lep_set *s = checkset(L);
	int fd = checkfd(L, 2, s);
	int err = lep_remove(s, fd);

	if (err != 0)
		return syserror(L, "remove", fd, err);
	return 0;
}

/* The descriptor argument as set, remove and find see it. */
static int m_tofd(lua_State *L)
{
	lep_set *s = checkset(L);

	lua_pushinteger(L, checkfd(L, 2, s));
	return 1;
}

static int m_find(lua_State *L)
{
	lep_set *s = checkset(L);
	int fd = checkfd(L, 2, s);
	uint32_t flags;

	if (lep_find(s, fd, &flags))
		lua_pushinteger(L, (lua_Integer)flags);
	else
		lua_pushnil(L);
	return 1;
}

/* Callbacks may change or close the set: each step asks the table again. */
static int m_iter(lua_State *L)
{
	lep_set *s = checkset(L);
	int fd;

	checkcallable(L, 2);
	for (fd = lep_next(s, 0); fd >= 0; fd = lep_next(s, fd + 1)) {
		lua_pushvalue(L, 2);
		lua_pushinteger(L, fd);
		lua_pushinteger(L, (lua_Integer)s->table[fd].flags);
		lua_call(L, 2, 0);
	}
	return 0;
}

static int m_fold(lua_State *L)
{
	lep_set *s = checkset(L);
	int fd;

	checkcallable(L, 3);
	lua_settop(L, 3);
	for (fd = lep_next(s, 0); fd >= 0; fd = lep_next(s, fd + 1)) {
		lua_pushvalue(L, 3);
		lua_pushinteger(L, fd);
		lua_pushinteger(L, (lua_Integer)s->table[fd].flags);
		lua_pushvalue(L, 2);
		lua_call(L, 3, 1);
		lua_replace(L, 2);
	}
	lua_settop(L, 2);
	return 1;
}

static int m_next(lua_State *L)
{
	lep_set *s = checkset(L);
	lua_Integer after = lua_isnoneornil(L, 2) ? -1 : luaL_checkinteger(L, 2);
	int fd = after >= s->cap ? -1 : lep_next(s, after < 0 ? 0 : (int)after + 1);

	if (fd < 0)
		return 0;
	lua_pushinteger(L, fd);
	lua_pushinteger(L, (lua_Integer)s->table[fd].flags);
	return 2;
}


static int m_pairs(lua_State *L)
{
	int i;

	checkset(L);
	for (i = 1; i <= NUM_UPVALUES; i++)
		lua_pushvalue(L, lua_upvalueindex(i));
	lua_pushcclosure(L, m_next, NUM_UPVALUES);
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return 3;
}

static int m_len(lua_State *L)
{
	lua_pushinteger(L, toset(L)->count);
	return 1;
}

/* ---------------------------------------------------------- the waiting */

static int do_wait(lua_State *L, lep_set *s, int timeout_ms)
{
	int err;

	if (s->ready_busy > 0)
		return luaL_error(L, "cannot wait while iter_ready or fold_ready runs on this epoll set");
	err = lep_wait(s, timeout_ms);
	if (err == 0)
		lua_pushvalue(L, s->nready > 0 ? UV_OK : UV_TIMEOUT);
	else if (err == EINTR)
		lua_pushvalue(L, UV_INTERRUPTED);
	else
		return syserror(L, "wait", -1, err);
	return 1;
}

static int m_wait(lua_State *L)
{
	lep_set *s = checkset(L);

	return do_wait(L, s, checktimeout(L, 2));
}

static int m_wait_timeout_after(lua_State *L)
{
	lep_set *s = checkset(L);

	luaL_checktype(L, 2, LUA_TNUMBER);
	return do_wait(L, s, checktimeout(L, 2));
}

static int m_clear_ready(lua_State *L)
{
	lep_set *s = checkset(L);

	if (s->ready_busy > 0)
		return luaL_error(L, "cannot clear the ready set while iter_ready or fold_ready runs on it");
	lep_clear_ready(s);
	return 0;
}

/* The loops of iter_ready and fold_ready, on a stack of set, callback and
 * set, accumulator, callback. Callbacks may close the set, which empties
 * the ready set and so ends the loop. */
static void iter_ready_loop(lua_State *L, const lep_set *s)
{
	int i;

	for (i = 0; i < s->nready; i++) {
		lua_pushvalue(L, 2);
		lua_pushinteger(L, (lua_Integer)s->ready[i].data.u64);
		lua_pushinteger(L, (lua_Integer)s->ready[i].events);
		lua_call(L, 2, 0);
	}
}

static void fold_ready_loop(lua_State *L, const lep_set *s)
{
	int i;

	for (i = 0; i < s->nready; i++) {
		lua_pushvalue(L, 3);
		lua_pushvalue(L, 2);
		lua_pushinteger(L, (lua_Integer)s->ready[i].data.u64);
		lua_pushinteger(L, (lua_Integer)s->ready[i].events);
		lua_call(L, 3, 1);
		lua_replace(L, 2);
	}
}

#if LEPOLL_HAVE_TOCLOSE
/* While a loop runs in the main thread, the set's guard (its user value)
 * sits in a to-be-closed slot: however the loop ends, by return or by a
 * callback's error, closing it ends the busy state. Callbacks are called
 * plainly, so their errors pass through untouched, traceback included. */
static int guard_close(lua_State *L)
{
	lep_set *s = *(lep_set **)lua_touserdata(L, 1);

	s->ready_busy--;
	return 0;
}

/* Pushes the guard at the top and marks it; the stack is set, args..., guard. */
static void enter_ready(lua_State *L, lep_set *s)
{
	lua_getiuservalue(L, 1, 1);
	lua_toclose(L, -1);
	s->ready_busy++;
}

/* A coroutine that an error ends keeps its to-be-closed slots open until
 * coroutine.close, which may never come: there, and before 5.4, the loop
 * runs protected instead. */
static int guard_closes(lua_State *L)
{
	int is_main = lua_pushthread(L);

	lua_pop(L, 1);
	return is_main;
}
#endif

/* The loop in a protected call: an error is raised again, the same value,
 * once the busy state has ended. A message handler (xpcall) then sees it
 * raised from iter_ready or fold_ready, not from the callback: its
 * traceback starts there, and error(msg, level) in the callback counts one
 * more C level. The two functions are upvalues, made once, as pushing a C
 * function allocates on 5.1. */
static int iter_ready_protected(lua_State *L)
{
	iter_ready_loop(L, lua_touserdata(L, 1));
	return 0;
}

static int fold_ready_protected(lua_State *L)
{
	fold_ready_loop(L, lua_touserdata(L, 1));
	lua_settop(L, 2);
	return 1;
}

/* Stack: set, args...; leaves the loop's nresults. */
static void run_protected(lua_State *L, lep_set *s, int loop, int nresults)
{
	int nargs = lua_gettop(L), status;

	lua_pushvalue(L, loop);
	lua_insert(L, 1);
	s->ready_busy++;
	status = lua_pcall(L, nargs, nresults, 0);
	s->ready_busy--;
	if (status != LUA_OK)
		lua_error(L);
}

static int m_iter_ready(lua_State *L)
{
	lep_set *s = checkset(L);

	checkcallable(L, 2);
	lua_settop(L, 2);
	if (s->nready == 0)
		return 0;
#if LEPOLL_HAVE_TOCLOSE
	if (guard_closes(L)) {
		enter_ready(L, s);
		iter_ready_loop(L, s);
		lua_settop(L, 2); /* closes the guard */
		return 0;
	}
#endif
	run_protected(L, s, UV_ITER_PROTECTED, 0);
	return 0;
}

static int m_fold_ready(lua_State *L)
{
	lep_set *s = checkset(L);

	checkcallable(L, 3);
	lua_settop(L, 3);
	if (s->nready == 0) {
		lua_settop(L, 2);
		return 1;
	}
#if LEPOLL_HAVE_TOCLOSE
	if (guard_closes(L)) {
		enter_ready(L, s);
		fold_ready_loop(L, s);
		lua_settop(L, 2); /* closes the guard; the accumulator is on top */
		return 1;
	}
#endif
	run_protected(L, s, UV_FOLD_PROTECTED, 1);
	return 1;
}

/* ------------------------------------------------------------ the rest */

static int m_invariant(lua_State *L)
{
	lep_set *s = toset(L);
	char msg[256];
	int rc = lep_check(s, msg, sizeof msg);

	if (rc == LEP_INCONSISTENT)
		return luaL_error(L, "lepoll: invariant: %s", msg);
	if (rc != 0)
		return syserror(L, "invariant", s->epfd, rc);
	return 0;
}

static int m_close(lua_State *L)
{
	lep_set *s = toset(L);
	int epfd = s->epfd;
	int err = lep_close(s);

	if (err != 0)
		return syserror(L, "close", epfd, err);
	return 0;
}

/* getmetatable(set) is reachable from Lua, so __gc may be handed a table
 * that was given the metatable: only a set has anything to close. */
static int m_gc(lua_State *L)
{
	int is_set = lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1) &&
	             lua_rawequal(L, -1, UV_SETMT);

	if (is_set)
		(void)lep_close(lua_touserdata(L, 1)); /* nobody to tell */
	return 0;
}

static int m_getfd(lua_State *L)
{
	lua_pushinteger(L, checkset(L)->epfd);
	return 1;
}

static int m_events(lua_State *L)
{
	checkset(L);
	lua_pushliteral(L, "r");
	return 1;
}

static void add_flags_entry(luaL_Buffer *b, int first, int fd, uint32_t flags)
{
	char buf[LEP_FLAGNAMES_MAX + 32];
	char names[LEP_FLAGNAMES_MAX];

	lep_flagnames(flags, names, sizeof names);
	(void)snprintf(buf, sizeof buf, "%s[%d]=\"%s\"", first ? "" : ", ", fd, names);
	luaL_addstring(b, buf);
}

static int m_tostring(lua_State *L)
{
	lep_set *s = toset(L);
	luaL_Buffer b;
	char head[160];
	int fd, i, first = 1;

	if (s->epfd < 0) {
		lua_pushliteral(L, "epoll{closed}");
		return 1;
	}
	luaL_buffinit(L, &b);
	(void)snprintf(head, sizeof head,
	               "epoll{fd=%d, num_file_descrs=%d, max_ready_events=%d, flags_by_fd={",
	               s->epfd, s->num_fds, s->max_ready);
	luaL_addstring(&b, head);
	for (fd = lep_next(s, 0); fd >= 0; fd = lep_next(s, fd + 1), first = 0)
		add_flags_entry(&b, first, fd, s->table[fd].flags);
	luaL_addstring(&b, "}, ready={");
	for (i = 0; i < s->nready; i++)
		add_flags_entry(&b, i == 0, (int)s->ready[i].data.u64, s->ready[i].events);
	luaL_addstring(&b, "}}");
	luaL_pushresult(&b);
	return 1;
}

/* ------------------------------------------------------------ C API */

LEPOLL_API int lepoll_isset(lua_State *L, int idx)
{
	return luaL_testudata(L, idx, LEPOLL_SET_MT) != NULL;
}

LEPOLL_API lepoll_set *lepoll_checkset(lua_State *L, int idx)
{
	lep_set *s = luaL_testudata(L, idx, LEPOLL_SET_MT);

	if (s == NULL) {
		luaL_typeerror(L, idx, LEPOLL_SET_MT); /* names the type as 5.4 does */
		return NULL;                           /* not reached */
	}
	reject_closed(L, s);
	return s;
}

LEPOLL_API int lepoll_getfd(const lepoll_set *set)
{
	return set->epfd;
}

/* ------------------------------------------------------------- opening */

static const luaL_Reg module_functions[] = {
	{"create", l_create},
	{"flags", l_flags},
	{"flagnames", l_flagnames},
	{"has", l_has},
	{"timeout_ms", l_timeout_ms},
	{"now", l_now},
	{NULL, NULL},
};

static const luaL_Reg set_methods[] = {
	{"set", m_set},
	{"remove", m_remove},
	{"find", m_find},
	{"tofd", m_tofd},
	{"iter", m_iter},
	{"fold", m_fold},
	{"wait", m_wait},
	{"wait_timeout_after", m_wait_timeout_after},
	{"iter_ready", m_iter_ready},
	{"fold_ready", m_fold_ready},
	{"clear_ready", m_clear_ready},
	{"invariant", m_invariant},
	{"close", m_close},
	{"getfd", m_getfd},
	{"pollfd", m_getfd},
	{"events", m_events},
	{NULL, NULL},
};

static const luaL_Reg set_metamethods[] = {
	{"__gc", m_gc},
	{"__close", m_close},
	{"__tostring", m_tostring},
	{"__len", m_len},
	{"__pairs", m_pairs},
	{NULL, NULL},
};

static const struct {
	const char *name;
	uint32_t value;
} constants[] = {
	{"NONE", 0},
	{"IN", LEP_IN},
	{"OUT", LEP_OUT},
	{"PRI", LEP_PRI},
	{"ERR", LEP_ERR},
	{"HUP", LEP_HUP},
	{"RDHUP", LEP_RDHUP},
	{"ET", LEP_ET},
	{"ONESHOT", LEP_ONESHOT},
	{"EXCLUSIVE", LEP_EXCLUSIVE},
};

/* Needs the metatable in the registry (luaopen_lepoll makes it first). */
static void push_shared_upvalues(lua_State *L)
{
	luaL_getmetatable(L, LEPOLL_SET_MT);
	lua_pushliteral(L, "ok");
	lua_pushliteral(L, "timeout");
	lua_pushliteral(L, "interrupted");
	lua_pushcfunction(L, iter_ready_protected);
	lua_pushcfunction(L, fold_ready_protected);
}

LEPOLL_API int luaopen_lepoll(lua_State *L)
{
	size_t i;

	luaL_checkversion(L);
	lua_createtable(L, 0, 16);          /* module */
	luaL_newmetatable(L, LEPOLL_SET_MT); /* module, mt */
#if LUA_VERSION_NUM < 503
	lua_pushliteral(L, LEPOLL_SET_MT); /* as 5.3 does: names the type in messages */
	lua_setfield(L, -2, "__name");
#endif
	push_shared_upvalues(L);
	luaL_setfuncs(L, set_metamethods, NUM_UPVALUES);
	lua_createtable(L, 0, 16); /* module, mt, methods */
	push_shared_upvalues(L);
	luaL_setfuncs(L, set_methods, NUM_UPVALUES);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1); /* module */
	push_shared_upvalues(L);
	luaL_setfuncs(L, module_functions, NUM_UPVALUES);
#if LEPOLL_HAVE_TOCLOSE
	luaL_newmetatable(L, GUARD_MT);
	lua_pushcfunction(L, guard_close);
	lua_setfield(L, -2, "__close");
	lua_pop(L, 1);
#endif
	for (i = 0; i < sizeof constants / sizeof constants[0]; i++) {
		lua_pushinteger(L, (lua_Integer)constants[i].value);
		lua_setfield(L, -2, constants[i].name);
	}
	lua_pushliteral(L, LEPOLL_VERSION);
	lua_setfield(L, -2, "_VERSION");
	return 1;
}
