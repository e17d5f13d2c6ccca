/*
 * compat.h: the Lua 5.4 API the binding uses, for Lua 5.1, 5.2,
 * 5.3 and LuaJIT 2.1. The binding is written against 5.4; on 5.4 this
 * header adds nothing but LEPOLL_HAVE_TOCLOSE. Internal: not installed.
 *
 * Where an older API is looser than 5.4's, the replacement keeps 5.4's
 * meaning: lua_tointegerx and lua_isinteger accept only numbers with an
 * exact integer value (5.2's and LuaJIT's own lua_tointegerx truncate),
 * and lua_getfield and lua_rawgeti return the type they pushed.
 */
#ifndef LEPOLL_COMPAT_H
#define LEPOLL_COMPAT_H

#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h> /* LUA_FILEHANDLE on 5.1 */

#if defined(LUA_LJDIR)
#define LEPOLL_LUAJIT 1 /* LuaJIT: the 5.1 API and some of 5.2's */
#else
#define LEPOLL_LUAJIT 0
#endif

/* 5.4's to-be-closed slots; before them, a protected call stands in. */
#define LEPOLL_HAVE_TOCLOSE (LUA_VERSION_NUM >= 504)

#if LUA_VERSION_NUM < 504

/* One user value is all 5.4 code asks for; older userdata have one. */
#define lua_newuserdatauv(L, size, nuv) lua_newuserdata(L, size)

/* As 5.4: the metatable's __name, if any, names the value's type. */
static inline int compat_typeerror(lua_State *L, int arg, const char *tname)
{
	const char *got;

	if (luaL_getmetafield(L, arg, "__name") && lua_type(L, -1) == LUA_TSTRING)
		got = lua_tostring(L, -1);
	else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
		got = "light userdata";
	else
		got = luaL_typename(L, arg);
	return luaL_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s", tname, got));
}
#define luaL_typeerror compat_typeerror

#endif /* < 5.4 */

#if LUA_VERSION_NUM < 503

/* Numbers are doubles: an integer is a double with an exact lua_Integer
 * value (both bounds are powers of two, so exactly representable). */
static inline int compat_number_to_integer(lua_Number n, lua_Integer *out)
{
	const lua_Number limit = (lua_Number)((unsigned long long)1 << (sizeof(lua_Integer) * 8 - 1));

	if (!(n >= -limit && n < limit) || (lua_Number)(lua_Integer)n != n)
		return 0;
	*out = (lua_Integer)n;
	return 1;
}
#define lua_numbertointeger(n, p) compat_number_to_integer(n, p)

static inline lua_Integer compat_tointegerx(lua_State *L, int idx, int *isint)
{
	lua_Integer v = 0;
	int ok = lua_type(L, idx) == LUA_TNUMBER && compat_number_to_integer(lua_tonumber(L, idx), &v);

	if (isint != NULL)
		*isint = ok;
	return v;
}
#undef lua_tointegerx
#define lua_tointegerx compat_tointegerx

/* As 5.3: a number, or a string convertible to one, with an exact integer
 * value; 5.1's and 5.2's truncate, and cast out-of-range values. */
static inline lua_Integer compat_checkinteger(lua_State *L, int arg)
{
	lua_Integer v = 0;

	if (!lua_isnumber(L, arg))
		luaL_typeerror(L, arg, "number");
	if (!compat_number_to_integer(lua_tonumber(L, arg), &v))
		luaL_argerror(L, arg, "number has no integer representation");
	return v;
}
#undef luaL_checkinteger
#define luaL_checkinteger compat_checkinteger

static inline int compat_isinteger(lua_State *L, int idx)
{
	int ok;

	(void)compat_tointegerx(L, idx, &ok);
	return ok;
}
#define lua_isinteger compat_isinteger

/* As 5.3: the type of the value pushed. Defined before the macros that
 * rename them, so they call the version's own functions. */
static inline int compat_getfield(lua_State *L, int idx, const char *k)
{
	lua_getfield(L, idx, k);
	return lua_type(L, -1);
}

static inline int compat_rawgeti(lua_State *L, int idx, lua_Integer n)
{
	lua_rawgeti(L, idx, (int)n);
	return lua_type(L, -1);
}
#define lua_getfield compat_getfield
#define lua_rawgeti  compat_rawgeti

#endif /* < 5.3 */

#if LUA_VERSION_NUM == 501

#define lua_rawlen(L, idx)     lua_objlen(L, idx)
#define luaL_checkversion(L)   ((void)(L))

/* A file handle: a userdata whose block starts with the FILE *, NULL once
 * the file is closed (5.1 and LuaJIT alike). NULL if not a handle. */
static inline FILE **compat_tofilep(lua_State *L, int idx)
{
	void *p = lua_touserdata(L, idx);
	int same;

	if (p == NULL || !lua_getmetatable(L, idx))
		return NULL;
	lua_getfield(L, LUA_REGISTRYINDEX, LUA_FILEHANDLE);
	same = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return same ? (FILE **)p : NULL;
}

#if !LEPOLL_LUAJIT /* LuaJIT 2.1 has these */

#define LUA_OK 0

static inline void *compat_testudata(lua_State *L, int idx, const char *tname)
{
	void *p = lua_touserdata(L, idx);
	int same;

	if (p == NULL || !lua_getmetatable(L, idx))
		return NULL;
	luaL_getmetatable(L, tname);
	same = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return same ? p : NULL;
}
#define luaL_testudata compat_testudata

static inline void compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
	int i;

	luaL_checkstack(L, nup, "too many upvalues");
	for (; l->name != NULL; l++) {
		for (i = 0; i < nup; i++)
			lua_pushvalue(L, -nup);
		lua_pushcclosure(L, l->func, nup);
		lua_setfield(L, -(nup + 2), l->name);
	}
	lua_pop(L, nup);
}
#define luaL_setfuncs compat_setfuncs

#define luaL_setmetatable(L, tname) (luaL_getmetatable(L, tname), (void)lua_setmetatable(L, -2))
#define luaL_newlib(L, l)           (lua_newtable(L), luaL_setfuncs(L, l, 0))

#endif /* !LuaJIT */
#endif /* 5.1 */

#endif
