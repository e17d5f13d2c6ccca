/*
 * resolver.c: getaddrinfo on worker threads, answers signalled on an
 * eventfd (resolver.h says what it promises).
 *
 * One lock guards everything in struct lep_resolver. A request is in one
 * place at a time: the queue, or a thread's hands (the running list, so
 * that cancel and close can mark it), and becomes an answer on the answer
 * list. The eventfd is written and read only under the lock, so its
 * counter is nonzero exactly while the answer list is not empty, and
 * close can close it without a thread writing to a reused number.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "resolver.h"

/* A thread with nothing to do for this long ends. */
#define IDLE_SECONDS 5

typedef int (*lep_resolver_open_fn)(lep_resolver **, int);

struct request {
	uint64_t id;
	int family;
	int cancelled;
	lep_answer *answer; /* made by submit, so that a lookup always ends in one */
	struct request *next;
	char host[];
};

static void free_request(struct request *q)
{
	lep_answer_free(q->answer);
	free(q);
}

struct lep_resolver {
	pthread_mutex_t lock;
	pthread_cond_t work;
	pid_t owner_pid;
	int efd;              /* -1 once closed */
	int closed;
	int refs;             /* the owner, while open, and each thread */
	int threads, idle, max_threads;
	int queued;           /* requests in the queue */
	uint64_t next_id;
	struct request *queue, *queue_tail;
	struct request *running; /* lookups in threads' hands */
	lep_answer *answers, *answers_tail;
};

static int foreign(const lep_resolver *r)
{
	return getpid() != r->owner_pid;
}

static void destroy(lep_resolver *r)
{
	pthread_cond_destroy(&r->work);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

const char *lep_eai_name(int status)
{
	switch (status) {
	case EAI_ADDRFAMILY: return "EAI_ADDRFAMILY";
	case EAI_AGAIN: return "EAI_AGAIN";
	case EAI_BADFLAGS: return "EAI_BADFLAGS";
	case EAI_FAIL: return "EAI_FAIL";
	case EAI_FAMILY: return "EAI_FAMILY";
	case EAI_MEMORY: return "EAI_MEMORY";
	case EAI_NODATA: return "EAI_NODATA";
	case EAI_NONAME: return "EAI_NONAME";
	case EAI_SERVICE: return "EAI_SERVICE";
	case EAI_SOCKTYPE: return "EAI_SOCKTYPE";
	case EAI_SYSTEM: return "EAI_SYSTEM";
	default: return NULL;
	}
}

void lep_answer_free(lep_answer *a)
{
	if (a) {
		free(a->addresses);
		free(a);
	}
}

static void unlink_running(lep_resolver *r, struct request *q)
{
	struct request **p = &r->running;
	while (*p && *p != q)
		p = &(*p)->next;
	if (*p)
		*p = q->next;
}

/* Fills a, q's answer, from getaddrinfo's results; out of memory, the
 * answer says ENOMEM. */
static void fill_answer(lep_answer *a, int status, int sys_errno, struct addrinfo *list)
{
	a->status = status;
	a->sys_errno = sys_errno;
	if (status != 0)
		return;
	int n = 0;
	for (struct addrinfo *ai = list; ai; ai = ai->ai_next)
		n++;
	a->addresses = calloc((size_t)(n > 0 ? n : 1), sizeof *a->addresses);
	if (!a->addresses) {
		a->status = EAI_SYSTEM;
		a->sys_errno = ENOMEM;
		return;
	}
	for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
		lep_address addr;
		const void *bytes;
		if (ai->ai_family == AF_INET) {
			addr.family = LEP_FAMILY_INET;
			bytes = &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr;
		} else if (ai->ai_family == AF_INET6) {
			addr.family = LEP_FAMILY_INET6;
			bytes = &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr;
		} else {
			continue;
		}
		if (!inet_ntop(ai->ai_family, bytes, addr.text, sizeof addr.text))
			continue;
		int seen = 0;
		for (int k = 0; k < a->count && !seen; k++)
			seen = strcmp(a->addresses[k].text, addr.text) == 0;
		if (!seen)
			a->addresses[a->count++] = addr;
	}
	if (a->count == 0)
		a->status = EAI_NONAME;
}

