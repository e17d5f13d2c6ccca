/*
 * lepoll core: an epoll set kept as a user-level table mirrored with the
 * kernel's set, plus the buffer of ready events of the last wait.
 *
 * No Lua here. Every function that can fail returns 0 or an errno value;
 * on failure the set is exactly as it was before the call (remove is the
 * one documented exception). The struct is public so that a caller can
 * embed it; callers read it through the accessors below, never its fields.
 *
 * One job per file: epset.c (the table, epoll_ctl, epoll_wait), check.c
 * (lep_check against /proc/self/fdinfo), names.c (flag and errno names),
 * timeouts.c (seconds to milliseconds, the clock); fdio.c (one non-blocking
 * read or write on any descriptor, pipes, eventfds, close); signals.c
 * (signals received on a signalfd, their names, the process's blocked
 * signals); waker.c (values posted from any thread, signalled on an
 * eventfd); resolver.c, with its own header resolver.h, resolves host
 * names on worker threads; child.c, with child.h, starts child processes
 * and learns their end.
 */
#ifndef LEPOLL_CORE_H
#define LEPOLL_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#if defined(__GNUC__)
#define LEP_HIDDEN __attribute__((visibility("hidden")))
#else
#define LEP_HIDDEN
#endif

/* Same contract as lua_Alloc: nsize == 0 frees, otherwise (re)allocates. */
typedef void *(*lep_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

typedef struct lep_entry {
	uint32_t flags;
	uint32_t watched; /* 0 or 1; flags alone cannot say it, 0 is valid */
} lep_entry;

typedef struct lep_set {
	int epfd;        /* -1 when closed */
	int num_fds;     /* the table covers fds in [0, num_fds) */
	int max_ready;   /* capacity of the ready buffer */
	int count;       /* watched fds */
	int cap;         /* entries allocated in table, grows up to num_fds */
	int nready;      /* events stored by the last wait */
	lep_entry *table;
	struct epoll_event *ready;
	lep_alloc_fn alloc;
	void *alloc_ud;
} lep_set;

/* Kernel values, named so that callers need not include sys/epoll.h. */
#define LEP_IN        ((uint32_t)EPOLLIN)
#define LEP_OUT       ((uint32_t)EPOLLOUT)
#define LEP_PRI       ((uint32_t)EPOLLPRI)
#define LEP_ERR       ((uint32_t)EPOLLERR)
#define LEP_HUP       ((uint32_t)EPOLLHUP)
#define LEP_RDHUP     ((uint32_t)EPOLLRDHUP)
#define LEP_ET        ((uint32_t)EPOLLET)
#define LEP_ONESHOT   ((uint32_t)EPOLLONESHOT)
#define LEP_EXCLUSIVE ((uint32_t)EPOLLEXCLUSIVE)

/* Largest max_ready that epoll_wait accepts. */
#define LEP_MAX_READY ((int)(0x7fffffff / sizeof(struct epoll_event)))

/* Value of lep_check when the set is inconsistent (never an errno). */
#define LEP_INCONSISTENT (-1)

/* The soft RLIMIT_NOFILE, capped to INT_MAX: the default table range. */
LEP_HIDDEN int lep_default_num_fds(void);

/* Closed state: no descriptor, no memory. alloc NULL means realloc/free. */
LEP_HIDDEN void lep_init(lep_set *s, lep_alloc_fn alloc, void *ud);
/* From the closed state: allocate the ready buffer, epoll_create1(CLOEXEC). */
LEP_HIDDEN int lep_open(lep_set *s, int num_fds, int max_ready);
/* Idempotent. Frees everything; the descriptor is closed exactly once
 * (never retried, EINTR included). Returns close()'s errno, or 0. */
LEP_HIDDEN int lep_close(lep_set *s);

/* EPOLL_CTL_ADD when fd is not in the table, EPOLL_CTL_MOD when it is.
 * The table changes only when the kernel accepts. EINVAL, with no system
 * call, for what lep_exclusive_rule refuses. */
LEP_HIDDEN int lep_set_flags(lep_set *s, int fd, uint32_t flags);
/* Drops fd from the table, then EPOLL_CTL_DEL; the entry stays dropped when
 * the kernel refuses. Not watched: 0, no system call. */
LEP_HIDDEN int lep_remove(lep_set *s, int fd);

/* Reading the set. */
static inline int lep_is_open(const lep_set *s) { return s->epfd >= 0; }
static inline int lep_epfd(const lep_set *s) { return s->epfd; }
static inline int lep_num_fds(const lep_set *s) { return s->num_fds; }
static inline int lep_max_ready(const lep_set *s) { return s->max_ready; }
static inline int lep_count(const lep_set *s) { return s->count; }
static inline int lep_nready(const lep_set *s) { return s->nready; }
/* Event i (0 <= i < lep_nready) of the last wait: its fd and events. */
static inline int lep_ready_fd(const lep_set *s, int i) { return (int)s->ready[i].data.u64; }
static inline uint32_t lep_ready_events(const lep_set *s, int i) { return s->ready[i].events; }

/* 1 and *flags when fd is watched, else 0. */
static inline int lep_find(const lep_set *s, int fd, uint32_t *flags)
{
	if (fd < 0 || fd >= s->cap || !s->table[fd].watched)
		return 0;
	*flags = s->table[fd].flags;
	return 1;
}

/* The kernel takes EXCLUSIVE only with EPOLL_CTL_ADD and refuses every
 * EPOLL_CTL_MOD of an entry added with it. For lep_set_flags(s, fd, flags):
 * LEP_EXCLUSIVE_OK, or why it is refused. */
#define LEP_EXCLUSIVE_OK      0
#define LEP_EXCLUSIVE_ON_MOD  1 /* flags have EXCLUSIVE and fd is watched */
#define LEP_EXCLUSIVE_ENTRY   2 /* fd is watched, added with EXCLUSIVE */
LEP_HIDDEN int lep_exclusive_rule(const lep_set *s, int fd, uint32_t flags);

/* The first watched fd >= from, or -1. */
LEP_HIDDEN int lep_next(const lep_set *s, int from);

/* epoll_wait into the ready buffer. 0: nready events stored (0 = timeout).
 * On error (EINTR included) the ready set is empty. */
LEP_HIDDEN int lep_wait(lep_set *s, int timeout_ms);
static inline void lep_clear_ready(lep_set *s) { s->nready = 0; }

/* Seconds to epoll_wait milliseconds: <= 0 (or NaN) gives 0; otherwise
 * rounded to the nearest ms through whole nanoseconds, at least 1, clamped
 * to the largest timeout; +inf gives -1 (never). */
LEP_HIDDEN int lep_timeout_ms(double seconds);
/* The same for whole seconds. */
LEP_HIDDEN int lep_timeout_ms_int(long long seconds);

/* CLOCK_MONOTONIC in seconds. */
LEP_HIDDEN double lep_now(void);

/* One read(2) of at most max bytes into buf (fdio.c), retried on EINTR:
 * 0 and *got bytes (0 at end of file), or the errno (EAGAIN for
 * EWOULDBLOCK too). */
LEP_HIDDEN int lep_read(int fd, void *buf, size_t max, size_t *got);
/* One write of at most len bytes: send(2) with MSG_NOSIGNAL on a socket
 * (EPIPE rather than SIGPIPE), write(2) on anything else; retried on EINTR.
 * 0 and *put bytes, or the errno (EAGAIN for EWOULDBLOCK too). */
LEP_HIDDEN int lep_write(int fd, const void *buf, size_t len, size_t *put);
/* pipe2 with O_NONBLOCK and O_CLOEXEC on both ends: fds[0] reads, fds[1]
 * writes; both -1 on failure. */
LEP_HIDDEN int lep_pipe(int fds[2]);
/* An eventfd, non-blocking and close-on-exec, with counter `initial`;
 * semaphore: EFD_SEMAPHORE (a read takes 1, not the whole count). */
LEP_HIDDEN int lep_eventfd(unsigned int initial, int semaphore, int *fd);
/* close(2), never retried: EINTR counts as closed (Linux has released the
 * number). 0, or the errno (EBADF for a number not open). */
LEP_HIDDEN int lep_close_fd(int fd);

/* A waker: a queue of byte strings, appended to from any thread, and an
 * eventfd, readable exactly while a value is queued, that wakes the thread
 * of a Lua state to take them. Made by the Lua side (src/binding/waker.c),
 * which takes the values and is the one to close it; the host holds
 * references to post. Closing makes posts fail with EPIPE, frees the
 * queued values and closes the eventfd; the memory goes with the last
 * reference. Memory is malloc's: host threads post without a lua_State.
 * Like the resolver, a waker belongs to the process that made it: in a
 * forked child, post and take refuse with ECHILD, close closes only the
 * child's copy of the descriptor and release does nothing (the memory,
 * which a lock held at the fork may guard, is left).
 *
 * The struct's tag is the public name of lepoll.h, so that the C API hands
 * out the core's waker as it is. */
typedef struct lepoll_waker lep_waker;

/* One queued value: len bytes of data, a copy of what was posted. */
typedef struct lep_wake_value {
	struct lep_wake_value *next;
	size_t len;
	char data[];
} lep_wake_value;

/* A new waker, open, with one reference: the caller's. ENOMEM, or
 * eventfd's errno (EMFILE, ...). */
LEP_HIDDEN int lep_waker_open(lep_waker **out);
/* The eventfd (non-blocking, close-on-exec), -1 once closed. */
LEP_HIDDEN int lep_waker_fd(const lep_waker *w);
/* Any thread: queues a copy of len bytes (data may be NULL when len is 0).
 * 0, ENOMEM (the queue as it was), EPIPE once closed, EINVAL for NULL data
 * with len > 0, ECHILD in a forked child. */
LEP_HIDDEN int lep_waker_post(lep_waker *w, const void *data, size_t len);
/* The oldest value, now the caller's (lep_wake_value_free), or NULL when
 * none is queued; whenever the queue is left empty, the eventfd's counter
 * is read back to 0. 0, EBADF once closed, ECHILD in a forked child. */
LEP_HIDDEN int lep_waker_take(lep_waker *w, lep_wake_value **out);
/* Puts v, just taken, back at the head (the caller could not deliver it;
 * the one taker keeps the order so); freed instead when w was closed
 * meanwhile. */
LEP_HIDDEN void lep_waker_unget(lep_waker *w, lep_wake_value *v);
LEP_HIDDEN void lep_wake_value_free(lep_wake_value *v);
/* Values queued (0 in a forked child). */
LEP_HIDDEN size_t lep_waker_queued(lep_waker *w);
/* Idempotent: posts fail with EPIPE from now on, the queued values are
 * freed, the eventfd is closed (close()'s errno returned, never retried). */
LEP_HIDDEN int lep_waker_close(lep_waker *w);
/* Any thread: one reference more, or one less; the last one closes the
 * waker if needed and frees it. */
LEP_HIDDEN void lep_waker_retain(lep_waker *w);
LEP_HIDDEN void lep_waker_release(lep_waker *w);

/* "in|out|et", canonical order, unnamed bits as one hex literal at the end.
 * Returns the length; writes at most n bytes including the NUL. */
LEP_HIDDEN size_t lep_flagnames(uint32_t flags, char *buf, size_t n);
#define LEP_FLAGNAMES_MAX 64 /* always enough for lep_flagnames */

/* Names separated by '|', ',' or white space; case-insensitive. EINVAL on
 * an unknown name, whose place in s is given by *bad and *badlen. */
LEP_HIDDEN int lep_parse_flags(const char *s, size_t len, uint32_t *out,
                               size_t *bad, size_t *badlen);
/* One name, exactly (case-insensitive); EINVAL when unknown. */
LEP_HIDDEN int lep_flag_by_name(const char *name, size_t len, uint32_t *out);

/* "EPERM", "EBADF", ...; NULL when unknown. */
LEP_HIDDEN const char *lep_errname(int err);

/* Checks the set against itself and against the kernel's view
 * (/proc/self/fdinfo): every entry in both with the same flags, and each
 * kernel entry still watching the file its fd names now (inode and device:
 * a number closed while watched, its file kept open elsewhere, or reused,
 * is found). 0: consistent (a closed set is); LEP_INCONSISTENT with a
 * description in msg; or an errno when the kernel's view could not be
 * read. */
LEP_HIDDEN int lep_check(const lep_set *s, char *msg, size_t n);

/* ---- signals.c: signals as a descriptor.
 *
 * A lep_signals watches a set of signals with one signalfd. The signals
 * it watches are blocked (pthread_sigmask) so that they stay pending for
 * the descriptor instead of reaching their handler or default action.
 * Several sets, in one Lua state or several, may watch one signal: a
 * count of watchers per signal, kept for the whole process under a mutex,
 * blocks a signal when its count goes from 0 to 1 and unblocks it when it
 * goes back to 0, unless it was blocked already at that first block. The
 * mask is the calling thread's: a threaded host blocks the signals in
 * every thread itself (lepoll then finds them blocked and leaves them so).
 */

/* Signal n (1 <= n < LEP_SIGNAL_LIMIT) is bit n - 1; no system header
 * needed. LEP_SIGNAL_LIMIT is at least NSIG on every Linux port. The
 * functions ignore a number outside that range (has: 0). */
#define LEP_SIGNAL_LIMIT 129
typedef struct lep_sigmask {
	uint64_t bits[2];
} lep_sigmask;

static inline void lep_sigmask_add(lep_sigmask *m, int sig)
{
	unsigned b = (unsigned)sig - 1u;
	if (b < LEP_SIGNAL_LIMIT - 1)
		m->bits[b / 64] |= (uint64_t)1 << (b % 64);
}
static inline void lep_sigmask_del(lep_sigmask *m, int sig)
{
	unsigned b = (unsigned)sig - 1u;
	if (b < LEP_SIGNAL_LIMIT - 1)
		m->bits[b / 64] &= ~((uint64_t)1 << (b % 64));
}
static inline int lep_sigmask_has(const lep_sigmask *m, int sig)
{
	unsigned b = (unsigned)sig - 1u;
	return b < LEP_SIGNAL_LIMIT - 1 && ((m->bits[b / 64] >> (b % 64)) & 1);
}

typedef struct lep_signals {
	int fd;           /* the signalfd; -1 when closed */
	lep_sigmask mask; /* the signals watched (and counted) */
} lep_signals;

/* One signal read from the descriptor (struct signalfd_siginfo's fields). */
typedef struct lep_siginfo {
	int signo;
	int code;   /* si_code: SI_USER, SI_QUEUE, CLD_EXITED, ... */
	int pid;    /* the sender's (SIGCHLD: the child's) */
	unsigned uid; /* the sender's real user id */
	int status; /* SIGCHLD: exit status or signal number */
	int value;  /* sigqueue's int value (code SI_QUEUE) */
} lep_siginfo;

/* Whether a set may watch sig. */
#define LEP_SIG_OK          0
#define LEP_SIG_UNKNOWN     1 /* not a signal number of this system */
#define LEP_SIG_RESERVED    2 /* used by the C library's threads (32, 33) */
#define LEP_SIG_UNCATCHABLE 3 /* SIGKILL, SIGSTOP */
#define LEP_SIG_SYNCHRONOUS 4 /* SIGSEGV, SIGBUS, SIGFPE, SIGILL: blocking them is undefined */
LEP_HIDDEN int lep_signal_watchable(int sig);

/* "TERM", "RTMIN+3", "RTMAX-1" (no "SIG"); NULL for an unknown or reserved
 * number. buf holds at least LEP_SIGNAME_MAX bytes; the result is buf or
 * a constant string. */
#define LEP_SIGNAME_MAX 16
LEP_HIDDEN const char *lep_signal_name(int sig, char *buf);
/* A name as lep_signal_name gives it, with or without "SIG", in any case,
 * or an alias (IOT, POLL, CLD); RTMIN+n and RTMAX-n within the real-time
 * range. EINVAL when unknown. */
LEP_HIDDEN int lep_signal_by_name(const char *name, size_t len, int *sig);

/* Closed state. */
LEP_HIDDEN void lep_signals_init(lep_signals *s);
/* From the closed state: a signalfd (non-blocking, close-on-exec) for
 * mask, whose signals are then counted and blocked. EINVAL for a mask
 * with a signal lep_signal_watchable refuses; or signalfd's errno, and
 * nothing changed. */
LEP_HIDDEN int lep_signals_open(lep_signals *s, const lep_sigmask *mask);
/* The same descriptor watches mask from now on: the signals added are
 * counted and blocked first, the ones dropped released after. On failure
 * (EINVAL as open, signalfd's errno) everything is as before. */
LEP_HIDDEN int lep_signals_change(lep_signals *s, const lep_sigmask *mask);
/* Idempotent: closes the descriptor (never retried), then releases the
 * signals (unblocking those whose count reaches 0: a pending one is then
 * delivered at once). Returns close()'s errno, or 0. */
LEP_HIDDEN int lep_signals_close(lep_signals *s);
/* One pending signal; EAGAIN when none is. Retried on EINTR. */
LEP_HIDDEN int lep_signals_read(lep_signals *s, lep_siginfo *info);

static inline int lep_signals_is_open(const lep_signals *s) { return s->fd >= 0; }
static inline int lep_signals_fd(const lep_signals *s) { return s->fd; }

#endif
