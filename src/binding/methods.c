/*
 * methods.c: the set's methods and metamethods: the table (set, remove,
 * find, tofd, iter, fold, pairs, #), waiting, the try_ forms, invariant,
 * closing and the descriptor. The ready set's iteration is in ready.c,
 * tostring in tostring.c.
 */
#include "binding.h"

#include <errno.h>
#include <limits.h>

/* ------------------------------------------------------------ the table */

/* After lep_set_flags refused with EINVAL (the set unchanged): 1 with the
 * reason pushed when the exclusive rule refused, not the kernel. Asked
 * only on failure, so a successful set looks fd up once. */
static int exclusive_refusal(lua_State *L, const lep_set *s, int fd, uint32_t flags, int err)
{
	int rule = err == EINVAL ? lep_exclusive_rule(s, fd, flags) : LEP_EXCLUSIVE_OK;

	if (rule == LEP_EXCLUSIVE_OK)
		return 0;
	lepb_pushexclusivereason(L, rule, fd);
	return 1;
}

/* Stack: set, fd, flags. 0, or a reason pushed (*err 0) or an errno. */
static int try_set_flags(lua_State *L, lep_set *s, int *fd, int *err)
{
	uint32_t flags;

	*err = 0;
	if (!lepb_tofd(L, 2, s, fd) || !lepb_toflags(L, 3, &flags))
		return 0;
	*err = lep_set_flags(s, *fd, flags);
	if (*err == 0)
		return 1;
	if (exclusive_refusal(L, s, *fd, flags, *err))
		*err = 0; /* the reason is pushed */
	return 0;
}

static int m_set(lua_State *L)
{
	lep_set *s = &lepb_checkset(L)->core;
	int fd = lepb_checkfd(L, 2, s);
	uint32_t flags = lepb_checkflags(L, 3);
	int err = lep_set_flags(s, fd, flags);

	if (err == 0)
		return 0;
	if (exclusive_refusal(L, s, fd, flags, err))
		return luaL_argerror(L, 3, lua_tostring(L, -1));
	return lepb_syserror(L, "set", fd, err);
}

static int m_try_set(lua_State *L)
{
	lep_set *s = &lepb_toset(L)->core;
	int fd = -1, err;

	if (!lep_is_open(s))
		return lepb_closedresult(L);
	lua_settop(L, 3);
	if (try_set_flags(L, s, &fd, &err)) {
		lua_pushboolean(L, 1);
		return 1;
	}
	if (err != 0)
		return lepb_sysresult(L, "set", fd, err);
	return lepb_argresult(L, s);
}

static int m_remove(lua_State *L)
{
	lep_set *s = &lepb_checkset(L)->core;
	int fd = lepb_checkfd(L, 2, s);
	int err = lep_remove(s, fd);

	if (err != 0)
		return lepb_syserror(L, "remove", fd, err);
	return 0;
}

static int m_try_remove(lua_State *L)
{
	lep_set *s = &lepb_toset(L)->core;
	int fd = -1, err;

	if (!lep_is_open(s))
		return lepb_closedresult(L);
	lua_settop(L, 2);
	if (!lepb_tofd(L, 2, s, &fd))
		return lepb_argresult(L, s);
	err = lep_remove(s, fd);
	if (err != 0)
		return lepb_sysresult(L, "remove", fd, err);
	lua_pushboolean(L, 1);
	return 1;
}

/* The descriptor argument as set, remove and find see it. */
static int m_tofd(lua_State *L)
{
	lep_set *s = &lepb_checkset(L)->core;

	lua_pushinteger(L, lepb_checkfd(L, 2, s));
	return 1;
}

static int m_try_tofd(lua_State *L)
{
	lep_set *s = &lepb_toset(L)->core;
	int fd = -1;

	if (!lep_is_open(s))
		return lepb_closedresult(L);
	lua_settop(L, 2);
	if (!lepb_tofd(L, 2, s, &fd))
		return lepb_argresult(L, s);
	lua_pushinteger(L, fd);
	return 1;
}

static int m_find(lua_State *L)
{
	lep_set *s = &lepb_checkset(L)->core;
	int fd = lepb_checkfd(L, 2, s);
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
	lep_set *s = &lepb_checkset(L)->core;
	uint32_t flags;
	int fd;

	lepb_checkcallable(L, 2);
	for (fd = lep_next(s, 0); fd >= 0 && lep_find(s, fd, &flags); fd = lep_next(s, fd + 1)) {
		lua_pushvalue(L, 2);
		lua_pushinteger(L, fd);
		lua_pushinteger(L, (lua_Integer)flags);
		lua_call(L, 2, 0);
	}
	return 0;
}

static int m_fold(lua_State *L)
{
	lep_set *s = &lepb_checkset(L)->core;
	uint32_t flags;
	int fd;

	lepb_checkcallable(L, 3);
	lua_settop(L, 3);
	for (fd = lep_next(s, 0); fd >= 0 && lep_find(s, fd, &flags); fd = lep_next(s, fd + 1)) {
		lua_pushvalue(L, 3);
		lua_pushinteger(L, fd);
		lua_pushinteger(L, (lua_Integer)flags);
		lua_pushvalue(L, 2);
		lua_call(L, 3, 1);
		lua_replace(L, 2);
	}
	lua_settop(L, 2);
	return 1;
}

