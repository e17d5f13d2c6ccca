/*
 * Plain C unit tests for the lepoll core (src/core), no Lua.
 * Built and run by `make test` as build/core_test. Every check is counted;
 * a failing one prints file:line and a message. The last line of the
 * output is "N passed, N failed"; the exit status is 1 if any failed.
 *
 * Only descriptors made here are watched. Where a test needs a fixed fd
 * number (0, 17, 100, ...) a pipe is dup2'ed there, and whatever the
 * process had at that number is saved first and put back afterwards.
 */
#define _GNU_SOURCE

#include "lepoll_core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------------------------------------------------------- checks */

static int n_passed, n_failed;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int check_(int ok, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	if (ok) {
		n_passed++;
		return 1;
	}
	n_failed++;
	printf("FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	return 0;
}

/* CHECK(condition, printf-style message...) */
#define CHECK(cond, ...) check_((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)

/* Integers: the message shows both expressions and both values. */
#define CHECK_INT(got, want)                                                         \
	do {                                                                         \
		long long got_ = (long long)(got), want_ = (long long)(want);        \
		CHECK(got_ == want_, "%s == %s: got %lld, want %lld", #got, #want,   \
		      got_, want_);                                                  \
	} while (0)

/* Error results: shown by name. */
#define CHECK_ERR(got, want)                                                         \
	do {                                                                         \
		int got_ = (got), want_ = (want);                                    \
		CHECK(got_ == want_, "%s: got %s, want %s", #got, ename(got_),       \
		      ename(want_));                                                 \
	} while (0)

#define CHECK_STR(got, want)                                                         \
	do {                                                                         \
		const char *got_ = (got), *want_ = (want);                           \
		CHECK(got_ != NULL && strcmp(got_, want_) == 0,                      \
		      "%s: got \"%s\", want \"%s\"", #got,                           \
		      got_ != NULL ? got_ : "(null)", want_);                        \
	} while (0)

/* A printable errno name that does not rely on lep_errname. */
static const char *ename(int err)
{
	static char buf[8][32];
	static int next;
	char *b = buf[next++ % 8];

	switch (err) {
	case 0: return "0";
	case LEP_INCONSISTENT: return "LEP_INCONSISTENT";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EINTR: return "EINTR";
	case EBADF: return "EBADF";
	case ENOMEM: return "ENOMEM";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EINVAL: return "EINVAL";
	case EMFILE: return "EMFILE";
	case EPIPE: return "EPIPE";
	case ECHILD: return "ECHILD";
	default:
		snprintf(b, sizeof buf[0], "errno %d", err);
		return b;
	}
}

/* ------------------------------------------------------------- helpers */

/* Entries of /proc/self/fd (the directory's own descriptor included, the
 * same at every call). */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static void xpipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) != 0) {
		perror("pipe2");
		exit(2);
	}
}

static void close_pipe(int p[2])
{
	close(p[0]);
	close(p[1]);
}

static void put_byte(int fd)
{
	CHECK(write(fd, "x", 1) == 1, "write to fd %d: %s", fd, strerror(errno));
}

static void drain(int fd)
{
	char buf[64];

	if (read(fd, buf, sizeof buf) < 0)
		CHECK(0, "read from fd %d: %s", fd, strerror(errno));
}

/* A descriptor number >= min that is free, with a copy of fd on it. */
static int dup_at_least(int fd, int min)
{
	int d = fcntl(fd, F_DUPFD_CLOEXEC, min);

	if (d < 0) {
		perror("F_DUPFD_CLOEXEC");
		exit(2);
	}
	return d;
}

/* A copy of src at exactly `target`; what the process had there is kept
 * aside and restored by unplace. */
typedef struct placed {
	int target;
	int saved;      /* copy of the previous occupant, or -1 */
	int saved_fdfl; /* its F_GETFD flags */
} placed;

static void place(placed *p, int src, int target)
{
	p->target = target;
	p->saved = -1;
	p->saved_fdfl = 0;
	if (is_open(target)) {
		p->saved_fdfl = fcntl(target, F_GETFD);
		p->saved = dup_at_least(target, 300);
	}
	if (dup2(src, target) != target) {
		perror("dup2");
		exit(2);
	}
}

static void unplace(placed *p)
{
	close(p->target);
	if (p->saved >= 0) {
		if (dup2(p->saved, p->target) != p->target) {
			perror("dup2 (restore)");
			exit(2);
		}
		(void)fcntl(p->target, F_SETFD, p->saved_fdfl);
		close(p->saved);
	}
}

/* The kernel's entry for fd in the epoll set epfd, from the tfd lines of
 * /proc/self/fdinfo/<epfd>: 1 (and *events, *data) when present, 0 when
 * absent, -1 when unreadable. Independent of the core's own parser. */
static int kernel_entry(int epfd, int fd, unsigned *events, unsigned long long *data)
{
	char path[64], line[256];
	FILE *f;
	int found = 0;

	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", epfd);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL) {
		int tfd;
		unsigned ev;
		unsigned long long d;

		if (strncmp(line, "tfd:", 4) != 0)
			continue;
		if (sscanf(line + 4, "%d events: %x data: %llx", &tfd, &ev, &d) == 3 &&
		    tfd == fd) {
			found = 1;
			if (events != NULL)
				*events = ev;
			if (data != NULL)
				*data = d;
		}
	}
	fclose(f);
	return found;
}

/* Number of tfd lines: how many descriptors the kernel's set holds. */
static int kernel_size(int epfd)
{
	char path[64], line[256];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", epfd);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "tfd:", 4) == 0)
			n++;
	fclose(f);
	return n;
}

#define KADDED (LEP_ERR | LEP_HUP) /* the kernel adds these to every entry */

/* Behind the table's back. */
static int raw_ctl(int epfd, int op, int fd, uint32_t events)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof ev);
	ev.events = events;
	ev.data.u64 = (uint64_t)fd;
	return epoll_ctl(epfd, op, fd, &ev) == 0 ? 0 : errno;
}

/* Snapshot of the user-level table, to show it did not change. */
typedef struct snap {
	int count, cap, first, kernel;
	lep_entry *table;
} snap;

static void take_snap(const lep_set *s, snap *sn)
{
	sn->count = s->count;
	sn->cap = s->cap;
	sn->first = lep_next(s, 0);
	sn->kernel = kernel_size(s->epfd);
	sn->table = NULL;
	if (s->cap > 0) {
		sn->table = malloc((size_t)s->cap * sizeof *sn->table);
		if (sn->table == NULL)
			exit(2);
		memcpy(sn->table, s->table, (size_t)s->cap * sizeof *sn->table);
	}
}

/* CHECKs that s is as in the snapshot, and frees it. */
#define CHECK_UNCHANGED(s, sn) check_unchanged((s), (sn), __LINE__)

static void check_unchanged(const lep_set *s, snap *sn, int line)
{
	char msg[256];

	CHECK(s->count == sn->count, "(line %d) count changed: %d -> %d", line, sn->count, s->count);
	CHECK(s->cap == sn->cap, "(line %d) table grew: cap %d -> %d", line, sn->cap, s->cap);
	CHECK(lep_next(s, 0) == sn->first, "(line %d) first watched fd changed", line);
	CHECK(s->cap != sn->cap || sn->cap == 0 ||
	          memcmp(s->table, sn->table, (size_t)sn->cap * sizeof *sn->table) == 0,
	      "(line %d) table entries changed", line);
	CHECK(kernel_size(s->epfd) == sn->kernel, "(line %d) kernel's set changed: %d -> %d entries",
	      line, sn->kernel, kernel_size(s->epfd));
	msg[0] = '\0';
	CHECK(lep_check(s, msg, sizeof msg) == 0, "(line %d) lep_check: %s", line, msg);
	free(sn->table);
	sn->table = NULL;
}

#define CHECK_CONSISTENT(s)                                                          \
	do {                                                                         \
		char m_[256] = "";                                                   \
		int rc_ = lep_check((s), m_, sizeof m_);                             \
		CHECK(rc_ == 0, "lep_check: %s: %s", ename(rc_), m_);                \
	} while (0)

/* ----------------------------------------------------------- allocator */

/* lua_Alloc's contract, with the blocks kept in a list so that every osize
 * can be checked, the live bytes counted, and any allocation refused. */
