/* lepoll core: lep_check, the set against itself and against the kernel's
 * view of it in /proc/self/fdinfo. No Lua. */
#define _POSIX_C_SOURCE 200809L

#include "lepoll_core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* A device number as the kernel prints it in fdinfo (new_encode_dev). */
static unsigned int encode_dev(dev_t dev)
{
	unsigned int ma = major(dev), mi = minor(dev);

	return (mi & 0xffu) | (ma << 8) | ((mi & ~0xffu) << 12);
}

/* The kernel always watches these, whatever was asked. */
#define KERNEL_ADDED (LEP_ERR | LEP_HUP)
/* What the kernel keeps of a ONESHOT entry once it fired (EP_PRIVATE_BITS). */
#define KERNEL_KEPT_DISARMED (LEP_ONESHOT | LEP_ET | LEP_EXCLUSIVE | (uint32_t)EPOLLWAKEUP)

/* Kernel flags that agree with the table's: the kernel adds err|hup to
 * every entry, keeps only its private bits of a ONESHOT entry that fired,
 * and drops EPOLLWAKEUP without CAP_BLOCK_SUSPEND. */
static int kernel_agrees(uint32_t table_flags, uint32_t kernel_flags)
{
	uint32_t want = (table_flags | KERNEL_ADDED) & ~(uint32_t)EPOLLWAKEUP;
	uint32_t got = kernel_flags & ~(uint32_t)EPOLLWAKEUP;

	if (got == want)
		return 1;
	return (table_flags & LEP_ONESHOT) && got == (want & KERNEL_KEPT_DISARMED);
}

static int fail(char *msg, size_t n, const char *what, int a, int b)
{
	(void)snprintf(msg, n, "%s (%d, %d)", what, a, b);
	return LEP_INCONSISTENT;
}

static int check_table(const lep_set *s, char *msg, size_t n)
{
	int fd, count = 0, i;

	if (s->cap < 0 || s->cap > s->num_fds || (s->cap > 0 && s->table == NULL))
		return fail(msg, n, "table size outside the watched range", s->cap, s->num_fds);
	for (fd = 0; fd < s->cap; fd++) {
		if (s->table[fd].watched > 1)
			return fail(msg, n, "corrupt table entry (fd, mark)", fd, (int)s->table[fd].watched);
		if (!s->table[fd].watched && s->table[fd].flags != 0)
			return fail(msg, n, "unwatched entry keeps flags (fd, flags)", fd,
			            (int)s->table[fd].flags);
		count += (int)s->table[fd].watched;
	}
	if (count != s->count)
		return fail(msg, n, "watched fds in the table differ from its count", count, s->count);
	if (s->nready < 0 || s->nready > s->max_ready)
		return fail(msg, n, "ready events outside the buffer (events, capacity)", s->nready,
		            s->max_ready);
	for (i = 0; i < s->nready; i++)
		if (s->ready[i].data.u64 >= (uint64_t)s->num_fds)
			return fail(msg, n, "ready event names an fd out of the table's range (event, range)",
			            i, s->num_fds);
	return 0;
}

/* The kernel's entry for fd watches the file it had when it was added:
 * the inode and device fdinfo shows. The number may since have been
 * closed while another descriptor (a dup, a child process) kept that file
 * open, so that the kernel kept the entry, and even reused for another
 * file, whose events the entry never reports (and the old file's events
 * come under the new number). Files on the one anonymous inode (eventfd,
 * timerfd, signalfd, epoll) all look alike here. */
static int check_same_file(int fd, int reading_fd, unsigned long ino, unsigned int sdev,
                           char *msg, size_t n)
{
	struct stat st;

	/* The number this check reads fdinfo with was free when it opened it. */
	if (fd == reading_fd || fstat(fd, &st) != 0) {
		(void)snprintf(msg, n, "fd %d is watched but closed: the kernel keeps its entry while "
		               "another descriptor holds the file open (remove before close)", fd);
		return LEP_INCONSISTENT;
	}
	if ((unsigned long)st.st_ino != ino || encode_dev(st.st_dev) != sdev) {
		(void)snprintf(msg, n, "fd %d names another file than the kernel's entry watches: it "
		               "was closed while watched and reused (remove before close)", fd);
		return LEP_INCONSISTENT;
	}
	return 0;
}

