/* echo-loadgen: the load generator of the echo-server benchmark
 * (bench/echo.lua). Not part of lepoll.
 *
 *   echo-loadgen [-c CONNS] [-m BYTES] [-w WARMUP_S] [-d SECONDS]
 *                [-S SERVER_CPU] [-L LOADGEN_CPU] -- SERVER_COMMAND [ARG...]
 *
 * Starts the server command as its child, reads the port the server prints
 * on its stdout (a line `PORT`, or `listening on HOST:PORT` and anything
 * after), and opens CONNS connections to 127.0.0.1:PORT. Each
 * connection sends BYTES (a pattern that changes with every round trip),
 * waits until the same BYTES came back, checks them, and sends again. After
 * WARMUP_S seconds of this, the next SECONDS are measured. The server is
 * then ended with SIGTERM (SIGKILL if it lingers 2 s) and reaped, and one
 * line goes to stdout:
 *   rtps=R conns=C errors=0 roundtrips=N seconds=S server_cpu=X loadgen_cpu=Y machine_cpu=Z
 * (server_cpu, loadgen_cpu: CPUs busy during the measured window, from
 * /proc/PID/stat and CLOCK_PROCESS_CPUTIME_ID; server_cpu counts the
 * server's child processes too; machine_cpu: the whole machine's busy CPUs,
 * from /proc/stat, with the interrupt time no process is charged for, where
 * much of loopback TCP runs, and whatever else ran), or "failed: REASON", and
 * the exit status is 1: the first error (a wrong echo, a closed connection,
 * a server that died) ends the run, so a result line has errors=0.
 * -S and -L pin the server and this process to one CPU each (-1: not
 * pinned).
 *
 * The child gets PR_SET_PDEATHSIG SIGTERM, so a load generator that dies
 * takes its server along; it ends no other process than that child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PORT_TIMEOUT_MS 10000 /* a cold lua5.4 with luv or cqueues starts well within this */
#define STOP_TIMEOUT_MS 2000
#define CONNECT_TIMEOUT_S 5
#define MAX_EVENTS 256

struct conn {
	int fd;
	unsigned id, seq;  /* seq: round trips done, the pattern's seed */
	size_t sent, got;  /* of the current message */
	unsigned char *out, *in;
	int watching_out;
};

static struct {
	int conns, msg;
	double warmup, seconds;
	int server_cpu, loadgen_cpu;
} opt = { 100, 64, 0.5, 2.0, -1, -1 };

static char failure[256]; /* the first failure, for the result line */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	if (failure[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(failure, sizeof failure, fmt, ap);
	va_end(ap);
}

static int64_t now_ns(int clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof set, &set);
}

/* ---------------------------------------------------------- the server */