static void resolve_one(lep_resolver *r, struct request *q)
{
	struct addrinfo hints, *list = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = q->family == LEP_FAMILY_INET ? AF_INET : q->family == LEP_FAMILY_INET6 ? AF_INET6 : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int status = getaddrinfo(q->host, NULL, &hints, &list);
	fill_answer(q->answer, status, status == EAI_SYSTEM ? errno : 0, list);
	if (list)
		freeaddrinfo(list);

	pthread_mutex_lock(&r->lock);
	unlink_running(r, q);
	if (!q->cancelled && !r->closed) {
		lep_answer *a = q->answer;
		q->answer = NULL;
		if (r->answers_tail)
			r->answers_tail->next = a;
		else
			r->answers = a;
		r->answers_tail = a;
		uint64_t one = 1;
		/* Cannot fail short of a full counter (2^64-2 answers); the
		 * answer list is what counts anyway. */
		ssize_t w = write(r->efd, &one, sizeof one);
		(void)w;
	}
	pthread_mutex_unlock(&r->lock);
	free_request(q);
}

static void *worker(void *arg)
{
	lep_resolver *r = arg;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (!r->queue && !r->closed) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += IDLE_SECONDS;
			r->idle++;
			int rc = pthread_cond_timedwait(&r->work, &r->lock, &until);
			r->idle--;
			if (rc == ETIMEDOUT && !r->queue)
				goto out;
		}
		if (r->closed)
			break;
		struct request *q = r->queue;
		r->queue = q->next;
		r->queued--;
		if (!r->queue)
			r->queue_tail = NULL;
		q->next = r->running;
		r->running = q;
		pthread_mutex_unlock(&r->lock);
		resolve_one(r, q);
		pthread_mutex_lock(&r->lock);
	}
out:
	r->threads--;
	int last = --r->refs == 0;
	pthread_mutex_unlock(&r->lock);
	if (last)
		destroy(r);
	return NULL;
}

/* The threads run this file's code, and may still be running it after the
 * owner let go; a Lua state that closes unloads the C modules it loaded
 * (dlclose). So the first thread pins the shared object it lives in: a
 * second dlopen of it, RTLD_NODELETE, keeps it mapped until the process
 * ends. (Linked into a program, dladdr names the program: harmless.) */
static pthread_once_t pin_once = PTHREAD_ONCE_INIT;

static void pin_self(void)
{
	Dl_info info;
	void *code;
	lep_resolver_open_fn open_fn = lep_resolver_open;
	memcpy(&code, &open_fn, sizeof code); /* ISO C has no function-to-object cast */
	if (dladdr(code, &info) && info.dli_fname) {
		void *self = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
		(void)self; /* never closed: that is the point */
	}
}

/* Starts a detached worker with every signal blocked. Under the lock. */
static int start_thread(lep_resolver *r)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	int rc = pthread_once(&pin_once, pin_self);
	if (rc)
		return rc;
	rc = pthread_attr_init(&attr);
	if (rc)
		return rc;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&t, &attr, worker, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc == 0) {
		r->threads++;
		r->refs++;
	}
	return rc;
}

int lep_resolver_open(lep_resolver **out, int max_threads)
{
	*out = NULL;
	if (max_threads < 1 || max_threads > LEP_RESOLVER_MAX_THREADS)
		return EINVAL;
	lep_resolver *r = calloc(1, sizeof *r);
	if (!r)
		return ENOMEM;
	int rc = pthread_mutex_init(&r->lock, NULL);
	if (rc) {
		free(r);
		return rc;
	}
	rc = pthread_cond_init(&r->work, NULL);
	if (rc) {
		pthread_mutex_destroy(&r->lock);
		free(r);
		return rc;
	}
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->efd < 0) {
		rc = errno;
		destroy(r);
		return rc;
	}
	r->owner_pid = getpid();
	r->refs = 1;
	r->max_threads = max_threads;
	r->next_id = 1;
	*out = r;
	return 0;
}

int lep_resolver_fd(const lep_resolver *r)
{
	return r->efd;
}

