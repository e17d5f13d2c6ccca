/*
 * lepoll: Linux epoll for Lua. The header for C programs that embed Lua.
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

/* Opens the module: pushes its table. For luaL_requiref or package.preload. */
LEPOLL_API int luaopen_lepoll(lua_State *L);

#endif
