/*
 * fdio.c: lepoll.read and lepoll.write, one non-blocking read or write on
 * a descriptor (src/core/fdio.c), what happened given back as values:
 * data, "" at end of file, a count written; nil, "again" when the call
 * would block; nil, message, errname on failure. And the descriptors a
 * script owns: lepoll.pipe, lepoll.eventfd, lepoll.close.
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

static int again_result(lua_State *L)
{
	lua_pushnil(L);
	lua_pushliteral(L, "again");
	return 2;
}

/* lepoll.read(fd [, max]) */
static int l_read(lua_State *L)
{
	int fd = lepb_checkdescriptor(L, 1);
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
	int fd = lepb_checkdescriptor(L, 1);
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

/* lepoll.pipe() -> read end, write end (non-blocking, close-on-exec) */
static int l_pipe(lua_State *L)
{
	int fds[2];
	int err = lep_pipe(fds);

	if (err != 0)
		return lepb_sysresult(L, "pipe", -1, err);
	lua_pushinteger(L, fds[0]);
	lua_pushinteger(L, fds[1]);
	return 2;
}

/* lepoll.eventfd([initial [, "semaphore"]]) */
static int l_eventfd(lua_State *L)
{
	static const char *const modes[] = {"counter", "semaphore", NULL};
	lua_Integer initial = luaL_optinteger(L, 1, 0);
	int semaphore = luaL_checkoption(L, 2, "counter", modes);
	int fd, err;

	luaL_argcheck(L, initial >= 0 && initial <= (lua_Integer)UINT_MAX, 1,
	              "initial count out of range [0, 4294967295]");
	err = lep_eventfd((unsigned int)initial, semaphore, &fd);
	if (err != 0)
		return lepb_sysresult(L, "eventfd", -1, err);
	lua_pushinteger(L, fd);
	return 1;
}

/* lepoll.close(fd): a descriptor the script owns, by number. A file handle
 * is closed with its own close: closing its number here would leave the
 * handle to close it again. */
static int l_close(lua_State *L)
{
	int isint = 0;
	lua_Integer v = lua_tointegerx(L, 1, &isint);
	int err;

	if (lua_type(L, 1) != LUA_TNUMBER)
		return lepb_typeerror(L, 1, "descriptor (integer)");
	luaL_argcheck(L, isint && v >= 0 && v <= INT_MAX, 1,
	              "descriptor must be an integer in [0, 2147483647]");
	err = lep_close_fd((int)v);
	if (err != 0)
		return lepb_sysresult(L, "close", (int)v, err);
	lua_pushboolean(L, 1);
	return 1;
}

void lepb_register_fdio(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"read", l_read}, {"write", l_write}, {"pipe", l_pipe},
		{"eventfd", l_eventfd}, {"close", l_close}, {NULL, NULL},
	};
	luaL_setfuncs(L, fns, 0);
}
