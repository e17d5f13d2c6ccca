/*
 * resolver.c: lepoll.resolver(), host names resolved on worker threads
 * (src/core/resolver.c), their answers taken when its descriptor is
 * readable. A userdata in the way of liolib's files: made closed, then
 * opened; one closed check; one idempotent close for close, __gc and
 * __close.
 */
#define _POSIX_C_SOURCE 200809L /* XSI strerror_r */

#include "binding.h"
#include "resolver.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#define RESOLVER_MT "lepoll.resolver"
#define RESOLVER_CLOSED_MSG "attempt to use a closed resolver"
#define DEFAULT_THREADS 4

typedef struct {
	lep_resolver *r; /* NULL when closed */
} lresolver;

/* The one type check. */
static lresolver *to_resolver(lua_State *L)
{
	return luaL_checkudata(L, 1, RESOLVER_MT);
}

/* The one closed check. */
static lep_resolver *check_open(lua_State *L)
{
	lresolver *lr = to_resolver(L);
	if (lr->r == NULL)
		luaL_error(L, RESOLVER_CLOSED_MSG);
	return lr->r;
}

/* Idempotent: the resolver lets go of its threads' work and descriptor. */
static int close_resolver(lresolver *lr)
{
	lep_resolver *r = lr->r;
	lr->r = NULL;
	return r ? lep_resolver_close(r) : 0;
}

/* lepoll.resolver([max_threads]) */
static int l_resolver(lua_State *L)
{
	int max_threads, err;
	lresolver *lr;

	if (!lepb_tocount(L, 1, DEFAULT_THREADS, LEP_RESOLVER_MAX_THREADS, "max_threads", &max_threads))
		return luaL_argerror(L, 1, lua_tostring(L, -1));
	lr = lua_newuserdatauv(L, sizeof *lr, 0);
	lr->r = NULL;
	luaL_setmetatable(L, RESOLVER_MT);
	err = lep_resolver_open(&lr->r, max_threads);
	if (err != 0)
		return lepb_syserror(L, "resolver", -1, err);
	return 1;
}

static const char *const family_names[] = {"any", "inet", "inet6", NULL};
static const int family_values[] = {LEP_FAMILY_ANY, LEP_FAMILY_INET, LEP_FAMILY_INET6};

/* r:submit(host [, family]) -> id, or nil, message, errname */
static int m_submit(lua_State *L)
{
	lep_resolver *r = check_open(L);
	size_t len;
	const char *host = luaL_checklstring(L, 2, &len);
	int family = family_values[luaL_checkoption(L, 3, "any", family_names)];
	uint64_t id;
	int err;

	if (strlen(host) != len)
		return luaL_argerror(L, 2, "host name contains a zero byte");
	err = lep_resolver_submit(r, host, family, &id);
	if (err != 0)
		return lepb_sysresult(L, "resolve", -1, err);
	lua_pushinteger(L, (lua_Integer)id);
	return 1;
}

/* nil, the message and the name of a failed lookup. */
static void push_failure(lua_State *L, const lep_answer *a)
{
	const char *name;

	lua_pushnil(L);
	if (a->status == EAI_SYSTEM) {
		char text[128];
		if (strerror_r(a->sys_errno, text, sizeof text) != 0)
			(void)snprintf(text, sizeof text, "Unknown error %d", a->sys_errno);
		lua_pushstring(L, text);
		name = lep_errname(a->sys_errno);
	} else {
		lua_pushstring(L, gai_strerror(a->status));
		name = lep_eai_name(a->status);
	}
	if (name)
		lua_pushstring(L, name);
	else
		lua_pushfstring(L, "EAI %d", a->status);
}

/* Pushes the answer's results; runs protected (it allocates), so that the
 * answer is freed whatever happens. */
