/*
 * waker.c: the Lua side of a waker (src/core/waker.c), lepoll.waker(),
 * and the C API that hands the host its reference (lepoll_newwaker,
 * lepoll_wake, lepoll_releasewaker). A userdata in the way of liolib's
 * files: made closed, then opened; one closed check; one idempotent close
 * for close, __gc and __close. The object holds one reference to the core
 * waker, the host another.
 */
#include "binding.h"

#include <errno.h>
#include <limits.h>

#define WAKER_CLOSED_MSG "attempt to use a closed waker"

typedef struct {
	lep_waker *w; /* NULL when closed */
} lwaker;

/* The one type check: the type named by __name in the message on every
 * Lua version, as for sets. */
static lwaker *to_waker(lua_State *L)
{
	lwaker *lw = luaL_testudata(L, 1, LEPOLL_WAKER_MT);

	if (lw == NULL)
		lepb_typeerror(L, 1, LEPOLL_WAKER_MT);
	return lw;
}

/* The one closed check. */
static lep_waker *check_open(lua_State *L)
{
	lwaker *lw = to_waker(L);
	if (lw->w == NULL)
		luaL_error(L, WAKER_CLOSED_MSG);
	return lw->w;
}

/* Idempotent: posts fail with EPIPE from now on; the core waker's memory
 * stays while the host holds its reference. */
static int close_waker(lwaker *lw)
{
	lep_waker *w = lw->w;
	int err;

	if (w == NULL)
		return 0;
	lw->w = NULL;
	err = lep_waker_close(w);
	lep_waker_release(w);
	return err;
}

/* Pushes the copy of the value v (light userdata at 1); runs protected
 * (it allocates), so that m_read can put v back on a memory error. */
static int push_value(lua_State *L)
{
	const lep_wake_value *v = lua_touserdata(L, 1);

	lua_pushlstring(L, v->data, v->len);
	return 1;
}

/* w:read() -> the oldest value, or nil, "again" when none is queued (the
 * descriptor is then quiet); nil, message, errname in a forked child. */
static int m_read(lua_State *L)
{
	lep_waker *w = check_open(L);
	lep_wake_value *v;
	int err;

	lua_settop(L, 1);
	/* The stack room and the function before the value is ours. */
	luaL_checkstack(L, 4, NULL);
	lua_pushcfunction(L, push_value);
	err = lep_waker_take(w, &v);
	if (err != 0)
		return lepb_sysresult(L, "read", lep_waker_fd(w), err);
	if (v == NULL) {
		lua_pushnil(L);
		lua_pushliteral(L, "again");
		return 2;
	}
	lua_pushlightuserdata(L, v);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		/* A memory error: the value goes back first in the queue, unless a
		 * finalizer that ran meanwhile closed the waker. */
		if (to_waker(L)->w == w)
			lep_waker_unget(w, v);
		else
			lep_wake_value_free(v);
		return lua_error(L);
	}
	lep_wake_value_free(v);
	return 1;
}

/* w:post(value) -> true, or nil, message, errname: queued as a host's. */
static int m_post(lua_State *L)
{
	lep_waker *w = check_open(L);
	size_t len;
	const char *s = luaL_checklstring(L, 2, &len);
	int err = lep_waker_post(w, s, len);

	if (err != 0)
		return lepb_sysresult(L, "post", lep_waker_fd(w), err);
	lua_pushboolean(L, 1);
	return 1;
}

static int m_getfd(lua_State *L)
{
	lwaker *lw = to_waker(L);
	lua_pushinteger(L, lw->w ? lep_waker_fd(lw->w) : -1);
	return 1;
}

static int m_close(lua_State *L)
{
	lwaker *lw = to_waker(L);
	int fd = lw->w ? lep_waker_fd(lw->w) : -1;
	int err = close_waker(lw);

	if (err != 0)
		return lepb_syserror(L, "close", fd, err);
	return 0;
}

/* __gc may be handed a table given the metatable: only a waker closes. */
static int m_gc(lua_State *L)
{
	lwaker *lw = luaL_testudata(L, 1, LEPOLL_WAKER_MT);
	if (lw)
		(void)close_waker(lw); /* nobody to tell */
	return 0;
}

static int m_tostring(lua_State *L)
{
	lwaker *lw = to_waker(L);
	size_t queued;

	if (lw->w == NULL) {
		lua_pushliteral(L, "waker{closed}");
		return 1;
	}
	queued = lep_waker_queued(lw->w);
	lua_pushfstring(L, "waker{fd=%d, queued=%d}", lep_waker_fd(lw->w), queued > INT_MAX ? INT_MAX : (int)queued);
	return 1;
}

static const luaL_Reg waker_methods[] = {
	{"read", m_read}, {"post", m_post}, {"getfd", m_getfd}, {"close", m_close}, {NULL, NULL},
};

static const luaL_Reg waker_metamethods[] = {
	{"__gc", m_gc},
	{"__close", m_gc},
	{"__tostring", m_tostring},
	{NULL, NULL},
};

/* Pushes the metatable, made on first use: lepoll_newwaker may come before
 * luaopen_lepoll, or without it. It is registered only once complete, so
 * that a memory error while making it leaves none half made for the next
 * call to find. */
static void push_metatable(lua_State *L)
{
	if (lua_getfield(L, LUA_REGISTRYINDEX, LEPOLL_WAKER_MT) != LUA_TNIL)
		return;
	lua_pop(L, 1);
	lua_createtable(L, 0, 5);
	lua_pushliteral(L, LEPOLL_WAKER_MT); /* as luaL_newmetatable names it */
	lua_setfield(L, -2, "__name");
	luaL_setfuncs(L, waker_metamethods, 0);
	lua_newtable(L);
	luaL_setfuncs(L, waker_methods, 0);
	lua_setfield(L, -2, "__index");
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, LEPOLL_WAKER_MT);
}

/* Pushes a new waker object, open, and returns its core waker (the
 * object's reference); raises when none can be made. */
static lep_waker *new_waker(lua_State *L)
{
	lwaker *lw = lua_newuserdatauv(L, sizeof *lw, 0);
	int err;

	lw->w = NULL; /* closed first: __gc finds nothing to free if opening fails */
	push_metatable(L);
	lua_setmetatable(L, -2);
	err = lep_waker_open(&lw->w);
	if (err == EMFILE || err == ENFILE) {
		/* Unreachable wakers may hold descriptors until collected. */
		lua_gc(L, LUA_GCCOLLECT, 0);
		err = lep_waker_open(&lw->w);
	}
	if (err != 0)
		lepb_syserror(L, "waker", -1, err);
	return lw->w;
}

/* lepoll.waker() */
static int l_waker(lua_State *L)
{
	(void)new_waker(L);
	return 1;
}

void lepb_register_waker(lua_State *L)
{
	push_metatable(L);
	lua_pop(L, 1);
	lua_pushcfunction(L, l_waker);
	lua_setfield(L, -2, "waker");
}

/* --------------------------------------------------------------- C API */

LEPOLL_API lepoll_waker *lepoll_newwaker(lua_State *L)
{
	lep_waker *w = new_waker(L);

	lep_waker_retain(w); /* the host's */
	return w;
}

LEPOLL_API int lepoll_wake(lepoll_waker *w, const void *data, size_t len)
{
	return lep_waker_post(w, data, len);
}

LEPOLL_API void lepoll_releasewaker(lepoll_waker *w)
{
	if (w)
		lep_waker_release(w);
}
