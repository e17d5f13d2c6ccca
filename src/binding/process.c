/*
 * process.c: lepoll.spawn(spec) -> a process object (src/core/child.c): a
 * child program with its standard streams as pipes, inherited, /dev/null
 * or given descriptors, and more descriptors at chosen numbers. The object
 * owns the pipes' ends and the pidfd; closing it (close, __gc, __close)
 * closes them and kills and reaps a child still running, so no process is
 * left behind, running or zombie.
 *
 * The spec is read and every string the child gets is made before
 * anything is started: a bad spec or a memory error starts nothing.
 */
#define _POSIX_C_SOURCE 200809L

#include "binding.h"
#include "child.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>

#define PROCESS_MT "lepoll.process"
#define CLOSED_MSG "attempt to use a closed process"
#define MAX_EXTRA 64 /* descriptors given besides the standard streams */

static const char *const stream_names[] = {"stdin", "stdout", "stderr", NULL};

/* The process at index 1, open or closed. */
static lep_child *toprocess(lua_State *L)
{
	return luaL_checkudata(L, 1, PROCESS_MT);
}

/* The one closed check. */
static lep_child *checkprocess(lua_State *L)
{
	lep_child *c = toprocess(L);
	if (c->pid == 0)
		luaL_error(L, CLOSED_MSG);
	return c;
}

/* ------------------------------------------------------------ the spec */

/* Raises "bad argument #1 to 'spawn' (what: reason)", reason formatted. */
static int spec_error(lua_State *L, const char *what, const char *fmt, ...)
{
	va_list ap;
	const char *reason;
	va_start(ap, fmt);
	reason = lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	return luaL_argerror(L, 1, lua_pushfstring(L, "%s: %s", what, reason));
}

/* A string of the child's (argv, environment, cwd): a string or a number,
 * no zero byte. Left at the top of the stack, where the caller anchors it. */
static const char *child_string(lua_State *L, const char *what)
{
	size_t len;
	const char *s;
	if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
		spec_error(L, what, "string expected, got %s", luaL_typename(L, -1));
	s = lua_tolstring(L, -1, &len);
	if (strlen(s) != len)
		spec_error(L, what, "contains a zero byte");
	return s;
}

/* An array of n + 1 pointers (the last NULL), in a userdata left on the
 * stack: freed with it. */
static char **new_array(lua_State *L, size_t n)
{
	char **a;
	if (n >= INT_MAX / sizeof(char *))
		luaL_error(L, "not enough memory");
	a = lua_newuserdata(L, (n + 1) * sizeof(char *));
	a[n] = NULL;
	return a;
}

/* argv from spec[1..n]; the strings anchored in the table at `anchor`. */
static char **read_argv(lua_State *L, int spec, int anchor)
{
	size_t n = (size_t)lua_rawlen(L, spec), i;
	char **argv;
	if (n == 0)
		spec_error(L, "[1]", "the program to run expected");
	argv = new_array(L, n);
	for (i = 1; i <= n; i++) {
		const char *what = lua_pushfstring(L, "[%d]", (int)i);
		lua_rawgeti(L, spec, (int)i);
		argv[i - 1] = (char *)child_string(L, what);
		lua_rawseti(L, anchor, (int)i);
		lua_pop(L, 1); /* what */
	}
	return argv;
}

/* "NAME=value" for each pair of spec.env (a table), or NULL without one. */
static char **read_env(lua_State *L, int spec, int anchor)
{
	size_t n = 0, i = 0;
	char **envp;
	int env;
	lua_getfield(L, spec, "env");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return NULL;
	}
	if (!lua_istable(L, -1))
		spec_error(L, "field 'env'", "table expected, got %s", luaL_typename(L, -1));
	env = lua_gettop(L);
	for (lua_pushnil(L); lua_next(L, env); lua_pop(L, 1))
		n++;
	envp = new_array(L, n);
	lua_insert(L, env); /* below the env table, which goes now */
	env++;
	for (lua_pushnil(L); lua_next(L, env); lua_pop(L, 1)) {
		const char *name, *value;
		if (lua_type(L, -2) != LUA_TSTRING)
			spec_error(L, "field 'env'", "names must be strings, got %s", luaL_typename(L, -2));
		name = lua_tostring(L, -2);
		if (name[0] == '\0' || strchr(name, '=') != NULL || strlen(name) != lua_rawlen(L, -2))
			spec_error(L, "field 'env'", "bad variable name '%s'", name);
		lua_pushvalue(L, -1);
		value = child_string(L, "field 'env'");
		lua_pushfstring(L, "%s=%s", name, value);
		envp[i++] = (char *)lua_tostring(L, -1);
		lua_rawseti(L, anchor, -(int)i); /* anchored apart from argv */
		lua_pop(L, 1);
	}
	envp[n] = NULL;
	lua_pop(L, 1); /* the env table */
	return envp;
}