typedef struct talloc {
	int fail;     /* refuse every (re)allocation with nsize > 0 */
	int calls;
	int refused;
	int bad_osize;
	size_t live;
	int nblocks;
	struct {
		void *p;
		size_t n;
	} b[32];
} talloc;

static int ta_find(talloc *ta, void *p)
{
	int i;

	for (i = 0; i < ta->nblocks; i++)
		if (ta->b[i].p == p)
			return i;
	return -1;
}

static void *test_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	talloc *ta = ud;
	int i = -1;
	void *np;

	ta->calls++;
	if (ptr != NULL) {
		i = ta_find(ta, ptr);
		if (i < 0 || ta->b[i].n != osize)
			ta->bad_osize++;
	}
	if (nsize == 0) {
		if (i >= 0) {
			ta->live -= ta->b[i].n;
			ta->b[i] = ta->b[--ta->nblocks];
		}
		free(ptr);
		return NULL;
	}
	if (ta->fail) {
		ta->refused++;
		return NULL; /* ptr stays valid, as for lua_Alloc */
	}
	np = realloc(ptr, nsize);
	if (np == NULL)
		return NULL;
	if (i >= 0) {
		ta->live -= ta->b[i].n;
		ta->b[i].p = np;
		ta->b[i].n = nsize;
	} else if (ta->nblocks < (int)(sizeof ta->b / sizeof ta->b[0])) {
		ta->b[ta->nblocks].p = np;
		ta->b[ta->nblocks].n = nsize;
		ta->nblocks++;
	} else {
		ta->bad_osize++; /* too many blocks to track: counts as a failure */
	}
	ta->live += nsize;
	return np;
}

/* ------------------------------------------------------ init/open/close */

static void test_open_close(void)
{
	lep_set s;
	talloc ta;
	int epfd, i, fl;
	static const int bad[][2] = {
		{0, 1}, {-1, 1}, {INT_MIN, 1}, {1, 0}, {1, -1}, {16, INT_MIN},
		{16, LEP_MAX_READY + 1}, {16, INT_MAX},
	};

	/* The closed state. */
	lep_init(&s, NULL, &ta);
	CHECK_INT(s.epfd, -1);
	CHECK_INT(s.count, 0);
	CHECK_INT(s.cap, 0);
	CHECK_INT(s.nready, 0);
	CHECK(s.table == NULL && s.ready == NULL, "closed set holds memory");
	CHECK(s.alloc != NULL, "no default allocator");
	CHECK(s.alloc_ud == NULL, "ud kept without an allocator");
	CHECK_INT(lep_next(&s, 0), -1);
	{
		uint32_t f = 0;
		CHECK_INT(lep_find(&s, 0, &f), 0);
	}
	CHECK_ERR(lep_set_flags(&s, 0, LEP_IN), EBADF);
	CHECK_ERR(lep_remove(&s, 0), EBADF);
	CHECK_ERR(lep_wait(&s, 0), EBADF);
	CHECK_ERR(lep_close(&s), 0);
	CHECK_INT(s.epfd, -1);

	memset(&ta, 0, sizeof ta);
	lep_init(&s, test_alloc, &ta);
	CHECK(s.alloc == test_alloc && s.alloc_ud == &ta, "custom allocator not kept");

	/* Bad sizes: EINVAL, still closed, nothing allocated or opened. */
	for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
		int before = count_fds();
		int err = lep_open(&s, bad[i][0], bad[i][1]);
		CHECK(err == EINVAL, "lep_open(%d, %d): got %s, want EINVAL", bad[i][0], bad[i][1],
		      ename(err));
		CHECK(s.epfd == -1 && s.ready == NULL, "lep_open(%d, %d) left the set open",
		      bad[i][0], bad[i][1]);
		CHECK(count_fds() == before, "lep_open(%d, %d) leaked a descriptor", bad[i][0],
		      bad[i][1]);
	}
	CHECK_INT(ta.calls, 0);

	/* LEP_MAX_READY itself is accepted (the refused allocation shows it was
	 * tried, without allocating gigabytes). */
	ta.fail = 1;
	CHECK_ERR(lep_open(&s, 16, LEP_MAX_READY), ENOMEM);
	CHECK_ERR(lep_open(&s, 1, 1), ENOMEM);
	CHECK_INT(s.epfd, -1);
	ta.fail = 0;
	CHECK_INT(ta.live, 0);

	/* Open: EPOLL_CLOEXEC, sizes kept, nothing watched. */
	CHECK_ERR(lep_open(&s, 128, 4), 0);
	epfd = s.epfd;
	CHECK(epfd >= 0, "no epoll fd after lep_open");
	fl = fcntl(epfd, F_GETFD);
	CHECK(fl >= 0 && (fl & FD_CLOEXEC), "epoll fd %d lacks FD_CLOEXEC (F_GETFD %d)", epfd, fl);
	CHECK_INT(kernel_size(epfd), 0);
	CHECK_INT(s.num_fds, 128);
	CHECK_INT(s.max_ready, 4);
	CHECK_INT(s.count, 0);
	CHECK_INT(s.cap, 0);
	CHECK(s.table == NULL, "table allocated before any fd");
	CHECK_INT(ta.live, 4 * sizeof(struct epoll_event));
	CHECK_CONSISTENT(&s);

	/* Open again: EBUSY, the set untouched. */
	CHECK_ERR(lep_open(&s, 8, 8), EBUSY);
	CHECK_INT(s.epfd, epfd);
	CHECK_INT(s.num_fds, 128);
	CHECK_INT(s.max_ready, 4);

	/* Close frees everything and closes the descriptor; twice is a no-op. */
	{
		int p[2];
		xpipe(p);
		CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN), 0);
		CHECK_ERR(lep_close(&s), 0);
		CHECK(!is_open(epfd), "epoll fd %d still open after lep_close", epfd);
		CHECK_INT(s.epfd, -1);
		CHECK(s.table == NULL && s.ready == NULL, "memory kept after lep_close");
		CHECK(s.count == 0 && s.cap == 0 && s.nready == 0, "counts kept after lep_close");
		CHECK_INT(ta.live, 0);
		CHECK_INT(ta.nblocks, 0);
		CHECK_ERR(lep_close(&s), 0);
		CHECK_INT(s.epfd, -1);
		CHECK_INT(ta.live, 0);
		CHECK_CONSISTENT(&s);
		CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN), EBADF);
		close_pipe(p);
	}

	/* A closed set can be opened again. */
	CHECK_ERR(lep_open(&s, 4, 1), 0);
	CHECK(s.epfd >= 0, "reopen gave no fd");
	CHECK_ERR(lep_close(&s), 0);

	/* epoll_create1 refused (EMFILE): the ready buffer is freed again. */
	{
		struct rlimit old, low;
		int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the lowest free number */

		if (lowest >= 0 && getrlimit(RLIMIT_NOFILE, &old) == 0) {
			close(lowest);
			low = old;
			low.rlim_cur = (rlim_t)lowest;
			if (setrlimit(RLIMIT_NOFILE, &low) == 0) {
				int err = lep_open(&s, 16, 16);
				(void)setrlimit(RLIMIT_NOFILE, &old);
				CHECK_ERR(err, EMFILE);
				CHECK_INT(s.epfd, -1);
				CHECK(s.ready == NULL, "ready buffer kept after a failed open");
				CHECK_INT(ta.live, 0);
			}
		}
	}
	CHECK_INT(ta.bad_osize, 0);
}

/* --------------------------------------------------------- ADD and MOD */

