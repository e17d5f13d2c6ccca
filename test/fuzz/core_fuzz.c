/*
 * libFuzzer harness for the lepoll core (src/core), no Lua.
 * Built by `make fuzz` / `make fuzz-smoke` (mk/fuzz.mk) with
 * clang -fsanitize=fuzzer,address,undefined.
 *
 * Each input is a small program: two header bytes, then operations, each an
 * opcode byte and its arguments (missing bytes read as 0). They are applied
 * to NSETS sets and to a pool of descriptors the harness makes for the input
 * (two pipes, one of them moved to a high number, a socketpair, an eventfd
 * and /dev/null), and everything is closed at the end of the input.
 *
 * The harness keeps a model of each set: which fds are watched with which
 * flags, which of them the kernel still has (an fd closed behind the set's
 * back is gone from the kernel, not from the table), which ONESHOT entries
 * fired, and which sets watch which. It predicts the result of every call
 * (errno included) and checks after every operation that the core agrees:
 * count, lep_find on every fd, lep_next walks and the memory it holds, for
 * every set; and lep_check of every set the operation could have changed
 * (the others' tables and kernel sets are as before), which must be 0
 * unless an fd was closed while watched (then LEP_INCONSISTENT). After each
 * wait every event must be what poll(2) says of the fd right now, and a
 * level-triggered, armed, ready fd must be reported when the buffer had
 * room. A failed call must leave the set exactly as it was (lep_remove
 * drops the entry, as documented). lep_check must also find each kind of
 * damage done to a copy of a set (OP_CORRUPT).
 *
 * Allocation failures are injected through the set's allocator: fail the
 * Nth allocation from now (once, or from then on), from the header or from
 * an operation; lep_open also runs with RLIMIT_NOFILE lowered so that no
 * descriptor is free (EMFILE). Descriptors: the number of open fds must be
 * the same after each input as before it, and never above the first
 * input's. Flag names, flag parsing, errno names (against the C library's)
 * and the timeout conversions (NaN, infinities, any bit pattern) are
 * checked against reference code. Any disagreement prints what was
 * expected and aborts, which libFuzzer reports as a crash.
 *
 * LEPOLL_FUZZ_TRACE=1 in the environment prints each operation and its
 * result (for replaying a crash: build/fuzz/core_fuzz FILE).
 *
 * Input format (see also test/fuzz/make_corpus.lua):
 *   byte 0: allocator: bit 6 on: let N (bits 0-4) allocations through and
 *           fail the next (bit 5: and every one after); bit 7: set 2 uses
 *           the default allocator
 *   byte 1: the high pipe's fds are moved to >= 3 + byte 1
 *   then ops, opcode = byte % NUM_OPS (see the enum below).
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
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSETS   3
#define NSLOTS  8
#define MAXFD   1024 /* model range: every fd the harness makes is below */
#define MAX_OPS 256

/* EPOLLEXCLUSIVE is refused with any other bit than these (kernel's
 * EPOLLEXCLUSIVE_OK_BITS). */
#define EXCL_OK_BITS (LEP_IN | LEP_OUT | LEP_ERR | LEP_HUP | (uint32_t)EPOLLWAKEUP | LEP_ET | \
                      LEP_EXCLUSIVE)

/* ------------------------------------------------------------ failures */

static int trace;
static int cur_op = -1;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4), noreturn))
#endif
static void die(int line, const char *what, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "core_fuzz.c:%d: op %d: %s: ", line, cur_op, what);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

#define REQUIRE(cond, ...)                                  \
	do {                                                \
		if (!(cond))                                \
			die(__LINE__, "failed: " #cond, __VA_ARGS__); \
	} while (0)

static const char *ename(int err)
{
	static char buf[4][24];
	static int next;
	const char *n;
	char *b;

	if (err == 0)
		return "0";
	if (err == LEP_INCONSISTENT)
		return "LEP_INCONSISTENT";
	n = lep_errname(err);
	if (n != NULL)
		return n;
	b = buf[next++ % 4];
	snprintf(b, sizeof buf[0], "errno %d", err);
	return b;
}

#define REQUIRE_ERR(got, want, what, ...)                                         \
	do {                                                                      \
		int g_ = (got), w_ = (want);                                      \
		if (g_ != w_)                                                     \
			die(__LINE__, #got, "got %s, want %s; " what, ename(g_), \
			    ename(w_), __VA_ARGS__);                              \
	} while (0)

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void tr(const char *fmt, ...)
{
	va_list ap;

	if (!trace)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "[%3d] ", cur_op);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
}

/* ------------------------------------------------------------ decoding */

typedef struct input {
	const uint8_t *p;
	size_t n, i;
} input;

static uint8_t u8(input *in)
{
	return in->i < in->n ? in->p[in->i++] : 0;
}

static uint32_t u32(input *in)
{
	uint32_t v = 0;
	int k;

	for (k = 0; k < 4; k++)
		v |= (uint32_t)u8(in) << (8 * k);
	return v;
}

static uint64_t u64(input *in)
{
	uint64_t lo = u32(in);

	return lo | (uint64_t)u32(in) << 32;
}

/* One selector byte: bit 7 a raw 32-bit word follows; otherwise bits 0-6
 * are in, out, pri, rdhup, et, oneshot, exclusive and one more byte adds
 * err, hup, wakeup, 0x400, 0x40 (bits 0-4). */
static uint32_t decode_flags(input *in)
{
	static const uint32_t low[7] = {LEP_IN, LEP_OUT, LEP_PRI, LEP_RDHUP,
	                                LEP_ET, LEP_ONESHOT, LEP_EXCLUSIVE};
	static const uint32_t extra[5] = {LEP_ERR, LEP_HUP, (uint32_t)EPOLLWAKEUP, 0x400, 0x40};
	uint8_t sel = u8(in), x;
	uint32_t f = 0;
	int k;

	if (sel & 0x80)
		return u32(in);
	x = u8(in);
	for (k = 0; k < 7; k++)
		if (sel & (1u << k))
			f |= low[k];
	for (k = 0; k < 5; k++)
		if (x & (1u << k))
			f |= extra[k];
	return f;
}

/* ---------------------------------------------------------- allocator */

typedef struct memacct {
	long long bytes; /* held now, by the sizes the core reports */
	long blocks;
} memacct;

static int fail_at = -1;  /* allocations to let through before failing; -1 off */
static int fail_persist;  /* after the first failure, fail every one */
static int suspended;     /* the harness's own checks: no failures */
static long n_allocs;     /* allocation requests (nsize > 0) */
static long n_injected;   /* failures injected */

static void *fz_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	memacct *a = ud;
	void *q;

	if (nsize == 0) {
		if (ptr != NULL) {
			a->bytes -= (long long)osize;
			a->blocks--;
			REQUIRE(a->bytes >= 0 && a->blocks >= 0, "freed more than allocated");
		}
		free(ptr);
		return NULL;
	}
	n_allocs++;
	if (!suspended && fail_at >= 0) {
		if (fail_at == 0) {
			n_injected++;
			if (!fail_persist)
				fail_at = -1;
			return NULL;
		}
		fail_at--;
	}
	q = realloc(ptr, nsize);
	if (q == NULL)
		return NULL;
	a->bytes += (long long)nsize - (ptr != NULL ? (long long)osize : 0);
	if (ptr == NULL)
		a->blocks++;
	return q;
}