/* spec.stdin, stdout or stderr: "inherit" (or nil), "null", "pipe", for
 * stderr "stdout", or a descriptor. */
static int read_stream(lua_State *L, int spec, int i)
{
	int fd = -1;
	lua_getfield(L, spec, stream_names[i]);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return LEP_STDIO_INHERIT;
	}
	if (lua_type(L, -1) == LUA_TSTRING) {
		const char *s = lua_tostring(L, -1);
		int how = strcmp(s, "inherit") == 0           ? LEP_STDIO_INHERIT
		        : strcmp(s, "null") == 0              ? LEP_STDIO_NULL
		        : strcmp(s, "pipe") == 0              ? LEP_STDIO_PIPE
		        : i == 2 && strcmp(s, "stdout") == 0 ? LEP_STDIO_STDOUT
		                                              : 0;
		if (how == 0)
			spec_error(L, lua_pushfstring(L, "field '%s'", stream_names[i]),
			           "\"pipe\", \"inherit\", \"null\"%s or a descriptor expected, got \"%s\"",
			           i == 2 ? ", \"stdout\"" : "", s);
		lua_pop(L, 1);
		return how;
	}
	if (!lepb_todescriptor(L, lua_gettop(L), &fd)) {
		const char *reason = lua_tostring(L, -1); /* before the name is pushed */
		spec_error(L, lua_pushfstring(L, "field '%s'", stream_names[i]), "%s", reason);
	}
	lua_pop(L, 1);
	return fd;
}

/* spec.fds: { [number in the child] = descriptor, ... } */
static int read_extra(lua_State *L, int spec, int *from, int *to)
{
	int n = 0, fds;
	lua_getfield(L, spec, "fds");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1))
		spec_error(L, "field 'fds'", "table expected, got %s", luaL_typename(L, -1));
	fds = lua_gettop(L);
	for (lua_pushnil(L); lua_next(L, fds); lua_pop(L, 1)) {
		int isint = 0, fd = -1;
		lua_Integer target = lua_tointegerx(L, -2, &isint);
		if (lua_type(L, -2) != LUA_TNUMBER || !isint || target < 3 || target > INT_MAX)
			spec_error(L, "field 'fds'", "keys are the child's descriptor numbers, integers from 3 "
			           "(stdin, stdout and stderr are fields of their own)");
		if (target >= lep_default_num_fds())
			spec_error(L, "field 'fds'", "[%d]: beyond the descriptor limit (RLIMIT_NOFILE %d)",
			           (int)target, lep_default_num_fds());
		if (n == MAX_EXTRA)
			spec_error(L, "field 'fds'", "more than %d descriptors", MAX_EXTRA);
		if (!lepb_todescriptor(L, lua_gettop(L), &fd))
			spec_error(L, "field 'fds'", "[%d]: %s", (int)target, lua_tostring(L, -1));
		from[n] = fd;
		to[n++] = (int)target;
	}
	lua_pop(L, 1);
	return n;
}

/* lepoll.spawn(spec) -> process, or nil, message, errname */
static int l_spawn(lua_State *L)
{
	lep_spawn_opts o;
	int from[MAX_EXTRA], to[MAX_EXTRA], anchor, i, err;
	lep_child *c;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	lua_newtable(L); /* 2: the strings the child gets, kept alive */
	anchor = 2;
	memset(&o, 0, sizeof o);
	o.argv = read_argv(L, 1, anchor);
	o.file = o.argv[0];
	o.envp = read_env(L, 1, anchor);
	lua_getfield(L, 1, "cwd");
	if (!lua_isnil(L, -1))
		o.cwd = child_string(L, "field 'cwd'"); /* stays on the stack */
	for (i = 0; i < 3; i++)
		o.stdio[i] = read_stream(L, 1, i);
	o.nextra = read_extra(L, 1, from, to);
	lua_getfield(L, 1, "newgroup");
	o.newgroup = lua_toboolean(L, -1);
	o.from = from;
	o.to = to;

	/* Closed first: a memory error from here leaves nothing to clean. */
	c = lua_newuserdatauv(L, sizeof *c, 0);
	lep_child_init(c);
	luaL_setmetatable(L, PROCESS_MT);
	err = lep_spawn(&o, c);
	if (err != 0)
		return lepb_sysresult(L, lua_pushfstring(L, "spawn '%s'", o.file), -1, err);
	return 1;
}

/* ------------------------------------------------------------- methods */

/* The signal at idx (a number or a name), or def when nil. */
static int check_signal(lua_State *L, int idx, int def)
{
	return lua_isnoneornil(L, idx) ? def : lepb_checksignal(L, idx, 0);
}

/* How it ended as results: nil while it runs; "exit", status; "signal",
 * number. */
