/*
 * waker.c: a queue of byte strings that any thread appends to, and an
 * eventfd that tells the thread of a Lua state when to take them
 * (lepoll_core.h says what each function promises).
 *
 * One lock guards everything in the struct but owner_pid. The eventfd is
 * written and read only under the lock, and only on the queue's changes
 * between empty and not empty, so its counter is nonzero exactly while a
 * value is queued: a level-triggered watch reports it while values wait
 * and never after the last one is taken, and a burst of posts costs one
 * write(2), not one per value. Closing closes the eventfd under the same
 * lock, so a post never writes to a number reused meanwhile.
 *
 * Memory is malloc's: host threads post without a lua_State, so the
 * state's allocator is out of reach.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lepoll_core.h"

struct lepoll_waker {
	pthread_mutex_t lock;
	pid_t owner_pid;
	int efd;    /* -1 once closed */
	int refs;
	size_t queued;
	lep_wake_value *head, *tail;
};

static int foreign(const lep_waker *w)
{
	return getpid() != w->owner_pid;
}

static void free_values(lep_wake_value *v)
{
	while (v) {
		lep_wake_value *next = v->next;
		free(v);
		v = next;
	}
}

/* Under the lock, the queue just became non-empty. The counter is 0 here,
 * so the write cannot fail for want of room; nothing else can fail it on
 * an open eventfd. */
static void signal_values(lep_waker *w)
{
	uint64_t one = 1;
	ssize_t put = write(w->efd, &one, sizeof one);
	(void)put;
}

/* Under the lock, the queue is empty: the counter goes back to 0. Also
 * clears what a write by anyone else left there. */
static void quiet(lep_waker *w)
{
	uint64_t n;
	ssize_t got = read(w->efd, &n, sizeof n);
	(void)got; /* EAGAIN: it was 0 already */
}

/* Under the lock, open: v joins the queue, at its tail or at its head. */
static void enqueue(lep_waker *w, lep_wake_value *v, int at_head)
{
	if (!w->head) {
		v->next = NULL;
		w->head = w->tail = v;
	} else if (at_head) {
		v->next = w->head;
		w->head = v;
	} else {
		v->next = NULL;
		w->tail->next = v;
		w->tail = v;
	}
	if (w->queued++ == 0)
		signal_values(w);
}

int lep_waker_open(lep_waker **out)
{
	lep_waker *w;
	int rc;

	*out = NULL;
	w = calloc(1, sizeof *w);
	if (!w)
		return ENOMEM;
	rc = pthread_mutex_init(&w->lock, NULL);
	if (rc) {
		free(w);
		return rc;
	}
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		rc = errno;
		pthread_mutex_destroy(&w->lock);
		free(w);
		return rc;
	}
	w->owner_pid = getpid();
	w->refs = 1;
	*out = w;
	return 0;
}

int lep_waker_fd(const lep_waker *w)
{
	return w->efd;
}

int lep_waker_post(lep_waker *w, const void *data, size_t len)
{
	lep_wake_value *v;
	int rc = 0;

	if (len > 0 && data == NULL)
		return EINVAL;
	if (foreign(w))
		return ECHILD;
	if (len > SIZE_MAX - offsetof(lep_wake_value, data))
		return ENOMEM;
	v = malloc(offsetof(lep_wake_value, data) + len);
	if (!v)
		return ENOMEM;
	v->len = len;
	if (len > 0)
		memcpy(v->data, data, len);

	pthread_mutex_lock(&w->lock);
	if (w->efd < 0)
		rc = EPIPE;
	else
		enqueue(w, v, 0);
	pthread_mutex_unlock(&w->lock);
	if (rc)
		free(v);
	return rc;
}

int lep_waker_take(lep_waker *w, lep_wake_value **out)
{
	lep_wake_value *v;

	*out = NULL;
	if (foreign(w))
		return ECHILD;
	pthread_mutex_lock(&w->lock);
	if (w->efd < 0) {
		pthread_mutex_unlock(&w->lock);
		return EBADF;
	}
	v = w->head;
	if (v) {
		w->head = v->next;
		if (!w->head)
			w->tail = NULL;
		w->queued--;
		v->next = NULL;
	}
	if (!w->head)
		quiet(w);
	pthread_mutex_unlock(&w->lock);
	*out = v;
	return 0;
}

void lep_waker_unget(lep_waker *w, lep_wake_value *v)
{
	int closed;

	pthread_mutex_lock(&w->lock);
	closed = w->efd < 0;
	if (!closed)
		enqueue(w, v, 1);
	pthread_mutex_unlock(&w->lock);
	if (closed)
		free(v);
}

void lep_wake_value_free(lep_wake_value *v)
{
	free(v);
}

size_t lep_waker_queued(lep_waker *w)
{
	size_t n;

	if (foreign(w))
		return 0;
	pthread_mutex_lock(&w->lock);
	n = w->queued;
	pthread_mutex_unlock(&w->lock);
	return n;
}

int lep_waker_close(lep_waker *w)
{
	lep_wake_value *values;
	int efd, rc = 0;

	if (foreign(w)) {
		/* A forked child's copy: its lock may be held by a thread that
		 * does not exist here. Only the descriptor is the child's. */
		efd = w->efd;
		w->efd = -1;
		return efd >= 0 ? lep_close_fd(efd) : 0;
	}
	pthread_mutex_lock(&w->lock);
	efd = w->efd;
	w->efd = -1;
	values = w->head;
	w->head = w->tail = NULL;
	w->queued = 0;
	if (efd >= 0)
		rc = lep_close_fd(efd); /* EINTR: closed all the same */
	pthread_mutex_unlock(&w->lock);
	free_values(values);
	return rc;
}

void lep_waker_retain(lep_waker *w)
{
	pthread_mutex_lock(&w->lock);
	w->refs++;
	pthread_mutex_unlock(&w->lock);
}

void lep_waker_release(lep_waker *w)
{
	int last;

	if (foreign(w))
		return; /* as in lep_waker_close: the memory is left */
	pthread_mutex_lock(&w->lock);
	last = --w->refs == 0;
	pthread_mutex_unlock(&w->lock);
	if (last) {
		(void)lep_waker_close(w); /* nobody to tell */
		pthread_mutex_destroy(&w->lock);
		free(w);
	}
}
