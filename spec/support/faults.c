/*
 * faults: fault injection for the specs (spec/42-faults_spec.lua), an
 * LD_PRELOAD library built into build/spec/libfaults.so by mk/faults.mk.
 *
 * It wraps epoll_create1, epoll_ctl, epoll_wait and signalfd, and for
 * child processes pipe2, posix_spawnp and pidfd_open: each call goes to
 * the next definition (dlsym RTLD_NEXT, normally glibc's) unless a fault
 * is armed for it. Nothing is armed at start, so a process that preloads
 * the library behaves as without it until a fault is armed.
 *
 * The process arms faults at run time through two functions, found with
 * dlsym(RTLD_DEFAULT, ...) (spec/support/lepoll_test.c: T.fault and
 * T.fault_calls call them):
 *
 *   int lepoll_faults_arm(const char *fn, long nth, int err, long count,
 *                         int after);
 *       Arms fn (one of the names above) and restarts its call count: its
 *       nth call from now (1: the next one) fails with errno err, and so do
 *       the calls after it up to count failures in all (count < 0: every
 *       call from the nth on). nth 0 disarms. With after 0 the failing
 *       call does not reach the kernel: nothing happens, as when the
 *       kernel refuses. With after 1 the kernel makes the call first and
 *       only its result is replaced by the failure (a descriptor
 *       epoll_create1, signalfd, pipe2 or pidfd_open made is closed again,
 *       so nothing leaks; signalfd on an existing descriptor keeps the mask
 *       it set; posix_spawnp takes after 0 only: it fails with nothing
 *       started, as when fork or exec fails). Returns 0, or -1 for an
 *       unknown fn or nth < 0.
 *   long lepoll_faults_calls(const char *fn);
 *       Calls of fn since it was last armed (since start when never), the
 *       failed ones included; -1 for an unknown fn.
 *
 * One thread only: the specs' child processes are single-threaded.
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT int lepoll_faults_arm(const char *fn, long nth, int err, long count, int after);
EXPORT long lepoll_faults_calls(const char *fn);
EXPORT int epoll_create1(int flags);
EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event);
EXPORT int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout);
EXPORT int signalfd(int fd, const sigset_t *mask, int flags);
EXPORT int pipe2(int fds[2], int flags);
EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                        const posix_spawnattr_t *attr, char *const argv[], char *const envp[]);
EXPORT int pidfd_open(pid_t pid, unsigned int flags);

enum { F_CREATE1, F_CTL, F_WAIT, F_SIGNALFD, F_PIPE2, F_SPAWNP, F_PIDFD_OPEN, NUM_FNS };

static const char *const names[NUM_FNS] = {"epoll_create1", "epoll_ctl", "epoll_wait", "signalfd",
                                           "pipe2", "posix_spawnp", "pidfd_open"};

static struct fault {
	long calls; /* since armed */
	long nth;   /* first failing call; 0: disarmed */
	long count; /* failures in all; < 0: no end */
	int err;
	int after;
	void *real;
} faults[NUM_FNS];

static int fn_index(const char *fn)
{
	int i;

	for (i = 0; fn != NULL && i < NUM_FNS; i++)
		if (strcmp(fn, names[i]) == 0)
			return i;
	return -1;
}

int lepoll_faults_arm(const char *fn, long nth, int err, long count, int after)
{
	int i = fn_index(fn);

	if (i < 0 || nth < 0)
		return -1;
	faults[i].calls = 0;
	faults[i].nth = nth;
	faults[i].err = err;
	faults[i].count = count;
	faults[i].after = after != 0;
	return 0;
}

long lepoll_faults_calls(const char *fn)
{
	int i = fn_index(fn);

	return i < 0 ? -1 : faults[i].calls;
}

/* The next definition of fn (glibc's). A function pointer cannot be
 * converted from void * in ISO C, hence the copy. */
