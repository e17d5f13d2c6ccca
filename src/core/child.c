/*
 * child.c: child processes (child.h says what each function does).
 *
 * Every descriptor the child is given (a pipe's end, a standard stream, an
 * extra one) is first duplicated, close-on-exec, to a number above every
 * target number; the child then dup2s those to their targets, so no target
 * overwrites a source still to be copied (giving 3 as 4 and 4 as 3 works),
 * and dup2 clears close-on-exec on the targets only. Numbers between 3 and
 * the highest target that are no target are closed, and everything above
 * it (closefrom), so the child has exactly what it was given: LuaSocket's
 * sockets, for one, are not close-on-exec.
 */
#define _GNU_SOURCE /* pipe2, F_DUPFD_CLOEXEC, posix_spawn_file_actions_*_np */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"

extern char **environ;

#define MAX_GIVEN 64 /* extra descriptors per child, besides its three streams */

void lep_child_init(lep_child *c)
{
	c->pid = 0;
	c->parent = 0;
	c->pidfd = -1;
	c->pipes[0] = c->pipes[1] = c->pipes[2] = -1;
	c->how = LEP_CHILD_RUNNING;
	c->code = 0;
	c->group = 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		(void)lep_close_fd(*fd);
		*fd = -1;
	}
}

/* What one spawn holds until the child is started: the duplicates given to
 * it (sources[i] becomes targets[i]) and this process's pipe ends. */
typedef struct {
	int sources[3 + MAX_GIVEN];
	int targets[3 + MAX_GIVEN];
	int n;
	int ends[3];
} given;

static void release(given *g)
{
	int i;
	for (i = 0; i < g->n; i++)
		close_fd(&g->sources[i]);
	for (i = 0; i < 3; i++)
		close_fd(&g->ends[i]);
}

/* Gives fd to the child as target, through a duplicate above `above`. */
static int give(given *g, int fd, int target, int above)
{
	int dup = fcntl(fd, F_DUPFD_CLOEXEC, above + 1);
	if (dup < 0)
		return errno == EINVAL ? EMFILE : errno; /* EINVAL: above the limit */
	g->sources[g->n] = dup;
	g->targets[g->n++] = target;
	return 0;
}

/* Stream i as a pipe: the child's end given, this process's kept. */
static int give_pipe(given *g, int i, int above)
{
	int fds[2], err, child, mine;
	if (pipe2(fds, O_CLOEXEC) != 0)
		return errno;
	child = i == 0 ? fds[0] : fds[1];
	mine = i == 0 ? fds[1] : fds[0];
	err = give(g, child, i, above);
	(void)lep_close_fd(child);
	if (err == 0 && fcntl(mine, F_SETFL, O_NONBLOCK) != 0)
		err = errno;
	if (err != 0) {
		(void)lep_close_fd(mine);
		return err;
	}
	g->ends[i] = mine;
	return 0;
}

static int is_target(const lep_spawn_opts *o, int fd)
{
	int i;
	for (i = 0; i < o->nextra; i++)
		if (o->to[i] == fd)
			return 1;
	return 0;
}

/* The highest target, or EINVAL for a bad one. */
static int check_targets(const lep_spawn_opts *o, int *highest)
{
	int i, j;
	*highest = 2;
	if (o->nextra < 0 || o->nextra > MAX_GIVEN || o->stdio[0] == LEP_STDIO_STDOUT ||
	    o->stdio[1] == LEP_STDIO_STDOUT)
		return EINVAL;
	for (i = 0; i < o->nextra; i++) {
		if (o->to[i] < 3 || o->to[i] >= lep_default_num_fds())
			return EINVAL; /* (also keeps highest + 1 from overflowing) */
		for (j = 0; j < i; j++)
			if (o->to[j] == o->to[i])
				return EINVAL;
		if (o->to[i] > *highest)
			*highest = o->to[i];
	}
	return 0;
}

static int gather(const lep_spawn_opts *o, given *g, int highest)
{
	int i, err = 0;
	for (i = 0; i < 3 && err == 0; i++) {
		if (o->stdio[i] == LEP_STDIO_PIPE)
			err = give_pipe(g, i, highest);
		else if (o->stdio[i] >= 0)
			err = give(g, o->stdio[i], i, highest);
	}
	for (i = 0; i < o->nextra && err == 0; i++)
		err = give(g, o->from[i], o->to[i], highest);
	return err;
}

/* The streams in order (stderr may copy stdout), then the extra
 * descriptors; g holds the streams' sources first, in order. */