static pid_t start_server(char **argv, int *out)
{
	int p[2];
	pid_t parent = getpid(), pid;

	if (pipe2(p, O_CLOEXEC) != 0) {
		fail("pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		/* the parent may already be gone before prctl: then stop at once */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
			_exit(127);
		if (dup2(p[1], STDOUT_FILENO) < 0)
			_exit(127);
		if (opt.server_cpu >= 0 && pin_to(opt.server_cpu) != 0) {
			fprintf(stderr, "echo-loadgen: cannot pin the server to CPU %d: %s\n", opt.server_cpu,
			        strerror(errno));
			_exit(127);
		}
		execvp(argv[0], argv);
		fprintf(stderr, "echo-loadgen: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	if (pid < 0) {
		fail("fork: %s", strerror(errno));
		close(p[0]);
		return -1;
	}
	*out = p[0];
	return pid;
}

static void describe_status(char *buf, size_t size, int status)
{
	if (WIFEXITED(status))
		snprintf(buf, size, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "signal %d", WTERMSIG(status));
	else
		snprintf(buf, size, "status 0x%x", (unsigned)status);
}

/* The port of a port line: "PORT", or "listening on HOST:PORT" and anything
 * after (a server of several processes says how many); 0 if none. */
static int parse_port(char *line, char *nl)
{
	char *start = line, *end;
	long port;

	if (strncmp(line, "listening on ", 13) == 0) {
		end = line + 13;
		while (end < nl && *end != ' ')
			end++;
		nl = end;
		for (start = end; start > line + 13 && start[-1] != ':'; start--)
			;
	}
	port = strtol(start, &end, 10);
	if (end == start || end != nl || port < 1 || port > 65535)
		return 0;
	return (int)port;
}

/* The port line the server prints once it listens, or 0 (failure set). */
static int read_port(int fd, pid_t pid)
{
	char line[128];
	size_t len = 0;
	int64_t deadline = now_ns(CLOCK_MONOTONIC) + (int64_t)PORT_TIMEOUT_MS * 1000000;

	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		int64_t left = (deadline - now_ns(CLOCK_MONOTONIC)) / 1000000;
		ssize_t n;
		char *nl;
		int port;

		if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
			fail("server %d printed no port within %d ms", (int)pid, PORT_TIMEOUT_MS);
			return 0;
		}
		n = read(fd, line + len, sizeof line - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int status;
			char how[64] = "still running";

			if (waitpid(pid, &status, WNOHANG) == pid)
				describe_status(how, sizeof how, status);
			fail("server exited before printing its port (%s)", how);
			return 0;
		}
		len += (size_t)n;
		line[len] = '\0';
		nl = strchr(line, '\n');
		if (nl == NULL) {
			if (len == sizeof line - 1) {
				fail("server printed no port line");
				return 0;
			}
			continue;
		}
		port = parse_port(line, nl);
		if (port == 0)
			fail("server printed no port: %.*s", (int)(nl - line), line);
		return port;
	}
}

/* CPU seconds (user + system) the process has used, with those of the
 * children it reaped, from /proc/PID/stat; and those of its live children,
 * and theirs (/proc/PID/task/PID/children: a server's processes are
 * single-threaded): a server of several processes counts whole. */
static double proc_cpu_seconds(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long utime, stime, cutime, cstime;
	long child;
	double sum;
	size_t n;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name may hold spaces: fields count from its closing ')' */
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %lu %lu", &utime, &stime,
	                        &cutime, &cstime) != 4)
		return -1;
	sum = (double)(utime + stime + cutime + cstime) / (double)sysconf(_SC_CLK_TCK);
	snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
	f = fopen(path, "r");
	while (f != NULL && fscanf(f, "%ld", &child) == 1) {
		double c = proc_cpu_seconds((pid_t)child);

		if (c > 0) /* -1: it ended meanwhile, its time now its parent's */
			sum += c;
	}
	if (f != NULL)
		fclose(f);
	return sum;
}

/* CPU seconds the whole machine has been busy (all but idle and iowait,
 * /proc/stat), or -1. */
static double machine_cpu_seconds(void)
{
	unsigned long long v[8];
	FILE *f = fopen("/proc/stat", "r");
	int n = f == NULL ? 0 : fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
	                                &v[4], &v[5], &v[6], &v[7]);

	if (f != NULL)
		fclose(f);
	if (n != 8)
		return -1;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* SIGTERM, then SIGKILL if it lingers; reaps it. Fails if it had died before. */
static void stop_server(pid_t pid)
{
	int status, waited;
	char how[64];

	if (waitpid(pid, &status, WNOHANG) == pid) {
		describe_status(how, sizeof how, status);
		fail("server died during the run (%s)", how);
		return;
	}
	kill(pid, SIGTERM);
	for (waited = 0; waited < STOP_TIMEOUT_MS; waited += 5) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return;
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	fail("server ignored SIGTERM for %d ms", STOP_TIMEOUT_MS);
}

/* ------------------------------------------------------------ the load */

static void fill(struct conn *c)
{
	int i;

	for (i = 0; i < opt.msg; i++)
		c->out[i] = (unsigned char)(c->id * 131u + c->seq * 31u + (unsigned)i * 7u);
	c->sent = c->got = 0;
}

