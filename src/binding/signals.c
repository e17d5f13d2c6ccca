/*
 * signals.c: lepoll.signals(), a set of signals received on a signalfd
 * (src/core/signals.c), and lepoll.signum(). A userdata in the way of
 * liolib's files: made closed, then opened; one closed check; one
 * idempotent close for close, __gc and __close.
 */
#define _POSIX_C_SOURCE 200809L /* SI_QUEUE, CLD_* */

#include "binding.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

#define SIGNALS_MT "lepoll.signals"
#define SIGNALS_CLOSED_MSG "attempt to use a closed signal set"

/* read()'s upvalues: signal names by number, SIGCHLD's codes by number. */
#define UV_NAMES lua_upvalueindex(1)
#define UV_HOWS  lua_upvalueindex(2)

/* The fields of read()'s table, all made before a signal is taken. */
static const char *const detail_keys[] = {"pid", "uid", "code", "status", "how", "value"};

static const struct {
	int code;
	const char *how;
} child_hows[] = {
	{CLD_EXITED, "exited"},   {CLD_KILLED, "killed"},   {CLD_DUMPED, "dumped"},
	{CLD_TRAPPED, "trapped"}, {CLD_STOPPED, "stopped"}, {CLD_CONTINUED, "continued"},
};

/* ----------------------------------------------------------- arguments */

/* The signal at idx, a number or a name: 1 and *sig, or 0 with the reason
 * pushed. With watch, also refuses what a set cannot watch. */
static int tosignal(lua_State *L, int idx, int watch, int *sig)
{
	char buf[LEP_SIGNAME_MAX];
	const char *name;

	if (lua_type(L, idx) == LUA_TNUMBER) {
		int isint;
		lua_Integer n = lua_tointegerx(L, idx, &isint);
		if (!isint || n < 1 || n >= LEP_SIGNAL_LIMIT) {
			lua_pushvalue(L, idx); /* converted as a copy: the argument stays a number */
			lua_pushfstring(L, "unknown signal %s", lua_tostring(L, -1));
			return 0;
		}
		*sig = (int)n;
	} else if (lua_type(L, idx) == LUA_TSTRING) {
		size_t len;
		const char *given = lua_tolstring(L, idx, &len);
		if (lep_signal_by_name(given, len, sig) != 0) {
			lua_pushfstring(L, "unknown signal '%s'", given);
			return 0;
		}
	} else {
		lepb_pushtypereason(L, idx, "signal (number or name)");
		return 0;
	}
	name = lep_signal_name(*sig, buf);
	switch (lep_signal_watchable(*sig)) {
	case LEP_SIG_UNKNOWN:
		lua_pushfstring(L, "unknown signal %d", *sig);
		return 0;
	case LEP_SIG_RESERVED:
		lua_pushfstring(L, "signal %d is reserved by the C library", *sig);
		return 0;
	case LEP_SIG_UNCATCHABLE:
		if (watch) {
			lua_pushfstring(L, "SIG%s cannot be caught or blocked", name);
			return 0;
		}
		break;
	case LEP_SIG_SYNCHRONOUS:
		if (watch) {
			lua_pushfstring(L, "SIG%s cannot be watched: a faulting instruction raises it in its "
			                   "thread, and blocking it is undefined",
			                name);
			return 0;
		}
		break;
	default:
		break;
	}
	return 1;
}

int lepb_checksignal(lua_State *L, int idx, int watch)
{
	int sig = 0;

	if (!tosignal(L, idx, watch, &sig))
		luaL_argerror(L, idx, lua_tostring(L, -1));
	return sig;
}

/* The signals at first..top added to, or removed from, mask. */
static void checksignals(lua_State *L, int first, lep_sigmask *mask, int add)
{
	int i, top = lua_gettop(L);

	for (i = first; i <= top; i++) {
		int sig = lepb_checksignal(L, i, 1);
		if (add)
			lep_sigmask_add(mask, sig);
		else
			lep_sigmask_del(mask, sig);
	}
}

/* ----------------------------------------------------------- the object */

/* The one type check. */
static lep_signals *to_signals(lua_State *L)
{
	return luaL_checkudata(L, 1, SIGNALS_MT);
}

/* The one closed check. */
static lep_signals *check_open(lua_State *L)
{
	lep_signals *s = to_signals(L);

	if (!lep_signals_is_open(s))
		luaL_error(L, SIGNALS_CLOSED_MSG);
	return s;
}

