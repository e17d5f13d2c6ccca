/*
 * Wakers under threads: several threads of the host post to a script's
 * waker at once while the script's loop, on the main thread, reads
 * (test/c/waker_threads.lua defines the script's side).
 *
 *   in order            THREADS threads post VALUES values each: sizes from
 *                       0 bytes to 1 MiB; every value must arrive once, in
 *                       its thread's order, and the descriptor must never
 *                       be readable with nothing queued
 *   the host's errors   ENOMEM for a size that cannot be allocated (nothing
 *                       queued), EINVAL for NULL data, EPIPE once closed
 *   close under posts   the script closes the waker while the threads post:
 *                       each thread's next post fails with EPIPE; the last
 *                       thread to finish releases the host's reference
 *   lua_close under posts  the same through lua_close (the waker's __gc)
 *   a bare state        lepoll_newwaker where lepoll was never opened
 *   descriptors         none left open once the state is closed
 *   ThreadSanitizer     no report
 *
 * Built with -fsanitize=thread by `make test-threads` (build/tsan/), and
 * plainly by `make test` for spec/33-waker_spec.lua. Prints one line per
 * test and last "N passed, N failed"; exits 0 only when nothing failed.
 *
 *   waker_threads SCRIPT [THREADS [VALUES]]   (default 4 threads, 20000)
 *   waker_threads --probe                     (exits 0: the runtime works)
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, readlinkat, dirfd */

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fds.h"
#include "tsan.h"
#include "lepoll.h"

#ifndef LUA_OK
#define LUA_OK 0
#endif

#define MAX_THREADS 64
#define BIG_VALUE 1048576         /* bytes of the one large value per thread */
#define MAX_UNTIL_CLOSED 100000000L /* posts of a thread waiting for EPIPE */
#define WAIT_SECONDS 60

/* ------------------------------------------------------------- reporting */