/* Compare with the tfd lines of /proc/self/fdinfo/<epfd>. */
static int check_kernel(const lep_set *s, char *msg, size_t n)
{
	char path[64], line[256], tn[LEP_FLAGNAMES_MAX], kn[LEP_FLAGNAMES_MAX];
	unsigned char *seen;
	size_t seen_size = (size_t)s->cap + 1;
	FILE *f;
	int rc = 0, fd;

	(void)snprintf(path, sizeof path, "/proc/self/fdinfo/%d", s->epfd);
	f = fopen(path, "re");
	if (f == NULL) {
		int err = errno;
		if (err == ENOENT && access("/proc/self/fdinfo", F_OK) != 0)
			return 0; /* no /proc: nothing to compare with */
		return err;
	}
	seen = s->alloc(s->alloc_ud, NULL, 0, seen_size);
	if (seen == NULL) {
		(void)fclose(f); /* read only: nothing to lose */
		return ENOMEM;
	}
	memset(seen, 0, seen_size);
	while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
		unsigned int kflags, sdev = 0;
		unsigned long long data;
		unsigned long ino = 0;
		int fields;
		uint32_t tflags;

		/* The kernel's own format (fs/eventpoll.c: "tfd: %8d events: %8x
		 * data: %llx  pos:%lli ino:%lx sdev:%x"): its values always fit
		 * these types. */
		/* NOLINTNEXTLINE(cert-err34-c) */
		fields = sscanf(line, "tfd: %d events: %x data: %llx pos:%*d ino:%lx sdev:%x", &fd,
		                &kflags, &data, &ino, &sdev);
		if (fields < 3)
			continue;
		if (!lep_find(s, fd, &tflags)) {
			lep_flagnames(kflags, kn, sizeof kn);
			(void)snprintf(msg, n, "fd %d is in the kernel's set (%s) but not in the table",
			               fd, kn);
			rc = LEP_INCONSISTENT;
		} else if (!kernel_agrees(tflags, kflags)) {
			lep_flagnames(tflags, tn, sizeof tn);
			lep_flagnames(kflags, kn, sizeof kn);
			(void)snprintf(msg, n,
			               "fd %d has flags \"%s\" in the table but \"%s\" in the kernel's set",
			               fd, tn, kn);
			rc = LEP_INCONSISTENT;
		} else if (data != (unsigned long long)fd) {
			(void)snprintf(msg, n, "fd %d has a kernel entry whose data is %llu", fd, data);
			rc = LEP_INCONSISTENT;
		} else if (fields == 5) {
			rc = check_same_file(fd, fileno(f), ino, sdev, msg, n);
		}
		if (rc == 0)
			seen[fd] = 1;
	}
	if (rc == 0 && ferror(f))
		rc = EIO;
	(void)fclose(f); /* read only: nothing to lose */
	for (fd = lep_next(s, 0); rc == 0 && fd >= 0; fd = lep_next(s, fd + 1)) {
		if (!seen[fd]) {
			lep_flagnames(s->table[fd].flags, tn, sizeof tn);
			(void)snprintf(msg, n, "fd %d is in the table (\"%s\") but not in the kernel's set",
			               fd, tn);
			rc = LEP_INCONSISTENT;
		}
	}
	s->alloc(s->alloc_ud, seen, seen_size, 0);
	return rc;
}

int lep_check(const lep_set *s, char *msg, size_t n)
{
	int rc;

	if (s->epfd < 0)
		return 0;
	if (fcntl(s->epfd, F_GETFD) < 0) {
		(void)snprintf(msg, n, "the epoll descriptor %d is not open", s->epfd);
		return LEP_INCONSISTENT;
	}
	rc = check_table(s, msg, n);
	return rc != 0 ? rc : check_kernel(s, msg, n);
}