static int push_status(lua_State *L, const lep_child *c)
{
	if (c->how == LEP_CHILD_RUNNING) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushstring(L, c->how == LEP_CHILD_EXITED ? "exit" : "signal");
	lua_pushinteger(L, c->code);
	return 2;
}

/* p:status() -> nil while it runs; else how it ended (reaped) */
static int p_status(lua_State *L)
{
	lep_child *c = checkprocess(L);
	(void)lep_child_poll(c, 0);
	return push_status(L, c);
}

/* p:wait() -> how it ended, blocking until it does */
static int p_wait(lua_State *L)
{
	lep_child *c = checkprocess(L);
	(void)lep_child_poll(c, 1);
	return push_status(L, c);
}

/* p:kill([sig]) -> true, or nil, message, errname (ESRCH once it ended) */
static int p_kill(lua_State *L)
{
	lep_child *c = checkprocess(L);
	int sig = check_signal(L, 2, SIGTERM);
	int err;
	(void)lep_child_poll(c, 0); /* ended already: ESRCH, not a signal to a zombie */
	err = lep_child_kill(c, sig);
	if (err != 0)
		return lepb_sysresult(L, "kill", -1, err);
	lua_pushboolean(L, 1);
	return 1;
}

/* p:killgroup([sig]) -> true, or nil, message, errname: to the process
 * group it leads (spawned with newgroup), also after it ended while others
 * of the group live */
static int p_killgroup(lua_State *L)
{
	lep_child *c = checkprocess(L);
	int sig = check_signal(L, 2, SIGTERM);
	int err;
	luaL_argcheck(L, c->group, 1, "not started with newgroup: it leads no process group");
	err = lep_child_killgroup(c, sig);
	if (err != 0)
		return lepb_sysresult(L, "killgroup", -1, err);
	lua_pushboolean(L, 1);
	return 1;
}

/* p:getfd() -> the pidfd, readable once the child has ended; nil when the
 * kernel gives none (then status() must be polled) */
static int p_getfd(lua_State *L)
{
	lep_child *c = checkprocess(L);
	if (c->pidfd < 0)
		lua_pushnil(L);
	else
		lua_pushinteger(L, c->pidfd);
	return 1;
}

/* p:closepipe(name): closes this process's end of a stream's pipe (stdin's:
 * the child reads the end of its input) */
static int p_closepipe(lua_State *L)
{
	lep_child *c = checkprocess(L);
	lep_child_close_pipe(c, luaL_checkoption(L, 2, NULL, stream_names));
	return 0;
}

static int p_close(lua_State *L)
{
	lep_child_close(toprocess(L));
	return 0;
}

static int p_tostring(lua_State *L)
{
	lep_child *c = toprocess(L);
	if (c->pid == 0)
		lua_pushliteral(L, "process (closed)");
	else if (c->how == LEP_CHILD_RUNNING)
		lua_pushfstring(L, "process %d (running)", (int)c->pid);
	else
		lua_pushfstring(L, "process %d (%s %d)", (int)c->pid,
		                c->how == LEP_CHILD_EXITED ? "exit" : "signal", c->code);
	return 1;
}

/* Fields pid, stdin, stdout, stderr (nil once closed), then the methods
 * (upvalue 1). */
static int p_index(lua_State *L)
{
	lep_child *c = toprocess(L);
	if (lua_type(L, 2) == LUA_TSTRING) {
		const char *key = lua_tostring(L, 2);
		int i;
		if (strcmp(key, "pid") == 0) {
			if (c->pid == 0)
				lua_pushnil(L);
			else
				lua_pushinteger(L, c->pid);
			return 1;
		}
		for (i = 0; i < 3; i++)
			if (strcmp(key, stream_names[i]) == 0) {
				if (c->pipes[i] < 0)
					lua_pushnil(L);
				else
					lua_pushinteger(L, c->pipes[i]);
				return 1;
			}
	}
	lua_pushvalue(L, 2);
	lua_rawget(L, lua_upvalueindex(1));
	return 1;
}

void lepb_register_process(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"status", p_status}, {"wait", p_wait}, {"kill", p_kill}, {"killgroup", p_killgroup},
		{"getfd", p_getfd},
		{"closepipe", p_closepipe}, {"close", p_close}, {NULL, NULL},
	};
	luaL_newmetatable(L, PROCESS_MT);
#if LUA_VERSION_NUM < 503
	lua_pushliteral(L, PROCESS_MT);
	lua_setfield(L, -2, "__name");
#endif
	lua_newtable(L);
	luaL_setfuncs(L, methods, 0);
	lua_pushcclosure(L, p_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, p_close);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, p_close);
	lua_setfield(L, -2, "__close");
	lua_pushcfunction(L, p_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	lua_pushcfunction(L, l_spawn);
	lua_setfield(L, -2, "spawn");
}