/* lepoll.signals([sig, ...]) */
static int l_signals(lua_State *L)
{
	lep_sigmask mask;
	lep_signals *s;
	int err;

	memset(&mask, 0, sizeof mask);
	checksignals(L, 1, &mask, 1);
	/* Closed first: whatever fails from here leaves nothing blocked. */
	s = lua_newuserdatauv(L, sizeof *s, 0);
	lep_signals_init(s);
	luaL_setmetatable(L, SIGNALS_MT);
	err = lep_signals_open(s, &mask);
	if (err == EMFILE || err == ENFILE) {
		/* Unreachable objects may hold descriptors until collected. */
		lua_gc(L, LUA_GCCOLLECT, 0);
		err = lep_signals_open(s, &mask);
	}
	if (err != 0)
		return lepb_syserror(L, "signals", -1, err);
	return 1;
}

/* lepoll.signum(sig) -> number, name */
static int l_signum(lua_State *L)
{
	char buf[LEP_SIGNAME_MAX];
	int sig = lepb_checksignal(L, 1, 0);

	lua_pushinteger(L, sig);
	lua_pushstring(L, lep_signal_name(sig, buf));
	return 2;
}

/* lepoll.try_signum(sig [, watch]) -> number, name; or nil, reason (with
 * watch true, also for a signal a set cannot watch) */
static int l_try_signum(lua_State *L)
{
	char buf[LEP_SIGNAME_MAX];
	int sig = 0;

	if (!tosignal(L, 1, lua_toboolean(L, 2), &sig)) {
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2;
	}
	lua_pushinteger(L, sig);
	lua_pushstring(L, lep_signal_name(sig, buf));
	return 2;
}

/* sigs:add(sig, ...) and sigs:remove(sig, ...) -> sigs */
static int change(lua_State *L, int add, const char *op)
{
	lep_signals *s = check_open(L);
	lep_sigmask mask = s->mask;

	checksignals(L, 2, &mask, add);
	if (memcmp(&mask, &s->mask, sizeof mask) != 0) {
		int err = lep_signals_change(s, &mask);
		if (err != 0)
			return lepb_syserror(L, op, lep_signals_fd(s), err);
	}
	lua_settop(L, 1);
	return 1;
}

static int m_add(lua_State *L)
{
	return change(L, 1, "add");
}

static int m_remove(lua_State *L)
{
	return change(L, 0, "remove");
}

static int m_getfd(lua_State *L)
{
	lua_pushinteger(L, lep_signals_fd(check_open(L)));
	return 1;
}

/* sigs:read() -> name, number, details; nil, "again"; nil, message,
 * errname. The results are made before the signal is taken from the
 * kernel, so that a memory error leaves it pending. */
static int m_read(lua_State *L)
{
	lep_signals *s = check_open(L);
	lep_siginfo info;
	size_t i;
	int err;

	lua_settop(L, 1);
	luaL_checkstack(L, 4, NULL);
	lua_createtable(L, 0, (int)(sizeof detail_keys / sizeof detail_keys[0]));
	for (i = 0; i < sizeof detail_keys / sizeof detail_keys[0]; i++) {
		lua_pushboolean(L, 0);
		lua_setfield(L, 2, detail_keys[i]);
	}
	err = lep_signals_read(s, &info);
	if (err == EAGAIN) {
		lua_pushnil(L);
		lua_pushliteral(L, "again");
		return 2;
	}
	if (err != 0)
		return lepb_sysresult(L, "read", lep_signals_fd(s), err);
	/* From here on only existing keys are set: nothing allocates. */
	lua_pushinteger(L, info.pid);
	lua_setfield(L, 2, "pid");
	lua_pushinteger(L, (lua_Integer)info.uid);
	lua_setfield(L, 2, "uid");
	lua_pushinteger(L, info.code);
	lua_setfield(L, 2, "code");
	if (info.signo == SIGCHLD) {
		lua_pushinteger(L, info.status);
		lua_rawgeti(L, UV_HOWS, info.code);
	} else {
		lua_pushnil(L);
		lua_pushnil(L);
	}
	lua_setfield(L, 2, "how");
	lua_setfield(L, 2, "status");
	if (info.code == SI_QUEUE)
		lua_pushinteger(L, info.value);
	else
		lua_pushnil(L);
	lua_setfield(L, 2, "value");
	lua_rawgeti(L, UV_NAMES, info.signo);
	lua_pushinteger(L, info.signo);
	lua_pushvalue(L, 2);
	return 3;
}

