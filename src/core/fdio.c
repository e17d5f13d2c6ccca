/*
 * fdio.c: one non-blocking read or write on a descriptor, its outcome as
 * an errno value (lepoll_core.h says what each returns).
 */
#define _GNU_SOURCE /* MSG_NOSIGNAL */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lepoll_core.h"

int lep_read(int fd, void *buf, size_t max, size_t *got)
{
	ssize_t n;

	*got = 0;
	do
		n = read(fd, buf, max);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? EAGAIN : errno;
	*got = (size_t)n;
	return 0;
}

int lep_write(int fd, const void *buf, size_t len, size_t *put)
{
	ssize_t n;

	*put = 0;
	/* A socket is written with send(MSG_NOSIGNAL): a peer that went away
	 * is EPIPE, not SIGPIPE. Anything else with write(). */
	do
		n = send(fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == ENOTSOCK) {
		do
			n = write(fd, buf, len);
		while (n < 0 && errno == EINTR);
	}
	if (n < 0)
		return errno == EWOULDBLOCK ? EAGAIN : errno;
	*put = (size_t)n;
	return 0;
}
