/*
 * An example C host with a thread of its own: the script runs a
 * lepoll.loop on the main thread while another thread of the host posts
 * values to it through a waker (lepoll_newwaker, lepoll_wake). The thread
 * posts MESSAGES messages, then "done"; the script prints each one, closes
 * the waker at "done" and returns. A post after that fails with EPIPE.
 *
 *   LUA_PATH='lua/?.lua;;' build/waker_host examples/host/waker.lua [messages]
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lepoll.h"

/* Lua 5.1 and LuaJIT 2.0 name no status for success. */
#ifndef LUA_OK
#define LUA_OK 0
#endif

struct poster {
	lepoll_waker *waker;
	int messages;
	int failed; /* the errno of a post that failed, or 0 */
};

/* The host's thread: never touches the lua_State, only the waker. */
static void *post_messages(void *arg)
{
	struct poster *p = arg;
	char text[64];
	int i, err = 0;

	for (i = 1; i <= p->messages && err == 0; i++) {
		int n = snprintf(text, sizeof text, "message %d", i);
		err = lepoll_wake(p->waker, text, (size_t)n);
	}
	if (err == 0)
		err = lepoll_wake(p->waker, "done", 4);
	p->failed = err;
	return NULL;
}

/* Runs protected, as lepoll_newwaker raises its errors (and any Lua call
 * may raise a memory error): the standard libraries, lepoll for require
 * (package.preload, which every Lua version has), then the waker, pushed
 * for the script; the host's reference goes where the light userdata at 1
 * points. */
static int setup(lua_State *L)
{
	lepoll_waker **out = lua_touserdata(L, 1);

	luaL_openlibs(L);
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_lepoll);
	lua_setfield(L, -2, "lepoll");
	*out = lepoll_newwaker(L);
	return 1;
}

static int fail(lua_State *L, const char *what)
{
	fprintf(stderr, "waker_host: %s: %s\n", what, lua_tostring(L, -1));
	lua_close(L);
	return 1;
}

int main(int argc, char **argv)
{
	struct poster p = {NULL, argc > 2 ? atoi(argv[2]) : 3, 0};
	pthread_t thread;
	lua_State *L;
	int err;

	if (argc < 2) {
		fprintf(stderr, "usage: %s SCRIPT [MESSAGES]\n", argv[0]);
		return 2;
	}
	L = luaL_newstate();
	if (L == NULL) {
		fprintf(stderr, "waker_host: luaL_newstate failed\n");
		return 1;
	}
	if (luaL_loadfile(L, argv[1]) != LUA_OK)
		return fail(L, "load");
	lua_pushcfunction(L, setup);
	lua_pushlightuserdata(L, &p.waker);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) /* script, waker */
		return fail(L, "setup");

	/* Values posted before the script watches the waker wait for it. */
	err = pthread_create(&thread, NULL, post_messages, &p);
	if (err != 0) {
		fprintf(stderr, "waker_host: pthread_create: %s\n", strerror(err));
		lepoll_releasewaker(p.waker);
		lua_close(L);
		return 1;
	}
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		pthread_join(thread, NULL);
		lepoll_releasewaker(p.waker);
		return fail(L, "script");
	}
	pthread_join(thread, NULL);
	if (p.failed != 0) {
		fprintf(stderr, "waker_host: lepoll_wake: %s\n", strerror(p.failed));
		lepoll_releasewaker(p.waker);
		lua_close(L);
		return 1;
	}
	printf("host: posted %d messages and \"done\"\n", p.messages);

	/* The script closed its waker: the host's reference is still valid. */
	err = lepoll_wake(p.waker, "too late", 8);
	printf("host: a post after the script closed the waker: %s\n",
	       err == EPIPE ? "EPIPE" : err == 0 ? "queued" : strerror(err));
	lepoll_releasewaker(p.waker);
	lua_close(L);
	return err == EPIPE ? 0 : 1;
}