/* -------------------------------------------------------------- pool */

enum { K_PIPE_R, K_PIPE_W, K_SOCK, K_EVENTFD, K_DEVNULL, NUM_KINDS };
static const char *const kind_names[NUM_KINDS] = {"pipe-r", "pipe-w", "sock", "eventfd",
                                                  "devnull"};

typedef struct slot {
	int fd;   /* current, or the last number it had once closed */
	int open;
	int kind;
} slot;

static slot pool[NSLOTS];

/* ------------------------------------------------------------- model */

typedef struct mset {
	lep_set s;
	int open;
	int num_fds, max_ready;
	int custom; /* fz_alloc (else the default allocator) */
	memacct a;
	int count;
	uint32_t flags[MAXFD];
	uint8_t watched[MAXFD]; /* in the table */
	uint8_t reg[MAXFD];     /* in the kernel's set */
	uint8_t armed[MAXFD];   /* ONESHOT not fired since the last set */
} mset;

static mset sets[NSETS];

/* One past the highest fd the harness made in this input: no model entry
 * at or above it is ever set, so the checks stop there. */
static int fd_limit;

static void saw_fd(int fd)
{
	if (fd >= fd_limit)
		fd_limit = fd + 1;
}

enum { O_CLOSED, O_FOREIGN, O_SLOT, O_EPOLL };

/* What the number fd is now: closed, not the harness's, a pool slot or the
 * descriptor of an open set. *idx gets the slot or the set. */
static int classify(int fd, int *idx)
{
	int k;

	if (fd < 0)
		return O_CLOSED;
	for (k = 0; k < NSLOTS; k++)
		if (pool[k].open && pool[k].fd == fd) {
			*idx = k;
			return O_SLOT;
		}
	for (k = 0; k < NSETS; k++)
		if (sets[k].open && sets[k].s.epfd == fd) {
			*idx = k;
			return O_EPOLL;
		}
	return fcntl(fd, F_GETFD) == -1 ? O_CLOSED : O_FOREIGN;
}

/* The kernel forgets fd in every set when its last descriptor closes. */
static void forget_everywhere(int fd)
{
	int k;

	if (fd < 0 || fd >= MAXFD)
		return;
	for (k = 0; k < NSETS; k++)
		sets[k].reg[fd] = 0;
}

static int stale_entries(const mset *m)
{
	int fd, n = 0;

	for (fd = 0; fd < fd_limit; fd++)
		n += m->watched[fd] && !m->reg[fd];
	return n;
}

/* Does set `from` reach set `to` through the epoll descriptors it watches
 * (what the kernel's loop check walks)? */
static int reaches(int from, int to, int depth)
{
	int k;

	if (from == to)
		return 1;
	if (depth > NSETS)
		return 0;
	for (k = 0; k < NSETS; k++) {
		int fd = sets[k].s.epfd;
		if (k != from && sets[k].open && fd < MAXFD && sets[from].reg[fd] &&
		    reaches(k, to, depth + 1))
			return 1;
	}
	return 0;
}

/* ---------------------------------------------------------- snapshots */

typedef struct snap {
	lep_set s;
	lep_entry table[MAXFD];
	struct epoll_event ready[16];
	memacct a;
} snap;

static void take(snap *sn, const mset *m)
{
	sn->s = m->s;
	if (m->s.cap > 0 && m->s.cap <= MAXFD)
		memcpy(sn->table, m->s.table, (size_t)m->s.cap * sizeof sn->table[0]);
	if (m->s.nready > 0 && m->s.nready <= 16)
		memcpy(sn->ready, m->s.ready, (size_t)m->s.nready * sizeof sn->ready[0]);
	sn->a = m->a;
}

/* The set is exactly as in the snapshot. */
static void same(const snap *sn, const mset *m, const char *what)
{
	const lep_set *a = &sn->s, *b = &m->s;

	REQUIRE(a->epfd == b->epfd && a->num_fds == b->num_fds && a->max_ready == b->max_ready &&
	                a->count == b->count && a->cap == b->cap && a->nready == b->nready &&
	                a->table == b->table &&
	                a->ready == b->ready && a->alloc == b->alloc && a->alloc_ud == b->alloc_ud,
	        "%s changed the set's fields (count %d->%d, cap %d->%d)", what, a->count, b->count,
	        a->cap, b->cap);
	REQUIRE(b->cap <= 0 || memcmp(sn->table, b->table, (size_t)b->cap * sizeof sn->table[0]) == 0,
	        "%s changed the table", what);
	REQUIRE(b->nready <= 0 ||
	                memcmp(sn->ready, b->ready, (size_t)b->nready * sizeof sn->ready[0]) == 0,
	        "%s changed the ready set", what);
	REQUIRE(sn->a.bytes == m->a.bytes && sn->a.blocks == m->a.blocks,
	        "%s changed the memory held (%lld -> %lld bytes)", what, sn->a.bytes, m->a.bytes);
}

/* ------------------------------------------------------------ checks */

static int expected_check(const mset *m)
{
	return m->open && stale_entries(m) > 0 ? LEP_INCONSISTENT : 0;
}

/* Sets whose lep_check must run after the current operation (bit k): the
 * ones it could have changed. */
static unsigned touched;

/* Everything the core says about set k agrees with the model; lep_check
 * too when `kernel`. */
