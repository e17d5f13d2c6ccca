/*
 * ready.c: the readers of the ready set. iter_ready and fold_ready call
 * from C into Lua for each event of the last wait. While they run the set
 * is busy (wait and clear_ready refuse); however a callback ends, by return
 * or by error, the busy state ends and the error goes on unchanged. Two
 * ways to do that: a to-be-closed guard (5.4, main thread: the callback's
 * own frames stay in the traceback) or a protected call (elsewhere).
 * ready_into copies the events into the caller's tables and calls nothing, so
 * it needs no busy state; under LuaJIT, a Lua function that reads the ready
 * buffer through the FFI stands in front of it.
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

/* ------------------------------------------------- ready_into on LuaJIT */

#if LEPOLL_LUAJIT
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>

/* LuaJIT compiles a Lua loop over the copy but never a call into C, and
 * each value stored through the API costs about as much as the loop's
 * whole work per event. So when the FFI is there, ready_into is this Lua
 * function: it reads the set and its ready buffer as 32-bit words at
 * offsets this file computes, and stores into plain tables (no metatable:
 * writes are raw) in a loop the JIT compiles with the caller's. Anything
 * else (a closed set, not a set, a table with a metatable, bad arguments)
 * goes to the C ready_into, in a tail call: its errors name the caller's
 * call, as if it had been called directly. The words are cast once per
 * set and kept in a weak table, as each cast is a new cdata; when there
 * is no memory for that, the C function does the copy, which allocates
 * nothing into grown tables: a wait's events are never lost to it. */
static const char ffi_ready_into[] =
	"local c_ready_into, set_mt, EPFD, NREADY, READY, STRIDE, FD, EVENTS = ...\n"
	"local ok, ffi = pcall(require, 'ffi')\n"
	"if not ok then return nil end\n"
	"local cast, type, getmetatable, pcall = ffi.cast, type, getmetatable, pcall\n"
	"local views = setmetatable({}, { __mode = 'k' })\n"
	"local function view(set)\n"
	"  local ready = cast('char **', cast('char *', set) + READY)[0]\n"
	"  local v = { cast('int32_t *', set), cast('int32_t *', ready), cast('uint32_t *', ready) }\n"
	"  views[set] = v\n"
	"  return v\n"
	"end\n"
	"return function(...)\n"
	"  local set, fds, flags = ...\n"
	"  if type(set) == 'userdata' and getmetatable(set) == set_mt\n"
	"      and type(fds) == 'table' and getmetatable(fds) == nil then\n"
	"    local v = views[set]\n"
	"    if v == nil then\n"
	"      local made\n"
	"      made, v = pcall(view, set)\n"
	"      if not made then return c_ready_into(...) end\n"
	"    end\n"
	"    local words, fdw = v[1], v[2]\n"
	"    if words[EPFD] >= 0 then\n"
	"      local n = words[NREADY]\n"
	"      if flags == nil then\n"
	"        local at = FD\n"
	"        for i = 1, n do\n"
	"          fds[i] = fdw[at]\n"
	"          at = at + STRIDE\n"
	"        end\n"
	"        return n\n"
	"      elseif type(flags) == 'table' and getmetatable(flags) == nil and flags ~= fds then\n"
	"        local evw, at = v[3], 0\n"
	"        for i = 1, n do\n"
	"          fds[i] = fdw[at + FD]\n"
	"          flags[i] = evw[at + EVENTS]\n"
	"          at = at + STRIDE\n"
	"        end\n"
	"        return n\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"  return c_ready_into(...)\n"
	"end\n";

/* The 32-bit word of an event that holds the low half of data.u64, where
 * the core keeps the fd (lep_ready_fd). */
static size_t fd_word(void)
{
	const uint64_t one = 1;
	uint32_t first;

	memcpy(&first, &one, sizeof first);
	return offsetof(struct epoll_event, data) / 4 + (first == 1 ? 0 : 1);
}

static int load_ffi_ready_into(lua_State *L)
{
	if (luaL_loadbuffer(L, ffi_ready_into, sizeof ffi_ready_into - 1, "=lepoll.ready_into") != 0)
		return lua_error(L);
	lua_pushvalue(L, 1); /* the C ready_into */
	luaL_getmetatable(L, LEPOLL_SET_MT);
	lua_pushinteger(L, (lua_Integer)(offsetof(lepb_set, core.epfd) / 4));
	lua_pushinteger(L, (lua_Integer)(offsetof(lepb_set, core.nready) / 4));
	lua_pushinteger(L, (lua_Integer)offsetof(lepb_set, core.ready));
	lua_pushinteger(L, (lua_Integer)(sizeof(struct epoll_event) / 4));
	lua_pushinteger(L, (lua_Integer)fd_word());
	lua_pushinteger(L, (lua_Integer)(offsetof(struct epoll_event, events) / 4));
	lua_call(L, 8, 1);
	return 1;
}

void lepb_ready_ffi(lua_State *L)
{
	/* The words: 32-bit ints, at offsets that are multiples of 4. */
	if (sizeof(int) != 4 || offsetof(lepb_set, core.epfd) % 4 != 0 || offsetof(lepb_set, core.nready) % 4 != 0 ||
	    sizeof(struct epoll_event) % 4 != 0 || offsetof(struct epoll_event, data) % 4 != 0 ||
	    offsetof(struct epoll_event, events) % 4 != 0)
		return;
	lua_pushcfunction(L, load_ffi_ready_into);
	lua_getfield(L, -2, "ready_into");
	/* Without the FFI, or without memory for it, the C one stays. */
	if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_isfunction(L, -1))
		lua_setfield(L, -2, "ready_into");
	else
		lua_pop(L, 1);
}
#else
void lepb_ready_ffi(lua_State *L)
{
	(void)L;
}
#endif

const luaL_Reg lepb_ready_methods[] = {
	{"iter_ready", m_iter_ready},
	{"fold_ready", m_fold_ready},
	{"ready_into", m_ready_into},
	{NULL, NULL},
};