int lep_resolver_submit(lep_resolver *r, const char *host, int family, uint64_t *id)
{
	if (foreign(r))
		return ECHILD;
	size_t len = strlen(host);
	struct request *q = malloc(sizeof *q + len + 1);
	if (!q)
		return ENOMEM;
	q->answer = calloc(1, sizeof *q->answer);
	if (!q->answer) {
		free(q);
		return ENOMEM;
	}
	memcpy(q->host, host, len + 1);
	q->family = family;
	q->cancelled = 0;
	q->next = NULL;

	pthread_mutex_lock(&r->lock);
	/* A thread more when the queue would outgrow the idle ones. */
	if (r->queued + 1 > r->idle && r->threads < r->max_threads) {
		int rc = start_thread(r);
		if (rc && r->threads == 0) {
			pthread_mutex_unlock(&r->lock);
			free_request(q);
			return rc;
		}
	}
	q->id = q->answer->id = r->next_id++;
	if (r->queue_tail)
		r->queue_tail->next = q;
	else
		r->queue = q;
	r->queue_tail = q;
	r->queued++;
	*id = q->id;
	pthread_cond_signal(&r->work);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* Under the lock: empties the eventfd once no answer waits. */
static void drain(lep_resolver *r)
{
	uint64_t n;
	if (!r->answers) {
		ssize_t got = read(r->efd, &n, sizeof n);
		(void)got; /* EAGAIN when it was empty already */
	}
}

lep_answer *lep_resolver_take(lep_resolver *r)
{
	if (foreign(r))
		return NULL;
	pthread_mutex_lock(&r->lock);
	lep_answer *a = r->answers;
	if (a) {
		r->answers = a->next;
		if (!r->answers)
			r->answers_tail = NULL;
		a->next = NULL;
	}
	drain(r);
	pthread_mutex_unlock(&r->lock);
	return a;
}

int lep_resolver_cancel(lep_resolver *r, uint64_t id)
{
	if (foreign(r))
		return 0;
	int found = 0;
	pthread_mutex_lock(&r->lock);
	struct request *prev = NULL;
	for (struct request *q = r->queue; q; prev = q, q = q->next) {
		if (q->id == id) {
			if (prev)
				prev->next = q->next;
			else
				r->queue = q->next;
			if (r->queue_tail == q)
				r->queue_tail = prev;
			r->queued--;
			free_request(q);
			found = 1;
			break;
		}
	}
	for (struct request *q = r->running; q && !found; q = q->next) {
		if (q->id == id) {
			q->cancelled = 1;
			found = 1;
		}
	}
	lep_answer *aprev = NULL;
	for (lep_answer *a = r->answers; a && !found; aprev = a, a = a->next) {
		if (a->id == id) {
			if (aprev)
				aprev->next = a->next;
			else
				r->answers = a->next;
			if (r->answers_tail == a)
				r->answers_tail = aprev;
			lep_answer_free(a);
			drain(r);
			found = 1;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return found;
}

void lep_resolver_counts(lep_resolver *r, int *pending, int *answers, int *threads)
{
	int p = 0, a = 0, t = 0;
	if (!foreign(r)) {
		pthread_mutex_lock(&r->lock);
		for (struct request *q = r->queue; q; q = q->next)
			p++;
		for (struct request *q = r->running; q; q = q->next)
			p += !q->cancelled;
		for (lep_answer *x = r->answers; x; x = x->next)
			a++;
		t = r->threads;
		pthread_mutex_unlock(&r->lock);
	}
	*pending = p;
	*answers = a;
	*threads = t;
}

int lep_resolver_close(lep_resolver *r)
{
	if (foreign(r)) {
		/* A forked child's copy: its lock may be held by a thread that
		 * does not exist here. Only the descriptor is the child's. */
		r->closed = 1;
		return close(r->efd) == 0 ? 0 : errno;
	}
	pthread_mutex_lock(&r->lock);
	r->closed = 1;
	while (r->queue) {
		struct request *q = r->queue;
		r->queue = q->next;
		free_request(q);
	}
	r->queue_tail = NULL;
	r->queued = 0;
	for (struct request *q = r->running; q; q = q->next)
		q->cancelled = 1;
	while (r->answers) {
		lep_answer *a = r->answers;
		r->answers = a->next;
		lep_answer_free(a);
	}
	r->answers_tail = NULL;
	int rc = close(r->efd) == 0 ? 0 : errno;
	r->efd = -1;
	pthread_cond_broadcast(&r->work);
	int last = --r->refs == 0;
	pthread_mutex_unlock(&r->lock);
	if (last)
		destroy(r);
	return rc;
}