static int passed, failed;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void report(int ok, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		passed++;
	else
		failed++;
	printf("waker: %s ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* --------------------------------------------------------------- posters */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum mode { IN_ORDER, UNTIL_CLOSED };

/* Released by the last poster to finish, when release is set. */
struct shared {
	pthread_mutex_t lock;
	int posters;      /* started, set before they start */
	int script_ended; /* no more acks will come: __atomic */
	int running;
	int release;
	lepoll_waker *waker;
};

struct poster {
	pthread_t thread;
	int id;
	enum mode mode;
	long values, big;
	struct shared *shared;
	long posted; /* read by the main thread meanwhile: __atomic */
	int err;     /* the post that ended it: 0 when none failed */
	char *buf;
};

static void finish(struct poster *p)
{
	struct shared *s = p->shared;
	int release;

	pthread_mutex_lock(&s->lock);
	release = --s->running == 0 && s->release;
	pthread_mutex_unlock(&s->lock);
	if (release)
		lepoll_releasewaker(s->waker);
}

/* Thread t's k-th value, in order: "t k|" and the filler; empty for every
 * 997th. The script checks the same rules. -> its length. */
static size_t in_order_value(const struct poster *p, long k)
{
	size_t len, n;

	if (k % 997 == 0)
		return 0;
	len = k == p->big ? BIG_VALUE : (size_t)((p->id * 13 + k * 7) % 200);
	n = (size_t)snprintf(p->buf, 64, "%d %ld|", p->id, k);
	memset(p->buf + n, 'A' + (int)((p->id * 7 + k) % 26), len);
	return n + len;
}

/* The values of each thread the script has taken: ack(t, k), a function
 * of the host's, records them. */
static long acked[MAX_THREADS + 1];

static int ack(lua_State *L)
{
	lua_Integer t = luaL_checkinteger(L, 1);

	luaL_argcheck(L, t >= 1 && t <= MAX_THREADS, 1, "no such thread");
	__atomic_store_n(&acked[t], (long)luaL_checkinteger(L, 2), __ATOMIC_RELEASE);
	return 0;
}

/* In order, every PACE values each thread waits until the script took the
 * first k values of every thread, all that was posted: the queue is empty
 * then. After a pause the threads post again and wake the script, which
 * found the queue empty and the descriptor quiet: over and over. */
#define PACE 500

static void pace(struct shared *s, long k)
{
	struct timespec pause = {0, 1000000};
	double until = now() + WAIT_SECONDS;
	int t;

	for (t = 1; t <= s->posters && now() < until && !__atomic_load_n(&s->script_ended, __ATOMIC_ACQUIRE);) {
		if (__atomic_load_n(&acked[t], __ATOMIC_ACQUIRE) >= k)
			t++;
		else
			nanosleep(&pause, NULL);
	}
	nanosleep(&pause, NULL);
}

static void *post(void *arg)
{
	struct poster *p = arg;
	lepoll_waker *w = p->shared->waker;
	long k;
	int err = 0;

	for (k = 1; err == 0 && k <= (p->mode == IN_ORDER ? p->values : MAX_UNTIL_CLOSED); k++) {
		if (p->mode == IN_ORDER) {
			size_t len = in_order_value(p, k);
			err = lepoll_wake(w, len > 0 ? p->buf : NULL, len);
			if (k % PACE == 0 && k % 997 != 0) /* the value acked is not empty */
				pace(p->shared, k);
		} else {
			int n = snprintf(p->buf, 64, "%d %ld", p->id, k);
			err = lepoll_wake(w, p->buf, (size_t)n);
		}
		if (err == 0)
			__atomic_store_n(&p->posted, k, __ATOMIC_RELEASE);
	}
	if (err == 0 && p->mode == IN_ORDER) {
		int n = snprintf(p->buf, 64, "%d done", p->id);
		err = lepoll_wake(w, p->buf, (size_t)n);
	}
	p->err = err;
	finish(p);
	return NULL;
}

/* Starts n posters on shared->waker; 0, or -1 when one could not start
 * (those started are joined). */
static int start(struct poster *ps, int n, enum mode mode, long values, struct shared *shared)
{
	int i;

	shared->running = shared->posters = n;
	for (i = 0; i < n; i++) {
		struct poster *p = &ps[i];
		p->id = i + 1;
		p->mode = mode;
		p->values = values;
		p->big = values / 2;
		p->shared = shared;
		p->posted = 0;
		p->err = 0;
		if (pthread_create(&p->thread, NULL, post, p) != 0) {
			perror("waker: pthread_create");
			pthread_mutex_lock(&shared->lock);
			shared->release = 0;              /* the caller's to release */
			shared->running -= n - i;         /* never started */
			pthread_mutex_unlock(&shared->lock);
			while (i-- > 0)
				pthread_join(ps[i].thread, NULL);
			return -1;
		}
	}
	return 0;
}

/* start(), for a test with its waker at the top of L's stack: when the
 * threads cannot start, drops the waker and reports the test failed. */
static int start_test(lua_State *L, struct poster *ps, int n, enum mode mode, long values, struct shared *s,
                      const char *test)
{
	if (start(ps, n, mode, values, s) == 0)
		return 1;
	lepoll_releasewaker(s->waker);
	lua_pop(L, 1);
	report(0, "%s: the threads could not start", test);
	return 0;
}

static void join(struct poster *ps, int n)
{
	int i;

	for (i = 0; i < n; i++)
		pthread_join(ps[i].thread, NULL);
}

/* 1 when every poster ended with err; else a report names the first. */
static int all_ended_with(const struct poster *ps, int n, int err, const char *test)
{
	int i;

	for (i = 0; i < n; i++)
		if (ps[i].err != err) {
			report(0, "%s: thread %d ended with %s after %ld posts", test, ps[i].id,
			       ps[i].err ? strerror(ps[i].err) : "no error", ps[i].posted);
			return 0;
		}
	return 1;
}

/* -------------------------------------------------------------- the state */

/* lepoll_newwaker raises its errors: called protected. */
static int new_waker(lua_State *L)
{
	lepoll_waker **out = lua_touserdata(L, 1);

	*out = lepoll_newwaker(L);
	return 1;
}

/* Pushes a new waker: the host's reference, or NULL (reported). */
static lepoll_waker *push_waker(lua_State *L, const char *test)
{
	lepoll_waker *w = NULL;

	lua_pushcfunction(L, new_waker);
	lua_pushlightuserdata(L, &w);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		report(0, "%s: lepoll_newwaker: %s", test, lua_tostring(L, -1));
		lua_pop(L, 1);
		return NULL;
	}
	return w;
}

/* Calls the script's global fn(waker at the top, a, b), which it pops;
 * its summary (or error) goes to text. 1 when it returned. */
static int call_script(lua_State *L, const char *fn, long a, long b, char *text, size_t n)
{
	int ok;

	lua_getglobal(L, "debug"); /* debug.traceback, the message handler */
	lua_getfield(L, -1, "traceback");
	lua_replace(L, -2);
	lua_getglobal(L, fn);
	lua_pushvalue(L, -3);
	lua_pushinteger(L, (lua_Integer)a);
	lua_pushinteger(L, (lua_Integer)b);
	ok = lua_pcall(L, 3, 1, -5) == LUA_OK;
	snprintf(text, n, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no text)");
	lua_pop(L, 3);
	return ok;
}

/* Waits until every poster posted at least `least` values, or one ended;
 * bounded by WAIT_SECONDS. 1 when they did. */
static int wait_posted(const struct poster *ps, int n, long least)
{
	struct timespec pause = {0, 1000000};
	double until = now() + WAIT_SECONDS;
	int i;

	for (i = 0; i < n && now() < until;) {
		if (__atomic_load_n(&ps[i].posted, __ATOMIC_ACQUIRE) >= least)
			i++;
		else
			nanosleep(&pause, NULL);
	}
	return i == n;
}

/* Runs protected: the libraries, lepoll for require (package.preload,
 * which every version has), the host's ack, and the script at 1, which
 * defines the tests' functions. */
static int setup(lua_State *L)
{
	const char *script = luaL_checkstring(L, 1);

	luaL_openlibs(L);
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_lepoll);
	lua_setfield(L, -2, "lepoll");
	lua_register(L, "ack", ack);
	if (luaL_loadfile(L, script) != LUA_OK)
		return lua_error(L);
	lua_call(L, 0, 0);
	return 0;
}

