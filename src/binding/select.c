/*
 * select.c: lepoll.selector(), the function behind require "lepoll.select":
 * LuaSocket's socket.select, its contract exactly, on one persistent epoll
 * set (src/core) instead of select(2): no FD_SETSIZE ceiling, and a call
 * makes system calls only for what changed since the one before.
 *
 * A call walks its two tables as LuaSocket does (t[1], t[2], ... up to the
 * first nil; getfd() of each entry, skipped when missing, not a number or
 * negative; dirty() of the read entries, which are readable at once and
 * make the wait not block). Each descriptor the call asks for is marked
 * with the call's generation, per direction; then what the set holds is
 * brought to what was marked: ADD, MOD, DEL. The object seen last on each
 * descriptor is kept (upvalue 2, fd -> object): another object on the same
 * number (the old one closed, the number reused) is registered afresh.
 * Results are LuaSocket's: dirty entries first, then ascending descriptor
 * order, each table mapping i -> object and object -> i; "timeout" when
 * nothing is ready.
 *
 * A set must not be shared by two processes: a call in a process other
 * than the one that made the set (after fork) drops the inherited one and
 * starts a new one.
 */
#define _POSIX_C_SOURCE 200809L

#include "binding.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define SELECTOR_MT "lepoll.selector"
/* Events one wait takes in; more ready descriptors than this are reported
 * by the calls after (level-triggered, the kernel rotates them). */
#define MAX_READY 4096

typedef struct {
	lep_set set;
	pid_t pid;       /* the process the set belongs to */
	uint32_t gen;    /* this call's generation */
	int cap;         /* entries in the arrays below */
	uint32_t *rgen;  /* per fd: the last call that asked to read it */
	uint32_t *wgen;  /* ... to write it */
	uint32_t *dgen;  /* ... and found it dirty */
	int *touched;    /* the descriptors this call named, ntouched of them */
	int ntouched, touched_cap;
	int *ready;      /* scratch: ready descriptors, sorted, and their */
	uint32_t *events; /* events; room for ready_cap and events_cap */
	int ready_cap, events_cap;
} selector;

static void *xrealloc(lua_State *L, void *p, size_t osize, size_t nsize)
{
	void *ud;
	lua_Alloc alloc = lua_getallocf(L, &ud);
	void *q = alloc(ud, p, osize, nsize);
	if (q == NULL && nsize > 0)
		luaL_error(L, "not enough memory");
	return q;
}

static void free_arrays(lua_State *L, selector *s)
{
	xrealloc(L, s->rgen, 3 * (size_t)s->cap * sizeof *s->rgen, 0); /* the block of the three */
	xrealloc(L, s->touched, (size_t)s->touched_cap * sizeof *s->touched, 0);
	xrealloc(L, s->ready, (size_t)s->ready_cap * sizeof *s->ready, 0);
	xrealloc(L, s->events, (size_t)s->events_cap * sizeof *s->events, 0);
	s->rgen = s->wgen = s->dgen = NULL;
	s->touched = s->ready = NULL;
	s->events = NULL;
	s->cap = s->touched_cap = s->ntouched = s->ready_cap = s->events_cap = 0;
}

/* The per-fd arrays cover fd: one block holding rgen, wgen and dgen,
 * made anew and copied, so that a memory error leaves the old one. */
static void cover(lua_State *L, selector *s, int fd)
{
	size_t ncap, ocap = (size_t)s->cap;
	uint32_t *block;
	if (fd < s->cap)
		return;
	ncap = ocap ? ocap : 64;
	while (ncap <= (size_t)fd)
		ncap *= 2;
	block = xrealloc(L, NULL, 0, 3 * ncap * sizeof *block);
	memset(block, 0, 3 * ncap * sizeof *block);
	if (ocap > 0) {
		memcpy(block, s->rgen, ocap * sizeof *block);
		memcpy(block + ncap, s->wgen, ocap * sizeof *block);
		memcpy(block + 2 * ncap, s->dgen, ocap * sizeof *block);
		xrealloc(L, s->rgen, 3 * ocap * sizeof *block, 0);
	}
	s->rgen = block;
	s->wgen = block + ncap;
	s->dgen = block + 2 * ncap;
	s->cap = (int)ncap;
}

