/*
 * ready.c: the readers of the ready set. iter_ready and fold_ready call
 * from C into Lua for each event of the last wait. While they run the set
 * is busy (wait and clear_ready refuse); however a callback ends, by return
 * or by error, the busy state ends and the error goes on unchanged. Two
 * ways to do that: a to-be-closed guard (5.4, main thread: the callback's
 * own frames stay in the traceback) or a protected call (elsewhere).
 * ready_into copies the events into the caller's tables and calls nothing, so
 * it needs no busy state.
 */
#include "binding.h"

/* The loops, on a stack of set, callback and set, accumulator, callback.
 * Callbacks may close the set, which empties the ready set and so ends
 * the loop. */
static void iter_ready_loop(lua_State *L, const lep_set *s)
{
	int i;

	for (i = 0; i < lep_nready(s); i++) {
		lua_pushvalue(L, 2);
		lua_pushinteger(L, (lua_Integer)lep_ready_fd(s, i));
		lua_pushinteger(L, (lua_Integer)lep_ready_events(s, i));
		lua_call(L, 2, 0);
	}
}

static void fold_ready_loop(lua_State *L, const lep_set *s)
{
	int i;

	for (i = 0; i < lep_nready(s); i++) {
		lua_pushvalue(L, 3);
		lua_pushvalue(L, 2);
		lua_pushinteger(L, (lua_Integer)lep_ready_fd(s, i));
		lua_pushinteger(L, (lua_Integer)lep_ready_events(s, i));
		lua_call(L, 3, 1);
		lua_replace(L, 2);
	}
}

#if LEPOLL_HAVE_TOCLOSE
/* While a loop runs in the main thread, the set's guard (its user value)
 * sits in a to-be-closed slot: however the loop ends, closing it ends the
 * busy state. Callbacks are called plainly, so their errors pass through
 * untouched, traceback included. */
int lepb_guard_close(lua_State *L)
{
	lepb_set *set = *(lepb_set **)lua_touserdata(L, 1);

	set->ready_busy--;
	return 0;
}

/* Pushes the guard at the top and marks it; the stack is set, args..., guard. */
static void enter_ready(lua_State *L, lepb_set *set)
{
	lua_getiuservalue(L, 1, 1);
	lua_toclose(L, -1);
	set->ready_busy++;
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
int lepb_iter_ready_protected(lua_State *L)
{
	iter_ready_loop(L, &((lepb_set *)lua_touserdata(L, 1))->core);
	return 0;
}

int lepb_fold_ready_protected(lua_State *L)
{
	fold_ready_loop(L, &((lepb_set *)lua_touserdata(L, 1))->core);
	lua_settop(L, 2);
	return 1;
}

/* Stack: set, args...; leaves the loop's nresults. */
static void run_protected(lua_State *L, lepb_set *set, int loop, int nresults)
{
	int nargs = lua_gettop(L), status;

	lua_pushvalue(L, loop);
	lua_insert(L, 1);
	set->ready_busy++;
	status = lua_pcall(L, nargs, nresults, 0);
	set->ready_busy--;
	if (status != LUA_OK)
		lua_error(L);
}

static int m_iter_ready(lua_State *L)
{
	lepb_set *set = lepb_checkset(L);

	lepb_checkcallable(L, 2);
	lua_settop(L, 2);
	if (lep_nready(&set->core) == 0)
		return 0;
#if LEPOLL_HAVE_TOCLOSE
	if (guard_closes(L)) {
		enter_ready(L, set);
		iter_ready_loop(L, &set->core);
		lua_settop(L, 2); /* closes the guard */
		return 0;
	}
#endif
	run_protected(L, set, LEPB_UV_ITER_PROTECTED, 0);
	return 0;
}

static int m_fold_ready(lua_State *L)
{
	lepb_set *set = lepb_checkset(L);

	lepb_checkcallable(L, 3);
	lua_settop(L, 3);
	if (lep_nready(&set->core) == 0) {
		lua_settop(L, 2);
		return 1;
	}
#if LEPOLL_HAVE_TOCLOSE
	if (guard_closes(L)) {
		enter_ready(L, set);
		fold_ready_loop(L, &set->core);
		lua_settop(L, 2); /* closes the guard; the accumulator is on top */
		return 1;
	}
#endif
	run_protected(L, set, LEPB_UV_FOLD_PROTECTED, 1);
	return 1;
}

/* ------------------------------------------------------------ ready_into */

/* The reason why the value at idx cannot be a ready_into buffer, or NULL
 * when it can: a table whose metatable, read raw, has neither __index
 * nor __newindex (writes are raw: a proxy would not see them). Pushing
 * those names allocates nothing: they are the metamethods' own strings. */
static const char *buffer_reason(lua_State *L, int idx)
{
	int proxy;

	if (lua_type(L, idx) != LUA_TTABLE)
		return lepb_pushtypereason(L, idx, "table");
	if (!lua_getmetatable(L, idx))
		return NULL;
	lua_pushliteral(L, "__index");
	lua_rawget(L, -2);
	lua_pushliteral(L, "__newindex");
	lua_rawget(L, -3);
	proxy = !lua_isnil(L, -1) || !lua_isnil(L, -2);
	lua_pop(L, 3);
	return proxy ? "table with __newindex/__index metamethods; ready_into writes raw" : NULL;
}

static void check_buffer(lua_State *L, int idx)
{
	const char *reason = buffer_reason(L, idx);

	if (reason != NULL)
		luaL_argerror(L, idx, reason);
}

/* set:ready_into(fds [, flags]) -> n: the events of the last wait stored
 * raw in fds[1..n] (and flags[1..n]), in the kernel's order; nothing past n
 * is touched and the ready set stays as it is. Calls no Lua, so it is
 * allowed inside iter_ready and fold_ready. */
static int m_ready_into(lua_State *L)
{
	const lep_set *s = &lepb_checkset(L)->core;
	int with_flags = !lua_isnoneornil(L, 3);
	int i, n;

	check_buffer(L, 2);
	if (with_flags) {
		check_buffer(L, 3);
		if (lua_rawequal(L, 2, 3))
			return luaL_argerror(L, 3, "flags must be another table than fds");
	}
	n = lep_nready(s);
	for (i = 0; i < n; i++) {
		/* i + 1 <= LEP_MAX_READY: an int, as lua_rawseti takes before 5.3 */
		lua_pushinteger(L, (lua_Integer)lep_ready_fd(s, i));
		lua_rawseti(L, 2, i + 1);
		if (with_flags) {
			lua_pushinteger(L, (lua_Integer)lep_ready_events(s, i));
			lua_rawseti(L, 3, i + 1);
		}
	}
	lua_pushinteger(L, (lua_Integer)n);
	return 1;
}

const luaL_Reg lepb_ready_methods[] = {
	{"iter_ready", m_iter_ready},
	{"fold_ready", m_fold_ready},
	{"ready_into", m_ready_into},
	{NULL, NULL},
};
