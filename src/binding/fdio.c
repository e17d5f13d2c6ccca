/*
 * fdio.c: lepoll.read and lepoll.write, one non-blocking read or write on
 * a descriptor (src/core/fdio.c), what happened given back as values:
 * data, "" at end of file, a count written; nil, "again" when the call
 * would block; nil, message, errname on failure.
 */
#define _POSIX_C_SOURCE 200809L

#include "binding.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>

/* Reads of up to this size go through a buffer on the C stack; larger ones
 * through a userdata made for the call. */
#define STACK_READ 65536
#define DEFAULT_READ 65536
#define MAX_READ (1 << 30)

/* The descriptor at idx: a non-negative integer, or a Lua file handle. */
static int check_descriptor(lua_State *L, int idx)
{
	FILE *file;

	if (lua_type(L, idx) == LUA_TNUMBER) {
		int isint = 0;
		lua_Integer v = lua_tointegerx(L, idx, &isint);
		if (!isint || v < 0 || v > INT_MAX)
			luaL_argerror(L, idx, "descriptor must be an integer in [0, 2147483647]");
		return (int)v;
	}
	if (lepb_tofile(L, idx, &file)) {
		if (file == NULL)
			luaL_argerror(L, idx, "attempt to use a closed file");
		return fileno(file);
	}
	lepb_typeerror(L, idx, "descriptor (integer or file handle)");
	return -1; /* not reached */
}

static int again_result(lua_State *L)
{
	lua_pushnil(L);
	lua_pushliteral(L, "again");
	return 2;
}

/* lepoll.read(fd [, max]) */
static int l_read(lua_State *L)
{
	int fd = check_descriptor(L, 1);
	lua_Integer max = luaL_optinteger(L, 2, DEFAULT_READ);
	size_t got;
	int err;

	luaL_argcheck(L, max >= 1 && max <= MAX_READ, 2, "byte count out of range [1, 2^30]");
	if (max <= STACK_READ) {
		char buf[STACK_READ];
		err = lep_read(fd, buf, (size_t)max, &got);
		if (err == 0)
			lua_pushlstring(L, buf, got);
	} else {
		char *p = lua_newuserdata(L, (size_t)max);
		err = lep_read(fd, p, (size_t)max, &got);
		if (err == 0)
			lua_pushlstring(L, p, got);
	}
	if (err == EAGAIN)
		return again_result(L);
	if (err != 0)
		return lepb_sysresult(L, "read", fd, err);
	return 1;
}

/* lepoll.write(fd, data [, i [, j]]): data[i..j] as string.sub takes them */
static int l_write(lua_State *L)
{
	int fd = check_descriptor(L, 1);
	size_t len, put;
	const char *data = luaL_checklstring(L, 2, &len);
	lua_Integer i = luaL_optinteger(L, 3, 1);
	lua_Integer j = luaL_optinteger(L, 4, -1);
	lua_Integer n = (lua_Integer)len;
	int err;

	if (i < 0)
		i = i < -n ? 1 : n + i + 1;
	else if (i == 0)
		i = 1;
	if (j < 0)
		j = n + j + 1;
	else if (j > n)
		j = n;
	if (i > j) {
		lua_pushinteger(L, 0);
		return 1;
	}
	err = lep_write(fd, data + i - 1, (size_t)(j - i + 1), &put);
	if (err == EAGAIN)
		return again_result(L);
	if (err != 0)
		return lepb_sysresult(L, "write", fd, err);
	lua_pushinteger(L, (lua_Integer)put);
	return 1;
}

void lepb_register_fdio(lua_State *L)
{
	lua_pushcfunction(L, l_read);
	lua_setfield(L, -2, "read");
	lua_pushcfunction(L, l_write);
	lua_setfield(L, -2, "write");
}
