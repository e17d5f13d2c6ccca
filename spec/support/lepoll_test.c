/*
 * lepoll_test: raw descriptors for the specs (pipes, socketpairs, eventfd,
 * timerfd, signals). Built only for the specs, never installed.
 * Failures return nil, message, errno name, like Lua's io library.
 * Also: fork and its _exit/waitpid (spec/44-fork_spec.lua), signals sent
 * and the calling thread's blocked signals (spec/16-signals_spec.lua),
 * and the control
 * of the fault-injection library build/spec/libfaults.so when it is
 * preloaded (spec/support/faults.c, spec/42-faults_spec.lua).
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "compat.h" /* the same 5.4 API on every Lua version */

__attribute__((visibility("default"))) int luaopen_lepoll_test(lua_State *L);

static const char *errname(int err)
{
	switch (err) {
	case EAGAIN: return "EAGAIN";
	case EBADF: return "EBADF";
	case EPIPE: return "EPIPE";
	case EINTR: return "EINTR";
	case EINVAL: return "EINVAL";
	case ENOENT: return "ENOENT";
	case EMFILE: return "EMFILE";
	case ECONNRESET: return "ECONNRESET";
	case ENOTCONN: return "ENOTCONN";
	default: return "E?";
	}
}

static int fail(lua_State *L, int err)
{
	lua_pushnil(L);
	lua_pushstring(L, strerror(err));
	lua_pushstring(L, errname(err));
	return 3;
}

static int checkfd(lua_State *L, int idx)
{
	return (int)luaL_checkinteger(L, idx);
}

static int t_pipe(lua_State *L)
{
	int fds[2];
	int flags = O_CLOEXEC | (lua_toboolean(L, 1) ? 0 : O_NONBLOCK);

	if (pipe2(fds, flags) != 0)
		return fail(L, errno);
	lua_pushinteger(L, fds[0]);
	lua_pushinteger(L, fds[1]);
	return 2;
}

static int t_socketpair(lua_State *L)
{
	static const char *const names[] = {"stream", "dgram", "seqpacket", NULL};
	static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
	int type = types[luaL_checkoption(L, 1, "stream", names)];
	int fds[2];

	if (socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
		return fail(L, errno);
	lua_pushinteger(L, fds[0]);
	lua_pushinteger(L, fds[1]);
	return 2;
}

static int t_eventfd(lua_State *L)
{
	int fd = eventfd((unsigned)luaL_optinteger(L, 1, 0), EFD_NONBLOCK | EFD_CLOEXEC);

	if (fd < 0)
		return fail(L, errno);
	lua_pushinteger(L, fd);
	return 1;
}

static int t_eventfd_write(lua_State *L)
{
	uint64_t v = (uint64_t)luaL_optinteger(L, 2, 1);

	if (write(checkfd(L, 1), &v, sizeof v) != (ssize_t)sizeof v)
		return fail(L, errno);
	lua_pushboolean(L, 1);
	return 1;
}

/* eventfd counter or timerfd expirations. */
static int t_read_u64(lua_State *L)
{
	uint64_t v;

	if (read(checkfd(L, 1), &v, sizeof v) != (ssize_t)sizeof v)
		return fail(L, errno);
	lua_pushinteger(L, (lua_Integer)v);
	return 1;
}

static struct timespec to_timespec(double s)
{
	struct timespec ts;

	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	return ts;
}

static int t_timerfd(lua_State *L)
{
	struct itimerspec its;
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	if (fd < 0)
		return fail(L, errno);
	its.it_value = to_timespec(luaL_checknumber(L, 1));
	its.it_interval = to_timespec(luaL_optnumber(L, 2, 0));
	if (timerfd_settime(fd, 0, &its, NULL) != 0) {
		int err = errno;
		close(fd);
		return fail(L, err);
	}
	lua_pushinteger(L, fd);
	return 1;
}

static int t_write(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 2, &len);
	ssize_t n = write(checkfd(L, 1), s, len);

	if (n < 0)
		return fail(L, errno);
	lua_pushinteger(L, n);
	return 1;
}

