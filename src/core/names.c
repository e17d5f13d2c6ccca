/* lepoll core: flag names (printing and parsing) and errno names. No Lua. */
#define _POSIX_C_SOURCE 200809L

#include "lepoll_core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Canonical order of the names. */
static const struct {
	const char *name;
	uint32_t bit;
} flag_names[] = {
	{"in", LEP_IN},
	{"out", LEP_OUT},
	{"pri", LEP_PRI},
	{"err", LEP_ERR},
	{"hup", LEP_HUP},
	{"rdhup", LEP_RDHUP},
	{"et", LEP_ET},
	{"oneshot", LEP_ONESHOT},
	{"exclusive", LEP_EXCLUSIVE},
};
#define NUM_FLAG_NAMES (sizeof flag_names / sizeof flag_names[0])

size_t lep_flagnames(uint32_t flags, char *buf, size_t n)
{
	char tmp[LEP_FLAGNAMES_MAX];
	size_t len = 0, i, k;
	uint32_t rest = flags;

	for (i = 0; i < NUM_FLAG_NAMES; i++) {
		if (!(flags & flag_names[i].bit))
			continue;
		rest &= ~flag_names[i].bit;
		if (len > 0)
			tmp[len++] = '|';
		for (k = 0; flag_names[i].name[k] != '\0'; k++)
			tmp[len++] = flag_names[i].name[k];
	}
	if (rest != 0) {
		int w = snprintf(tmp + len, sizeof tmp - len, "%s0x%x",
		                 len > 0 ? "|" : "", (unsigned)rest);
		len += w > 0 ? (size_t)w : 0;
	}
	tmp[len] = '\0';
	if (n > 0) {
		k = len < n ? len : n - 1;
		memcpy(buf, tmp, k);
		buf[k] = '\0';
	}
	return len;
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

int lep_flag_by_name(const char *name, size_t len, uint32_t *out)
{
	size_t i, k;

	for (i = 0; i < NUM_FLAG_NAMES; i++) {
		const char *n = flag_names[i].name;
		for (k = 0; k < len && n[k] != '\0' && lower((unsigned char)name[k]) == n[k]; k++)
			;
		if (k == len && n[k] == '\0') {
			*out = flag_names[i].bit;
			return 0;
		}
	}
	return EINVAL;
}

static int is_separator(char c)
{
	/* Every ASCII white-space byte, as isspace() in the C locale. */
	return c == '|' || c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\v' ||
	       c == '\f' || c == '\r';
}

int lep_parse_flags(const char *s, size_t len, uint32_t *out, size_t *bad, size_t *badlen)
{
	uint32_t flags = 0, bit;
	size_t i = 0;

	while (i < len) {
		size_t start;

		while (i < len && is_separator(s[i]))
			i++;
		start = i;
		while (i < len && !is_separator(s[i]))
			i++;
		if (i == start)
			break;
		if (lep_flag_by_name(s + start, i - start, &bit) != 0) {
			*bad = start;
			*badlen = i - start;
			return EINVAL;
		}
		flags |= bit;
	}
	*out = flags;
	return 0;
}

const char *lep_errname(int err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case ECHILD: return "ECHILD";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ENFILE: return "ENFILE";
	case EMFILE: return "EMFILE";
	case ENOTTY: return "ENOTTY";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case EROFS: return "EROFS";
	case EPIPE: return "EPIPE";
	case ERANGE: return "ERANGE";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS";
	case ELOOP: return "ELOOP";
	case EOVERFLOW: return "EOVERFLOW";
	case ENOTSOCK: return "ENOTSOCK";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EPROTO: return "EPROTO";
	case ECONNRESET: return "ECONNRESET";
	case ENOTCONN: return "ENOTCONN";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ECONNREFUSED: return "ECONNREFUSED";
	default: return NULL;
	}
}
