/*
 * errors.c: the core's errno results as Lua errors ("lepoll: set fd 7:
 * Operation not permitted (EPERM)") or, for the try_ forms, as the results
 * nil, message, errname, in the way of luaL_fileresult.
 */
#define _POSIX_C_SOURCE 200809L /* XSI strerror_r */

#include "binding.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Pushes the message; *name gets the errno's name ("errno N" when it has
 * none we know), kept in `unknown`. */
static const char *push_sysmessage(lua_State *L, const char *op, int fd, int err,
                                   const char **name, char *unknown, size_t n)
{
	char text[128];

	if (strerror_r(err, text, sizeof text) != 0)
		(void)snprintf(text, sizeof text, "Unknown error %d", err);
	*name = lep_errname(err);
	if (*name == NULL) {
		(void)snprintf(unknown, n, "errno %d", err);
		*name = unknown;
	}
	if (fd >= 0)
		return lua_pushfstring(L, "lepoll: %s fd %d: %s (%s)", op, fd, text, *name);
	return lua_pushfstring(L, "lepoll: %s: %s (%s)", op, text, *name);
}

int lepb_syserror(lua_State *L, const char *op, int fd, int err)
{
	char unknown[32];
	const char *name;

	luaL_where(L, 1); /* the caller's position, as luaL_error gives */
	push_sysmessage(L, op, fd, err, &name, unknown, sizeof unknown);
	lua_concat(L, 2);
	return lua_error(L);
}

int lepb_sysresult(lua_State *L, const char *op, int fd, int err)
{
	char unknown[32];
	const char *name;

	lua_pushnil(L);
	push_sysmessage(L, op, fd, err, &name, unknown, sizeof unknown);
	lua_pushstring(L, name);
	return 3;
}

int lepb_closedresult(lua_State *L)
{
	lua_pushnil(L);
	lua_pushliteral(L, LEPB_CLOSED_MSG);
	lua_pushliteral(L, "EBADF");
	return 3;
}

int lepb_argresult(lua_State *L, const lep_set *s)
{
	if (s != NULL && !lep_is_open(s))
		return lepb_closedresult(L);
	lua_pushnil(L);
	lua_insert(L, -2);
	lua_pushliteral(L, "EINVAL");
	return 3;
}