static int t_read(lua_State *L)
{
	char buf[65536];
	size_t want = (size_t)luaL_optinteger(L, 2, sizeof buf);
	ssize_t n = read(checkfd(L, 1), buf, want < sizeof buf ? want : sizeof buf);

	if (n < 0)
		return fail(L, errno);
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

static int t_close(lua_State *L)
{
	if (close(checkfd(L, 1)) != 0)
		return fail(L, errno);
	lua_pushboolean(L, 1);
	return 1;
}

static int t_shutdown(lua_State *L)
{
	static const char *const names[] = {"r", "w", "rw", NULL};
	static const int hows[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};

	if (shutdown(checkfd(L, 1), hows[luaL_checkoption(L, 2, "rw", names)]) != 0)
		return fail(L, errno);
	lua_pushboolean(L, 1);
	return 1;
}

static int t_dup(lua_State *L)
{
	int fd = fcntl(checkfd(L, 1), F_DUPFD_CLOEXEC, (int)luaL_optinteger(L, 2, 0));

	if (fd < 0)
		return fail(L, errno);
	lua_pushinteger(L, fd);
	return 1;
}

static int t_open(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return fail(L, errno);
	lua_pushinteger(L, fd);
	return 1;
}

/* Open descriptors of this process, not counting the one used to list. */
static int t_fdcount(lua_State *L)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return fail(L, errno);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	lua_pushinteger(L, n - 1);
	return 1;
}

/* The close-on-exec bit of fd. */
static int t_cloexec(lua_State *L)
{
	int flags = fcntl(checkfd(L, 1), F_GETFD);

	if (flags < 0)
		return fail(L, errno);
	lua_pushboolean(L, flags & FD_CLOEXEC);
	return 1;
}

static int t_ignore_sigpipe(lua_State *L)
{
	(void)L;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

/* SIGALRM after `seconds` (then every `interval`), with a handler and no
 * SA_RESTART, so blocking calls fail with EINTR. alarm(0) stops it. */
static int t_alarm(lua_State *L)
{
	struct sigaction sa;
	struct itimerval it;
	double first = luaL_checknumber(L, 1), every = luaL_optnumber(L, 2, 0);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	it.it_value.tv_sec = (time_t)first;
	it.it_value.tv_usec = (suseconds_t)((first - (double)it.it_value.tv_sec) * 1e6);
	it.it_interval.tv_sec = (time_t)every;
	it.it_interval.tv_usec = (suseconds_t)((every - (double)it.it_interval.tv_sec) * 1e6);
	if (setitimer(ITIMER_REAL, &it, NULL) != 0)
		return fail(L, errno);
	lua_pushboolean(L, 1);
	return 1;
}

static int t_alarms(lua_State *L)
{
	lua_pushinteger(L, alarms);
	return 1;
}

static int t_nofile(lua_State *L)
{
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	lua_pushinteger(L, rl.rlim_cur == RLIM_INFINITY ? -1 : (lua_Integer)rl.rlim_cur);
	lua_pushinteger(L, rl.rlim_max == RLIM_INFINITY ? -1 : (lua_Integer)rl.rlim_max);
	return 2;
}

/* Seconds on CLOCK_MONOTONIC. */
static int t_now(lua_State *L)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
	return 1;
}

/* Sets the soft RLIMIT_NOFILE (within the hard one); returns the old. */
static int t_setnofile(lua_State *L)
{
	struct rlimit rl;
	lua_Integer old;

	getrlimit(RLIMIT_NOFILE, &rl);
	old = (lua_Integer)rl.rlim_cur;
	rl.rlim_cur = (rlim_t)luaL_checkinteger(L, 1);
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return fail(L, errno);
	lua_pushinteger(L, old);
	return 1;
}

/* Counting the state's allocator: calls that allocate or grow, and the net
 * bytes held. Sets made while counting allocate through the counter too. */
static lua_Alloc counted_alloc;
static void *counted_ud;
static lua_Integer alloc_calls, alloc_net;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	if (ptr == NULL)
		osize = 0; /* osize is then a type tag, not a size */
	if (nsize > osize)
		alloc_calls++;
	alloc_net += (lua_Integer)nsize - (lua_Integer)osize;
	return counted_alloc(counted_ud, ptr, osize, nsize);
}