static void touch(lua_State *L, selector *s, int fd)
{
	if (s->ntouched == s->touched_cap) {
		size_t o = (size_t)s->touched_cap, n = o ? 2 * o : 64;
		s->touched = xrealloc(L, s->touched, o * sizeof *s->touched, n * sizeof *s->touched);
		s->touched_cap = (int)n;
	}
	s->touched[s->ntouched++] = fd;
}

/* The largest number of descriptors this process may have: the set's
 * table grows lazily up to it, so a raised soft limit is covered. */
static int fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY || rl.rlim_max > INT_MAX)
		return INT_MAX;
	return (int)rl.rlim_max;
}

/* A new epoll set for this process, everything it knew forgotten. */
static void reopen(lua_State *L, selector *s)
{
	int err;
	(void)lep_close(&s->set); /* the inherited one (fork): the parent's stays */
	free_arrays(L, s);
	s->gen = 0;
	lua_newtable(L);
	lua_replace(L, lua_upvalueindex(2));
	err = lep_open(&s->set, fd_limit(), MAX_READY);
	if (err != 0)
		lepb_syserror(L, "select", -1, err);
	s->pid = getpid();
}

/* getfd() of the object at the top, or -1 (LuaSocket's rules). */
static int object_fd(lua_State *L)
{
	int fd = -1;
	lua_pushvalue(L, lua_upvalueindex(3)); /* "getfd", interned once */
	lua_gettable(L, -2);
	if (!lua_isnil(L, -1)) {
		lua_pushvalue(L, -2);
		lua_call(L, 1, 1);
		if (lua_isnumber(L, -1)) {
			lua_Number n = lua_tonumber(L, -1);
			fd = (n >= 0 && n < (lua_Number)INT_MAX) ? (int)n : -1;
		}
	}
	lua_pop(L, 1);
	return fd;
}

static int object_dirty(lua_State *L)
{
	int is = 0;
	lua_pushvalue(L, lua_upvalueindex(4)); /* "dirty" */
	lua_gettable(L, -2);
	if (!lua_isnil(L, -1)) {
		lua_pushvalue(L, -2);
		lua_call(L, 1, 1);
		is = lua_toboolean(L, -1);
	}
	lua_pop(L, 1);
	return is;
}

/* Walks table tab (an argument: nil or a table), marking what it asks for.
 * Dirty read entries go into rtab (at rtab's index *ndirty + 1). */
static void walk(lua_State *L, selector *s, int tab, int reading, int rtab, int *ndirty)
{
	int objects = lua_upvalueindex(2);
	lua_Integer i;
	if (lua_isnil(L, tab))
		return;
	luaL_checktype(L, tab, LUA_TTABLE);
	for (i = 1;; i++) {
		int fd;
		lua_pushinteger(L, i);
		lua_gettable(L, tab);
		if (lua_isnil(L, -1)) {
			lua_pop(L, 1);
			break;
		}
		fd = object_fd(L);
		if (fd >= 0) {
			cover(L, s, fd);
			touch(L, s, fd);
			/* another object on this number: the old registration goes */
			lua_rawgeti(L, objects, fd);
			if (!lua_rawequal(L, -1, -2)) {
				uint32_t flags;
				if (lep_find(&s->set, fd, &flags))
					(void)lep_remove(&s->set, fd); /* closed already: nothing to remove */
				lua_pushvalue(L, -2);
				lua_rawseti(L, objects, fd);
			}
			lua_pop(L, 1);
			if (reading) {
				s->rgen[fd] = s->gen;
				if (object_dirty(L) && s->dgen[fd] != s->gen) {
					s->dgen[fd] = s->gen;
					lua_pushvalue(L, -1);
					lua_rawseti(L, rtab, ++*ndirty);
				}
			} else {
				s->wgen[fd] = s->gen;
			}
		}
		lua_pop(L, 1);
	}
}