static int file_actions(const lep_spawn_opts *o, const given *g, int highest,
                        posix_spawn_file_actions_t *fa)
{
	int i, k = 0, err = 0;
	for (i = 0; i < 3 && err == 0; i++) {
		if (o->stdio[i] == LEP_STDIO_PIPE || o->stdio[i] >= 0)
			err = posix_spawn_file_actions_adddup2(fa, g->sources[k++], i);
		else if (o->stdio[i] == LEP_STDIO_NULL)
			err = posix_spawn_file_actions_addopen(fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
		else if (o->stdio[i] == LEP_STDIO_STDOUT)
			err = posix_spawn_file_actions_adddup2(fa, 1, 2);
	}
	for (; k < g->n && err == 0; k++)
		err = posix_spawn_file_actions_adddup2(fa, g->sources[k], g->targets[k]);
	for (i = 3; i < highest && err == 0; i++)
		if (!is_target(o, i))
			err = posix_spawn_file_actions_addclose(fa, i);
	if (err == 0)
		err = posix_spawn_file_actions_addclosefrom_np(fa, highest + 1);
	if (err == 0 && o->cwd != NULL)
		err = posix_spawn_file_actions_addchdir_np(fa, o->cwd);
	return err;
}

/* The child starts with no signal blocked and every action the default:
 * signals this process watches through a signalfd, or ignores, are not
 * the program's business. */
static int attributes(const lep_spawn_opts *o, posix_spawnattr_t *attr)
{
	sigset_t none, all;
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	int err;
	sigemptyset(&none);
	sigfillset(&all);
	err = posix_spawnattr_setsigmask(attr, &none);
	if (err == 0)
		err = posix_spawnattr_setsigdefault(attr, &all);
	if (err == 0 && o->newgroup) {
		flags |= POSIX_SPAWN_SETPGROUP;
		err = posix_spawnattr_setpgroup(attr, 0); /* its own pid */
	}
	if (err == 0)
		err = posix_spawnattr_setflags(attr, flags);
	return err;
}

int lep_spawn(const lep_spawn_opts *o, lep_child *c)
{
	given g;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	int highest, err, i;
	pid_t pid = 0;

	err = check_targets(o, &highest);
	if (err != 0)
		return err;
	g.n = 0;
	for (i = 0; i < 3 + MAX_GIVEN; i++)
		g.sources[i] = g.targets[i] = -1;
	g.ends[0] = g.ends[1] = g.ends[2] = -1;
	err = gather(o, &g, highest);
	if (err != 0) {
		release(&g);
		return err;
	}
	err = posix_spawn_file_actions_init(&fa);
	if (err != 0) {
		release(&g);
		return err;
	}
	err = posix_spawnattr_init(&attr);
	if (err == 0) {
		err = file_actions(o, &g, highest, &fa);
		if (err == 0)
			err = attributes(o, &attr);
		/* glibc reports a failed exec here, the child already reaped */
		if (err == 0)
			err = posix_spawnp(&pid, o->file, &fa, &attr, o->argv,
			                   o->envp != NULL ? o->envp : environ);
		(void)posix_spawnattr_destroy(&attr);
	}
	(void)posix_spawn_file_actions_destroy(&fa);
	for (i = 0; i < g.n; i++)
		close_fd(&g.sources[i]);
	if (err != 0) {
		release(&g);
		return err;
	}
	lep_child_init(c);
	c->pid = pid;
	c->parent = getpid();
	c->group = o->newgroup != 0;
	for (i = 0; i < 3; i++)
		c->pipes[i] = g.ends[i];
	/* No pidfd (a kernel before 5.3, or no descriptor left): the caller
	 * polls instead. */
	c->pidfd = pidfd_open(pid, 0);
	if (c->pidfd < 0)
		c->pidfd = -1;
	return 0;
}

static void record(lep_child *c, int status)
{
	if (WIFSIGNALED(status)) {
		c->how = LEP_CHILD_SIGNALED;
		c->code = WTERMSIG(status);
	} else {
		c->how = LEP_CHILD_EXITED;
		c->code = WEXITSTATUS(status);
	}
}

int lep_child_poll(lep_child *c, int block)
{
	int status = 0;
	pid_t r;

	if (c->how != LEP_CHILD_RUNNING || c->pid <= 0)
		return 0;
	do
		r = waitpid(c->pid, &status, block ? 0 : WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		int err = errno;
		c->how = LEP_CHILD_EXITED; /* gone: there is nothing more to learn */
		c->code = -1;
		return err;
	}
	if (r == c->pid)
		record(c, status);
	return 0;
}

int lep_child_kill(lep_child *c, int sig)
{
	int rc;
	if (c->pid <= 0 || c->how != LEP_CHILD_RUNNING)
		return ESRCH;
	/* Not reaped yet, so the number is still this child's either way. */
	if (c->pidfd >= 0)
		rc = pidfd_send_signal(c->pidfd, sig, NULL, 0);
	else
		rc = kill(c->pid, sig);
	return rc == 0 ? 0 : errno;
}

int lep_child_killgroup(lep_child *c, int sig)
{
	if (c->pid <= 0 || !c->group)
		return c->pid <= 0 ? ESRCH : EINVAL;
	return kill(-c->pid, sig) == 0 ? 0 : errno;
}

void lep_child_close_pipe(lep_child *c, int i)
{
	close_fd(&c->pipes[i]);
}

void lep_child_close(lep_child *c)
{
	int i;
	for (i = 0; i < 3; i++)
		close_fd(&c->pipes[i]);
	close_fd(&c->pidfd);
	/* In a forked copy of the process that started it, it is no child. */
	if (c->pid > 0 && c->how == LEP_CHILD_RUNNING && c->parent == getpid()) {
		(void)lep_child_poll(c, 0);
		if (c->how == LEP_CHILD_RUNNING) {
			(void)kill(c->pid, SIGKILL);
			(void)lep_child_poll(c, 1);
		}
	}
	c->pid = 0;
}
