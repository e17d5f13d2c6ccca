/*
 * lepoll core: host names resolved off the caller's thread. No Lua here.
 *
 * A resolver is a queue of names, worker threads that call getaddrinfo on
 * them, and a queue of answers; an eventfd, readable while answers wait,
 * tells the caller's event loop when to take them. The caller's thread
 * never blocks on a lookup (only, briefly, on the queues' lock).
 *
 * Threads are started on demand, up to a maximum, and end after a while
 * without work. They block every signal, so signals keep going to the
 * program's own threads. Closing does not wait for a lookup under way: the
 * resolver's memory is freed by whichever of the owner and the threads
 * lets go of it last; a closed resolver writes to no descriptor.
 *
 * A resolver belongs to the process that opened it: in a child made by
 * fork (which has none of its threads) it refuses every call with ECHILD,
 * and closing it there only closes the child's copy of the descriptor
 * (the memory, which a lock held at the fork may guard, is left).
 *
 * Memory is malloc's (the threads cannot use the caller's allocator).
 * Functions that can fail return 0 or an errno value.
 */
#ifndef LEPOLL_RESOLVER_H
#define LEPOLL_RESOLVER_H

#include <stdint.h>
#include <netinet/in.h>

#include "lepoll_core.h"

typedef struct lep_resolver lep_resolver;

/* Address families a lookup can ask for. */
enum { LEP_FAMILY_ANY = 0, LEP_FAMILY_INET = 4, LEP_FAMILY_INET6 = 6 };

typedef struct lep_address {
	int family;                     /* LEP_FAMILY_INET or LEP_FAMILY_INET6 */
	char text[INET6_ADDRSTRLEN];    /* numeric, as inet_ntop writes it */
} lep_address;

/* One finished lookup: status 0 and count addresses (at least one), in
 * getaddrinfo's order without repeats; or status, getaddrinfo's EAI_*
 * code, and for EAI_SYSTEM sys_errno. */
typedef struct lep_answer {
	uint64_t id;
	int status;
	int sys_errno;
	int count;
	lep_address *addresses;
	struct lep_answer *next;
} lep_answer;

/* getaddrinfo's EAI_* code's name ("EAI_NONAME"), or NULL. */
LEP_HIDDEN const char *lep_eai_name(int status);

/* The most threads a resolver may run at once. */
#define LEP_RESOLVER_MAX_THREADS 64

/* A new resolver with at most max_threads threads (1..MAX): its eventfd is
 * non-blocking and close-on-exec. */
LEP_HIDDEN int lep_resolver_open(lep_resolver **out, int max_threads);
/* The eventfd: readable while answers wait. */
LEP_HIDDEN int lep_resolver_fd(const lep_resolver *r);
/* Queues a lookup of host (copied) and gives its id. EAGAIN when no
 * thread exists and none could be started; the request is then dropped. */
LEP_HIDDEN int lep_resolver_submit(lep_resolver *r, const char *host, int family, uint64_t *id);
/* The oldest answer, now the caller's (lep_answer_free), or NULL when none
 * waits; taking the last one empties the eventfd. */
LEP_HIDDEN lep_answer *lep_resolver_take(lep_resolver *r);
LEP_HIDDEN void lep_answer_free(lep_answer *a);
/* Forgets lookup id: queued, it never runs; under way, its answer is
 * dropped; answered, the answer goes. 1 when there was such a lookup. */
LEP_HIDDEN int lep_resolver_cancel(lep_resolver *r, uint64_t id);
/* Lookups queued or under way, and answers waiting. */
LEP_HIDDEN void lep_resolver_counts(lep_resolver *r, int *pending, int *answers, int *threads);
/* Lets go of r, which the caller must not use again: queued lookups and
 * waiting answers are dropped, the eventfd closed (close()'s errno
 * returned, never retried). */
LEP_HIDDEN int lep_resolver_close(lep_resolver *r);

#endif