/* What this call asks of fd, as epoll flags (a dirty read entry too: it
 * stays registered, its readiness already reported). */
static uint32_t wanted(const selector *s, int fd)
{
	uint32_t want = 0;
	if (fd >= s->cap)
		return 0;
	if (s->rgen[fd] == s->gen)
		want |= LEP_IN;
	if (s->wgen[fd] == s->gen)
		want |= LEP_OUT;
	return want;
}

/* The set brought to what this call marked. Descriptors epoll refuses
 * (EPERM: a regular file, always ready to select(2)) are reported ready;
 * any other refusal is select's failure. -> the number of those ready
 * ones, listed first in s->ready. */
static int reconcile(lua_State *L, selector *s)
{
	int k, fd, nalways = 0;
	for (k = 0; k < s->ntouched; k++) {
		uint32_t have = 0, want;
		int err;
		fd = s->touched[k];
		want = wanted(s, fd);
		if (want == 0 || (lep_find(&s->set, fd, &have) && have == want))
			continue;
		err = lep_set_flags(&s->set, fd, want);
		if (err == EPERM) {
			s->ready[nalways] = fd;
			s->events[nalways++] = want;
		} else if (err == EBADF || err == ENOENT) {
			luaL_error(L, "select failed"); /* select(2) refuses a bad descriptor */
		} else if (err != 0) {
			lepb_syserror(L, "select", fd, err);
		}
	}
	/* What no longer is asked for leaves the set. */
	for (fd = lep_next(&s->set, 0); fd >= 0; fd = lep_next(&s->set, fd + 1))
		if (wanted(s, fd) == 0)
			(void)lep_remove(&s->set, fd); /* closed behind its back: gone already */
	return nalways;
}

static void sort_ready(int *fds, uint32_t *ev, int n)
{
	int i, j;
	for (i = 1; i < n; i++) {
		int f = fds[i];
		uint32_t e = ev[i];
		for (j = i; j > 0 && fds[j - 1] > f; j--) {
			fds[j] = fds[j - 1];
			ev[j] = ev[j - 1];
		}
		fds[j] = f;
		ev[j] = e;
	}
}

/* tab[n + 1] = objects[fd]. */
static void add_result(lua_State *L, int tab, int fd, int *n)
{
	lua_rawgeti(L, lua_upvalueindex(2), fd);
	lua_rawseti(L, tab, ++*n);
}

/* A new table with t's i -> v and v -> i (LuaSocket's make_assoc). */
static void make_assoc(lua_State *L, int t, int n)
{
	int i;
	lua_createtable(L, n, n);
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, t, i);
		lua_pushvalue(L, -1);
		lua_rawseti(L, -3, i);
		lua_pushnumber(L, (lua_Number)i); /* a float, as LuaSocket's */
		lua_rawset(L, -3);
	}
}