static void verify(int k, int kernel)
{
	mset *m = &sets[k];
	lep_set *s = &m->s;
	char msg[256];
	uint32_t fl;
	int fd, next, rc, want, lim;

	if (!m->open) {
		REQUIRE(s->epfd == -1 && s->table == NULL && s->ready == NULL && s->count == 0 &&
		                s->cap == 0 && s->nready == 0,
		        "set %d: closed state not clean", k);
		REQUIRE(lep_next(s, 0) == -1 && !lep_find(s, 0, &fl), "set %d: closed set has fds", k);
		REQUIRE(!m->custom || (m->a.bytes == 0 && m->a.blocks == 0),
		        "set %d: closed set holds %lld bytes in %ld blocks", k, m->a.bytes, m->a.blocks);
		if (!kernel)
			return;
		suspended = 1;
		rc = lep_check(s, msg, sizeof msg);
		suspended = 0;
		REQUIRE_ERR(rc, 0, "set %d closed", k);
		return;
	}
	REQUIRE(s->epfd >= 0 && s->num_fds == m->num_fds && s->max_ready == m->max_ready,
	        "set %d: fields", k);
	REQUIRE(s->count == m->count, "set %d: count %d, model %d", k, s->count, m->count);
	REQUIRE(s->cap >= 0 && s->cap <= s->num_fds && s->cap <= MAXFD, "set %d: cap %d of %d", k,
	        s->cap, s->num_fds);
	REQUIRE(s->nready >= 0 && s->nready <= s->max_ready, "set %d: nready %d", k, s->nready);
	/* Every fd up to past the table and the harness's fds. */
	lim = (s->cap > fd_limit ? s->cap : fd_limit) + 2;
	if (lim > MAXFD)
		lim = MAXFD;
	for (fd = 0; fd < lim; fd++) {
		int found = lep_find(s, fd, &fl);
		REQUIRE(found == m->watched[fd], "set %d: lep_find(%d) = %d, model %d", k, fd, found,
		        m->watched[fd]);
		REQUIRE(!found || fl == m->flags[fd], "set %d: fd %d flags 0x%x, model 0x%x", k, fd,
		        fl, m->flags[fd]);
		REQUIRE(!m->watched[fd] || fd < s->cap, "set %d: watched fd %d beyond cap %d", k, fd,
		        s->cap);
	}
	/* The walk visits exactly the watched fds, ascending. */
	next = lep_next(s, 0);
	for (fd = 0; fd < fd_limit; fd++) {
		if (!m->watched[fd])
			continue;
		REQUIRE(next == fd, "set %d: lep_next gave %d, model %d", k, next, fd);
		next = lep_next(s, fd + 1);
	}
	REQUIRE(next == -1, "set %d: lep_next past the last gave %d", k, next);
	if (m->custom) {
		long long want_bytes = (long long)s->max_ready * (long long)sizeof(struct epoll_event) +
		                       (long long)s->cap * (long long)sizeof(lep_entry);
		REQUIRE(m->a.bytes == want_bytes && m->a.blocks == 1 + (s->cap > 0),
		        "set %d: holds %lld bytes in %ld blocks, want %lld", k, m->a.bytes,
		        m->a.blocks, want_bytes);
	}
	if (!kernel)
		return;
	suspended = 1;
	rc = lep_check(s, msg, sizeof msg);
	suspended = 0;
	want = expected_check(m);
	REQUIRE_ERR(rc, want, "set %d: lep_check says \"%s\"", k, rc != 0 ? msg : "");
}

/* After each operation: the model of every set, lep_check of those the
 * operation touched (the others' tables and kernel sets did not change). */
static void verify_all(void)
{
	int k;

	for (k = 0; k < NSETS; k++)
		verify(k, (touched >> k) & 1);
	touched = 0;
}

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

/* ---------------------------------------------------------- descriptors */

static void xclose(int fd)
{
	REQUIRE(close(fd) == 0, "close(%d): %s", fd, strerror(errno));
}

/* fd moved to the lowest free number >= min (min < 0: kept). */
static int move_to(int fd, int min)
{
	int d;

	if (min < 0)
		return fd;
	d = fcntl(fd, F_DUPFD_CLOEXEC, min);
	REQUIRE(d >= 0, "F_DUPFD_CLOEXEC: %s", strerror(errno));
	xclose(fd);
	return d;
}

static void make_pool(int high)
{
	int p[2];

	REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	pool[0] = (slot){p[0], 1, K_PIPE_R};
	pool[1] = (slot){p[1], 1, K_PIPE_W};
	REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	pool[2] = (slot){move_to(p[0], high), 1, K_PIPE_R};
	pool[3] = (slot){move_to(p[1], high), 1, K_PIPE_W};
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) == 0,
	        "socketpair: %s", strerror(errno));
	pool[4] = (slot){p[0], 1, K_SOCK};
	pool[5] = (slot){p[1], 1, K_SOCK};
	p[0] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	REQUIRE(p[0] >= 0, "eventfd: %s", strerror(errno));
	pool[6] = (slot){p[0], 1, K_EVENTFD};
	p[0] = open("/dev/null", O_RDWR | O_CLOEXEC);
	REQUIRE(p[0] >= 0, "/dev/null: %s", strerror(errno));
	pool[7] = (slot){p[0], 1, K_DEVNULL};
	for (p[0] = 0; p[0] < NSLOTS; p[0]++) {
		REQUIRE(pool[p[0]].fd < MAXFD, "fd %d", pool[p[0]].fd);
		saw_fd(pool[p[0]].fd);
	}
}

/* A new descriptor of the given kind; for pipes and sockets the other end
 * is closed at once (hangup, error). */
static int make_one(int kind)
{
	int p[2], fd = -1;

	switch (kind) {
	case K_PIPE_R:
	case K_PIPE_W:
		REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
		fd = kind == K_PIPE_R ? p[0] : p[1];
		xclose(kind == K_PIPE_R ? p[1] : p[0]);
		break;
	case K_SOCK:
		REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) == 0,
		        "socketpair: %s", strerror(errno));
		fd = p[0];
		xclose(p[1]);
		break;
	case K_EVENTFD:
		fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		break;
	default:
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		break;
	}
	REQUIRE(fd >= 0 && fd < MAXFD, "new %s: %d (%s)", kind_names[kind], fd, strerror(errno));
	saw_fd(fd);
	return fd;
}

/* poll(2)'s view of fd: the mask the file reports, unfiltered. */
static uint32_t poll_raw(int fd)
{
	struct pollfd p;

	p.fd = fd;
	p.events = (short)-1;
	p.revents = 0;
	REQUIRE(poll(&p, 1, 0) >= 0, "poll(%d): %s", fd, strerror(errno));
	return (uint32_t)(unsigned short)p.revents;
}

/* ---------------------------------------------------------- fd operands */

/* An fd operand for set k: a pool slot (open or closed: its number), a
 * set's epoll descriptor, or a number around the set's ranges, or a literal.
 * Numbers that are open but not the harness's are never passed on. */
static int decode_fd(input *in, int k)
{
	const lep_set *s = &sets[k].s;
	uint8_t b = u8(in);
	int fd, idx;

	if (b < 0x40)
		return pool[b % NSLOTS].fd;
	if (b < 0x60)
		return sets[(b - 0x40) % NSETS].s.epfd;
	if (b < 0x80) {
		/* Around the set's range and table (num_fds + 1 saturates). */
		const int specials[] = {-1, INT_MIN, INT_MAX, s->num_fds, s->num_fds - 1,
		                        s->num_fds < INT_MAX ? s->num_fds + 1 : INT_MAX,
		                        s->cap, s->cap - 1, 15, 16, 17, 31, 32, 33, 63, 64,
		                        MAXFD - 1, MAXFD};
		fd = specials[(b - 0x60) % (int)(sizeof specials / sizeof specials[0])];
	} else if (b < 0xc0) {
		fd = u8(in);
	} else {
		fd = ((b & 0x3f) << 8) | u8(in);
	}
	if (classify(fd, &idx) == O_FOREIGN)
		fd = -2;
	return fd;
}

/* ------------------------------------------------------------- ops */

enum {
	OP_OPEN,
	OP_CLOSE,
	OP_SET,
	OP_REMOVE,
	OP_FIND,
	OP_NEXT,
	OP_WAIT,
	OP_CLEAR_READY,
	OP_WRITE,
	OP_READ,
	OP_SHUTDOWN,
	OP_CLOSE_FD,
	OP_REOPEN,
	OP_FLAGNAMES,
	OP_PARSE,
	OP_TIMEOUT,
	OP_TIMEOUT_INT,
	OP_FAIL,
	OP_CHECK,
	OP_REINIT,
	OP_ERRNAME,
	OP_BY_NAME,
	OP_SET2, /* a second opcode for the most useful ops */
	OP_WAIT2,
	OP_CORRUPT,
	OP_CLOCK,
	OP_OPEN_EMFILE,
	NUM_OPS
};

