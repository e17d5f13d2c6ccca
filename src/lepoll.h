/*
 * lepoll: Linux epoll for Lua. The header for C programs that embed Lua
 * and link lepoll (build/liblepoll.a, or the module itself).
 *
 * Making the module available to scripts:
 *     luaL_requiref(L, "lepoll", luaopen_lepoll, 0); lua_pop(L, 1);
 * Descriptors go to scripts as plain integers; the functions below let host
 * code take a set back from Lua and watch its epoll descriptor in its own
 * loop (it is readable when the set has events to report).
 */
#ifndef LEPOLL_H
#define LEPOLL_H

#include <lua.h>

#if defined(__GNUC__)
#define LEPOLL_API __attribute__((visibility("default")))
#else
#define LEPOLL_API
#endif

/* Metatable name of epoll sets (shown in error messages). */
#define LEPOLL_SET_MT "lepoll.set"

/* An epoll set; only its Lua value owns it. */
typedef struct lepoll_set lepoll_set;

/* Opens the module: pushes its table. For luaL_requiref or package.preload. */
LEPOLL_API int luaopen_lepoll(lua_State *L);

/* 1 when the value at idx is an epoll set, open or closed; else 0. */
LEPOLL_API int lepoll_isset(lua_State *L, int idx);

/* The open set at idx; raises a Lua error (an argument error when idx holds
 * no set, "attempt to use a closed epoll set" when it is closed). The
 * pointer stays valid while the set is reachable from Lua. */
LEPOLL_API lepoll_set *lepoll_checkset(lua_State *L, int idx);

/* The set's epoll descriptor, or -1 once the set is closed. The set owns
 * it: watch it, never close it. */
LEPOLL_API int lepoll_getfd(const lepoll_set *set);

#endif