static void test_add_mod(void)
{
	lep_set s;
	int p[2], q[2];
	unsigned ev = 0;
	unsigned long long data = 0;
	uint32_t f = 0;

	lep_init(&s, NULL, NULL);
	CHECK_ERR(lep_open(&s, 1024, 8), 0);
	xpipe(p);
	xpipe(q);

	/* A new fd: ADD (MOD would be ENOENT). */
	CHECK_INT(kernel_entry(s.epfd, p[0], NULL, NULL), 0);
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN), 0);
	CHECK_INT(kernel_entry(s.epfd, p[0], &ev, &data), 1);
	CHECK_INT(ev, LEP_IN | KADDED);
	CHECK_INT(data, p[0]);
	CHECK_INT(s.count, 1);
	CHECK(lep_find(&s, p[0], &f) && f == LEP_IN, "lep_find after ADD: %u", (unsigned)f);

	/* Flags 0 is a valid watched entry. */
	CHECK_ERR(lep_set_flags(&s, q[1], 0), 0);
	CHECK(lep_find(&s, q[1], &f) && f == 0, "lep_find of a 0-flag entry");
	CHECK_INT(kernel_entry(s.epfd, q[1], &ev, NULL), 1);
	CHECK_INT(ev, KADDED);
	CHECK_INT(s.count, 2);

	/* A watched fd: MOD (ADD would be EEXIST), the count unchanged. */
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN | LEP_ET | LEP_RDHUP), 0);
	CHECK_INT(kernel_entry(s.epfd, p[0], &ev, &data), 1);
	CHECK_INT(ev, LEP_IN | LEP_ET | LEP_RDHUP | KADDED);
	CHECK_INT(data, p[0]);
	CHECK(lep_find(&s, p[0], &f) && f == (LEP_IN | LEP_ET | LEP_RDHUP), "lep_find after MOD");
	CHECK_INT(s.count, 2);
	CHECK_ERR(lep_set_flags(&s, q[1], LEP_OUT), 0);
	CHECK_INT(kernel_entry(s.epfd, q[1], &ev, NULL), 1);
	CHECK_INT(ev, LEP_OUT | KADDED);
	CHECK_INT(s.count, 2);
	CHECK_CONSISTENT(&s);

	/* MOD with unchanged flags still reaches the kernel: it re-arms a
	 * ONESHOT entry that fired. */
	put_byte(p[1]);
	CHECK_ERR(lep_set_flags(&s, q[1], 0), 0);
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN | LEP_ONESHOT), 0);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 1);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 0); /* disarmed */
	CHECK_CONSISTENT(&s);   /* a disarmed ONESHOT entry is consistent */
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN | LEP_ONESHOT), 0);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 1);
	CHECK_INT(s.ready[0].data.u64, p[0]);
	CHECK_INT(s.count, 2);
	drain(p[0]);

	/* Out of range: EINVAL, no system call, no growth. */
	{
		snap sn;
		take_snap(&s, &sn);
		CHECK_ERR(lep_set_flags(&s, -1, LEP_IN), EINVAL);
		CHECK_ERR(lep_set_flags(&s, INT_MIN, LEP_IN), EINVAL);
		CHECK_ERR(lep_set_flags(&s, 1024, LEP_IN), EINVAL);
		CHECK_ERR(lep_set_flags(&s, INT_MAX, LEP_IN), EINVAL);
		CHECK_UNCHANGED(&s, &sn);
	}

	CHECK_ERR(lep_remove(&s, p[0]), 0);
	CHECK_ERR(lep_remove(&s, q[1]), 0);
	CHECK_INT(kernel_size(s.epfd), 0);
	CHECK_INT(s.count, 0);
	CHECK_ERR(lep_close(&s), 0);
	close_pipe(p);
	close_pipe(q);
}

/* ------------------------------------------------ the kernel refuses */

static void test_rollback(void)
{
	lep_set s;
	int p[2], file, closed_lo, closed_hi, hi;
	char path[] = "/tmp/lepoll-core-test-XXXXXX";
	snap sn;
	uint32_t f = 0;
	unsigned ev = 0;

	lep_init(&s, NULL, NULL);
	CHECK_ERR(lep_open(&s, 256, 4), 0);
	xpipe(p);
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN), 0);
	CHECK_INT(s.cap, 16);

	/* A regular file: EPERM, nothing changes (fd >= cap: no growth either). */
	file = mkstemp(path);
	CHECK(file >= 0, "mkstemp: %s", strerror(errno));
	unlink(path);
	hi = dup_at_least(file, 200);
	take_snap(&s, &sn);
	CHECK_ERR(lep_set_flags(&s, file, LEP_IN), EPERM);
	CHECK_ERR(lep_set_flags(&s, hi, LEP_IN | LEP_OUT), EPERM);
	CHECK(!lep_find(&s, file, &f) && !lep_find(&s, hi, &f), "refused file is in the table");
	CHECK_UNCHANGED(&s, &sn);
	CHECK_INT(kernel_entry(s.epfd, hi, NULL, NULL), 0);
	close(hi);
	close(file);

	/* A closed fd: EBADF, nothing changes, below and beyond the cap. */
	{
		int t[2];
		xpipe(t);
		closed_lo = t[1];
		closed_hi = dup_at_least(t[1], 150);
		close_pipe(t);
		close(closed_hi);
	}
	CHECK(!is_open(closed_lo) && !is_open(closed_hi), "test fds not closed");
	take_snap(&s, &sn);
	CHECK_ERR(lep_set_flags(&s, closed_lo, LEP_IN), EBADF);
	CHECK_ERR(lep_set_flags(&s, closed_hi, LEP_IN), EBADF);
	CHECK(!lep_find(&s, closed_lo, &f) && !lep_find(&s, closed_hi, &f),
	      "closed fd is in the table");
	CHECK_UNCHANGED(&s, &sn);
	CHECK_INT(s.cap, 16);

	/* MOD refused (EXCLUSIVE is ADD-only): EINVAL, flags kept in both. */
	take_snap(&s, &sn);
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN | LEP_EXCLUSIVE), EINVAL);
	CHECK(lep_find(&s, p[0], &f) && f == LEP_IN, "flags changed by a refused MOD: %u",
	      (unsigned)f);
	CHECK_INT(kernel_entry(s.epfd, p[0], &ev, NULL), 1);
	CHECK_INT(ev, LEP_IN | KADDED);
	CHECK_UNCHANGED(&s, &sn);

	/* ADD refused because the kernel already has the fd (put there behind
	 * the table's back): EEXIST, the table unchanged. This also shows the
	 * choice is ADD for an fd the table does not hold. */
	CHECK_ERR(raw_ctl(s.epfd, EPOLL_CTL_ADD, p[1], LEP_OUT), 0);
	CHECK_ERR(lep_set_flags(&s, p[1], LEP_OUT), EEXIST);
	CHECK(!lep_find(&s, p[1], &f), "fd in the table after EEXIST");
	CHECK_INT(s.count, 1);
	CHECK_ERR(raw_ctl(s.epfd, EPOLL_CTL_DEL, p[1], 0), 0);
	CHECK_CONSISTENT(&s);

	/* And the set stays usable. */
	CHECK_ERR(lep_set_flags(&s, p[1], LEP_OUT), 0);
	CHECK_INT(s.count, 2);
	CHECK_CONSISTENT(&s);

	CHECK_ERR(lep_close(&s), 0);
	close_pipe(p);
}

/* -------------------------------------------------------------- remove */