/* Every error the core gave has a name. */
static void named(int err)
{
	REQUIRE(err == 0 || lep_errname(err) != NULL, "no name for errno %d", err);
}

/* lep_open; with `emfile`, while the process has no descriptor left
 * (RLIMIT_NOFILE lowered to the lowest free number, then put back). */
static void op_open(input *in, int emfile)
{
	int k = u8(in) % NSETS;
	mset *m = &sets[k];
	uint8_t a = u8(in), b = u8(in);
	int nf, mr, rc, want;
	long inj = n_injected, allocs = n_allocs;
	struct rlimit saved, low;
	snap sn;

	if (a == 0xff)
		nf = 0;
	else if (a == 0xfe)
		nf = -1;
	else if (a == 0xfd)
		nf = INT_MAX;
	else if (a == 0xfc)
		nf = INT_MIN;
	else
		nf = a < 0x80 ? a + 1 : 128 + (a - 0x80) * 4;
	if (b == 0xff)
		mr = 0;
	else if (b == 0xfe)
		mr = -1;
	else if (b == 0xfd)
		mr = LEP_MAX_READY + 1;
	else if (b == 0xfc)
		mr = INT_MAX;
	else
		mr = 1 + b % 16;

	touched |= 1u << k;
	take(&sn, m);
	if (emfile) {
		int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the lowest free */
		REQUIRE(lowest >= 0 && getrlimit(RLIMIT_NOFILE, &saved) == 0, "rlimit");
		xclose(lowest);
		low = saved;
		low.rlim_cur = (rlim_t)lowest;
		REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0, "setrlimit: %s", strerror(errno));
	}
	rc = lep_open(&m->s, nf, mr);
	if (emfile)
		REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0, "setrlimit: %s", strerror(errno));
	tr("open set %d num_fds %d max_ready %d%s -> %s", k, nf, mr,
	   emfile ? " with no fd free" : "", ename(rc));
	named(rc);
	if (m->open)
		want = EBUSY;
	else if (nf < 1 || mr < 1 || mr > LEP_MAX_READY)
		want = EINVAL;
	else if (n_injected != inj)
		want = ENOMEM;
	else
		want = emfile ? EMFILE : 0;
	REQUIRE_ERR(rc, want, "open set %d (%d, %d)", k, nf, mr);
	REQUIRE(n_injected == inj || want == ENOMEM, "an allocation failed but open said %s",
	        ename(rc));
	if (m->custom)
		REQUIRE(want != EBUSY && want != EINVAL ? n_allocs == allocs + 1 : n_allocs == allocs,
		        "open made %ld allocations", n_allocs - allocs);
	if (rc != 0) {
		same(&sn, m, "a failed lep_open");
		return;
	}
	m->open = 1;
	m->num_fds = nf;
	m->max_ready = mr;
	m->count = 0;
	memset(m->watched, 0, sizeof m->watched);
	memset(m->reg, 0, sizeof m->reg);
	memset(m->flags, 0, sizeof m->flags);
	memset(m->armed, 0, sizeof m->armed);
	REQUIRE(m->s.epfd >= 0 && m->s.epfd < MAXFD, "epfd %d", m->s.epfd);
	saw_fd(m->s.epfd);
	REQUIRE(fcntl(m->s.epfd, F_GETFD) == FD_CLOEXEC, "epfd %d not close-on-exec", m->s.epfd);
	forget_everywhere(m->s.epfd); /* a new file at that number */
}

static void close_set(int k)
{
	mset *m = &sets[k];
	int was = m->s.epfd, rc;

	touched = ~0u; /* sets watching this one lose it */
	rc = lep_close(&m->s);
	tr("close set %d (epfd %d) -> %s", k, was, ename(rc));
	REQUIRE_ERR(rc, 0, "close set %d", k);
	if (m->open) {
		REQUIRE(fcntl(was, F_GETFD) == -1 && errno == EBADF, "epfd %d still open", was);
		forget_everywhere(was);
	}
	m->open = 0;
	m->count = 0;
	memset(m->watched, 0, sizeof m->watched);
	memset(m->reg, 0, sizeof m->reg);
	memset(m->flags, 0, sizeof m->flags);
	rc = lep_close(&m->s); /* idempotent */
	REQUIRE_ERR(rc, 0, "second close of set %d", k);
}

static void op_close(input *in)
{
	close_set(u8(in) % NSETS);
}

/* What the kernel answers to EPOLL_CTL_ADD/MOD of fd into set k. */
static int kernel_ctl(int k, int fd, uint32_t flags, int mod)
{
	const mset *m = &sets[k];
	int idx = -1, obj = classify(fd, &idx);

	if (obj == O_CLOSED)
		return EBADF;
	REQUIRE(obj != O_FOREIGN, "fd %d is not the harness's", fd);
	if (obj == O_SLOT && pool[idx].kind == K_DEVNULL)
		return EPERM;
	if (obj == O_EPOLL && idx == k)
		return EINVAL;
	if (flags & LEP_EXCLUSIVE) {
		if (mod || obj == O_EPOLL || (flags & ~EXCL_OK_BITS))
			return EINVAL;
	}
	if (mod) {
		if (!m->reg[fd])
			return ENOENT;
		return m->flags[fd] & LEP_EXCLUSIVE ? EINVAL : 0;
	}
	REQUIRE(fd < MAXFD && !m->reg[fd], "the kernel has fd %d but the table has not", fd);
	if (obj == O_EPOLL && reaches(idx, k, 0))
		return ELOOP;
	return 0;
}

static void do_set(int k, int fd, uint32_t flags)
{
	mset *m = &sets[k];
	lep_set *s = &m->s;
	int rc, want, watched, grows;
	long inj = n_injected, allocs = n_allocs;
	snap sn;

	touched |= 1u << k;
	take(&sn, m);
	watched = fd >= 0 && fd < MAXFD && m->watched[fd];
	grows = 0;
	rc = lep_set_flags(s, fd, flags);
	tr("set set %d fd %d flags 0x%x -> %s", k, fd, flags, ename(rc));
	named(rc);
	if (!m->open)
		want = EBADF;
	else if (fd < 0 || fd >= m->num_fds)
		want = EINVAL;
	else if (watched && ((flags | m->flags[fd]) & LEP_EXCLUSIVE))
		want = EINVAL; /* the core's exclusive rule, before any system call */
	else {
		want = kernel_ctl(k, fd, flags, watched);
		grows = want == 0 && !watched && fd >= sn.s.cap;
		if (grows && n_injected != inj)
			want = ENOMEM;
	}
	REQUIRE_ERR(rc, want, "set %d fd %d flags 0x%x (%s in the table)", k, fd, flags,
	            watched ? "watched" : "not");
	if (m->custom)
		REQUIRE(grows ? n_allocs == allocs + 1 : n_allocs == allocs,
		        "set_flags made %ld allocations (growth expected: %d)", n_allocs - allocs,
		        grows);
	if (rc != 0) {
		same(&sn, m, "a failed lep_set_flags");
		return;
	}
	REQUIRE(fd < MAXFD, "fd %d beyond the model", fd);
	if (grows) {
		REQUIRE(s->cap > fd && s->cap > sn.s.cap, "cap %d -> %d for fd %d", sn.s.cap, s->cap,
		        fd);
	} else {
		REQUIRE(s->cap == sn.s.cap && s->table == sn.s.table, "table moved without growth");
	}
	if (!watched) {
		m->watched[fd] = 1;
		m->count++;
	}
	m->reg[fd] = 1;
	m->armed[fd] = 1;
	m->flags[fd] = flags;
}

