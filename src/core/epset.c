/* lepoll core: see lepoll_core.h. No Lua in this file. */
#define _POSIX_C_SOURCE 200809L

#include "lepoll_core.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The kernel always watches these, whatever was asked. */
#define KERNEL_ADDED (LEP_ERR | LEP_HUP)
/* What the kernel keeps of a ONESHOT entry once it fired (EP_PRIVATE_BITS). */
#define KERNEL_KEPT_DISARMED (LEP_ONESHOT | LEP_ET | LEP_EXCLUSIVE | (uint32_t)EPOLLWAKEUP)

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

int lep_timeout_ms_int(long long seconds)
{
	if (seconds <= 0)
		return 0;
	return seconds > INT_MAX / 1000 ? INT_MAX : (int)seconds * 1000;
}

int lep_timeout_ms(double seconds)
{
	long long ns, ms;

	if (!(seconds > 0))
		return 0;
	if (seconds > (double)INT_MAX / 1000.0)
		return isinf(seconds) ? -1 : INT_MAX;
	/* Through whole nanoseconds, as the reference's Time_ns spans, so that
	 * 0.0015 s is 1.5 ms exactly and rounds up to 2. */
	ns = (long long)(seconds * 1e9 + 0.5);
	ms = (ns + 500000) / 1000000;
	if (ms < 1)
		ms = 1;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

double lep_now(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail on Linux */
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Canonical order of the names. */
static const struct {
	const char *name;
	uint32_t bit;
} flag_names[] = {
	{"in", LEP_IN},
	{"out", LEP_OUT},
	{"pri", LEP_PRI},
	{"err", LEP_ERR},
	{"hup", LEP_HUP},
	{"rdhup", LEP_RDHUP},
	{"et", LEP_ET},
	{"oneshot", LEP_ONESHOT},
	{"exclusive", LEP_EXCLUSIVE},
};
#define NUM_FLAG_NAMES (sizeof flag_names / sizeof flag_names[0])

size_t lep_flagnames(uint32_t flags, char *buf, size_t n)
{
	char tmp[LEP_FLAGNAMES_MAX];
	size_t len = 0, i, k;
	uint32_t rest = flags;

	for (i = 0; i < NUM_FLAG_NAMES; i++) {
		if (!(flags & flag_names[i].bit))
			continue;
		rest &= ~flag_names[i].bit;
		if (len > 0)
			tmp[len++] = '|';
		for (k = 0; flag_names[i].name[k] != '\0'; k++)
			tmp[len++] = flag_names[i].name[k];
	}
	if (rest != 0) {
		int w = snprintf(tmp + len, sizeof tmp - len, "%s0x%x",
		                 len > 0 ? "|" : "", (unsigned)rest);
		len += w > 0 ? (size_t)w : 0;
	}
	tmp[len] = '\0';
	if (n > 0) {
		k = len < n ? len : n - 1;
		memcpy(buf, tmp, k);
		buf[k] = '\0';
	}
	return len;
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

int lep_flag_by_name(const char *name, size_t len, uint32_t *out)
{
	size_t i, k;

	for (i = 0; i < NUM_FLAG_NAMES; i++) {
		const char *n = flag_names[i].name;
		for (k = 0; k < len && n[k] != '\0' && lower((unsigned char)name[k]) == n[k]; k++)
			;
		if (k == len && n[k] == '\0') {
			*out = flag_names[i].bit;
			return 0;
		}
	}
	return EINVAL;
}

static int is_separator(char c)
{
	return c == '|' || c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int lep_parse_flags(const char *s, size_t len, uint32_t *out, size_t *bad, size_t *badlen)
{
	uint32_t flags = 0, bit;
	size_t i = 0;

	while (i < len) {
		size_t start;

		while (i < len && is_separator(s[i]))
			i++;
		start = i;
		while (i < len && !is_separator(s[i]))
			i++;
		if (i == start)
			break;
		if (lep_flag_by_name(s + start, i - start, &bit) != 0) {
			*bad = start;
			*badlen = i - start;
			return EINVAL;
		}
		flags |= bit;
	}
	*out = flags;
	return 0;
}

const char *lep_errname(int err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ENFILE: return "ENFILE";
	case EMFILE: return "EMFILE";
	case ENOTTY: return "ENOTTY";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case EROFS: return "EROFS";
	case EPIPE: return "EPIPE";
	case ERANGE: return "ERANGE";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS";
	case ELOOP: return "ELOOP";
	case EOVERFLOW: return "EOVERFLOW";
	case ENOTSOCK: return "ENOTSOCK";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EPROTO: return "EPROTO";
	case ECONNRESET: return "ECONNRESET";
	case ENOTCONN: return "ENOTCONN";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ECONNREFUSED: return "ECONNREFUSED";
	default: return NULL;
	}
}

/* Kernel flags that agree with the table's: the kernel adds err|hup to
 * every entry, keeps only its private bits of a ONESHOT entry that fired,
 * and drops EPOLLWAKEUP without CAP_BLOCK_SUSPEND. */
static int kernel_agrees(uint32_t table_flags, uint32_t kernel_flags)
{
	uint32_t want = (table_flags | KERNEL_ADDED) & ~(uint32_t)EPOLLWAKEUP;
	uint32_t got = kernel_flags & ~(uint32_t)EPOLLWAKEUP;

	if (got == want)
		return 1;
	return (table_flags & LEP_ONESHOT) && got == (want & KERNEL_KEPT_DISARMED);
}

static int fail(char *msg, size_t n, const char *what, int a, int b)
{
	(void)snprintf(msg, n, "%s (%d, %d)", what, a, b);
	return LEP_INCONSISTENT;
}

static int check_table(const lep_set *s, char *msg, size_t n)
{
	int fd, count = 0, i;

	if (s->cap < 0 || s->cap > s->num_fds || (s->cap > 0 && s->table == NULL))
		return fail(msg, n, "table size outside the watched range", s->cap, s->num_fds);
	for (fd = 0; fd < s->cap; fd++) {
		if (s->table[fd].watched > 1)
			return fail(msg, n, "corrupt table entry (fd, mark)", fd, (int)s->table[fd].watched);
		if (!s->table[fd].watched && s->table[fd].flags != 0)
			return fail(msg, n, "unwatched entry keeps flags (fd, flags)", fd,
			            (int)s->table[fd].flags);
		count += (int)s->table[fd].watched;
	}
	if (count != s->count)
		return fail(msg, n, "watched fds in the table differ from its count", count, s->count);
	if (s->nready < 0 || s->nready > s->max_ready)
		return fail(msg, n, "ready events outside the buffer (events, capacity)", s->nready,
		            s->max_ready);
	for (i = 0; i < s->nready; i++)
		if (s->ready[i].data.u64 >= (uint64_t)s->num_fds)
			return fail(msg, n, "ready event names no fd in range (event, num_file_descrs)", i,
			            s->num_fds);
	if (s->ready_busy < 0)
		return fail(msg, n, "negative iteration depth", s->ready_busy, 0);
	return 0;
}

/* Compare with the tfd lines of /proc/self/fdinfo/<epfd>. */
static int check_kernel(const lep_set *s, char *msg, size_t n)
{
	char path[64], line[256], tn[LEP_FLAGNAMES_MAX], kn[LEP_FLAGNAMES_MAX];
	unsigned char *seen;
	size_t seen_size = (size_t)s->cap + 1;
	FILE *f;
	int rc = 0, fd;

	(void)snprintf(path, sizeof path, "/proc/self/fdinfo/%d", s->epfd);
	f = fopen(path, "re");
	if (f == NULL) {
		int err = errno;
		if (err == ENOENT && access("/proc/self/fdinfo", F_OK) != 0)
			return 0; /* no /proc: nothing to compare with */
		return err;
	}
	seen = s->alloc(s->alloc_ud, NULL, 0, seen_size);
	if (seen == NULL) {
		(void)fclose(f); /* read only: nothing to lose */
		return ENOMEM;
	}
	memset(seen, 0, seen_size);
	while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
		unsigned int kflags;
		unsigned long long data;
		uint32_t tflags;

		/* The kernel's own format (fs/eventpoll.c: "tfd: %8d events: %8x
		 * data: %llx"): its values always fit these types. */
		/* NOLINTNEXTLINE(cert-err34-c) */
		if (sscanf(line, "tfd: %d events: %x data: %llx", &fd, &kflags, &data) != 3)
			continue;
		if (!lep_find(s, fd, &tflags)) {
			lep_flagnames(kflags, kn, sizeof kn);
			(void)snprintf(msg, n, "fd %d is in the kernel's set (%s) but not in the table",
			               fd, kn);
			rc = LEP_INCONSISTENT;
		} else if (!kernel_agrees(tflags, kflags)) {
			lep_flagnames(tflags, tn, sizeof tn);
			lep_flagnames(kflags, kn, sizeof kn);
			(void)snprintf(msg, n,
			               "fd %d has flags \"%s\" in the table but \"%s\" in the kernel's set",
			               fd, tn, kn);
			rc = LEP_INCONSISTENT;
		} else if (data != (unsigned long long)fd) {
			(void)snprintf(msg, n, "fd %d has a kernel entry whose data is %llu", fd, data);
			rc = LEP_INCONSISTENT;
		} else {
			seen[fd] = 1;
		}
	}
	if (rc == 0 && ferror(f))
		rc = EIO;
	(void)fclose(f); /* read only: nothing to lose */
	for (fd = lep_next(s, 0); rc == 0 && fd >= 0; fd = lep_next(s, fd + 1)) {
		if (!seen[fd]) {
			lep_flagnames(s->table[fd].flags, tn, sizeof tn);
			(void)snprintf(msg, n, "fd %d is in the table (\"%s\") but not in the kernel's set",
			               fd, tn);
			rc = LEP_INCONSISTENT;
		}
	}
	s->alloc(s->alloc_ud, seen, seen_size, 0);
	return rc;
}

int lep_check(const lep_set *s, char *msg, size_t n)
{
	int rc;

	if (s->epfd < 0)
		return 0;
	if (fcntl(s->epfd, F_GETFD) < 0) {
		(void)snprintf(msg, n, "the epoll descriptor %d is not open", s->epfd);
		return LEP_INCONSISTENT;
	}
	rc = check_table(s, msg, n);
	return rc != 0 ? rc : check_kernel(s, msg, n);
}

int lep_default_num_fds(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > (rlim_t)INT_MAX)
		return INT_MAX;
	return rl.rlim_cur < 1 ? 1 : (int)rl.rlim_cur;
}
