/*
 * fdio.c: one non-blocking read or write on a descriptor, its outcome as
 * an errno value; the descriptors a script makes and closes itself: pipes,
 * eventfds (lepoll_core.h says what each returns).
 */
#define _GNU_SOURCE /* MSG_NOSIGNAL, pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
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

int lep_pipe(int fds[2])
{
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
		fds[0] = fds[1] = -1;
		return errno;
	}
	return 0;
}

int lep_eventfd(unsigned int initial, int semaphore, int *fd)
{
	*fd = eventfd(initial, EFD_NONBLOCK | EFD_CLOEXEC | (semaphore ? EFD_SEMAPHORE : 0));
	return *fd < 0 ? errno : 0;
}

int lep_close_fd(int fd)
{
	/* Linux releases the descriptor even when close is interrupted: a
	 * retry could close a number another thread has just been given. */
	if (close(fd) != 0 && errno != EINTR)
		return errno;
	return 0;
}