/* The names of the signals watched, in signal-number order, from
 * position 1 of the table at the top. */
static void push_watched(lua_State *L, const lep_signals *s, luaL_Buffer *b)
{
	char buf[LEP_SIGNAME_MAX];
	int sig, n = 0;

	for (sig = 1; sig < LEP_SIGNAL_LIMIT; sig++) {
		if (!lep_sigmask_has(&s->mask, sig))
			continue;
		if (b == NULL) {
			lua_pushstring(L, lep_signal_name(sig, buf));
			lua_rawseti(L, -2, ++n);
		} else {
			luaL_addstring(b, n++ ? ", \"" : "\"");
			luaL_addstring(b, lep_signal_name(sig, buf));
			luaL_addstring(b, "\"");
		}
	}
}

static int m_signals(lua_State *L)
{
	const lep_signals *s = check_open(L);

	lua_newtable(L);
	push_watched(L, s, NULL);
	return 1;
}

/* Idempotent. */
static int m_close(lua_State *L)
{
	lep_signals *s = to_signals(L);
	int fd = lep_signals_fd(s);
	int err = lep_signals_close(s);

	if (err != 0)
		return lepb_syserror(L, "close", fd, err);
	return 0;
}

/* __gc may be handed a table given the metatable: only a set closes. */
static int m_gc(lua_State *L)
{
	lep_signals *s = luaL_testudata(L, 1, SIGNALS_MT);

	if (s)
		(void)lep_signals_close(s); /* nobody to tell */
	return 0;
}

/* signals{fd=7, watched={"INT", "TERM"}}, or signals{closed} */
static int m_tostring(lua_State *L)
{
	const lep_signals *s = to_signals(L);
	luaL_Buffer b;

	if (!lep_signals_is_open(s)) {
		lua_pushliteral(L, "signals{closed}");
		return 1;
	}
	luaL_buffinit(L, &b);
	lua_pushfstring(L, "signals{fd=%d, watched={", lep_signals_fd(s));
	luaL_addvalue(&b);
	push_watched(L, s, &b);
	luaL_addstring(&b, "}}");
	luaL_pushresult(&b);
	return 1;
}

static const luaL_Reg signals_methods[] = {
	{"add", m_add},         {"remove", m_remove}, {"getfd", m_getfd},
	{"signals", m_signals}, {"close", m_close},   {NULL, NULL},
};

static const luaL_Reg signals_metamethods[] = {
	{"__gc", m_gc},
	{"__close", m_gc},
	{"__tostring", m_tostring},
	{NULL, NULL},
};

/* read()'s upvalues: every name, and SIGCHLD's codes. */
static void push_read(lua_State *L)
{
	char buf[LEP_SIGNAME_MAX];
	size_t i;
	int sig;

	lua_newtable(L);
	for (sig = 1; sig < LEP_SIGNAL_LIMIT; sig++) {
		const char *name = lep_signal_name(sig, buf);
		if (name != NULL) {
			lua_pushstring(L, name);
			lua_rawseti(L, -2, sig);
		}
	}
	lua_newtable(L);
	for (i = 0; i < sizeof child_hows / sizeof child_hows[0]; i++) {
		lua_pushstring(L, child_hows[i].how);
		lua_rawseti(L, -2, child_hows[i].code);
	}
	lua_pushcclosure(L, m_read, 2);
}

void lepb_register_signals(lua_State *L)
{
	luaL_newmetatable(L, SIGNALS_MT); /* module, mt */
#if LUA_VERSION_NUM < 503
	lua_pushliteral(L, SIGNALS_MT);
	lua_setfield(L, -2, "__name");
#endif
	luaL_setfuncs(L, signals_metamethods, 0);
	lua_newtable(L);
	luaL_setfuncs(L, signals_methods, 0);
	push_read(L);
	lua_setfield(L, -2, "read");
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	lua_pushcfunction(L, l_signals);
	lua_setfield(L, -2, "signals");
	lua_pushcfunction(L, l_signum);
	lua_setfield(L, -2, "signum");
	lua_pushcfunction(L, l_try_signum);
	lua_setfield(L, -2, "try_signum");
}