static void op_set(input *in)
{
	int k = u8(in) % NSETS;
	int fd = decode_fd(in, k);

	do_set(k, fd, decode_flags(in));
}

static void do_remove(int k, int fd)
{
	mset *m = &sets[k];
	int rc, want, watched, idx = -1, obj;
	snap sn;

	touched |= 1u << k;
	take(&sn, m);
	watched = fd >= 0 && fd < MAXFD && m->watched[fd];
	rc = lep_remove(&m->s, fd);
	tr("remove set %d fd %d -> %s", k, fd, ename(rc));
	named(rc);
	if (!m->open || !watched) {
		REQUIRE_ERR(rc, m->open ? 0 : EBADF, "remove set %d fd %d", k, fd);
		same(&sn, m, "lep_remove of an fd not watched");
		return;
	}
	obj = classify(fd, &idx);
	if (m->reg[fd])
		want = 0;
	else if (obj == O_CLOSED)
		want = EBADF;
	else if (obj == O_SLOT && pool[idx].kind == K_DEVNULL)
		want = EPERM;
	else if (obj == O_EPOLL && idx == k)
		want = EINVAL;
	else
		want = ENOENT;
	REQUIRE_ERR(rc, want, "remove set %d fd %d (%s)", k, fd,
	            m->reg[fd] ? "in the kernel" : "closed behind the set's back");
	m->watched[fd] = 0;
	m->reg[fd] = 0;
	m->flags[fd] = 0;
	m->count--;
}

static void op_remove(input *in)
{
	int k = u8(in) % NSETS;

	do_remove(k, decode_fd(in, k));
}

static void op_find(input *in)
{
	int k = u8(in) % NSETS;
	int fd = decode_fd(in, k), found;
	uint32_t fl = 0xdeadbeef;

	found = lep_find(&sets[k].s, fd, &fl);
	tr("find set %d fd %d -> %d 0x%x", k, fd, found, fl);
	if (fd < 0 || fd >= MAXFD) {
		REQUIRE(!found, "found fd %d", fd);
		return;
	}
	REQUIRE(found == sets[k].watched[fd], "find fd %d", fd);
	REQUIRE(found ? fl == sets[k].flags[fd] : fl == 0xdeadbeef, "find fd %d flags", fd);
}

static void op_next(input *in)
{
	int k = u8(in) % NSETS;
	const mset *m = &sets[k];
	int from = decode_fd(in, k), got, want = -1, fd;

	got = lep_next(&m->s, from);
	for (fd = from < 0 ? 0 : from; fd < fd_limit; fd++)
		if (m->watched[fd]) {
			want = fd;
			break;
		}
	tr("next set %d from %d -> %d", k, from, got);
	REQUIRE(got == want, "lep_next(%d) = %d, model %d", from, got, want);
}

static void op_wait(input *in)
{
	int k = u8(in) % NSETS;
	mset *m = &sets[k];
	lep_set *s = &m->s;
	uint8_t reported[MAXFD];
	int rc, i, fd, n, idx;

	touched |= 1u << k; /* ONESHOT entries fire */
	rc = lep_wait(s, 0);
	tr("wait set %d -> %s, %d events", k, ename(rc), s->nready);
	named(rc);
	if (!m->open) {
		REQUIRE_ERR(rc, EBADF, "wait on closed set %d", k);
		return;
	}
	if (rc != 0) {
		REQUIRE_ERR(rc, EINTR, "wait on set %d", k);
		REQUIRE(s->nready == 0, "failed wait left %d events", s->nready);
		return;
	}
	n = s->nready;
	REQUIRE(n >= 0 && n <= m->max_ready, "nready %d of %d", n, m->max_ready);
	memset(reported, 0, (size_t)fd_limit);
	for (i = 0; i < n; i++) {
		uint64_t d = s->ready[i].data.u64;
		uint32_t ev = s->ready[i].events, want;

		REQUIRE(d < (uint64_t)m->num_fds && d < MAXFD, "event %d names fd %llu", i,
		        (unsigned long long)d);
		fd = (int)d;
		tr("  event fd %d 0x%x", fd, ev);
		REQUIRE(fd < fd_limit, "event for fd %d, never made", fd);
		REQUIRE(m->watched[fd] && m->reg[fd] && m->armed[fd],
		        "event for fd %d: watched %d, in the kernel %d, armed %d", fd, m->watched[fd],
		        m->reg[fd], m->armed[fd]);
		REQUIRE(!reported[fd], "fd %d reported twice", fd);
		reported[fd] = 1;
		want = poll_raw(fd) & (m->flags[fd] | LEP_ERR | LEP_HUP);
		REQUIRE(ev != 0 && ev == want, "fd %d (flags 0x%x) reported 0x%x, poll says 0x%x", fd,
		        m->flags[fd], ev, want);
	}
	/* With room left, no level-triggered ready fd is missing. */
	if (n < m->max_ready) {
		for (fd = 0; fd < fd_limit; fd++) {
			uint32_t want;
			if (!m->watched[fd] || !m->reg[fd] || !m->armed[fd] || reported[fd] ||
			    (m->flags[fd] & LEP_ET) || classify(fd, &idx) == O_EPOLL)
				continue;
			want = poll_raw(fd) & (m->flags[fd] | LEP_ERR | LEP_HUP);
			REQUIRE(want == 0, "fd %d (flags 0x%x) is ready (0x%x) but not reported", fd,
			        m->flags[fd], want);
		}
	}
	for (i = 0; i < n; i++) {
		fd = (int)s->ready[i].data.u64;
		if (m->flags[fd] & LEP_ONESHOT)
			m->armed[fd] = 0;
	}
}

static void op_clear_ready(input *in)
{
	int k = u8(in) % NSETS;

	touched |= 1u << k;
	lep_clear_ready(&sets[k].s);
	tr("clear_ready set %d", k);
	REQUIRE(sets[k].s.nready == 0, "clear_ready");
}

static char iobuf[65536];

static void op_write(input *in)
{
	static const size_t sizes[] = {1, 7, 512, 4096, 65536, 8};
	int sl = u8(in) % NSLOTS;
	uint8_t b = u8(in);
	ssize_t r;

	if (!pool[sl].open)
		return;
	if (pool[sl].kind == K_EVENTFD) {
		uint64_t v = b & 1 ? UINT64_MAX - 1 : 1 + (b >> 1);
		r = write(pool[sl].fd, &v, sizeof v);
	} else {
		r = send(pool[sl].fd, iobuf, sizes[b % 6], MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0 && errno == ENOTSOCK)
			r = write(pool[sl].fd, iobuf, sizes[b % 6]);
	}
	tr("write slot %d (fd %d) -> %zd", sl, pool[sl].fd, r);
}