/* count_allocs(true) starts counting from zero, count_allocs(false) stops;
 * either way returns calls, net bytes so far. */
static int t_count_allocs(lua_State *L)
{
	int on = lua_toboolean(L, 1);
	void *ud;

	lua_pushinteger(L, alloc_calls);
	lua_pushinteger(L, alloc_net);
	if (on && lua_getallocf(L, &ud) != counting_alloc) {
		counted_alloc = lua_getallocf(L, &counted_ud);
		lua_setallocf(L, counting_alloc, NULL);
		alloc_calls = alloc_net = 0;
	} else if (!on && lua_getallocf(L, &ud) == counting_alloc) {
		lua_setallocf(L, counted_alloc, counted_ud);
	}
	return 2;
}

/* fork() → the child's pid in the parent, 0 in the child. The child runs
 * a copy of this Lua state: it must end with T._exit, never return into
 * the caller's code (busted's, in the specs). */
static int t_fork(lua_State *L)
{
	pid_t pid = fork();

	if (pid < 0)
		return fail(L, errno);
	lua_pushinteger(L, pid);
	return 1;
}

/* _exit(code): ends the process at once, without flushing stdio buffers or
 * closing the Lua state (a forked child's copies belong to its parent). */
static int t_exit(lua_State *L)
{
	_exit((int)luaL_optinteger(L, 1, 0));
	return 0;
}

/* waitpid(pid) → "exit", status or "signal", signal number. */
static int t_waitpid(lua_State *L)
{
	int status;
	pid_t pid = (pid_t)luaL_checkinteger(L, 1);

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return fail(L, errno);
	if (WIFEXITED(status)) {
		lua_pushliteral(L, "exit");
		lua_pushinteger(L, WEXITSTATUS(status));
	} else {
		lua_pushliteral(L, "signal");
		lua_pushinteger(L, WTERMSIG(status));
	}
	return 2;
}

/* ----------------------------------------------------------------- signals */

static int t_getpid(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)getpid());
	return 1;
}

/* kill(pid, sig) → true */
static int t_kill(lua_State *L)
{
	if (kill((pid_t)luaL_checkinteger(L, 1), (int)luaL_checkinteger(L, 2)) != 0)
		return fail(L, errno);
	lua_pushboolean(L, 1);
	return 1;
}

/* sigqueue(pid, sig, value) → true: the signal carries the int value. */
static int t_sigqueue(lua_State *L)
{
	union sigval v;

	v.sival_int = (int)luaL_checkinteger(L, 3);
	if (sigqueue((pid_t)luaL_checkinteger(L, 1), (int)luaL_checkinteger(L, 2), v) != 0)
		return fail(L, errno);
	lua_pushboolean(L, 1);
	return 1;
}

/* blocked() → the signal numbers the calling thread blocks, ascending. */
static int t_blocked(lua_State *L)
{
	sigset_t set;
	int sig, n = 0;

	pthread_sigmask(SIG_BLOCK, NULL, &set);
	lua_newtable(L);
	for (sig = 1; sig < NSIG; sig++) {
		if (sigismember(&set, sig) == 1) {
			lua_pushinteger(L, sig);
			lua_rawseti(L, -2, ++n);
		}
	}
	return 1;
}

/* block(sig, on): blocks (on true) or unblocks sig in the calling thread. */
static int t_block(lua_State *L)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, (int)luaL_checkinteger(L, 1));
	pthread_sigmask(lua_toboolean(L, 2) ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
	return 0;
}

/* ------------------------------------------------ fault injection control */

typedef int (*arm_fn)(const char *, long, int, long, int);
typedef long (*calls_fn)(const char *);

/* The preloaded library's function `name`, or NULL when it is not there.
 * ISO C has no conversion from void * to a function pointer: the callers
 * copy the pointer into one (memcpy). */
static void *preloaded(const char *name)
{
	return dlsym(RTLD_DEFAULT, name);
}

static int not_preloaded(lua_State *L)
{
	lua_pushnil(L);
	lua_pushliteral(L, "build/spec/libfaults.so is not preloaded (LD_PRELOAD)");
	lua_pushliteral(L, "ENOENT");
	return 3;
}