static void test_remove(void)
{
	lep_set s;
	int p[2], q[2], r[2];
	uint32_t f = 0;
	snap sn;

	lep_init(&s, NULL, NULL);
	CHECK_ERR(lep_open(&s, 64, 4), 0);
	xpipe(p);
	xpipe(q);

	/* Not watched: 0, and no EPOLL_CTL_DEL reaches the kernel (an entry
	 * put there behind the table's back survives). */
	CHECK_ERR(lep_remove(&s, p[0]), 0); /* empty table, cap 0 */
	CHECK_ERR(raw_ctl(s.epfd, EPOLL_CTL_ADD, p[0], LEP_IN), 0);
	CHECK_ERR(lep_remove(&s, p[0]), 0);
	CHECK_INT(kernel_entry(s.epfd, p[0], NULL, NULL), 1);
	CHECK_ERR(raw_ctl(s.epfd, EPOLL_CTL_DEL, p[0], 0), 0);

	CHECK_ERR(lep_set_flags(&s, q[0], LEP_IN), 0);
	CHECK_ERR(raw_ctl(s.epfd, EPOLL_CTL_ADD, p[0], LEP_IN), 0);
	CHECK_ERR(lep_remove(&s, p[0]), 0); /* within the cap, not watched */
	CHECK_INT(kernel_entry(s.epfd, p[0], NULL, NULL), 1);
	CHECK_ERR(raw_ctl(s.epfd, EPOLL_CTL_DEL, p[0], 0), 0);

	/* Out of range or never opened: 0, nothing changes. */
	take_snap(&s, &sn);
	CHECK_ERR(lep_remove(&s, -1), 0);
	CHECK_ERR(lep_remove(&s, INT_MIN), 0);
	CHECK_ERR(lep_remove(&s, 63), 0);
	CHECK_ERR(lep_remove(&s, 64), 0);
	CHECK_ERR(lep_remove(&s, INT_MAX), 0);
	CHECK_UNCHANGED(&s, &sn);

	/* Watched: dropped from both. */
	CHECK_ERR(lep_remove(&s, q[0]), 0);
	CHECK(!lep_find(&s, q[0], &f), "removed fd still found");
	CHECK_INT(s.count, 0);
	CHECK_INT(kernel_entry(s.epfd, q[0], NULL, NULL), 0);
	CHECK_ERR(lep_remove(&s, q[0]), 0); /* again: not watched */
	CHECK_CONSISTENT(&s);

	/* Closed while watched: EBADF, yet the entry is dropped, and the fd
	 * number can be watched again once reused. */
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN), 0);
	CHECK_ERR(lep_set_flags(&s, p[1], LEP_OUT), 0);
	CHECK_INT(s.count, 2);
	close_pipe(p);
	CHECK_ERR(lep_remove(&s, p[0]), EBADF);
	CHECK_ERR(lep_remove(&s, p[1]), EBADF);
	CHECK(!lep_find(&s, p[0], &f) && !lep_find(&s, p[1], &f), "entry kept after EBADF");
	CHECK_INT(s.count, 0);
	CHECK_INT(lep_next(&s, 0), -1);
	CHECK_CONSISTENT(&s);
	xpipe(r); /* the lowest free numbers: those of p */
	CHECK(r[0] == p[0] && r[1] == p[1], "fd numbers not reused (%d %d vs %d %d)", r[0], r[1],
	      p[0], p[1]);
	CHECK_ERR(lep_set_flags(&s, r[0], LEP_IN), 0);
	CHECK_ERR(lep_set_flags(&s, r[1], LEP_OUT), 0);
	CHECK_INT(s.count, 2);
	CHECK_CONSISTENT(&s);
	CHECK_ERR(lep_remove(&s, r[0]), 0);
	CHECK_ERR(lep_remove(&s, r[1]), 0);
	CHECK_INT(kernel_size(s.epfd), 0);

	CHECK_ERR(lep_close(&s), 0);
	CHECK_ERR(lep_remove(&s, r[0]), EBADF);
	close_pipe(q);
	close_pipe(r);
}

/* ------------------------------------ sparse fds, lep_find, lep_next */

static void test_sparse(void)
{
	lep_set s;
	int p[2], i;
	placed pl[5];
	static const int at[] = {0, 17, 100, 127, 128};
	uint32_t f = 0;

	/* The pipe far above the numbers used here. */
	{
		int t[2];
		xpipe(t);
		p[0] = dup_at_least(t[0], 500);
		p[1] = dup_at_least(t[1], 500);
		close_pipe(t);
	}
	for (i = 0; i < 5; i++)
		place(&pl[i], i % 2 ? p[1] : p[0], at[i]);

	lep_init(&s, NULL, NULL);
	CHECK_ERR(lep_open(&s, 128, 8), 0);

	CHECK_ERR(lep_set_flags(&s, 0, LEP_IN), 0);
	CHECK_INT(s.cap, 16);
	CHECK_ERR(lep_set_flags(&s, 17, LEP_OUT), 0);
	CHECK_INT(s.cap, 32);
	CHECK_ERR(lep_set_flags(&s, 100, LEP_IN | LEP_ET), 0);
	CHECK_INT(s.cap, 128); /* 128 would double to 256: clamped to num_fds */
	CHECK_INT(s.count, 3);

	/* fd == num_fds: EINVAL even though it is open; the kernel never sees it. */
	{
		snap sn;
		take_snap(&s, &sn);
		CHECK_ERR(lep_set_flags(&s, 128, LEP_IN), EINVAL);
		CHECK_INT(kernel_entry(s.epfd, 128, NULL, NULL), 0);
		CHECK_UNCHANGED(&s, &sn);
	}

	/* Earlier entries survive the growth; the gaps are empty. */
	CHECK(lep_find(&s, 0, &f) && f == LEP_IN, "fd 0 lost");
	CHECK(lep_find(&s, 17, &f) && f == LEP_OUT, "fd 17 lost");
	CHECK(lep_find(&s, 100, &f) && f == (LEP_IN | LEP_ET), "fd 100 lost");
	for (i = 0; i < 128; i++)
		if (i != 0 && i != 17 && i != 100)
			CHECK(!lep_find(&s, i, &f), "fd %d found but never set", i);
	CHECK(!lep_find(&s, -1, &f) && !lep_find(&s, 128, &f) && !lep_find(&s, INT_MAX, &f) &&
	          !lep_find(&s, INT_MIN, &f),
	      "lep_find out of range");

	CHECK_INT(lep_next(&s, 0), 0);
	CHECK_INT(lep_next(&s, -5), 0);
	CHECK_INT(lep_next(&s, INT_MIN), 0);
	CHECK_INT(lep_next(&s, 1), 17);
	CHECK_INT(lep_next(&s, 17), 17);
	CHECK_INT(lep_next(&s, 18), 100);
	CHECK_INT(lep_next(&s, 100), 100);
	CHECK_INT(lep_next(&s, 101), -1);
	CHECK_INT(lep_next(&s, 128), -1);
	CHECK_INT(lep_next(&s, INT_MAX), -1);
	{
		int seen[3], n = 0, fd;
		for (fd = lep_next(&s, 0); fd >= 0 && n < 3; fd = lep_next(&s, fd + 1))
			seen[n++] = fd;
		CHECK(n == 3 && seen[0] == 0 && seen[1] == 17 && seen[2] == 100 && fd == -1,
		      "iteration over the table");
	}

	/* The last fd of the range. */
	CHECK_ERR(lep_set_flags(&s, 127, LEP_OUT), 0);
	CHECK_INT(s.cap, 128);
	CHECK_INT(lep_next(&s, 101), 127);
	CHECK_INT(s.count, 4);
	CHECK_CONSISTENT(&s);

	/* Removing the middle one keeps the others. */
	CHECK_ERR(lep_remove(&s, 17), 0);
	CHECK_INT(lep_next(&s, 1), 100);
	CHECK_INT(s.count, 3);
	CHECK_CONSISTENT(&s);

	CHECK_ERR(lep_remove(&s, 0), 0);
	CHECK_ERR(lep_remove(&s, 100), 0);
	CHECK_ERR(lep_remove(&s, 127), 0);
	CHECK_INT(lep_next(&s, 0), -1);
	CHECK_INT(s.cap, 128); /* the table never shrinks */
	CHECK_ERR(lep_close(&s), 0);

	/* A range smaller than the first allocation: the table is num_fds long. */
	lep_init(&s, NULL, NULL);
	CHECK_ERR(lep_open(&s, 1, 1), 0);
	CHECK_ERR(lep_set_flags(&s, 0, LEP_IN), 0);
	CHECK_INT(s.cap, 1);
	CHECK_ERR(lep_set_flags(&s, 1, LEP_IN), EINVAL);
	CHECK_CONSISTENT(&s);
	CHECK_ERR(lep_close(&s), 0);

	for (i = 4; i >= 0; i--)
		unplace(&pl[i]);
	close_pipe(p);
}

/* ------------------------------------------------------ growth failure */