/* ------------------------------------------------------------------ tests */

static void test_in_order(lua_State *L, struct poster *ps, int n, long values)
{
	struct shared s = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, NULL};
	char text[512];
	int ok, err;

	s.waker = push_waker(L, "in order");
	if (s.waker == NULL)
		return;
	/* Refused, with nothing queued: the script counts every value. */
	err = lepoll_wake(s.waker, text, SIZE_MAX);
	report(err == ENOMEM, "the host's errors: a value of SIZE_MAX bytes: %s (ENOMEM expected)", strerror(err));
	err = lepoll_wake(s.waker, NULL, 1);
	report(err == EINVAL, "the host's errors: NULL data of 1 byte: %s (EINVAL expected)", strerror(err));
	if (!start_test(L, ps, n, IN_ORDER, values, &s, "in order"))
		return;
	ok = call_script(L, "in_order", n, values, text, sizeof text);
	__atomic_store_n(&s.script_ended, 1, __ATOMIC_RELEASE);
	join(ps, n);
	if (all_ended_with(ps, n, 0, "in order"))
		report(ok, "in order: %s", text);
	/* The script closed the waker; the host's reference stays valid. */
	err = lepoll_wake(s.waker, "late", 4);
	report(err == EPIPE, "the host's errors: a post once the script closed the waker: %s (EPIPE expected)",
	       strerror(err));
	lepoll_releasewaker(s.waker);
	lepoll_releasewaker(NULL);
}

static void test_close_under_posts(lua_State *L, struct poster *ps, int n, long values)
{
	struct shared s = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 1, NULL};
	long count = values / 10 > 100 ? values / 10 : 100;
	char text[512];
	int ok, i;
	long total = 0;

	s.waker = push_waker(L, "close under posts");
	if (s.waker == NULL)
		return;
	if (!start_test(L, ps, n, UNTIL_CLOSED, values, &s, "close under posts"))
		return;
	/* From here the last poster to finish releases the host's reference. */
	ok = call_script(L, "close_under_posts", n, count, text, sizeof text);
	join(ps, n);
	for (i = 0; i < n; i++)
		total += ps[i].posted;
	if (all_ended_with(ps, n, EPIPE, "close under posts"))
		report(ok && total >= count, "close under posts: %s; %ld posted, every thread then refused with EPIPE",
		       text, total);
}