/* fault(fn, nth [, errname [, count [, after]]]) → true: the nth call of fn
 * (a function spec/support/faults.c wraps) from now fails with the errno
 * named (ENOMEM, ENOSPC, EMFILE, ENFILE, EINTR, EBADF, EEXIST, ENOENT,
 * EPERM, EINVAL, EAGAIN, ENOSYS), and so do the calls after it up to count failures
 * (default 1; -1: all). nth 0 disarms. With after true the kernel makes the
 * call and only its result is replaced. Restarts fn's call count. */
static int t_fault(lua_State *L)
{
	static const char *const errnames[] = {"ENOMEM", "ENOSPC", "EMFILE", "ENFILE", "EINTR",
	                                       "EBADF",  "EEXIST", "ENOENT", "EPERM",  "EINVAL",
	                                       "EAGAIN", "ENOSYS", NULL};
	static const int errs[] = {ENOMEM, ENOSPC, EMFILE, ENFILE, EINTR,
	                           EBADF,  EEXIST, ENOENT, EPERM,  EINVAL,
	                           EAGAIN, ENOSYS};
	const char *fn = luaL_checkstring(L, 1);
	lua_Integer nth = luaL_checkinteger(L, 2);
	int err = errs[luaL_checkoption(L, 3, "ENOMEM", errnames)];
	lua_Integer count = luaL_optinteger(L, 4, 1);
	void *p = preloaded("lepoll_faults_arm");
	arm_fn arm;

	if (p == NULL)
		return not_preloaded(L);
	memcpy(&arm, &p, sizeof arm);
	if (arm(fn, (long)nth, err, (long)count, lua_toboolean(L, 5)) != 0)
		return luaL_error(L, "cannot arm a fault on %s (call %d)", fn, (int)nth);
	lua_pushboolean(L, 1);
	return 1;
}

/* fault_calls(fn) → calls of fn since fault(fn, ...) last armed it. */
static int t_fault_calls(lua_State *L)
{
	const char *fn = luaL_checkstring(L, 1);
	void *p = preloaded("lepoll_faults_calls");
	calls_fn calls;
	long n;

	if (p == NULL)
		return not_preloaded(L);
	memcpy(&calls, &p, sizeof calls);
	n = calls(fn);
	if (n < 0)
		return luaL_error(L, "no fault injection for %s", fn);
	lua_pushinteger(L, n);
	return 1;
}

static const luaL_Reg functions[] = {
	{"pipe", t_pipe},
	{"socketpair", t_socketpair},
	{"eventfd", t_eventfd},
	{"eventfd_write", t_eventfd_write},
	{"read_u64", t_read_u64},
	{"timerfd", t_timerfd},
	{"write", t_write},
	{"read", t_read},
	{"close", t_close},
	{"shutdown", t_shutdown},
	{"dup", t_dup},
	{"open", t_open},
	{"fdcount", t_fdcount},
	{"cloexec", t_cloexec},
	{"ignore_sigpipe", t_ignore_sigpipe},
	{"alarm", t_alarm},
	{"alarms", t_alarms},
	{"nofile", t_nofile},
	{"now", t_now},
	{"setnofile", t_setnofile},
	{"count_allocs", t_count_allocs},
	{"fork", t_fork},
	{"_exit", t_exit},
	{"waitpid", t_waitpid},
	{"getpid", t_getpid},
	{"kill", t_kill},
	{"sigqueue", t_sigqueue},
	{"blocked", t_blocked},
	{"block", t_block},
	{"fault", t_fault},
	{"fault_calls", t_fault_calls},
	{NULL, NULL},
};

/* Finalised before package unloads this library (it is made later), so
 * the state never frees through a counting allocator that is gone. */
static int stop_counting(lua_State *L)
{
	void *ud;

	if (lua_getallocf(L, &ud) == counting_alloc)
		lua_setallocf(L, counted_alloc, counted_ud);
	return 0;
}

int luaopen_lepoll_test(lua_State *L)
{
	lua_newuserdatauv(L, 1, 0);
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, stop_counting);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	lua_setfield(L, LUA_REGISTRYINDEX, "lepoll_test.stop_counting");
	luaL_newlib(L, functions);
	return 1;
}
