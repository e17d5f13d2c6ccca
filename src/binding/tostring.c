/*
 * tostring.c: tostring(set), the whole set in the reference's form:
 *   epoll{fd=3, num_file_descrs=1024, max_ready_events=256,
 *         flags_by_fd={[4]="in"}, ready={[4]="in"}}
 */
#include "binding.h"

#include <stdio.h>

static void add_flags_entry(luaL_Buffer *b, int first, int fd, uint32_t flags)
{
	char buf[LEP_FLAGNAMES_MAX + 32];
	char names[LEP_FLAGNAMES_MAX];

	lep_flagnames(flags, names, sizeof names);
	(void)snprintf(buf, sizeof buf, "%s[%d]=\"%s\"", first ? "" : ", ", fd, names);
	luaL_addstring(b, buf);
}

int lepb_tostring(lua_State *L)
{
	const lep_set *s = &lepb_toset(L)->core;
	luaL_Buffer b;
	char head[160];
	uint32_t flags;
	int fd, i, first = 1;

	if (!lep_is_open(s)) {
		lua_pushliteral(L, "epoll{closed}");
		return 1;
	}
	luaL_buffinit(L, &b);
	(void)snprintf(head, sizeof head,
	               "epoll{fd=%d, num_file_descrs=%d, max_ready_events=%d, flags_by_fd={",
	               lep_epfd(s), lep_num_fds(s), lep_max_ready(s));
	luaL_addstring(&b, head);
	for (fd = lep_next(s, 0); fd >= 0 && lep_find(s, fd, &flags); fd = lep_next(s, fd + 1)) {
		add_flags_entry(&b, first, fd, flags);
		first = 0;
	}
	luaL_addstring(&b, "}, ready={");
	for (i = 0; i < lep_nready(s); i++)
		add_flags_entry(&b, i == 0, lep_ready_fd(s, i), lep_ready_events(s, i));
	luaL_addstring(&b, "}}");
	luaL_pushresult(&b);
	return 1;
}
