/*
 * binding.h: what the files of the Lua binding share (internal). The
 * binding turns Lua values into calls of the core (src/core) and the
 * core's errno results into Lua values and errors. One job per file:
 *   args.c      Lua values to descriptors, flags, timeouts and counts
 *   errors.c    system errors as raised errors or as nil, message, errname
 *   methods.c   the set's methods: the table, waiting, closing
 *   ready.c     iter_ready and fold_ready (the busy state, callback errors),
 *               ready_into (and its FFI path under LuaJIT)
 *   tostring.c  tostring(set)
 *   resolver.c  lepoll.resolver(): host names resolved off the thread
 *   fdio.c      lepoll.read and lepoll.write on any descriptor; pipe,
 *               eventfd, close
 *   process.c   lepoll.spawn(): child processes
 *   select.c    lepoll.selector(): socket.select on a persistent set
 *   signals.c   lepoll.signals(): signals as a descriptor; lepoll.signum
 *   waker.c     lepoll.waker() and the wakers' C API: values from host
 *               threads, taken by the script
 *   module.c    the module's functions, the sets' C API, luaopen_lepoll
 * Private names start with lepb_.
 */
#ifndef LEPOLL_BINDING_H
#define LEPOLL_BINDING_H

#include <stdint.h>
#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>

#include "lepoll.h"
#include "lepoll_core.h"

#include "compat.h"

/* The userdata: the core's set and the binding's own state. */
struct lepoll_set {
	lep_set core;
	int ready_busy; /* depth of iter_ready/fold_ready running on the set */
};
typedef struct lepoll_set lepb_set;

/* Upvalues shared by every function of the module. Keeping the wait
 * results referenced here means wait never creates a string. */
#define LEPB_UV_SETMT          lua_upvalueindex(1)
#define LEPB_UV_OK             lua_upvalueindex(2)
#define LEPB_UV_TIMEOUT        lua_upvalueindex(3)
#define LEPB_UV_INTERRUPTED    lua_upvalueindex(4)
#define LEPB_UV_ITER_PROTECTED lua_upvalueindex(5)
#define LEPB_UV_FOLD_PROTECTED lua_upvalueindex(6)
#define LEPB_NUM_UPVALUES      6

#if LEPOLL_HAVE_TOCLOSE
#define LEPB_GUARD_MT "lepoll.ready_guard" /* the busy guard's metatable (5.4) */
#endif
#define LEPB_CLOSED_MSG "attempt to use a closed epoll set"

#if defined(__GNUC__)
#define LEPB_HIDDEN __attribute__((visibility("hidden")))
#else
#define LEPB_HIDDEN
#endif

/* ---- args.c. The lepb_to* functions return 1 with the value, or 0 with
 * the reason pushed (the text of "bad argument #n to 'f' (reason)");
 * lepb_check* raise that as an argument error. Only what an object's own
 * getfd, pollfd or fileno method raises propagates from lepb_tofd. */

/* The one type check: any set, open or closed, at index 1. */
LEPB_HIDDEN lepb_set *lepb_toset(lua_State *L);
/* The set at index 1, open: the one closed check. */
LEPB_HIDDEN lepb_set *lepb_checkset(lua_State *L);
/* "EXPECTED expected, got TYPE" as the reason for the value at idx: the
 * type named by __name only for a full userdata. */
LEPB_HIDDEN const char *lepb_pushtypereason(lua_State *L, int idx, const char *expected);
LEPB_HIDDEN int lepb_typeerror(lua_State *L, int idx, const char *expected);

LEPB_HIDDEN int lepb_tofd(lua_State *L, int idx, const lep_set *s, int *fd);
/* A Lua file handle's FILE, NULL when closed; 0 when idx holds none. */
LEPB_HIDDEN int lepb_tofile(lua_State *L, int idx, FILE **file);
LEPB_HIDDEN int lepb_checkfd(lua_State *L, int idx, const lep_set *s);
/* Any descriptor, no set to judge it by: an integer in [0, INT_MAX], an
 * open file handle's, or what an object's getfd method returns. */
