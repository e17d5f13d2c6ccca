/* lepoll core: the table of watched descriptors mirrored with the kernel's
 * epoll set (epoll_ctl), the ready buffer (epoll_wait), opening and closing.
 * No Lua. */
#define _POSIX_C_SOURCE 200809L

#include "lepoll_core.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void *default_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	(void)osize;
	if (nsize == 0) {
		free(ptr);
		return NULL;
	}
	return realloc(ptr, nsize);
}

static void *mem_resize(lep_set *s, void *ptr, size_t osize, size_t nsize)
{
	return s->alloc(s->alloc_ud, ptr, osize, nsize);
}

static void mem_free(lep_set *s, void *ptr, size_t size)
{
	if (ptr != NULL)
		(void)s->alloc(s->alloc_ud, ptr, size, 0);
}

void lep_init(lep_set *s, lep_alloc_fn alloc, void *ud)
{
	memset(s, 0, sizeof *s);
	s->epfd = -1;
	s->alloc = alloc != NULL ? alloc : default_alloc;
	s->alloc_ud = alloc != NULL ? ud : NULL;
}

int lep_open(lep_set *s, int num_fds, int max_ready)
{
	struct epoll_event *ready;
	int epfd;

	if (s->epfd >= 0)
		return EBUSY;
	if (num_fds < 1 || max_ready < 1 || max_ready > LEP_MAX_READY)
		return EINVAL;
	ready = mem_resize(s, NULL, 0, (size_t)max_ready * sizeof *ready);
	if (ready == NULL)
		return ENOMEM;
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		int err = errno;

		mem_free(s, ready, (size_t)max_ready * sizeof *ready);
		return err;
	}
	s->epfd = epfd;
	s->num_fds = num_fds;
	s->max_ready = max_ready;
	s->ready = ready;
	return 0;
}

int lep_close(lep_set *s)
{
	int epfd = s->epfd, err = 0;

	if (epfd < 0)
		return 0;
	/* Closed state first, so nothing can see a half-closed set. */
	s->epfd = -1;
	mem_free(s, s->table, (size_t)s->cap * sizeof *s->table);
	mem_free(s, s->ready, (size_t)s->max_ready * sizeof *s->ready);
	s->table = NULL;
	s->ready = NULL;
	s->cap = s->count = s->nready = 0;
	/* Linux releases the descriptor even when close fails with EINTR:
	 * retrying could close a descriptor another thread just opened. */
	if (close(epfd) != 0 && errno != EINTR)
		err = errno;
	return err;
}

/* Make room for fd in the table, doubling, up to num_fds entries. */
static int grow(lep_set *s, int fd)
{
	size_t newcap = s->cap > 0 ? (size_t)s->cap : 16;
	lep_entry *t;

	while (newcap <= (size_t)fd)
		newcap *= 2;
	if (newcap > (size_t)s->num_fds)
		newcap = (size_t)s->num_fds;
	if (newcap > SIZE_MAX / sizeof *t)
		return ENOMEM;
	t = mem_resize(s, s->table, (size_t)s->cap * sizeof *t, newcap * sizeof *t);
	if (t == NULL)
		return ENOMEM;
	memset(t + s->cap, 0, (newcap - (size_t)s->cap) * sizeof *t);
	s->table = t;
	s->cap = (int)newcap;
	return 0;
}

static int ctl(const lep_set *s, int op, int fd, uint32_t flags)
{
	struct epoll_event ev;

	ev.events = flags;
	ev.data.u64 = (uint64_t)fd;
	return epoll_ctl(s->epfd, op, fd, &ev) == 0 ? 0 : errno;
}

int lep_set_flags(lep_set *s, int fd, uint32_t flags)
{
	int err;

	if (s->epfd < 0)
		return EBADF;
	if (fd < 0 || fd >= s->num_fds)
		return EINVAL;
	if (fd < s->cap && s->table[fd].watched) {
		if (lep_exclusive_rule(s, fd, flags) != LEP_EXCLUSIVE_OK)
			return EINVAL; /* what the kernel would say */
		/* MOD even for unchanged flags: it re-arms ONESHOT and makes the
		 * kernel check readiness again for ET. */
		err = ctl(s, EPOLL_CTL_MOD, fd, flags);
		if (err == 0)
			s->table[fd].flags = flags;
		return err;
	}
	/* The kernel first: only an open descriptor may grow the table, so a
	 * stray large number costs nothing. */
	err = ctl(s, EPOLL_CTL_ADD, fd, flags);
	if (err != 0)
		return err;
	if (fd >= s->cap && (err = grow(s, fd)) != 0) {
		(void)ctl(s, EPOLL_CTL_DEL, fd, 0); /* as if never added */
		return err;
	}
	s->table[fd].flags = flags;
	s->table[fd].watched = 1;
	s->count++;
	return 0;
}

int lep_remove(lep_set *s, int fd)
{
	if (s->epfd < 0)
		return EBADF;
	if (fd < 0 || fd >= s->cap || !s->table[fd].watched)
		return 0;
	/* Dropped first: if the kernel refuses (the descriptor was closed while
	 * watched, say), the fd number must still be free for reuse. */
	s->table[fd].watched = 0;
	s->table[fd].flags = 0;
	s->count--;
	return ctl(s, EPOLL_CTL_DEL, fd, 0);
}

int lep_exclusive_rule(const lep_set *s, int fd, uint32_t flags)
{
	uint32_t old;

	if (!lep_find(s, fd, &old))
		return LEP_EXCLUSIVE_OK; /* an ADD takes it */
	if (flags & LEP_EXCLUSIVE)
		return LEP_EXCLUSIVE_ON_MOD;
	if (old & LEP_EXCLUSIVE)
		return LEP_EXCLUSIVE_ENTRY;
	return LEP_EXCLUSIVE_OK;
}

int lep_next(const lep_set *s, int from)
{
	int fd;

	for (fd = from < 0 ? 0 : from; fd < s->cap; fd++)
		if (s->table[fd].watched)
			return fd;
	return -1;
}

int lep_wait(lep_set *s, int timeout_ms)
{
	int n;

	if (s->epfd < 0)
		return EBADF;
	n = epoll_wait(s->epfd, s->ready, s->max_ready, timeout_ms);
	if (n < 0) {
		s->nready = 0;
		return errno;
	}
	s->nready = n;
	return 0;
}

int lep_default_num_fds(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > (rlim_t)INT_MAX)
		return INT_MAX;
	return rl.rlim_cur < 1 ? 1 : (int)rl.rlim_cur;
}
