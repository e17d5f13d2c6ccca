/*
 * An example C host: embeds Lua (5.1 to 5.4, or LuaJIT 2.1; the plain
 * public API of each), links lepoll statically, opens a pipe of its own
 * and hands the read end to a script. The script watches it with an epoll
 * set and gives the set back; the host then waits on the set's descriptor
 * in its own poll() loop and lets the script dispatch.
 *
 *   build/host examples/host/script.lua [messages]
 */
#define _GNU_SOURCE /* pipe2 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lepoll.h"

/* Lua 5.1 and LuaJIT 2.0 name no status for success. */
#ifndef LUA_OK
#define LUA_OK 0
#endif

/* host.read(fd) -> the bytes available, "" at end of file, or nil when
 * nothing is there yet (the script watches a non-blocking pipe). */
static int host_read(lua_State *L)
{
	char buf[4096];
	ssize_t n = read((int)luaL_checkinteger(L, 1), buf, sizeof buf);

	if (n < 0 && errno == EAGAIN)
		return 0;
	if (n < 0)
		return luaL_error(L, "read: %s", strerror(errno));
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

static int fail(lua_State *L, const char *what)
{
	fprintf(stderr, "host: %s: %s\n", what, lua_tostring(L, -1));
	lua_close(L);
	return 1;
}

/* Waits on the set's own descriptor, then calls the script's dispatcher. */
static int dispatch(lua_State *L, int dispatcher, const lepoll_set *set)
{
	struct pollfd pfd = {lepoll_getfd(set), POLLIN, 0};

	if (poll(&pfd, 1, 2000) != 1) {
		lua_pushstring(L, "the set did not become readable");
		return LUA_ERRRUN;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, dispatcher);
	return lua_pcall(L, 0, 0, 0);
}

int main(int argc, char **argv)
{
	lua_State *L;
	lepoll_set *set;
	int fds[2], dispatcher, i, messages = argc > 2 ? atoi(argv[2]) : 3;
	char line[64];

	if (argc < 2) {
		fprintf(stderr, "usage: %s SCRIPT [MESSAGES]\n", argv[0]);
		return 2;
	}
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
		perror("host: pipe2");
		return 1;
	}
	L = luaL_newstate();
	luaL_openlibs(L);
	/* require "lepoll" finds it: */
#if LUA_VERSION_NUM >= 502
	luaL_requiref(L, "lepoll", luaopen_lepoll, 0);
	lua_pop(L, 1);
#else /* 5.1 and LuaJIT: no luaL_requiref, package.preload works everywhere */
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_lepoll);
	lua_setfield(L, -2, "lepoll");
	lua_pop(L, 2);
#endif
	lua_newtable(L); /* the host's functions, as the global host */
	lua_pushcfunction(L, host_read);
	lua_setfield(L, -2, "read");
	lua_setglobal(L, "host");

	/* The script gets the descriptor and returns (set, dispatcher). */
	if (luaL_loadfile(L, argv[1]) != LUA_OK)
		return fail(L, "load");
	lua_pushinteger(L, fds[0]);
	if (lua_pcall(L, 1, 2, 0) != LUA_OK)
		return fail(L, "script");
	if (!lepoll_isset(L, -2)) {
		lua_pushstring(L, "the script returned no epoll set");
		return fail(L, "script");
	}
	set = lepoll_checkset(L, -2);
	dispatcher = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_setglobal(L, "the_set"); /* keeps it reachable, so set stays valid */

	for (i = 1; i <= messages; i++) {
		int n = snprintf(line, sizeof line, "message %d\n", i);
		if (write(fds[1], line, (size_t)n) != n) {
			perror("host: write");
			return 1;
		}
		if (dispatch(L, dispatcher, set) != LUA_OK)
			return fail(L, "dispatch");
	}
	close(fds[1]); /* the script sees the end of the pipe */
	if (dispatch(L, dispatcher, set) != LUA_OK)
		return fail(L, "dispatch");
	printf("host: the script's set is %s\n", lepoll_getfd(set) < 0 ? "closed" : "open");
	lua_close(L);
	close(fds[0]);
	return 0;
}