static void op_read(input *in)
{
	static const size_t sizes[] = {1, 8, 512, 4096, 65536, 3};
	int sl = u8(in) % NSLOTS;
	uint8_t b = u8(in);
	ssize_t r;

	if (!pool[sl].open)
		return;
	r = read(pool[sl].fd, iobuf, sizes[b % 6]);
	tr("read slot %d (fd %d) -> %zd", sl, pool[sl].fd, r);
}

static void op_shutdown(input *in)
{
	static const int how[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
	int sl = u8(in) % NSLOTS;
	uint8_t b = u8(in);

	if (!pool[sl].open || pool[sl].kind != K_SOCK)
		return;
	tr("shutdown slot %d (fd %d) %d", sl, pool[sl].fd, b % 3);
	(void)shutdown(pool[sl].fd, how[b % 3]);
}

/* Close a pool descriptor: removed from every set first, or behind the
 * sets' backs (their tables then keep it: lep_check must say so). */
static void op_close_fd(input *in)
{
	int sl = u8(in) % NSLOTS;
	int behind = u8(in) & 1, k, fd = pool[sl].fd;

	if (!pool[sl].open)
		return;
	touched = ~0u;
	tr("close slot %d (fd %d)%s", sl, fd, behind ? " behind the sets' backs" : "");
	if (!behind)
		for (k = 0; k < NSETS; k++)
			if (sets[k].open && sets[k].watched[fd])
				do_remove(k, fd);
	xclose(fd);
	pool[sl].open = 0;
	forget_everywhere(fd);
}

static void op_reopen(input *in)
{
	int sl = u8(in) % NSLOTS;
	uint8_t b = u8(in);
	int kind = b % NUM_KINDS, fd, old = pool[sl].fd, idx;

	if (pool[sl].open)
		return;
	fd = make_one(kind);
	/* Bit 7: at the old number, when it is free (an fd number reused
	 * while stale tables still name it). */
	if ((b & 0x80) && old >= 0 && old != fd && classify(old, &idx) == O_CLOSED) {
		REQUIRE(dup3(fd, old, O_CLOEXEC) == old, "dup3: %s", strerror(errno));
		xclose(fd);
		fd = old;
	}
	REQUIRE(fd < MAXFD, "fd %d", fd);
	saw_fd(fd);
	forget_everywhere(fd); /* new file: no set has it */
	touched = ~0u;
	pool[sl] = (slot){fd, 1, kind};
	tr("reopen slot %d as %s fd %d", sl, kind_names[kind], fd);
}

/* ------------------------------------------------------ names and flags */

static const struct {
	const char *name;
	uint32_t bit;
} names[] = {
	{"in", LEP_IN},       {"out", LEP_OUT},        {"pri", LEP_PRI},
	{"err", LEP_ERR},     {"hup", LEP_HUP},        {"rdhup", LEP_RDHUP},
	{"et", LEP_ET},       {"oneshot", LEP_ONESHOT}, {"exclusive", LEP_EXCLUSIVE},
};
#define NUM_NAMES (sizeof names / sizeof names[0])

static int ref_by_name(const char *s, size_t len, uint32_t *out)
{
	size_t i, k;

	for (i = 0; i < NUM_NAMES; i++) {
		if (strlen(names[i].name) != len)
			continue;
		for (k = 0; k < len; k++) {
			char c = s[k];
			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			if (c != names[i].name[k])
				break;
		}
		if (k == len) {
			*out = names[i].bit;
			return 0;
		}
	}
	return EINVAL;
}

static int is_sep(char c)
{
	return c == '|' || c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
	       c == '\r';
}

static int ref_parse(const char *s, size_t len, uint32_t *out, size_t *bad, size_t *badlen)
{
	size_t i = 0, start;
	uint32_t f = 0, bit;

	for (;;) {
		while (i < len && is_sep(s[i]))
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && !is_sep(s[i]))
			i++;
		if (ref_by_name(s + start, i - start, &bit) != 0) {
			*bad = start;
			*badlen = i - start;
			return EINVAL;
		}
		f |= bit;
	}
	*out = f;
	return 0;
}

static size_t ref_flagnames(uint32_t flags, char *buf)
{
	size_t i, len = 0;
	uint32_t rest = flags;

	buf[0] = '\0';
	for (i = 0; i < NUM_NAMES; i++) {
		if (!(flags & names[i].bit))
			continue;
		rest &= ~names[i].bit;
		len += (size_t)sprintf(buf + len, "%s%s", len ? "|" : "", names[i].name);
	}
	if (rest)
		len += (size_t)sprintf(buf + len, "%s0x%x", len ? "|" : "", (unsigned)rest);
	return len;
}

static void op_flagnames(input *in)
{
	uint32_t flags = decode_flags(in), back = 0;
	size_t n = u8(in) % (LEP_FLAGNAMES_MAX + 8), len, full, want, bad = 0, badlen = 0;
	char ref[128], big[LEP_FLAGNAMES_MAX];
	char *buf = malloc(n); /* exactly n bytes: ASan sees any overrun */
	int rc;

	REQUIRE(buf != NULL || n == 0, "malloc");
	want = ref_flagnames(flags, ref);
	len = lep_flagnames(flags, buf, n);
	full = lep_flagnames(flags, big, sizeof big);
	tr("flagnames 0x%x into %zu -> %zu \"%s\"", flags, n, len, big);
	REQUIRE(len == want && full == want && want < LEP_FLAGNAMES_MAX, "length %zu/%zu, want %zu",
	        len, full, want);
	REQUIRE(strcmp(big, ref) == 0, "\"%s\", want \"%s\"", big, ref);
	if (n > 0) {
		size_t k = len < n ? len : n - 1;
		REQUIRE(buf[k] == '\0' && memcmp(buf, ref, k) == 0, "truncated to %zu: wrong", n);
	}
	free(buf);
	/* And back: names parse to the named bits; a hex rest is refused. */
	rc = lep_parse_flags(big, full, &back, &bad, &badlen);
	if (strstr(big, "0x") == NULL) {
		REQUIRE(rc == 0 && back == flags, "parse(\"%s\") = %s 0x%x", big, ename(rc), back);
	} else {
		size_t at = (size_t)(strstr(big, "0x") - big);
		REQUIRE(rc == EINVAL && bad == at && badlen == full - at,
		        "parse(\"%s\") = %s bad %zu+%zu", big, ename(rc), bad, badlen);
	}
}

static void op_parse(input *in)
{
	size_t len = u8(in) % 80, i, bad = 7, badlen = 7, rbad = 7, rbadlen = 7;
	char *s = malloc(len ? len : 1); /* no NUL: reading past len is caught */
	uint32_t out = 0x5a5a5a5a, rout = 0x5a5a5a5a;
	int rc, want;

	REQUIRE(s != NULL, "malloc");
	for (i = 0; i < len; i++)
		s[i] = (char)u8(in);
	rc = lep_parse_flags(s, len, &out, &bad, &badlen);
	want = ref_parse(s, len, &rout, &rbad, &rbadlen);
	tr("parse %zu bytes -> %s 0x%x", len, ename(rc), out);
	REQUIRE_ERR(rc, want, "parse %zu bytes", len);
	if (rc == 0)
		REQUIRE(out == rout, "parse gave 0x%x, want 0x%x", out, rout);
	else
		REQUIRE(bad == rbad && badlen == rbadlen && bad + badlen <= len,
		        "bad %zu+%zu, want %zu+%zu", bad, badlen, rbad, rbadlen);
	free(s);
}

