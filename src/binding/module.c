/*
 * module.c: the module's functions (create, flags, ...), the sets' C API
 * of lepoll.h and luaopen_lepoll, which puts the set's methods together.
 */
#include "binding.h"

#include <errno.h>
#include <limits.h>

#define LEPOLL_VERSION "lepoll 0.1.0"
#define DEFAULT_MAX_READY 256

/* ------------------------------------------------------------ creating */

/* Pushes a new set, open, or returns the errno (the set is then closed and
 * garbage). Counts already checked. */
static int open_set(lua_State *L, int num_fds, int max_ready)
{
	void *ud;
	lua_Alloc alloc = lua_getallocf(L, &ud);
	lepb_set *set = lua_newuserdatauv(L, sizeof *set, 1);
	int err;

	/* Closed first: if opening fails, __gc finds a set with nothing to free. */
	lep_init(&set->core, alloc, ud);
	set->ready_busy = 0;
	lua_pushvalue(L, LEPB_UV_SETMT);
	lua_setmetatable(L, -2);
#if LEPOLL_HAVE_TOCLOSE
	*(lepb_set **)lua_newuserdatauv(L, sizeof(lepb_set *), 0) = set;
	luaL_setmetatable(L, LEPB_GUARD_MT);
	lua_setiuservalue(L, -2, 1);
#endif
	err = lep_open(&set->core, num_fds, max_ready);
	if (err == EMFILE || err == ENFILE) {
		/* Unreachable sets may hold descriptors until collected. */
		lua_gc(L, LUA_GCCOLLECT, 0);
		err = lep_open(&set->core, num_fds, max_ready);
	}
	return err;
}

/* The counts of create at 1 and 2; 0 with the failing argument's number
 * in *arg and the reason pushed. */
static int tocounts(lua_State *L, int *num_fds, int *max_ready, int *arg)
{
	*arg = 1;
	if (!lepb_tocount(L, 1, lep_default_num_fds(), INT_MAX, "num_file_descrs", num_fds))
		return 0;
	*arg = 2;
	return lepb_tocount(L, 2, DEFAULT_MAX_READY, LEP_MAX_READY, "max_ready_events", max_ready);
}

static int l_create(lua_State *L)
{
	int num_fds, max_ready, arg, err;

	if (!tocounts(L, &num_fds, &max_ready, &arg))
		return luaL_argerror(L, arg, lua_tostring(L, -1));
	err = open_set(L, num_fds, max_ready);
	if (err != 0)
		return lepb_syserror(L, "create", -1, err);
	return 1;
}

static int l_try_create(lua_State *L)
{
	int num_fds, max_ready, arg, err;

	lua_settop(L, 2);
	if (!tocounts(L, &num_fds, &max_ready, &arg))
		return lepb_argresult(L, NULL);
	err = open_set(L, num_fds, max_ready);
	if (err != 0)
		return lepb_sysresult(L, "create", -1, err);
	return 1;
}

/* --------------------------------------------------------------- flags */

static int l_flags(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)lepb_checkflags(L, 1));
	return 1;
}

static int l_try_flags(lua_State *L)
{
	uint32_t flags;

	lua_settop(L, 1);
	if (!lepb_toflags(L, 1, &flags))
		return lepb_argresult(L, NULL);
	lua_pushinteger(L, (lua_Integer)flags);
	return 1;
}

static int l_flagnames(lua_State *L)
{
	char buf[LEP_FLAGNAMES_MAX];
	size_t len = lep_flagnames(lepb_checkflags(L, 1), buf, sizeof buf);

	lua_pushlstring(L, buf, len);
	return 1;
}

static int l_has(lua_State *L)
{
	uint32_t flags = lepb_checkflags(L, 1);

	lua_pushboolean(L, (flags & lepb_checkflags(L, 2)) != 0);
	return 1;
}

/* ---------------------------------------------------------------- time */

static int l_timeout_ms(lua_State *L)
{
	lua_pushinteger(L, lepb_checktimeout(L, 1));
	return 1;
}

static int l_now(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)lep_now());
	return 1;
}

/* --------------------------------------------------------------- C API */

LEPOLL_API int lepoll_isset(lua_State *L, int idx)
{
	return luaL_testudata(L, idx, LEPOLL_SET_MT) != NULL;
}

LEPOLL_API lepoll_set *lepoll_checkset(lua_State *L, int idx)
{
	lepb_set *set = luaL_testudata(L, idx, LEPOLL_SET_MT);

	if (set == NULL) {
		lepb_typeerror(L, idx, LEPOLL_SET_MT);
		return NULL; /* not reached */
	}
	if (!lep_is_open(&set->core))
		luaL_error(L, LEPB_CLOSED_MSG);
	return set;
}

LEPOLL_API int lepoll_getfd(const lepoll_set *set)
{
	return lep_epfd(&set->core);
}

/* ------------------------------------------------------------- opening */

static const luaL_Reg module_functions[] = {
	{"create", l_create},
	{"try_create", l_try_create},
	{"flags", l_flags},
	{"try_flags", l_try_flags},
	{"flagnames", l_flagnames},
	{"has", l_has},
	{"timeout_ms", l_timeout_ms},
	{"now", l_now},
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
	lua_pushcfunction(L, lepb_iter_ready_protected);
	lua_pushcfunction(L, lepb_fold_ready_protected);
}

/* Registers fns into the table at the top, with the shared upvalues. */
static void add_functions(lua_State *L, const luaL_Reg *fns)
{
	push_shared_upvalues(L);
	luaL_setfuncs(L, fns, LEPB_NUM_UPVALUES);
}

LEPOLL_API int luaopen_lepoll(lua_State *L)
{
	static const luaL_Reg tostring_fn[] = {{"__tostring", lepb_tostring}, {NULL, NULL}};
	size_t i;

	luaL_checkversion(L);
	lua_createtable(L, 0, 20);           /* module */
	luaL_newmetatable(L, LEPOLL_SET_MT); /* module, mt */
#if LUA_VERSION_NUM < 503
	lua_pushliteral(L, LEPOLL_SET_MT); /* as 5.3 does: names the type in messages */
	lua_setfield(L, -2, "__name");
#endif
	add_functions(L, lepb_set_metamethods);
	add_functions(L, tostring_fn);
	lua_createtable(L, 0, 24); /* module, mt, methods */
	add_functions(L, lepb_set_methods);
	add_functions(L, lepb_ready_methods);
	lepb_ready_ffi(L);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1); /* module */
	add_functions(L, module_functions);
#if LEPOLL_HAVE_TOCLOSE
	luaL_newmetatable(L, LEPB_GUARD_MT);
	lua_pushcfunction(L, lepb_guard_close);
	lua_setfield(L, -2, "__close");
	lua_pop(L, 1);
#endif
	for (i = 0; i < sizeof constants / sizeof constants[0]; i++) {
		lua_pushinteger(L, (lua_Integer)constants[i].value);
		lua_setfield(L, -2, constants[i].name);
	}
	lepb_register_resolver(L);
	lepb_register_fdio(L);
	lepb_register_process(L);
	lepb_register_select(L);
	lepb_register_signals(L);
	lepb_register_waker(L);
	lua_pushliteral(L, LEPOLL_VERSION);
	lua_setfield(L, -2, "_VERSION");
	return 1;
}