static int m_next(lua_State *L)
{
	lep_set *s = &lepb_checkset(L)->core;
	lua_Integer after = lua_isnoneornil(L, 2) ? -1 : luaL_checkinteger(L, 2);
	uint32_t flags;
	int fd = after >= lep_num_fds(s) - 1 ? -1 : lep_next(s, after < 0 ? 0 : (int)after + 1);

	if (fd < 0 || !lep_find(s, fd, &flags))
		return 0;
	lua_pushinteger(L, fd);
	lua_pushinteger(L, (lua_Integer)flags);
	return 2;
}

static int m_pairs(lua_State *L)
{
	int i;

	lepb_checkset(L);
	for (i = 1; i <= LEPB_NUM_UPVALUES; i++)
		lua_pushvalue(L, lua_upvalueindex(i));
	lua_pushcclosure(L, m_next, LEPB_NUM_UPVALUES);
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return 3;
}

static int m_len(lua_State *L)
{
	lua_pushinteger(L, lep_count(&lepb_toset(L)->core));
	return 1;
}

/* ---------------------------------------------------------- the waiting */

static int do_wait(lua_State *L, lepb_set *set, int timeout_ms)
{
	int err;

	if (set->ready_busy > 0)
		return luaL_error(L, "cannot wait while iter_ready or fold_ready runs on this epoll set");
	err = lep_wait(&set->core, timeout_ms);
	if (err == 0)
		lua_pushvalue(L, lep_nready(&set->core) > 0 ? LEPB_UV_OK : LEPB_UV_TIMEOUT);
	else if (err == EINTR)
		lua_pushvalue(L, LEPB_UV_INTERRUPTED);
	else
		return lepb_syserror(L, "wait", -1, err);
	return 1;
}

static int m_wait(lua_State *L)
{
	lepb_set *set = lepb_checkset(L);

	return do_wait(L, set, lepb_checktimeout(L, 2));
}

static int m_wait_timeout_after(lua_State *L)
{
	lepb_set *set = lepb_checkset(L);

	luaL_checktype(L, 2, LUA_TNUMBER);
	return do_wait(L, set, lepb_checktimeout(L, 2));
}

static int m_clear_ready(lua_State *L)
{
	lepb_set *set = lepb_checkset(L);

	if (set->ready_busy > 0)
		return luaL_error(L, "cannot clear the ready set while iter_ready or fold_ready runs on it");
	lep_clear_ready(&set->core);
	return 0;
}

/* ------------------------------------------------------------ the rest */

static int m_invariant(lua_State *L)
{
	lepb_set *set = lepb_toset(L);
	char msg[256];
	int rc;

	if (set->ready_busy < 0)
		return luaL_error(L, "lepoll: invariant: negative iteration depth (%d)", set->ready_busy);
	rc = lep_check(&set->core, msg, sizeof msg);
	if (rc == LEP_INCONSISTENT)
		return luaL_error(L, "lepoll: invariant: %s", msg);
	if (rc != 0)
		return lepb_syserror(L, "invariant", lep_epfd(&set->core), rc);
	return 0;
}

static int m_close(lua_State *L)
{
	lep_set *s = &lepb_toset(L)->core;
	int epfd = lep_epfd(s);
	int err = lep_close(s);

	if (err != 0)
		return lepb_syserror(L, "close", epfd, err);
	return 0;
}

/* getmetatable(set) is reachable from Lua, so __gc may be handed a table
 * that was given the metatable: only a set has anything to close. */
static int m_gc(lua_State *L)
{
	int is_set = lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1) &&
	             lua_rawequal(L, -1, LEPB_UV_SETMT);

	if (is_set)
		(void)lep_close(&((lepb_set *)lua_touserdata(L, 1))->core); /* nobody to tell */
	return 0;
}

static int m_getfd(lua_State *L)
{
	lua_pushinteger(L, lep_epfd(&lepb_checkset(L)->core));
	return 1;
}

static int m_events(lua_State *L)
{
	lepb_checkset(L);
	lua_pushliteral(L, "r");
	return 1;
}

const luaL_Reg lepb_set_methods[] = {
	{"set", m_set},
	{"remove", m_remove},
	{"find", m_find},
	{"tofd", m_tofd},
	{"try_set", m_try_set},
	{"try_remove", m_try_remove},
	{"try_tofd", m_try_tofd},
	{"iter", m_iter},
	{"fold", m_fold},
	{"wait", m_wait},
	{"wait_timeout_after", m_wait_timeout_after},
	{"clear_ready", m_clear_ready},
	{"invariant", m_invariant},
	{"close", m_close},
	{"getfd", m_getfd},
	{"pollfd", m_getfd},
	{"events", m_events},
	{NULL, NULL},
};

const luaL_Reg lepb_set_metamethods[] = {
	{"__gc", m_gc},
	{"__close", m_close},
	{"__len", m_len},
	{"__pairs", m_pairs},
	{NULL, NULL},
};