static int push_answer(lua_State *L)
{
	const lep_answer *a = lua_touserdata(L, 1);
	int k;

	lua_settop(L, 0);
	lua_pushinteger(L, (lua_Integer)a->id);
	if (a->status != 0) {
		push_failure(L, a);
		return 4;
	}
	lua_createtable(L, a->count, 0);
	for (k = 0; k < a->count; k++) {
		lua_createtable(L, 0, 2);
		lua_pushstring(L, a->addresses[k].family == LEP_FAMILY_INET6 ? "inet6" : "inet");
		lua_setfield(L, -2, "family");
		lua_pushstring(L, a->addresses[k].text);
		lua_setfield(L, -2, "address");
		lua_rawseti(L, -2, k + 1);
	}
	return 2;
}

/* r:take() -> id, addresses; or id, nil, message, errname; or nil when no
 * answer waits. */
static int m_take(lua_State *L)
{
	lep_resolver *r = check_open(L);
	lep_answer *a;
	int status, n;

	lua_settop(L, 1);
	/* The stack room and the function before the answer is ours. */
	luaL_checkstack(L, 8, NULL);
	lua_pushcfunction(L, push_answer);
	a = lep_resolver_take(r);
	if (a == NULL) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushlightuserdata(L, a);
	status = lua_pcall(L, 1, LUA_MULTRET, 0);
	lep_answer_free(a);
	if (status != 0)
		return lua_error(L); /* a memory error: the answer is lost with it */
	n = lua_gettop(L) - 1;
	return n;
}

/* r:cancel(id) -> whether there was such a lookup */
static int m_cancel(lua_State *L)
{
	lep_resolver *r = check_open(L);
	lua_Integer id = luaL_checkinteger(L, 2);

	lua_pushboolean(L, id > 0 && lep_resolver_cancel(r, (uint64_t)id));
	return 1;
}

/* r:counts() -> lookups pending (queued or under way), answers waiting,
 * threads */
static int m_counts(lua_State *L)
{
	int pending, answers, threads;

	lep_resolver_counts(check_open(L), &pending, &answers, &threads);
	lua_pushinteger(L, pending);
	lua_pushinteger(L, answers);
	lua_pushinteger(L, threads);
	return 3;
}

static int m_getfd(lua_State *L)
{
	lresolver *lr = to_resolver(L);
	lua_pushinteger(L, lr->r ? lep_resolver_fd(lr->r) : -1);
	return 1;
}

static int m_close(lua_State *L)
{
	lresolver *lr = to_resolver(L);
	int fd = lr->r ? lep_resolver_fd(lr->r) : -1;
	int err = close_resolver(lr);

	if (err != 0)
		return lepb_syserror(L, "close", fd, err);
	return 0;
}

/* __gc may be handed a table given the metatable: only a resolver closes. */
static int m_gc(lua_State *L)
{
	lresolver *lr = luaL_testudata(L, 1, RESOLVER_MT);
	if (lr)
		(void)close_resolver(lr); /* nobody to tell */
	return 0;
}

static int m_tostring(lua_State *L)
{
	lresolver *lr = to_resolver(L);
	int pending, answers, threads;

	if (lr->r == NULL) {
		lua_pushliteral(L, "resolver{closed}");
		return 1;
	}
	lep_resolver_counts(lr->r, &pending, &answers, &threads);
	lua_pushfstring(L, "resolver{fd=%d, pending=%d, answers=%d, threads=%d}", lep_resolver_fd(lr->r), pending,
	                answers, threads);
	return 1;
}

static const luaL_Reg resolver_methods[] = {
	{"submit", m_submit}, {"take", m_take},   {"cancel", m_cancel},
	{"counts", m_counts}, {"getfd", m_getfd}, {"close", m_close},
	{NULL, NULL},
};

static const luaL_Reg resolver_metamethods[] = {
	{"__gc", m_gc},
	{"__close", m_gc},
	{"__tostring", m_tostring},
	{NULL, NULL},
};

void lepb_register_resolver(lua_State *L)
{
	luaL_newmetatable(L, RESOLVER_MT); /* module, mt */
#if LUA_VERSION_NUM < 503
	lua_pushliteral(L, RESOLVER_MT);
	lua_setfield(L, -2, "__name");
#endif
	luaL_setfuncs(L, resolver_metamethods, 0);
	lua_newtable(L);
	luaL_setfuncs(L, resolver_methods, 0);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	lua_pushcfunction(L, l_resolver);
	lua_setfield(L, -2, "resolver");
}
