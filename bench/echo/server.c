/* echo-server: the C contender of the echo-server benchmark
 * (bench/echo.lua), the design every Lua server follows: one listening
 * socket on 127.0.0.1, an ephemeral port printed on stdout once listening,
 * non-blocking accepted sockets, level-triggered epoll; on readable, read
 * what is there and write it back; what the socket does not take is kept,
 * and the connection is watched for OUT (not IN) until it is sent. Serves
 * until SIGTERM (the default action ends it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define READ_SIZE 4096

struct pending {
	char *data;
	size_t len, off;
};

static int ep;
static struct pending *pend; /* by descriptor */
static size_t npend;

static void die(const char *what)
{
	fprintf(stderr, "echo-server: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void watch(int op, int fd, unsigned events)
{
	struct epoll_event ev;

	ev.events = events;
	ev.data.fd = fd;
	if (epoll_ctl(ep, op, fd, &ev) != 0)
		die("epoll_ctl");
}

static void drop(int fd)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	free(pend[fd].data);
	memset(&pend[fd], 0, sizeof pend[fd]);
}

static void accept_one(int lfd)
{
	int one = 1, fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return; /* EAGAIN, or a connection gone before the accept */
	if ((size_t)fd >= npend) {
		size_t n = ((size_t)fd + 1) * 2;
		struct pending *p = realloc(pend, n * sizeof *p);

		if (p == NULL)
			die("realloc");
		memset(p + npend, 0, (n - npend) * sizeof *p);
		pend = p;
		npend = n;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	watch(EPOLL_CTL_ADD, fd, EPOLLIN);
}

/* Writes data; -> bytes written, or -1 when the connection failed. */
static ssize_t write_some(int fd, const char *data, size_t len)
{
	ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	return n;
}

static void on_readable(int fd)
{
	char buf[READ_SIZE];
	ssize_t n = recv(fd, buf, sizeof buf, 0), w;

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		drop(fd);
		return;
	}
	w = write_some(fd, buf, (size_t)n);
	if (w < 0) {
		drop(fd);
	} else if (w < n) {
		struct pending *p = &pend[fd];

		p->len = (size_t)(n - w);
		p->off = 0;
		p->data = malloc(p->len);
		if (p->data == NULL)
			die("malloc");
		memcpy(p->data, buf + w, p->len);
		watch(EPOLL_CTL_MOD, fd, EPOLLOUT);
	}
}

static void on_writable(int fd)
{
	struct pending *p = &pend[fd];
	ssize_t w = write_some(fd, p->data + p->off, p->len - p->off);

	if (w < 0) {
		drop(fd);
		return;
	}
	p->off += (size_t)w;
	if (p->off == p->len) {
		free(p->data);
		memset(p, 0, sizeof *p);
		watch(EPOLL_CTL_MOD, fd, EPOLLIN);
	}
}

int main(void)
{
	struct sockaddr_in addr;
	socklen_t alen = sizeof addr;
	struct epoll_event evs[MAX_EVENTS];
	int lfd;

	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 128) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0)
		die("listen on 127.0.0.1");
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	watch(EPOLL_CTL_ADD, lfd, EPOLLIN);
	printf("%d\n", ntohs(addr.sin_port));
	fflush(stdout);

	for (;;) {
		int i, n = epoll_wait(ep, evs, MAX_EVENTS, -1);

		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == lfd)
				accept_one(lfd);
			else if (pend[fd].data != NULL)
				on_writable(fd);
			else
				on_readable(fd);
		}
	}
}