/* select(recvt, sendt [, timeout]) */
static int l_select(lua_State *L)
{
	selector *s = lua_touserdata(L, lua_upvalueindex(1));
	double t = luaL_optnumber(L, 3, -1);
	int rtab, wtab, ndirty = 0, nr = 0, nw = 0, nready, nalways, k, err;
	double deadline = 0;
	int ms;

	lua_settop(L, 3);
	if (s->pid != getpid())
		reopen(L, s);
	if (++s->gen == 0) { /* wrapped: old marks could pass for new ones */
		memset(s->rgen, 0, (size_t)s->cap * sizeof *s->rgen);
		memset(s->wgen, 0, (size_t)s->cap * sizeof *s->wgen);
		memset(s->dgen, 0, (size_t)s->cap * sizeof *s->dgen);
		s->gen = 1;
	}
	s->ntouched = 0;
	lua_newtable(L);
	rtab = lua_gettop(L);
	lua_newtable(L);
	wtab = lua_gettop(L);
	walk(L, s, 1, 1, rtab, &ndirty);
	walk(L, s, 2, 0, rtab, &ndirty);
	nr = ndirty;

	/* room for the ready list: the set's buffer size, plus what this call
	 * named (descriptors epoll refuses); kept from call to call */
	if (s->ready_cap < MAX_READY + s->ntouched) {
		size_t n = (size_t)(MAX_READY + s->ntouched);
		s->ready = xrealloc(L, s->ready, (size_t)s->ready_cap * sizeof *s->ready, n * sizeof *s->ready);
		s->ready_cap = (int)n;
	}
	if (s->events_cap < MAX_READY + s->ntouched) {
		size_t n = (size_t)(MAX_READY + s->ntouched);
		s->events = xrealloc(L, s->events, (size_t)s->events_cap * sizeof *s->events, n * sizeof *s->events);
		s->events_cap = (int)n;
	}
	nalways = reconcile(L, s);

	ms = (ndirty > 0 || nalways > 0) ? 0 : (t < 0 ? -1 : lep_timeout_ms(t));
	if (ms > 0)
		deadline = lep_now() + t;
	for (;;) {
		err = lep_wait(&s->set, ms);
		if (err != EINTR)
			break;
		if (ms > 0) { /* the time left */
			double left = deadline - lep_now();
			ms = left > 0 ? lep_timeout_ms(left) : 0;
		}
	}
	if (err != 0)
		return luaL_error(L, "select failed");
	nready = lep_nready(&s->set);
	for (k = 0; k < nready; k++) {
		s->ready[nalways + k] = lep_ready_fd(&s->set, k);
		s->events[nalways + k] = lep_ready_events(&s->set, k);
	}
	nready += nalways;
	sort_ready(s->ready, s->events, nready);
	for (k = 0; k < nready; k++) {
		int fd = s->ready[k];
		uint32_t ev = s->events[k], want = wanted(s, fd);
		if ((want & LEP_IN) && s->dgen[fd] != s->gen && (ev & (LEP_IN | LEP_ERR | LEP_HUP | LEP_RDHUP)))
			add_result(L, rtab, fd, &nr);
		if ((want & LEP_OUT) && (ev & (LEP_OUT | LEP_ERR | LEP_HUP)))
			add_result(L, wtab, fd, &nw);
	}
	lep_clear_ready(&s->set);
	if (nr == 0 && nw == 0) {
		lua_pushvalue(L, rtab);
		lua_pushvalue(L, wtab);
		lua_pushliteral(L, "timeout");
		return 3;
	}
	make_assoc(L, rtab, nr);
	make_assoc(L, wtab, nw);
	return 2;
}

static int selector_gc(lua_State *L)
{
	selector *s = luaL_testudata(L, 1, SELECTOR_MT);
	if (s) {
		(void)lep_close(&s->set);
		free_arrays(L, s);
	}
	return 0;
}

/* lepoll.selector() -> a new select function, with its own set */
static int l_selector(lua_State *L)
{
	void *ud;
	lua_Alloc alloc = lua_getallocf(L, &ud);
	selector *s = lua_newuserdata(L, sizeof *s);
	int err;

	memset(s, 0, sizeof *s);
	lep_init(&s->set, alloc, ud); /* closed first: __gc finds nothing to free */
	luaL_setmetatable(L, SELECTOR_MT);
	err = lep_open(&s->set, fd_limit(), MAX_READY);
	if (err != 0)
		return lepb_syserror(L, "selector", -1, err);
	s->pid = getpid();
	lua_newtable(L); /* fd -> the object seen last on it */
	/* The method names as upvalues: pushing a C string per object costs a
	 * hash and a strcmp each time. */
	lua_pushliteral(L, "getfd");
	lua_pushliteral(L, "dirty");
	lua_pushcclosure(L, l_select, 4);
	return 1;
}

void lepb_register_select(lua_State *L)
{
	luaL_newmetatable(L, SELECTOR_MT);
	lua_pushcfunction(L, selector_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	lua_pushcfunction(L, l_selector);
	lua_setfield(L, -2, "selector");
}