static int watch(int ep, struct conn *c, int out)
{
	struct epoll_event ev;

	ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
		fail("epoll_ctl: %s", strerror(errno));
		return -1;
	}
	c->watching_out = out;
	return 0;
}

/* Sends what is left of the message; watches OUT only while some is. */
static int send_rest(int ep, struct conn *c)
{
	while (c->sent < (size_t)opt.msg) {
		ssize_t n = send(c->fd, c->out + c->sent, (size_t)opt.msg - c->sent, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return c->watching_out ? 0 : watch(ep, c, 1);
			fail("connection %u: send: %s", c->id, strerror(errno));
			return -1;
		}
		c->sent += (size_t)n;
	}
	return c->watching_out ? watch(ep, c, 0) : 0;
}

/* Reads the echo; -> 1 when a round trip completed, 0 if not yet, -1. */
static int receive(struct conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->got, (size_t)opt.msg - c->got, 0);

		if (n > 0) {
			c->got += (size_t)n;
			if (c->got < (size_t)opt.msg)
				continue;
			if (memcmp(c->in, c->out, (size_t)opt.msg) != 0) {
				fail("connection %u: round trip %u: the echo differs from what was sent", c->id, c->seq);
				return -1;
			}
			return 1;
		}
		if (n == 0) {
			fail("connection %u: the server closed it", c->id);
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		fail("connection %u: recv: %s", c->id, strerror(errno));
		return -1;
	}
}

static int open_conns(int ep, struct conn *conns, int port)
{
	struct sockaddr_in addr;
	struct timeval connect_timeout = { CONNECT_TIMEOUT_S, 0 };
	int i, one = 1;

	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (i = 0; i < opt.conns; i++) {
		struct conn *c = &conns[i];
		struct epoll_event ev;

		/* blocking connect: the listen backlog completes it before the
		 * accept; a full backlog would retry SYNs for minutes */
		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->fd >= 0)
			setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &connect_timeout, sizeof connect_timeout);
		if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
			fail("connection %d: connect to port %d: %s", i, port,
			     errno == EINPROGRESS ? "timed out (listen backlog full?)" : strerror(errno));
			return -1;
		}
		/* a message split by the server must not wait for a delayed ACK */
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (fcntl(c->fd, F_SETFL, O_NONBLOCK) != 0) {
			fail("fcntl: %s", strerror(errno));
			return -1;
		}
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
			fail("epoll_ctl: %s", strerror(errno));
			return -1;
		}
	}
	return 0;
}

struct result {
	uint64_t roundtrips;
	double seconds, server_cpu, loadgen_cpu, machine_cpu;
};

/* Round trips on every connection: the warm-up, then the measured window. */
static int run_load(int ep, struct conn *conns, pid_t server, struct result *r)
{
	struct epoll_event evs[MAX_EVENTS];
	int64_t t = now_ns(CLOCK_MONOTONIC);
	int64_t phase_end = t + (int64_t)(opt.warmup * 1e9), t0 = 0, cpu0 = 0;
	double server_cpu0 = 0, machine_cpu0 = 0;
	int measuring = 0, i;

	for (i = 0; i < opt.conns; i++) {
		fill(&conns[i]);
		if (send_rest(ep, &conns[i]) != 0)
			return -1;
	}
	for (;;) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, (int)((phase_end - t + 999999) / 1000000));

		if (n < 0 && errno != EINTR) {
			fail("epoll_wait: %s", strerror(errno));
			return -1;
		}
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			int done;

			if ((evs[i].events & EPOLLOUT) && send_rest(ep, c) != 0)
				return -1;
			if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				continue;
			done = receive(c);
			if (done < 0)
				return -1;
			if (done) {
				r->roundtrips += (uint64_t)measuring;
				c->seq++;
				fill(c);
				if (send_rest(ep, c) != 0)
					return -1;
			}
		}
		t = now_ns(CLOCK_MONOTONIC);
		if (t < phase_end)
			continue;
		if (measuring)
			break;
		measuring = 1;
		t0 = t;
		phase_end = t0 + (int64_t)(opt.seconds * 1e9);
		cpu0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
		server_cpu0 = proc_cpu_seconds(server);
		machine_cpu0 = machine_cpu_seconds();
	}
	r->seconds = (double)(t - t0) / 1e9;
	r->loadgen_cpu = (double)(now_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0) / 1e9 / r->seconds;
	r->server_cpu = (proc_cpu_seconds(server) - server_cpu0) / r->seconds;
	r->machine_cpu = (machine_cpu_seconds() - machine_cpu0) / r->seconds;
	return 0;
}