static void test_growth_failure(void)
{
	lep_set s;
	talloc ta;
	int p[2], hi, big;
	uint32_t f = 0;
	snap sn;

	memset(&ta, 0, sizeof ta);
	lep_init(&s, test_alloc, &ta);
	CHECK_ERR(lep_open(&s, 1024, 4), 0);
	xpipe(p);

	/* The first table: refused, so the ADD is undone. */
	take_snap(&s, &sn);
	ta.fail = 1;
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN), ENOMEM);
	ta.fail = 0;
	CHECK(ta.refused > 0, "the allocator was never asked");
	CHECK_INT(kernel_entry(s.epfd, p[0], NULL, NULL), 0);
	CHECK(!lep_find(&s, p[0], &f), "fd in the table after ENOMEM");
	CHECK(s.table == NULL, "table allocated after ENOMEM");
	CHECK_UNCHANGED(&s, &sn);

	/* Then it works. */
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN), 0);
	CHECK_INT(s.cap, 16);
	CHECK_INT(kernel_entry(s.epfd, p[0], NULL, NULL), 1);

	/* A larger table refused: the old one and its entries stay. */
	hi = dup_at_least(p[1], 40);
	take_snap(&s, &sn);
	ta.fail = 1;
	CHECK_ERR(lep_set_flags(&s, hi, LEP_OUT), ENOMEM);
	ta.fail = 0;
	CHECK_INT(kernel_entry(s.epfd, hi, NULL, NULL), 0);
	CHECK_INT(kernel_entry(s.epfd, p[0], NULL, NULL), 1);
	CHECK(lep_find(&s, p[0], &f) && f == LEP_IN, "old entry lost after ENOMEM");
	CHECK(!lep_find(&s, hi, &f), "new fd in the table after ENOMEM");
	CHECK_UNCHANGED(&s, &sn);

	/* No allocation for MOD or for an fd within the table. */
	ta.fail = 1;
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN | LEP_ET), 0);
	if (p[1] < s.cap) {
		CHECK_ERR(lep_set_flags(&s, p[1], LEP_OUT), 0);
		CHECK_ERR(lep_remove(&s, p[1]), 0);
	}
	ta.fail = 0;

	/* Then it works, and the table covers the new fd. */
	CHECK_ERR(lep_set_flags(&s, hi, LEP_OUT), 0);
	CHECK(s.cap > hi, "cap %d does not cover fd %d", s.cap, hi);
	CHECK_INT(s.count, 2);
	CHECK_CONSISTENT(&s);

	/* A refused growth for a large fd (the big jump) is undone too. */
	big = dup_at_least(p[0], 900);
	take_snap(&s, &sn);
	ta.fail = 1;
	CHECK_ERR(lep_set_flags(&s, big, LEP_IN), ENOMEM);
	ta.fail = 0;
	CHECK_INT(kernel_entry(s.epfd, big, NULL, NULL), 0);
	CHECK_UNCHANGED(&s, &sn);

	/* lep_check needs memory too: ENOMEM, not a false verdict. */
	{
		char msg[128] = "";
		ta.fail = 1;
		CHECK_ERR(lep_check(&s, msg, sizeof msg), ENOMEM);
		ta.fail = 0;
	}

	CHECK_ERR(lep_close(&s), 0);
	CHECK_INT(ta.live, 0);
	CHECK_INT(ta.nblocks, 0);
	CHECK_INT(ta.bad_osize, 0);
	close(big);
	close(hi);
	close_pipe(p);
}

/* -------------------------------------------------------- ready buffer */

static int index_of(const int *v, int n, uint64_t x)
{
	int i;

	for (i = 0; i < n; i++)
		if ((uint64_t)v[i] == x)
			return i;
	return -1;
}

static void test_ready(void)
{
	lep_set s;
	int a[2], b[2], c[2], rd[3], i, hits[3];
	double t0, dt;

	xpipe(a);
	xpipe(b);
	xpipe(c);
	rd[0] = a[0];
	rd[1] = b[0];
	rd[2] = c[0];

	/* Level-triggered: every ready fd, data.u64 == fd, flags exactly in. */
	lep_init(&s, NULL, NULL);
	CHECK_ERR(lep_open(&s, 1024, 8), 0);
	for (i = 0; i < 3; i++)
		CHECK_ERR(lep_set_flags(&s, rd[i], LEP_IN), 0);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 0); /* nothing written yet: a 0 ms timeout */
	put_byte(a[1]);
	put_byte(b[1]);
	put_byte(c[1]);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 3);
	memset(hits, 0, sizeof hits);
	for (i = 0; i < s.nready && i < 3; i++) {
		int k = index_of(rd, 3, s.ready[i].data.u64);
		CHECK(k >= 0, "ready event %d names fd %llu, not a watched one", i,
		      (unsigned long long)s.ready[i].data.u64);
		CHECK(s.ready[i].events == LEP_IN, "ready event %d: events 0x%x, want in", i,
		      (unsigned)s.ready[i].events);
		if (k >= 0)
			hits[k]++;
	}
	CHECK(hits[0] == 1 && hits[1] == 1 && hits[2] == 1, "each fd once: %d %d %d", hits[0],
	      hits[1], hits[2]);
	CHECK_CONSISTENT(&s);

	/* lep_clear_ready empties it; level-triggered readiness persists. */
	lep_clear_ready(&s);
	CHECK_INT(s.nready, 0);
	CHECK_CONSISTENT(&s);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 3);
	drain(b[0]);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 2);
	CHECK(index_of(rd, 3, s.ready[0].data.u64) != 1 && index_of(rd, 3, s.ready[1].data.u64) != 1,
	      "a drained pipe is still ready");

	/* A wait that times out replaces the ready set with nothing. */
	drain(a[0]);
	drain(c[0]);
	t0 = lep_now();
	CHECK_ERR(lep_wait(&s, lep_timeout_ms(0.02)), 0);
	dt = lep_now() - t0;
	CHECK_INT(s.nready, 0);
	CHECK(dt >= 0.015, "a 20 ms wait returned after %.4f s", dt);

	/* Write ends: out; a closed writer: hup. */
	CHECK_ERR(lep_remove(&s, b[0]), 0);
	CHECK_ERR(lep_set_flags(&s, b[1], LEP_OUT), 0);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 1);
	CHECK_INT(s.ready[0].data.u64, b[1]);
	CHECK_INT(s.ready[0].events, LEP_OUT);
	CHECK_ERR(lep_remove(&s, b[1]), 0);
	close(c[1]);
	c[1] = -1;
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 1);
	CHECK_INT(s.ready[0].data.u64, c[0]);
	CHECK_INT(s.ready[0].events, LEP_HUP);

	/* Removing an fd does not filter the stored events. */
	CHECK_ERR(lep_remove(&s, c[0]), 0);
	CHECK_INT(s.nready, 1);
	CHECK_CONSISTENT(&s);
	CHECK_ERR(lep_close(&s), 0);
	CHECK_INT(s.nready, 0);
	if (c[1] < 0) {
		close(c[0]);
		xpipe(c);
		rd[2] = c[0];
	}

	/* max_ready caps each wait; with ET each event comes once, so the rest
	 * arrive exactly on the next wait. */
	lep_init(&s, NULL, NULL);
	CHECK_ERR(lep_open(&s, 1024, 2), 0);
	for (i = 0; i < 3; i++)
		CHECK_ERR(lep_set_flags(&s, rd[i], LEP_IN | LEP_ET), 0);
	put_byte(a[1]);
	put_byte(b[1]);
	put_byte(c[1]);
	memset(hits, 0, sizeof hits);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 2);
	for (i = 0; i < s.nready && i < 2; i++) {
		int k = index_of(rd, 3, s.ready[i].data.u64);
		if (k >= 0)
			hits[k]++;
	}
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 1);
	if (s.nready == 1) {
		int k = index_of(rd, 3, s.ready[0].data.u64);
		if (k >= 0)
			hits[k]++;
	}
	CHECK(hits[0] == 1 && hits[1] == 1 && hits[2] == 1, "capped waits: %d %d %d", hits[0],
	      hits[1], hits[2]);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 0);

	/* max_ready 1: one event per wait, level-triggered. */
	CHECK_ERR(lep_close(&s), 0);
	lep_init(&s, NULL, NULL);
	CHECK_ERR(lep_open(&s, 1024, 1), 0);
	for (i = 0; i < 3; i++)
		CHECK_ERR(lep_set_flags(&s, rd[i], LEP_IN), 0);
	for (i = 0; i < 4; i++) {
		CHECK_ERR(lep_wait(&s, 0), 0);
		CHECK_INT(s.nready, 1);
		CHECK(index_of(rd, 3, s.ready[0].data.u64) >= 0, "event for an unknown fd");
	}
	CHECK_CONSISTENT(&s);
	CHECK_ERR(lep_close(&s), 0);
	CHECK_ERR(lep_wait(&s, 0), EBADF);

	close_pipe(a);
	close_pipe(b);
	close_pipe(c);
}

/* An interrupted wait leaves the ready set empty. */
static volatile sig_atomic_t alarm_seen;

