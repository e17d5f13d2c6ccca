/*
 * child.h: child processes (child.c). No Lua here: every function that can
 * fail returns 0 or an errno value. Not thread-safe per child; children of
 * different threads are independent.
 *
 * A child is started with posix_spawn: its standard streams each a pipe to
 * this process, this process's own, /dev/null or a given descriptor; more
 * descriptors given at chosen numbers; every other descriptor closed; the
 * signal mask empty and every signal's action the default. Its end is
 * learnt from a pidfd (readable once it has exited) where the kernel has
 * pidfd_open, else by polling lep_child_poll. Nothing of a child is left
 * behind: lep_child_close kills and reaps one still running.
 */
#ifndef LEPOLL_CHILD_H
#define LEPOLL_CHILD_H

#include <sys/types.h>

#include "lepoll_core.h"

/* What a standard stream of the child is, when not a descriptor (>= 0). */
#define LEP_STDIO_INHERIT (-1) /* this process's own */
#define LEP_STDIO_NULL    (-2) /* /dev/null */
#define LEP_STDIO_PIPE    (-3) /* a pipe; this process gets the other end */
#define LEP_STDIO_STDOUT  (-4) /* stderr only: wherever stdout goes */

/* How a child ended (lep_child.how). */
#define LEP_CHILD_RUNNING  0
#define LEP_CHILD_EXITED   1 /* code: its exit status */
#define LEP_CHILD_SIGNALED 2 /* code: the signal that ended it */

typedef struct {
	const char *file;  /* the program; looked up in PATH when it has no '/' */
	char *const *argv; /* argv[0] first, NULL at the end */
	char *const *envp; /* NULL: this process's environment */
	const char *cwd;   /* NULL: this process's */
	int stdio[3];      /* LEP_STDIO_* or a descriptor of this process */
	const int *from;   /* nextra descriptors of this process, each ... */
	const int *to;     /* ... the child's descriptor to[i] (>= 3, distinct) */
	int nextra;
	int newgroup;      /* 1: the child leads a process group of its own */
} lep_spawn_opts;

typedef struct {
	pid_t pid;     /* 0: none (not started, or closed) */
	pid_t parent;  /* the process that started it (a forked copy of this
	                * struct in another process only closes descriptors) */
	int pidfd;     /* -1: none (closed, or no pidfd_open) */
	int pipes[3];  /* this process's ends (stdin's writes, the others read),
	                * non-blocking and close-on-exec; -1 when none */
	int how;       /* LEP_CHILD_* */
	int code;
	int group;     /* 1: it leads a process group of its own */
} lep_child;

/* The empty child: nothing to close. */
LEP_HIDDEN void lep_child_init(lep_child *c);

/* Starts a child (c from lep_child_init). On failure nothing is left: no
 * process, no descriptor. EINVAL: a target number < 3 or given twice;
 * EBADF: a descriptor to give is not open; else the errno of pipe2, open,
 * posix_spawn (the program not found or not executable: ENOENT, EACCES,
 * ENOEXEC, ...). */
LEP_HIDDEN int lep_spawn(const lep_spawn_opts *o, lep_child *c);

/* Reaps the child if it has ended (without blocking, or blocking when
 * block is 1): then c->how and c->code tell how. 0, or ECHILD when it is no
 * child of this process any more (another waitpid took it, or SIGCHLD is
 * ignored: the kernel reaped it), which also marks it ended, code -1. */
LEP_HIDDEN int lep_child_poll(lep_child *c, int block);

/* Sends sig (through the pidfd when there is one). ESRCH once reaped. */
LEP_HIDDEN int lep_child_kill(lep_child *c, int sig);
/* Sends sig to the process group the child leads (started with newgroup),
 * also after the child itself was reaped while others of its group live. */
LEP_HIDDEN int lep_child_killgroup(lep_child *c, int sig);

/* Closes this process's pipe end for stream i (0, 1, 2). */
LEP_HIDDEN void lep_child_close_pipe(lep_child *c, int i);

/* Idempotent: closes the pipes and the pidfd; a child still running is
 * killed (SIGKILL) and reaped, so none is left behind, running or zombie
 * (in a forked copy of the process that started it: descriptors only).
 * Then pid is 0. */
LEP_HIDDEN void lep_child_close(lep_child *c);

#endif
