/*
 * signals.c: signals received on a signalfd (lepoll_core.h says what each
 * function promises), the names of signals, and the count of watchers per
 * signal that decides when a signal is blocked and when it is let go.
 *
 * The counts are the process's, under one mutex: Lua states on several
 * threads may watch the same signals. The mask they change is the calling
 * thread's (signals are blocked per thread). A signal is blocked when its
 * first watcher comes, and unblocked when its last one goes only if it
 * was not blocked already when the first came: a host that blocked it
 * itself keeps it blocked.
 */
#define _GNU_SOURCE /* NSIG */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "lepoll_core.h"

#if NSIG > LEP_SIGNAL_LIMIT
#error "NSIG is larger than lep_sigmask holds"
#endif

/* ------------------------------------------------------------- names */

/* The standard signals of this system, by the names kill -l gives them
 * without "SIG"; the aliases after them are read, never written. */
static const struct {
	const char *name;
	int sig;
} signal_names[] = {
	{"HUP", SIGHUP},       {"INT", SIGINT},       {"QUIT", SIGQUIT},   {"ILL", SIGILL},
	{"TRAP", SIGTRAP},     {"ABRT", SIGABRT},     {"BUS", SIGBUS},     {"FPE", SIGFPE},
	{"KILL", SIGKILL},     {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
	{"PIPE", SIGPIPE},     {"ALRM", SIGALRM},     {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
	{"CONT", SIGCONT},     {"STOP", SIGSTOP},     {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
	{"TTOU", SIGTTOU},     {"URG", SIGURG},       {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
	{"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},     {"WINCH", SIGWINCH}, {"SYS", SIGSYS},
#ifdef SIGSTKFLT
	{"STKFLT", SIGSTKFLT},
#endif
#ifdef SIGEMT
	{"EMT", SIGEMT},
#endif
#ifdef SIGIO
	{"IO", SIGIO},
#endif
#ifdef SIGPWR
	{"PWR", SIGPWR},
#endif
	/* aliases */
	{"IOT", SIGABRT},      {"CLD", SIGCHLD},
#ifdef SIGPOLL
	{"POLL", SIGPOLL},
#endif
};
#define NUM_SIGNAL_NAMES (sizeof signal_names / sizeof signal_names[0])

/* The C library's own signals (glibc's 32 and 33) are refused by
 * sigaddset: no set can watch them. */
static int reserved(int sig)
{
	sigset_t set;

	sigemptyset(&set);
	return sigaddset(&set, sig) != 0;
}

const char *lep_signal_name(int sig, char *buf)
{
	size_t i;

	if (sig >= SIGRTMIN && sig <= SIGRTMAX && !reserved(sig)) {
		/* As kill -l: the lower half from RTMIN up, the upper from RTMAX down. */
		int from_min = sig - SIGRTMIN, to_max = SIGRTMAX - sig;

		if (from_min <= (SIGRTMAX - SIGRTMIN) / 2)
			(void)snprintf(buf, LEP_SIGNAME_MAX, from_min ? "RTMIN+%d" : "RTMIN", from_min);
		else
			(void)snprintf(buf, LEP_SIGNAME_MAX, to_max ? "RTMAX-%d" : "RTMAX", to_max);
		return buf;
	}
	for (i = 0; i < NUM_SIGNAL_NAMES; i++)
		if (signal_names[i].sig == sig)
			return signal_names[i].name;
	return NULL;
}

/* "+n" or "-n" (sign given) after RTMIN or RTMAX: 0 and *n, or EINVAL. */
static int rt_offset(const char *s, size_t len, char sign, int *n)
{
	size_t i;
	int v = 0;

	if (len == 0) {
		*n = 0;
		return 0;
	}
	if (s[0] != sign || len < 2 || len > 4)
		return EINVAL;
	for (i = 1; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*n = v;
	return 0;
}

static int rt_by_name(const char *s, size_t len, int *sig)
{
	int n, v;

	if (len >= 5 && memcmp(s, "RTMIN", 5) == 0 && rt_offset(s + 5, len - 5, '+', &n) == 0)
		v = SIGRTMIN + n;
	else if (len >= 5 && memcmp(s, "RTMAX", 5) == 0 && rt_offset(s + 5, len - 5, '-', &n) == 0)
		v = SIGRTMAX - n;
	else
		return EINVAL;
	if (v < SIGRTMIN || v > SIGRTMAX)
		return EINVAL;
	*sig = v;
	return 0;
}

int lep_signal_by_name(const char *name, size_t len, int *sig)
{
	char up[LEP_SIGNAME_MAX];
	size_t i;

	if (len >= 3 && (name[0] == 'S' || name[0] == 's') && (name[1] == 'I' || name[1] == 'i') &&
	    (name[2] == 'G' || name[2] == 'g')) {
		name += 3;
		len -= 3;
	}
	if (len == 0 || len >= sizeof up)
		return EINVAL;
	for (i = 0; i < len; i++)
		up[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 'a' + 'A' : name[i]);
	up[len] = '\0';
	for (i = 0; i < NUM_SIGNAL_NAMES; i++) {
		if (strcmp(up, signal_names[i].name) == 0) {
			*sig = signal_names[i].sig;
			return 0;
		}
	}
	return rt_by_name(up, len, sig);
}

int lep_signal_watchable(int sig)
{
	char buf[LEP_SIGNAME_MAX];

	if (sig < 1 || sig >= NSIG)
		return LEP_SIG_UNKNOWN;
	if (reserved(sig))
		return LEP_SIG_RESERVED;
	if (lep_signal_name(sig, buf) == NULL)
		return LEP_SIG_UNKNOWN;
	if (sig == SIGKILL || sig == SIGSTOP)
		return LEP_SIG_UNCATCHABLE;
	if (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL)
		return LEP_SIG_SYNCHRONOUS;
	return LEP_SIG_OK;
}

/* ---------------------------------------------------- watchers, masks */

static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned watchers[NSIG];
static unsigned char blocked_before[NSIG]; /* at its first watcher's block */

/* mask as a sigset_t; EINVAL when it has a signal no set may watch. */
static int to_sigset(const lep_sigmask *mask, sigset_t *set)
{
	int sig;

	sigemptyset(set);
	for (sig = 1; sig < LEP_SIGNAL_LIMIT; sig++) {
		if (!lep_sigmask_has(mask, sig))
			continue;
		if (lep_signal_watchable(sig) != LEP_SIG_OK || sigaddset(set, sig) != 0)
			return EINVAL;
	}
	return 0;
}

/* Counts a watcher more for each signal of mask (all watchable); blocks
 * those that had none. 0, or pthread_sigmask's error and nothing done. */
static int acquire(const lep_sigmask *mask)
{
	sigset_t first, old;
	int sig, err;

	sigemptyset(&first);
	pthread_mutex_lock(&count_lock);
	for (sig = 1; sig < NSIG; sig++)
		if (lep_sigmask_has(mask, sig) && watchers[sig] == 0)
			sigaddset(&first, sig);
	err = pthread_sigmask(SIG_BLOCK, &first, &old);
	for (sig = 1; err == 0 && sig < NSIG; sig++) {
		if (!lep_sigmask_has(mask, sig))
			continue;
		if (watchers[sig]++ == 0)
			blocked_before[sig] = sigismember(&old, sig) == 1;
	}
	pthread_mutex_unlock(&count_lock);
	return err;
}

/* Counts a watcher less for each signal of mask; unblocks those left with
 * none that lepoll blocked. Unblocked after the lock is let go: a pending
 * signal is delivered then, and its handler runs without the lock held. */
static void release(const lep_sigmask *mask)
{
	sigset_t last;
	int sig;

	sigemptyset(&last);
	pthread_mutex_lock(&count_lock);
	for (sig = 1; sig < NSIG; sig++)
		if (lep_sigmask_has(mask, sig) && --watchers[sig] == 0 && !blocked_before[sig])
			sigaddset(&last, sig);
	pthread_mutex_unlock(&count_lock);
	(void)pthread_sigmask(SIG_UNBLOCK, &last, NULL); /* cannot fail: SIG_UNBLOCK is valid */
}

/* ---------------------------------------------------------- the set */

void lep_signals_init(lep_signals *s)
{
	s->fd = -1;
	memset(&s->mask, 0, sizeof s->mask);
}

int lep_signals_open(lep_signals *s, const lep_sigmask *mask)
{
	sigset_t set;
	int fd, err = to_sigset(mask, &set);

	if (err != 0)
		return err;
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return errno;
	err = acquire(mask);
	if (err != 0) {
		(void)close(fd); /* a descriptor nobody saw: nothing to report */
		return err;
	}
	s->fd = fd;
	s->mask = *mask;
	return 0;
}

int lep_signals_change(lep_signals *s, const lep_sigmask *mask)
{
	lep_sigmask added, dropped;
	sigset_t set;
	int i, err;

	if (s->fd < 0)
		return EBADF;
	err = to_sigset(mask, &set);
	if (err != 0)
		return err;
	for (i = 0; i < 2; i++) {
		added.bits[i] = mask->bits[i] & ~s->mask.bits[i];
		dropped.bits[i] = s->mask.bits[i] & ~mask->bits[i];
	}
	/* Blocked before the descriptor watches them, so none slips past. */
	err = acquire(&added);
	if (err != 0)
		return err;
	if (signalfd(s->fd, &set, SFD_NONBLOCK | SFD_CLOEXEC) < 0) {
		err = errno;
		release(&added);
		return err;
	}
	release(&dropped);
	s->mask = *mask;
	return 0;
}

int lep_signals_close(lep_signals *s)
{
	int fd = s->fd, err = 0;

	if (fd < 0)
		return 0;
	s->fd = -1;
	err = lep_close_fd(fd); /* EINTR: closed all the same */
	release(&s->mask);
	memset(&s->mask, 0, sizeof s->mask);
	return err;
}

int lep_signals_read(lep_signals *s, lep_siginfo *info)
{
	struct signalfd_siginfo si;
	ssize_t n;

	if (s->fd < 0)
		return EBADF;
	do
		n = read(s->fd, &si, sizeof si);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? EAGAIN : errno;
	if ((size_t)n != sizeof si)
		return EIO; /* the kernel gives whole records only */
	info->signo = (int)si.ssi_signo;
	info->code = si.ssi_code;
	info->pid = (int)si.ssi_pid;
	info->uid = si.ssi_uid;
	info->status = si.ssi_status;
	info->value = si.ssi_int;
	return 0;
}
