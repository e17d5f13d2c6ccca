/* Shared by the test hosts in test/c: counting descriptors. */
#ifndef LEPOLL_TEST_FDS_H
#define LEPOLL_TEST_FDS_H

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Open descriptors of the process, and how many are epoll sets. */
static inline int count_fds(int *epolls)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char target[64];
	int n = 0;

	*epolls = 0;
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		ssize_t len;
		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		n++;
		len = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
		if (len > 0) {
			target[len] = '\0';
			*epolls += strcmp(target, "anon_inode:[eventpoll]") == 0;
		}
	}
	closedir(d);
	return n;
}

#endif