static void on_alarm(int sig)
{
	(void)sig;
	alarm_seen = 1;
}

static void test_wait_eintr(void)
{
	lep_set s;
	int p[2], err;
	struct sigaction sa, old;
	struct itimerval it, none;

	xpipe(p);
	lep_init(&s, NULL, NULL);
	CHECK_ERR(lep_open(&s, 1024, 4), 0);
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN), 0);
	put_byte(p[1]);
	CHECK_ERR(lep_wait(&s, 0), 0);
	CHECK_INT(s.nready, 1);
	drain(p[0]);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART; /* epoll_wait is never restarted anyway */
	sigaction(SIGALRM, &sa, &old);
	memset(&it, 0, sizeof it);
	memset(&none, 0, sizeof none);
	it.it_value.tv_usec = 50000;
	alarm_seen = 0;
	setitimer(ITIMER_REAL, &it, NULL);
	err = lep_wait(&s, 5000);
	setitimer(ITIMER_REAL, &none, NULL);
	sigaction(SIGALRM, &old, NULL);
	CHECK(alarm_seen, "the alarm never came");
	CHECK_ERR(err, EINTR);
	CHECK_INT(s.nready, 0);
	CHECK_CONSISTENT(&s);

	CHECK_ERR(lep_close(&s), 0);
	close_pipe(p);
}

/* ------------------------------------------------------------ timeouts */

static void test_timeouts(void)
{
	static const struct {
		double s;
		int ms;
	} t[] = {
		{0.0, 0},          {-0.0, 0},       {-1.0, 0},       {-1e300, 0},
		{-INFINITY, 0},    {1e-12, 1},      {DBL_MIN, 1},    {0.0003, 1},
		{0.0005, 1},       {0.0014999, 1},  {0.0015, 2},     {0.0025, 3},
		{0.001, 1},        {0.01, 10},      {0.1, 100},      {1.0, 1000},
		{1.2345, 1235},    {2.5, 2500},     {60.0, 60000},   {2147483.0, 2147483000},
		{2147483.647, INT_MAX}, {2147484.0, INT_MAX}, {1e10, INT_MAX}, {1e300, INT_MAX},
		{DBL_MAX, INT_MAX}, {INFINITY, -1},
	};
	static const struct {
		long long s;
		int ms;
	} ti[] = {
		{LLONG_MIN, 0}, {-1, 0},          {0, 0},       {1, 1000},     {60, 60000},
		{INT_MAX / 1000, (INT_MAX / 1000) * 1000},      {INT_MAX / 1000 + 1, INT_MAX},
		{INT_MAX, INT_MAX}, {(long long)INT_MAX + 1, INT_MAX}, {LLONG_MAX, INT_MAX},
	};
	size_t i;

	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		int got = lep_timeout_ms(t[i].s);
		CHECK(got == t[i].ms, "lep_timeout_ms(%.17g): got %d, want %d", t[i].s, got, t[i].ms);
	}
	CHECK_INT(lep_timeout_ms(NAN), 0);
	CHECK_INT(lep_timeout_ms(-NAN), 0);
	for (i = 0; i < sizeof ti / sizeof ti[0]; i++) {
		int got = lep_timeout_ms_int(ti[i].s);
		CHECK(got == ti[i].ms, "lep_timeout_ms_int(%lld): got %d, want %d", ti[i].s, got,
		      ti[i].ms);
	}
	/* Monotonic clock. */
	{
		double a = lep_now(), b = lep_now();
		CHECK(a > 0 && b >= a, "lep_now: %f then %f", a, b);
	}
}

/* ----------------------------------------------------------- flag names */

static void test_flagnames(void)
{
	char buf[LEP_FLAGNAMES_MAX];
	static const struct {
		uint32_t flags;
		const char *names;
	} t[] = {
		{0, ""},
		{LEP_IN, "in"},
		{LEP_OUT, "out"},
		{LEP_PRI, "pri"},
		{LEP_ERR, "err"},
		{LEP_HUP, "hup"},
		{LEP_RDHUP, "rdhup"},
		{LEP_ET, "et"},
		{LEP_ONESHOT, "oneshot"},
		{LEP_EXCLUSIVE, "exclusive"},
		{LEP_ET | LEP_OUT | LEP_IN, "in|out|et"},
		{LEP_EXCLUSIVE | LEP_RDHUP | LEP_PRI, "pri|rdhup|exclusive"},
		{LEP_HUP | LEP_ERR, "err|hup"},
		{LEP_IN | 0x400, "in|0x400"},
		{0x400, "0x400"},
		{LEP_IN | LEP_ET | 0x400 | 0x800, "in|et|0xc00"},
		{0xffffffffu, "in|out|pri|err|hup|rdhup|et|oneshot|exclusive|0x2fffdfe0"},
	};
	size_t i, len;

	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		memset(buf, 'X', sizeof buf);
		len = lep_flagnames(t[i].flags, buf, sizeof buf);
		CHECK(strcmp(buf, t[i].names) == 0, "lep_flagnames(0x%x): got \"%s\", want \"%s\"",
		      (unsigned)t[i].flags, buf, t[i].names);
		CHECK(len == strlen(t[i].names), "lep_flagnames(0x%x) returned %zu, want %zu",
		      (unsigned)t[i].flags, len, strlen(t[i].names));
	}
	len = lep_flagnames(0xffffffffu, buf, sizeof buf);
	CHECK(len < LEP_FLAGNAMES_MAX, "LEP_FLAGNAMES_MAX too small for %zu", len);

	/* Truncation: at most n bytes including the NUL; the full length back. */
	memset(buf, 'X', sizeof buf);
	CHECK_INT(lep_flagnames(LEP_IN | LEP_OUT, buf, 7), 6);
	CHECK_STR(buf, "in|out");
	memset(buf, 'X', sizeof buf);
	CHECK_INT(lep_flagnames(LEP_IN | LEP_OUT, buf, 6), 6);
	CHECK_STR(buf, "in|ou");
	memset(buf, 'X', sizeof buf);
	CHECK_INT(lep_flagnames(LEP_IN | LEP_OUT, buf, 4), 6);
	CHECK_STR(buf, "in|");
	CHECK(buf[4] == 'X', "wrote past the buffer");
	memset(buf, 'X', sizeof buf);
	CHECK_INT(lep_flagnames(LEP_IN | 0x400, buf, 5), 8);
	CHECK_STR(buf, "in|0");
	CHECK(buf[5] == 'X', "wrote past the buffer");
	memset(buf, 'X', sizeof buf);
	CHECK_INT(lep_flagnames(LEP_IN | LEP_OUT, buf, 1), 6);
	CHECK_STR(buf, "");
	CHECK(buf[1] == 'X', "wrote past the buffer");
	memset(buf, 'X', sizeof buf);
	CHECK_INT(lep_flagnames(LEP_IN | LEP_OUT, buf, 0), 6);
	CHECK(buf[0] == 'X', "wrote into a 0-byte buffer");
	CHECK_INT(lep_flagnames(LEP_IN, NULL, 0), 2);
}

