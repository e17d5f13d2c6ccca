/*
 * lepoll: Linux epoll for Lua. The header for C programs that embed Lua
 * and link lepoll (build/liblepoll.a, or the module itself).
 *
 * Making the module available to scripts:
 *     luaL_requiref(L, "lepoll", luaopen_lepoll, 0); lua_pop(L, 1);
 * Descriptors go to scripts as plain integers; the functions below let host
 * code take a set back from Lua and watch its epoll descriptor in its own
 * loop (it is readable when the set has events to report). A waker goes
 * the other way: another thread of the host wakes a script's loop and
 * hands it values.
 */
#ifndef LEPOLL_H
#define LEPOLL_H

#include <stddef.h>

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

/* Metatable name of wakers. */
#define LEPOLL_WAKER_MT "lepoll.waker"

/* A waker: a queue of values for a script, and a descriptor that is
 * readable while values wait. Its Lua value and the host each hold a
 * reference; the memory goes with the last one. */
typedef struct lepoll_waker lepoll_waker;

/* Pushes a new waker, the script's to watch (w:getfd()) and read
 * (w:read()), and returns the host's reference to it; raises a Lua error
 * when none can be made ("lepoll: waker: ... (EMFILE)"). The module need
 * not be opened first. */
LEPOLL_API lepoll_waker *lepoll_newwaker(lua_State *L);

/* From any thread, without the Lua state: queues a copy of len bytes at
 * data (NULL with len 0 posts an empty value) and makes the descriptor
 * readable. 0, or an errno value: EPIPE once the Lua side closed the
 * waker (w:close(), collected, lua_close), ENOMEM (nothing queued),
 * EINVAL for NULL data with len > 0, ECHILD in a forked child. Values from
 * one thread arrive in the order posted. */
LEPOLL_API int lepoll_wake(lepoll_waker *w, const void *data, size_t len);

/* From any thread: drops the host's reference; w must not be used again.
 * NULL is allowed and does nothing. */
LEPOLL_API void lepoll_releasewaker(lepoll_waker *w);

#endif