/* Ends with lua_close: the last test on the state. */
static void test_lua_close(lua_State *L, struct poster *ps, int n)
{
	struct shared s = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, NULL};
	char text[512];
	int ok, posting, i;
	long total = 0;

	s.waker = push_waker(L, "lua_close under posts");
	if (s.waker == NULL) {
		lua_close(L);
		return;
	}
	ok = call_script(L, "keep", 0, 0, text, sizeof text);
	if (!ok || start(ps, n, UNTIL_CLOSED, 0, &s) != 0) {
		report(0, "lua_close under posts: %s", ok ? "the threads could not start" : text);
		lua_close(L);
		lepoll_releasewaker(s.waker);
		return;
	}
	posting = wait_posted(ps, n, 100);
	lua_close(L);
	join(ps, n);
	for (i = 0; i < n; i++)
		total += ps[i].posted;
	if (all_ended_with(ps, n, EPIPE, "lua_close under posts"))
		report(posting, "lua_close under posts: %ld posted, every thread then refused with EPIPE", total);
	lepoll_releasewaker(s.waker);
}

/* lepoll_newwaker in a state that never opened lepoll, nor any library:
 * the waker's metatable is made on demand. */
static void test_bare_state(void)
{
	lua_State *L = luaL_newstate();
	lepoll_waker *w;
	const char *got = NULL;
	int err = 0, late;

	if (L == NULL) {
		report(0, "a state without lepoll opened: luaL_newstate failed");
		return;
	}
	w = push_waker(L, "a state without lepoll opened");
	if (w == NULL) {
		lua_close(L);
		return;
	}
	err = lepoll_wake(w, "bare", 4);
	lua_getfield(L, -1, "read"); /* waker:read() */
	lua_pushvalue(L, -2);
	if (lua_pcall(L, 1, 1, 0) == LUA_OK)
		got = lua_tostring(L, -1);
	report(err == 0 && got != NULL && strcmp(got, "bare") == 0,
	       "a state without lepoll opened: lepoll_newwaker, then waker:read() gives %s", got ? got : "nothing");
	lua_close(L);
	late = lepoll_wake(w, "late", 4);
	report(late == EPIPE, "a state without lepoll opened: lua_close closes the waker: %s (EPIPE expected)",
	       strerror(late));
	lepoll_releasewaker(w);
}

int main(int argc, char **argv)
{
	static struct poster ps[MAX_THREADS];
	int nthreads = argc > 2 ? atoi(argv[2]) : 4, i, fds_before, fds_after, ep;
	long values = argc > 3 ? atol(argv[3]) : 20000;
	lua_State *L;

	if (argc > 1 && strcmp(argv[1], "--probe") == 0)
		return 0;
	if (argc < 2 || nthreads < 1 || nthreads > MAX_THREADS || values < 2) {
		fprintf(stderr, "usage: %s SCRIPT [THREADS (1 to %d) [VALUES (>= 2)]]\n", argv[0], MAX_THREADS);
		return 2;
	}
	for (i = 0; i < nthreads; i++) {
		ps[i].buf = malloc(64 + BIG_VALUE);
		if (ps[i].buf == NULL) {
			perror("waker: malloc");
			return 1;
		}
	}
	fds_before = count_fds(&ep);

	L = luaL_newstate();
	if (L == NULL) {
		fprintf(stderr, "waker: luaL_newstate failed\n");
		return 1;
	}
	lua_pushcfunction(L, setup);
	lua_pushstring(L, argv[1]);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		fprintf(stderr, "waker: %s: %s\n", argv[1], lua_tostring(L, -1));
		lua_close(L);
		return 1;
	}

	test_in_order(L, ps, nthreads, values);
	test_close_under_posts(L, ps, nthreads, values);
	test_lua_close(L, ps, nthreads); /* closes L */
	test_bare_state();

	fds_after = count_fds(&ep);
	report(fds_before >= 0 && fds_after == fds_before, "descriptors: %d before the state, %d after lua_close",
	       fds_before, fds_after);
#if defined(__SANITIZE_THREAD__)
	i = tsan_report_count();
	report(i == 0, "ThreadSanitizer reports: %d", i);
#endif
	for (i = 0; i < nthreads; i++)
		free(ps[i].buf);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