static void test_parse_flags(void)
{
	static const struct {
		const char *s;
		uint32_t flags;
	} ok[] = {
		{"", 0},
		{"|", 0},
		{" , |\t\r\n", 0},
		{"in", LEP_IN},
		{"IN", LEP_IN},
		{"In", LEP_IN},
		{"in|out|et", LEP_IN | LEP_OUT | LEP_ET},
		{"et|out|in", LEP_IN | LEP_OUT | LEP_ET},
		{"in,out et", LEP_IN | LEP_OUT | LEP_ET},
		{"  in ,, out||\tET\n", LEP_IN | LEP_OUT | LEP_ET},
		{"in|in|IN", LEP_IN},
		{"Pri|ERR|hUp|RdHup|OneShot|EXCLUSIVE",
		 LEP_PRI | LEP_ERR | LEP_HUP | LEP_RDHUP | LEP_ONESHOT | LEP_EXCLUSIVE},
		{"in|out|pri|err|hup|rdhup|et|oneshot|exclusive", 0xd000201fu},
	};
	static const struct {
		const char *s;
		size_t bad, badlen;
	} no[] = {
		{"bogus", 0, 5},
		{"in|bogus|out", 3, 5},
		{"in|out|Bogus,et", 7, 5},
		{"in  ,\tfoo", 6, 3},
		{"inx", 0, 3},
		{"i", 0, 1},
		{"in|o", 3, 1},
		{"in-out", 0, 6},
		{"in;out", 0, 6},
		{"none", 0, 4},
		{"0x1", 0, 3},
		{"in|exclusivee", 3, 10},
		{"in out  xyz  et", 8, 3},
	};
	size_t i, bad, badlen;
	uint32_t out;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		int err;
		out = 0xdeadbeef;
		err = lep_parse_flags(ok[i].s, strlen(ok[i].s), &out, &bad, &badlen);
		CHECK(err == 0 && out == ok[i].flags, "lep_parse_flags(\"%s\"): %s, 0x%x, want 0x%x",
		      ok[i].s, ename(err), (unsigned)out, (unsigned)ok[i].flags);
	}
	for (i = 0; i < sizeof no / sizeof no[0]; i++) {
		int err;
		bad = badlen = 999;
		err = lep_parse_flags(no[i].s, strlen(no[i].s), &out, &bad, &badlen);
		CHECK(err == EINVAL && bad == no[i].bad && badlen == no[i].badlen,
		      "lep_parse_flags(\"%s\"): %s at %zu+%zu, want EINVAL at %zu+%zu", no[i].s,
		      ename(err), bad, badlen, no[i].bad, no[i].badlen);
	}
	/* The length bounds the string: no NUL needed, nothing read beyond. */
	CHECK_ERR(lep_parse_flags("in|out", 2, &out, &bad, &badlen), 0);
	CHECK_INT(out, LEP_IN);
	CHECK_ERR(lep_parse_flags("in|outx", 6, &out, &bad, &badlen), 0);
	CHECK_INT(out, LEP_IN | LEP_OUT);
	CHECK_ERR(lep_parse_flags("inx", 0, &out, &bad, &badlen), 0);
	CHECK_INT(out, 0);
	{
		const char nul[] = {'i', 'n', '\0', 'o', 'u', 't'};
		bad = badlen = 999;
		CHECK_ERR(lep_parse_flags(nul, sizeof nul, &out, &bad, &badlen), EINVAL);
		CHECK(bad == 0 && badlen == 6, "embedded NUL: at %zu+%zu", bad, badlen);
	}

	/* One name, exactly. */
	CHECK_ERR(lep_flag_by_name("in", 2, &out), 0);
	CHECK_INT(out, LEP_IN);
	CHECK_ERR(lep_flag_by_name("EXCLUSIVE", 9, &out), 0);
	CHECK_INT(out, LEP_EXCLUSIVE);
	CHECK_ERR(lep_flag_by_name("rdHUP", 5, &out), 0);
	CHECK_INT(out, LEP_RDHUP);
	CHECK_ERR(lep_flag_by_name("oneshot", 7, &out), 0);
	CHECK_INT(out, LEP_ONESHOT);
	CHECK_ERR(lep_flag_by_name("inx", 2, &out), 0); /* only len bytes count */
	CHECK_INT(out, LEP_IN);
	CHECK_ERR(lep_flag_by_name("in", 1, &out), EINVAL);
	CHECK_ERR(lep_flag_by_name("", 0, &out), EINVAL);
	CHECK_ERR(lep_flag_by_name("in ", 3, &out), EINVAL);
	CHECK_ERR(lep_flag_by_name("in|out", 6, &out), EINVAL);
	CHECK_ERR(lep_flag_by_name("ett", 3, &out), EINVAL);
	CHECK_ERR(lep_flag_by_name("none", 4, &out), EINVAL);
	/* Every canonical name round-trips through lep_flagnames. */
	{
		static const uint32_t bits[] = {LEP_IN, LEP_OUT, LEP_PRI, LEP_ERR, LEP_HUP,
		                                LEP_RDHUP, LEP_ET, LEP_ONESHOT, LEP_EXCLUSIVE};
		char name[LEP_FLAGNAMES_MAX];
		for (i = 0; i < sizeof bits / sizeof bits[0]; i++) {
			size_t n = lep_flagnames(bits[i], name, sizeof name);
			out = 0;
			CHECK(lep_flag_by_name(name, n, &out) == 0 && out == bits[i],
			      "round trip of \"%s\"", name);
		}
	}
}

static void test_errname(void)
{
	CHECK_STR(lep_errname(EPERM), "EPERM");
	CHECK_STR(lep_errname(EBADF), "EBADF");
	CHECK_STR(lep_errname(EINVAL), "EINVAL");
	CHECK_STR(lep_errname(ENOMEM), "ENOMEM");
	CHECK_STR(lep_errname(EEXIST), "EEXIST");
	CHECK_STR(lep_errname(ENOENT), "ENOENT");
	CHECK_STR(lep_errname(EINTR), "EINTR");
	CHECK_STR(lep_errname(EBUSY), "EBUSY");
	CHECK_STR(lep_errname(EMFILE), "EMFILE");
	CHECK_STR(lep_errname(EAGAIN), "EAGAIN");
	CHECK_STR(lep_errname(ELOOP), "ELOOP");
	CHECK_STR(lep_errname(ENOSYS), "ENOSYS");
	CHECK(lep_errname(0) == NULL, "lep_errname(0) is not NULL");
	CHECK(lep_errname(-1) == NULL, "lep_errname(-1) is not NULL");
	CHECK(lep_errname(LEP_INCONSISTENT) == NULL, "lep_errname(LEP_INCONSISTENT) is not NULL");
	CHECK(lep_errname(99999) == NULL, "lep_errname(99999) is not NULL");
}

/* ----------------------------------------------------------- lep_check */

/* "fd N" followed by a non-digit. */
static int names_fd(const char *msg, int fd)
{
	char want[32];
	const char *p = msg;
	size_t n;

	n = (size_t)snprintf(want, sizeof want, "fd %d", fd);
	while ((p = strstr(p, want)) != NULL) {
		if (p[n] < '0' || p[n] > '9')
			return 1;
		p += n;
	}
	return 0;
}

static void test_check(void)
{
	lep_set s;
	int p[2], q[2], rc, epfd;
	char msg[256];

	/* A closed set passes, before and after its life. */
	lep_init(&s, NULL, NULL);
	strcpy(msg, "untouched");
	CHECK_ERR(lep_check(&s, msg, sizeof msg), 0);
	CHECK_STR(msg, "untouched");

	CHECK_ERR(lep_open(&s, 1024, 4), 0);
	CHECK_CONSISTENT(&s);
	xpipe(p);
	xpipe(q);
	CHECK_ERR(lep_set_flags(&s, p[0], LEP_IN | LEP_RDHUP), 0);
	CHECK_ERR(lep_set_flags(&s, p[1], LEP_OUT | LEP_ET), 0);
	CHECK_ERR(lep_set_flags(&s, q[0], 0), 0);
	CHECK_ERR(lep_set_flags(&s, q[1], LEP_OUT | LEP_ONESHOT), 0);
	CHECK_CONSISTENT(&s);
	CHECK_ERR(lep_wait(&s, 0), 0); /* fires the ONESHOT one */
	CHECK_CONSISTENT(&s);

	/* The kernel holds an fd the table does not. */
	{
		int extra = dup_at_least(q[0], 3);
		CHECK_ERR(raw_ctl(s.epfd, EPOLL_CTL_ADD, extra, LEP_IN), 0);
		msg[0] = '\0';
		rc = lep_check(&s, msg, sizeof msg);
		CHECK_ERR(rc, LEP_INCONSISTENT);
		CHECK(names_fd(msg, extra), "message does not name fd %d: %s", extra, msg);
		CHECK_ERR(raw_ctl(s.epfd, EPOLL_CTL_DEL, extra, 0), 0);
		close(extra);
		CHECK_CONSISTENT(&s);
	}

	/* Flags changed behind the table's back. */
	CHECK_ERR(raw_ctl(s.epfd, EPOLL_CTL_MOD, p[0], LEP_IN), 0);
	msg[0] = '\0';
	rc = lep_check(&s, msg, sizeof msg);
	CHECK_ERR(rc, LEP_INCONSISTENT);
	CHECK(names_fd(msg, p[0]), "message does not name fd %d: %s", p[0], msg);
	CHECK_ERR(raw_ctl(s.epfd, EPOLL_CTL_MOD, p[0], LEP_IN | LEP_RDHUP), 0);
	CHECK_CONSISTENT(&s);

	/* The table against itself. */
	s.count++;
	rc = lep_check(&s, msg, sizeof msg);
	CHECK_ERR(rc, LEP_INCONSISTENT);
	s.count--;
	s.nready = s.max_ready + 1;
	rc = lep_check(&s, msg, sizeof msg);
	CHECK_ERR(rc, LEP_INCONSISTENT);
	s.nready = 0;
	CHECK_CONSISTENT(&s);

	/* A watched fd closed behind the table's back. */
	close(q[0]);
	msg[0] = '\0';
	rc = lep_check(&s, msg, sizeof msg);
	CHECK_ERR(rc, LEP_INCONSISTENT);
	CHECK(names_fd(msg, q[0]), "message does not name fd %d: %s", q[0], msg);
	/* A short buffer gets a truncated, terminated message. */
	memset(msg, 'X', sizeof msg);
	rc = lep_check(&s, msg, 8);
	CHECK_ERR(rc, LEP_INCONSISTENT);
	CHECK(strlen(msg) == 7, "truncated message: \"%s\"", msg);
	CHECK_ERR(lep_remove(&s, q[0]), EBADF);
	CHECK_CONSISTENT(&s);

	/* The epoll descriptor itself closed behind the table's back. */
	epfd = s.epfd;
	close(epfd);
	msg[0] = '\0';
	rc = lep_check(&s, msg, sizeof msg);
	CHECK_ERR(rc, LEP_INCONSISTENT);
	CHECK(strstr(msg, "not open") != NULL, "message: %s", msg);
	CHECK_ERR(lep_close(&s), EBADF); /* close() reports it; the set is closed */
	CHECK_INT(s.epfd, -1);
	CHECK_ERR(lep_check(&s, msg, sizeof msg), 0);

	close_pipe(p);
	close(q[1]);
}