static void op_by_name(input *in)
{
	size_t len = u8(in) % 16, i;
	char *s = malloc(len ? len : 1);
	uint32_t out = 0, rout = 0;
	int rc, want;

	REQUIRE(s != NULL, "malloc");
	for (i = 0; i < len; i++)
		s[i] = (char)u8(in);
	rc = lep_flag_by_name(s, len, &out);
	want = ref_by_name(s, len, &rout);
	tr("by_name %zu bytes -> %s 0x%x", len, ename(rc), out);
	REQUIRE_ERR(rc, want, "flag_by_name of %zu bytes", len);
	REQUIRE(rc != 0 || out == rout, "flag_by_name 0x%x, want 0x%x", out, rout);
	free(s);
}

static void op_timeout(input *in)
{
	static const double specials[] = {
		0.0, -0.0, 1e-300, 4.9e-324, 0.0003, 0.0005, 0.0014999, 0.0015, 0.0025,
		1.0, -1.0, 2147483.647, 2147483.6475, 2147483.648, 1e300, DBL_MAX, -DBL_MAX,
	};
	uint8_t sel = u8(in);
	double x, up;
	int r, r2;

	if (sel < 0x20) {
		switch (sel % 20) {
		case 17: x = INFINITY; break;
		case 18: x = -INFINITY; break;
		case 19: x = NAN; break;
		default: x = specials[sel % 20]; break;
		}
	} else {
		uint64_t bits = u64(in);
		memcpy(&x, &bits, sizeof x);
	}
	r = lep_timeout_ms(x);
	tr("timeout_ms(%.17g) -> %d", x, r);
	if (!(x > 0)) {
		REQUIRE(r == 0, "timeout_ms(%.17g) = %d, want 0", x, r);
		return;
	}
	if (isinf(x)) {
		REQUIRE(r == -1, "timeout_ms(inf) = %d", r);
		return;
	}
	REQUIRE(r >= 1 && r <= INT_MAX, "timeout_ms(%.17g) = %d", x, r);
	if (x * 1000.0 < (double)INT_MAX - 1.0) {
		double ms = x * 1000.0;
		REQUIRE(ms < 0.5 ? r == 1 : fabs((double)r - ms) <= 0.5 + 1e-6,
		        "timeout_ms(%.17g) = %d, not the nearest ms", x, r);
	} else if (x > (double)INT_MAX / 1000.0) {
		REQUIRE(r == INT_MAX, "timeout_ms(%.17g) = %d, want INT_MAX", x, r);
	}
	/* Monotonic: the next double up never waits less. */
	up = nextafter(x, INFINITY);
	r2 = lep_timeout_ms(up);
	REQUIRE(r2 == -1 || r2 >= r, "timeout_ms not monotonic at %.17g: %d then %d", x, r, r2);
}

static void op_timeout_int(input *in)
{
	uint8_t sel = u8(in);
	long long v, want;
	int r;

	if (sel < 0x10) {
		static const long long sp[] = {0, -1, 1, LLONG_MIN, LLONG_MAX, INT_MAX / 1000,
		                               INT_MAX / 1000 + 1, INT_MAX, (long long)INT_MAX + 1};
		v = sp[sel % 9];
	} else {
		v = (long long)u64(in);
	}
	r = lep_timeout_ms_int(v);
	want = v <= 0 ? 0 : v > INT_MAX / 1000 ? INT_MAX : v * 1000;
	tr("timeout_ms_int(%lld) -> %d", v, r);
	REQUIRE(r == want, "timeout_ms_int(%lld) = %d, want %lld", v, r, want);
}

static void op_fail(input *in)
{
	uint8_t b = u8(in);

	if (b & 0x80) {
		fail_at = -1;
	} else {
		fail_at = b & 0x1f;
		fail_persist = (b & 0x20) != 0;
	}
	tr("fail at %d%s", fail_at, fail_persist ? " and after" : "");
}

/* lep_check into a small buffer, with allocation failures live. */
static void op_check(input *in)
{
	int k = u8(in) % NSETS;
	size_t n = u8(in) % 80;
	char *msg = malloc(n ? n : 1);
	long inj = n_injected;
	int rc, want;

	REQUIRE(msg != NULL, "malloc");
	rc = lep_check(&sets[k].s, n ? msg : NULL, n);
	want = n_injected != inj ? ENOMEM : expected_check(&sets[k]);
	tr("check set %d into %zu -> %s", k, n, ename(rc));
	REQUIRE_ERR(rc, want, "check set %d", k);
	REQUIRE(n_injected == inj || sets[k].custom, "default allocator failed");
	if (rc == LEP_INCONSISTENT && n > 0)
		REQUIRE(strlen(msg) < n && (n == 1 || msg[0] != '\0'), "message");
	free(msg);
}

/* A closed set may change its allocator. */
static void op_reinit(input *in)
{
	int k = u8(in) % NSETS;
	mset *m = &sets[k];

	if (m->open)
		return;
	m->custom = !(u8(in) & 1);
	lep_init(&m->s, m->custom ? fz_alloc : NULL, m->custom ? &m->a : NULL);
	tr("reinit set %d (%s allocator)", k, m->custom ? "failing" : "default");
}

/* Names agree with the C library's, where it has one. */
static void op_errname(input *in)
{
	uint8_t sel = u8(in);
	int e = sel < 0x80 ? sel : sel < 0xc0 ? -(sel - 0x80) : (int)u32(in);
	const char *n = lep_errname(e), *libc = strerrorname_np(e);

	tr("errname %d -> %s (libc %s)", e, n ? n : "NULL", libc ? libc : "NULL");
	REQUIRE(n == NULL || (libc != NULL && strcmp(n, libc) == 0), "errname %d: %s, libc %s", e,
	        n, libc ? libc : "NULL");
}

/* The clock never goes back; the default range is the soft limit. */
static void op_clock(void)
{
	static double last;
	double now = lep_now();
	struct rlimit rl;
	int want, got = lep_default_num_fds();

	REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
	want = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX ? INT_MAX
	       : rl.rlim_cur < 1                                   ? 1
	                                                           : (int)rl.rlim_cur;
	tr("now %.9f, default num_fds %d", now, got);
	REQUIRE(isfinite(now) && now >= last, "lep_now %.9f after %.9f", now, last);
	REQUIRE(got == want, "lep_default_num_fds %d, want %d", got, want);
	last = now;
}

/* A copy of set k with one thing broken: lep_check must find it. The copy
 * has its own table and ready buffer; the set itself is untouched. */