static void *real(int i)
{
	if (faults[i].real == NULL)
		faults[i].real = dlsym(RTLD_NEXT, names[i]);
	return faults[i].real;
}

/* Counts the call; 1 when it must fail. */
static int failing(int i)
{
	struct fault *f = &faults[i];
	long k = ++f->calls;

	if (f->nth == 0 || k < f->nth)
		return 0;
	return f->count < 0 || k - f->nth < f->count;
}

static int fail_with(int i)
{
	errno = faults[i].err;
	return -1;
}

int epoll_create1(int flags)
{
	int (*fn)(int);
	void *p = real(F_CREATE1);
	int inject = failing(F_CREATE1), fd;

	memcpy(&fn, &p, sizeof fn);
	if (inject && !faults[F_CREATE1].after)
		return fail_with(F_CREATE1);
	fd = fn(flags);
	if (inject) {
		if (fd >= 0)
			(void)close(fd);
		return fail_with(F_CREATE1);
	}
	return fd;
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{
	int (*fn)(int, int, int, struct epoll_event *);
	void *p = real(F_CTL);
	int inject = failing(F_CTL), rc;

	memcpy(&fn, &p, sizeof fn);
	if (inject && !faults[F_CTL].after)
		return fail_with(F_CTL);
	rc = fn(epfd, op, fd, event);
	return inject ? fail_with(F_CTL) : rc;
}

int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
	int (*fn)(int, struct epoll_event *, int, int);
	void *p = real(F_WAIT);
	int inject = failing(F_WAIT), n;

	memcpy(&fn, &p, sizeof fn);
	if (inject && !faults[F_WAIT].after)
		return fail_with(F_WAIT);
	n = fn(epfd, events, maxevents, timeout);
	return inject ? fail_with(F_WAIT) : n;
}

int signalfd(int fd, const sigset_t *mask, int flags)
{
	int (*fn)(int, const sigset_t *, int);
	void *p = real(F_SIGNALFD);
	int inject = failing(F_SIGNALFD), rc;

	memcpy(&fn, &p, sizeof fn);
	if (inject && !faults[F_SIGNALFD].after)
		return fail_with(F_SIGNALFD);
	rc = fn(fd, mask, flags);
	if (inject) {
		if (fd == -1 && rc >= 0)
			(void)close(rc); /* a new descriptor; an existing one stays */
		return fail_with(F_SIGNALFD);
	}
	return rc;
}

int pipe2(int fds[2], int flags)
{
	int (*fn)(int *, int);
	void *p = real(F_PIPE2);
	int inject = failing(F_PIPE2), rc;

	memcpy(&fn, &p, sizeof fn);
	if (inject && !faults[F_PIPE2].after)
		return fail_with(F_PIPE2);
	rc = fn(fds, flags);
	if (inject) {
		if (rc == 0) {
			(void)close(fds[0]);
			(void)close(fds[1]);
		}
		return fail_with(F_PIPE2);
	}
	return rc;
}

/* posix_spawnp reports failure as its result, not in errno. */
int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	int (*fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
	          const posix_spawnattr_t *, char *const[], char *const[]);
	void *p = real(F_SPAWNP);

	memcpy(&fn, &p, sizeof fn);
	if (failing(F_SPAWNP))
		return faults[F_SPAWNP].err;
	return fn(pid, file, fa, attr, argv, envp);
}

int pidfd_open(pid_t pid, unsigned int flags)
{
	int (*fn)(pid_t, unsigned int);
	void *p = real(F_PIDFD_OPEN);
	int inject = failing(F_PIDFD_OPEN), fd;

	memcpy(&fn, &p, sizeof fn);
	if (inject && !faults[F_PIDFD_OPEN].after)
		return fail_with(F_PIDFD_OPEN);
	fd = fn(pid, flags);
	if (inject) {
		if (fd >= 0)
			(void)close(fd);
		return fail_with(F_PIDFD_OPEN);
	}
	return fd;
}