LEPB_HIDDEN int lepb_todescriptor(lua_State *L, int idx, int *fd);
LEPB_HIDDEN int lepb_checkdescriptor(lua_State *L, int idx);
LEPB_HIDDEN int lepb_toflags(lua_State *L, int idx, uint32_t *flags);
LEPB_HIDDEN uint32_t lepb_checkflags(lua_State *L, int idx);
/* nil or "never": -1; 0 or "immediately": 0; else seconds, in ms. */
LEPB_HIDDEN int lepb_checktimeout(lua_State *L, int idx);
/* An optional count in [1, max], def when nil; `what` names it. */
LEPB_HIDDEN int lepb_tocount(lua_State *L, int idx, int def, int max, const char *what, int *out);
LEPB_HIDDEN void lepb_checkcallable(lua_State *L, int idx);
/* The reason why lep_exclusive_rule refuses flags for fd, pushed. */
LEPB_HIDDEN const char *lepb_pushexclusivereason(lua_State *L, int rule, int fd);

/* ---- errors.c */

/* Raises "lepoll: OP fd FD: TEXT (ENAME)" (without "fd FD" when fd < 0). */
LEPB_HIDDEN int lepb_syserror(lua_State *L, const char *op, int fd, int err);
/* The same as the results nil, message, errname (3). */
LEPB_HIDDEN int lepb_sysresult(lua_State *L, const char *op, int fd, int err);
/* nil, the reason at the top, "EINVAL" (3); or, when s was closed meanwhile
 * (an object's getfd method may close it), the closed-set results. */
LEPB_HIDDEN int lepb_argresult(lua_State *L, const lep_set *s);
/* nil, "attempt to use a closed epoll set", "EBADF" (3). */
LEPB_HIDDEN int lepb_closedresult(lua_State *L);

/* ---- the functions each file registers (module.c puts them together) */
extern LEPB_HIDDEN const luaL_Reg lepb_set_methods[];
extern LEPB_HIDDEN const luaL_Reg lepb_set_metamethods[];
extern LEPB_HIDDEN const luaL_Reg lepb_ready_methods[];
/* Under LuaJIT with the FFI, puts the FFI path of ready_into in the methods
 * table at the top, in front of the C one (ready.c); elsewhere nothing. */
LEPB_HIDDEN void lepb_ready_ffi(lua_State *L);
LEPB_HIDDEN int lepb_tostring(lua_State *L);
/* Makes the resolver's metatable and sets module.resolver (the module at
 * the top). */
LEPB_HIDDEN void lepb_register_resolver(lua_State *L);
/* Sets module.read, write, pipe, eventfd and close (the module at the top). */
LEPB_HIDDEN void lepb_register_fdio(lua_State *L);
/* The signal at idx (a number or a name) or an argument error; with watch,
 * also one for a signal a set cannot watch (signals.c). */
LEPB_HIDDEN int lepb_checksignal(lua_State *L, int idx, int watch);
/* Makes the process's metatable, sets module.spawn. */
LEPB_HIDDEN void lepb_register_process(lua_State *L);
/* Makes the selector's metatable, sets module.selector. */
LEPB_HIDDEN void lepb_register_select(lua_State *L);
/* Makes the signal set's metatable, sets module.signals and module.signum. */
LEPB_HIDDEN void lepb_register_signals(lua_State *L);
/* Makes the waker's metatable, sets module.waker. */
LEPB_HIDDEN void lepb_register_waker(lua_State *L);
LEPB_HIDDEN int lepb_iter_ready_protected(lua_State *L);
LEPB_HIDDEN int lepb_fold_ready_protected(lua_State *L);
#if LEPOLL_HAVE_TOCLOSE
LEPB_HIDDEN int lepb_guard_close(lua_State *L);
#endif

#endif