/* ---------------------------------------------------------------- misc */

static void test_default_num_fds(void)
{
	struct rlimit rl;
	int n = lep_default_num_fds();

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		long long want = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)INT_MAX
		                     ? INT_MAX
		                     : (long long)rl.rlim_cur;
		CHECK_INT(n, want < 1 ? 1 : want);
	}
	CHECK(n >= 1, "lep_default_num_fds: %d", n);
}

/* ------------------------------------------------------------- wakers */

/* Whether the waker's descriptor is readable now. */
static int waker_readable(const lep_waker *w)
{
	struct pollfd p = {lep_waker_fd(w), POLLIN, 0};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

/* Takes the next value and checks it is want (len bytes); frees it. */
static void check_take(lep_waker *w, const char *want, size_t len)
{
	lep_wake_value *v = NULL;

	CHECK_ERR(lep_waker_take(w, &v), 0);
	if (!CHECK(v != NULL, "no value where \"%.*s\" was due", (int)len, want))
		return;
	CHECK(v->len == len && memcmp(v->data, want, len) == 0, "took \"%.*s\", want \"%.*s\"", (int)v->len,
	      v->data, (int)len, want);
	lep_wake_value_free(v);
}

static void test_waker(void)
{
	lep_waker *w = NULL;
	lep_wake_value *v = NULL;
	int fd, status;
	pid_t pid;

	CHECK_ERR(lep_waker_open(&w), 0);
	if (!CHECK(w != NULL, "lep_waker_open gave no waker"))
		return;
	fd = lep_waker_fd(w);
	CHECK(fd >= 0 && (fcntl(fd, F_GETFL) & O_NONBLOCK) && (fcntl(fd, F_GETFD) & FD_CLOEXEC),
	      "fd %d: not a non-blocking, close-on-exec descriptor", fd);
	CHECK(!waker_readable(w), "readable before any post");
	CHECK_ERR(lep_waker_take(w, &v), 0);
	CHECK(v == NULL, "a value from an empty waker");

	/* Readable exactly while a value is queued; values in order. */
	CHECK_ERR(lep_waker_post(w, "one", 3), 0);
	CHECK_ERR(lep_waker_post(w, NULL, 0), 0);
	CHECK_ERR(lep_waker_post(w, "three", 5), 0);
	CHECK_INT(lep_waker_queued(w), 3);
	CHECK(waker_readable(w), "not readable with 3 values queued");
	check_take(w, "one", 3);
	check_take(w, "", 0);
	CHECK(waker_readable(w), "not readable with 1 value queued");
	check_take(w, "three", 5);
	CHECK(!waker_readable(w), "readable once the last value was taken");
	CHECK_INT(lep_waker_queued(w), 0);

	/* Refused posts leave the queue as it was. */
	CHECK_ERR(lep_waker_post(w, NULL, 1), EINVAL);
	CHECK_ERR(lep_waker_post(w, "x", SIZE_MAX), ENOMEM);
	CHECK_INT(lep_waker_queued(w), 0);
	CHECK(!waker_readable(w), "readable after refused posts");

	/* A value put back comes first again, and the descriptor wakes. */
	CHECK_ERR(lep_waker_post(w, "a", 1), 0);
	CHECK_ERR(lep_waker_post(w, "b", 1), 0);
	CHECK_ERR(lep_waker_take(w, &v), 0);
	lep_waker_unget(w, v);
	check_take(w, "a", 1);
	CHECK_ERR(lep_waker_take(w, &v), 0);
	CHECK(!waker_readable(w), "readable with the queue empty");
	lep_waker_unget(w, v);
	CHECK(waker_readable(w), "not readable once a value was put back");
	check_take(w, "b", 1);

	/* A forked child refuses to post or take: it shares the counter. */
	CHECK_ERR(lep_waker_post(w, "parent's", 8), 0);
	pid = fork();
	if (pid == 0) {
		int ok = lep_waker_post(w, "x", 1) == ECHILD && lep_waker_take(w, &v) == ECHILD && v == NULL &&
		         lep_waker_queued(w) == 0 && lep_waker_close(w) == 0 && lep_waker_fd(w) == -1;
		lep_waker_release(w);
		_exit(ok ? 0 : 1);
	}
	if (CHECK(pid > 0, "fork failed") && CHECK(waitpid(pid, &status, 0) == pid, "waitpid failed"))
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's calls were not refused");
	CHECK(waker_readable(w), "the child's close took the descriptor");
	check_take(w, "parent's", 8);

	/* Closing: posts fail with EPIPE, queued values go, the descriptor too;
	 * the memory stays while a reference does. */
	lep_waker_retain(w);
	CHECK_ERR(lep_waker_post(w, "dropped", 7), 0);
	CHECK_ERR(lep_waker_close(w), 0);
	CHECK_INT(lep_waker_fd(w), -1);
	CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF, "fd %d still open after close", fd);
	CHECK_ERR(lep_waker_close(w), 0);
	CHECK_ERR(lep_waker_post(w, "late", 4), EPIPE);
	CHECK_ERR(lep_waker_take(w, &v), EBADF);
	CHECK_INT(lep_waker_queued(w), 0);
	lep_waker_release(w);
	CHECK_ERR(lep_waker_post(w, "late", 4), EPIPE);
	lep_waker_release(w);

	/* The last release closes a waker nobody closed. */
	CHECK_ERR(lep_waker_open(&w), 0);
	CHECK_ERR(lep_waker_post(w, "left", 4), 0);
	lep_waker_release(w);
}

int main(void)
{
	int fds_before, fds_after;

	setvbuf(stdout, NULL, _IOLBF, 0);
	fds_before = count_fds();
	CHECK(fds_before > 0, "cannot read /proc/self/fd");

	test_open_close();
	test_add_mod();
	test_rollback();
	test_remove();
	test_sparse();
	test_growth_failure();
	test_ready();
	test_wait_eintr();
	test_timeouts();
	test_flagnames();
	test_parse_flags();
	test_errname();
	test_check();
	test_default_num_fds();
	test_waker();

	fds_after = count_fds();
	CHECK(fds_after == fds_before, "descriptor leak: %d entries in /proc/self/fd, %d at the start",
	      fds_after, fds_before);

	printf("%d passed, %d failed\n", n_passed, n_failed);
	return n_failed > 0 ? 1 : 0;
}