/* --------------------------------------------------------------- main */

static void usage(void)
{
	fprintf(stderr, "usage: echo-loadgen [-c CONNS] [-m BYTES] [-w WARMUP_S] [-d SECONDS] "
	                "[-S SERVER_CPU] [-L LOADGEN_CPU] -- SERVER_COMMAND [ARG...]\n");
	exit(2);
}

static double number(const char *s, double min)
{
	char *end;
	double v = strtod(s, &end);

	if (*s == '\0' || *end != '\0' || !(v >= min))
		usage();
	return v;
}

int main(int argc, char **argv)
{
	struct conn *conns = NULL;
	unsigned char *bufs = NULL;
	struct result r = { 0, 0, 0, 0, 0 };
	int ch, i, ep = -1, out = -1, port;
	pid_t server = -1;

	while ((ch = getopt(argc, argv, "c:m:w:d:S:L:")) != -1) {
		switch (ch) {
		case 'c': opt.conns = (int)number(optarg, 1); break;
		case 'm': opt.msg = (int)number(optarg, 1); break;
		case 'w': opt.warmup = number(optarg, 0); break;
		case 'd': opt.seconds = number(optarg, 0.001); break;
		case 'S': opt.server_cpu = (int)number(optarg, -1); break;
		case 'L': opt.loadgen_cpu = (int)number(optarg, -1); break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();

	conns = calloc((size_t)opt.conns, sizeof *conns);
	bufs = malloc((size_t)opt.conns * (size_t)opt.msg * 2);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (conns == NULL || bufs == NULL || ep < 0)
		fail("out of memory or descriptors");
	if (failure[0] == '\0') {
		for (i = 0; i < opt.conns; i++) {
			conns[i].fd = -1;
			conns[i].id = (unsigned)i;
			conns[i].out = bufs + (size_t)i * (size_t)opt.msg * 2;
			conns[i].in = conns[i].out + opt.msg;
		}
		server = start_server(argv + optind, &out);
	}
	if (server > 0) {
		/* only now: the server would inherit this process's CPU */
		if (opt.loadgen_cpu >= 0 && pin_to(opt.loadgen_cpu) != 0)
			fail("cannot pin the load generator to CPU %d: %s", opt.loadgen_cpu, strerror(errno));
		port = failure[0] == '\0' ? read_port(out, server) : 0;
		if (port > 0 && open_conns(ep, conns, port) == 0)
			run_load(ep, conns, server, &r);
		stop_server(server);
	}
	for (i = 0; conns != NULL && i < opt.conns; i++)
		if (conns[i].fd >= 0)
			close(conns[i].fd);
	if (out >= 0)
		close(out);
	if (ep >= 0)
		close(ep);
	free(bufs);
	free(conns);

	if (failure[0] != '\0') {
		printf("failed: %s\n", failure);
		return 1;
	}
	printf("rtps=%.1f conns=%d errors=0 roundtrips=%llu seconds=%.3f server_cpu=%.2f loadgen_cpu=%.2f "
	       "machine_cpu=%.2f\n",
	       (double)r.roundtrips / r.seconds, opt.conns, (unsigned long long)r.roundtrips, r.seconds,
	       r.server_cpu, r.loadgen_cpu, r.machine_cpu);
	return 0;
}