static void op_corrupt(input *in)
{
	int k = u8(in) % NSETS;
	const mset *m = &sets[k];
	uint8_t what = u8(in) % 12, b = u8(in);
	lep_set c = m->s;
	lep_entry *tab;
	struct epoll_event *rdy;
	char msg[200];
	int fd, rc, want = LEP_INCONSISTENT;
	const char *how = "";

	if (!m->open)
		return;
	tab = malloc(((size_t)c.cap + 1) * sizeof *tab);
	rdy = malloc((size_t)c.max_ready * sizeof *rdy);
	REQUIRE(tab != NULL && rdy != NULL, "malloc");
	if (c.cap > 0)
		memcpy(tab, c.table, (size_t)c.cap * sizeof *tab);
	memcpy(rdy, c.ready, (size_t)c.max_ready * sizeof *rdy);
	c.table = tab;
	c.ready = rdy;
	fd = c.cap > 0 ? b % c.cap : -1;
	switch (what) {
	case 0: /* a table larger than the range */
		how = "cap > num_fds";
		c.cap = c.num_fds < INT_MAX ? c.num_fds + 1 : -1;
		break;
	case 1:
		how = "watched mark 2";
		if (fd < 0)
			goto skip;
		tab[fd].watched = 2;
		break;
	case 2:
		how = "flags on an unwatched entry";
		if (fd < 0 || tab[fd].watched)
			goto skip;
		tab[fd].flags = LEP_IN;
		break;
	case 3:
		how = "count off";
		c.count += b & 1 ? 1 : -1;
		break;
	case 4:
		how = "nready beyond the buffer";
		c.nready = b & 1 ? c.max_ready + 1 : -1;
		break;
	case 5:
		how = "ready event out of range";
		c.nready = 1;
		rdy[0].data.u64 = (uint64_t)c.num_fds + b;
		break;
	case 6: /* a descriptor number with high bits set, as a stray write would */
		how = "ready event with high data bits";
		c.nready = 1;
		rdy[0].data.u64 = ((uint64_t)1 << (32 + b % 32)) | (uint64_t)(fd < 0 ? 0 : fd);
		break;
	case 7: /* in the table only */
		how = "entry the kernel does not have";
		if (fd < 0 || tab[fd].watched)
			goto skip;
		tab[fd].watched = 1;
		tab[fd].flags = LEP_IN;
		c.count++;
		break;
	case 8: /* in the kernel only */
	case 9: /* flags differ: ET is kept even by a fired ONESHOT entry */
		how = what == 8 ? "entry dropped from the table" : "ET flipped";
		if (fd < 0 || !tab[fd].watched || !m->reg[fd])
			goto skip;
		if (what == 8) {
			tab[fd].watched = 0;
			tab[fd].flags = 0;
			c.count--;
		} else {
			tab[fd].flags ^= LEP_ET;
		}
		break;
	case 10: /* the set's own descriptor gone */
		how = "epoll fd closed";
		c.epfd = MAXFD + 100 + b;
		if (fcntl(c.epfd, F_GETFD) != -1)
			goto skip;
		break;
	default: /* nothing broken: the copy agrees */
		how = "intact copy";
		want = expected_check(m);
		break;
	}
	suspended = 1;
	rc = lep_check(&c, msg, sizeof msg);
	suspended = 0;
	tr("corrupt set %d: %s -> %s \"%s\"", k, how, ename(rc), rc ? msg : "");
	/* A stale entry may be what the check reports first. */
	if (!(rc == LEP_INCONSISTENT && want == LEP_INCONSISTENT))
		REQUIRE_ERR(rc, want, "corrupt set %d: %s", k, how);
	REQUIRE(rc == 0 || msg[0] != '\0', "no message");
skip:
	free(tab);
	free(rdy);
}

/* ------------------------------------------------------------- driver */

static int baseline_fds = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *t = getenv("LEPOLL_FUZZ_TRACE");

	(void)argc;
	(void)argv;
	trace = t != NULL && *t != '\0' && strcmp(t, "0") != 0;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	input in = {data, size, 0};
	uint8_t h0 = u8(&in), h1 = u8(&in);
	int k, sl, before, after, nops = 0;

	before = count_fds();
	REQUIRE(before > 0, "cannot count descriptors");
	if (baseline_fds < 0)
		baseline_fds = before;
	/* Periodically, across inputs too: never more than at the start. */
	REQUIRE(before <= baseline_fds, "%d descriptors open, %d at the first input", before,
	        baseline_fds);

	n_allocs = n_injected = 0;
	fail_at = (h0 & 0x40) ? (h0 & 0x1f) : -1;
	fail_persist = (h0 & 0x20) != 0;
	for (k = 0; k < NSETS; k++) {
		mset *m = &sets[k];
		memset(m, 0, sizeof *m);
		m->custom = !(k == 2 && (h0 & 0x80));
		lep_init(&m->s, m->custom ? fz_alloc : NULL, m->custom ? &m->a : NULL);
	}
	fd_limit = 0;
	make_pool(3 + h1);
	cur_op = -1;
	touched = ~0u;
	tr("input of %zu bytes: pool %d %d %d %d %d %d %d %d", size, pool[0].fd, pool[1].fd,
	   pool[2].fd, pool[3].fd, pool[4].fd, pool[5].fd, pool[6].fd, pool[7].fd);
	verify_all();

	while (in.i < in.n && nops < MAX_OPS) {
		cur_op = nops++;
		switch (u8(&in) % NUM_OPS) {
		case OP_OPEN: op_open(&in, 0); break;
		case OP_OPEN_EMFILE: op_open(&in, 1); break;
		case OP_CORRUPT: op_corrupt(&in); break;
		case OP_CLOCK: op_clock(); break;
		case OP_CLOSE: op_close(&in); break;
		case OP_SET:
		case OP_SET2: op_set(&in); break;
		case OP_REMOVE: op_remove(&in); break;
		case OP_FIND: op_find(&in); break;
		case OP_NEXT: op_next(&in); break;
		case OP_WAIT:
		case OP_WAIT2: op_wait(&in); break;
		case OP_CLEAR_READY: op_clear_ready(&in); break;
		case OP_WRITE: op_write(&in); break;
		case OP_READ: op_read(&in); break;
		case OP_SHUTDOWN: op_shutdown(&in); break;
		case OP_CLOSE_FD: op_close_fd(&in); break;
		case OP_REOPEN: op_reopen(&in); break;
		case OP_FLAGNAMES: op_flagnames(&in); break;
		case OP_PARSE: op_parse(&in); break;
		case OP_TIMEOUT: op_timeout(&in); break;
		case OP_TIMEOUT_INT: op_timeout_int(&in); break;
		case OP_FAIL: op_fail(&in); break;
		case OP_CHECK: op_check(&in); break;
		case OP_REINIT: op_reinit(&in); break;
		case OP_ERRNAME: op_errname(&in); break;
		case OP_BY_NAME: op_by_name(&in); break;
		default: break;
		}
		verify_all();
	}

	cur_op = -2; /* the end */
	fail_at = -1;
	for (k = 0; k < NSETS; k++)
		close_set(k);
	touched = ~0u;
	verify_all();
	for (sl = 0; sl < NSLOTS; sl++)
		if (pool[sl].open) {
			xclose(pool[sl].fd);
			pool[sl].open = 0;
		}
	after = count_fds();
	REQUIRE(after == before, "descriptor leak: %d open before the input, %d after", before,
	        after);
	return 0;
}
