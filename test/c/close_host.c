/*
 * Closing the state: lua_close with live epoll sets neither crashes nor
 * leaks. The host opens pipes of its own and writes into them, so that
 * every descriptor it hands to Lua has events pending. For each scenario it
 * makes a fresh lua_State (lepoll linked statically, luaL_requiref), runs a
 * script that leaves sets open with full ready sets and more events pending
 * in the kernel, referenced from globals, from a suspended coroutine's
 * to-be-closed variable, from the host's registry, or unreferenced; watched
 * by another set; used by finalizers; and, when lepoll.loop can be required
 * (LUA_PATH), loops with live watchers, timers and waiting tasks; child
 * processes, running or ended, and signal sets. Then it calls lua_close
 * (in the "-collected" variants after a full collection) and checks that
 * the number of open descriptors is back to what it was before the state
 * was made (every epoll descriptor was closed, the host's own are still
 * open with their data unread), that no child is left, running or unreaped,
 * and that the blocked signals are those of before. Last it closes its own.
 *
 * Run under valgrind by `make test-close`: valgrind fails the run on any
 * error or definite leak (--error-exitcode), and the host also asks
 * valgrind itself (client requests) so that errors and leaks show in its
 * counts. Prints one line per check, last "N passed, N failed"; exits 0
 * only when nothing failed.
 *
 *   build/close_host
 */
#define _POSIX_C_SOURCE 200809L /* readlinkat, dirfd */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fds.h"
#include "lepoll.h"

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HAVE_VALGRIND 1
#endif
#endif

#define NUM_PIPES 4  /* with data: both ends ready */
#define NUM_EMPTY 2  /* without: nothing ready */
#define PENDING "pending bytes, never read"

/* ------------------------------------------------------------- checks */

static int passed, failed;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int check(int ok, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		passed++;
	else
		failed++;
	printf("close: %s ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	return ok;
}

/* ------------------------------------------------- the host's descriptors */

static int pipes[NUM_PIPES][2], empty[NUM_EMPTY][2];

static int open_pipe(int fds[2])
{
	int i;

	if (pipe(fds) != 0)
		return -1;
	for (i = 0; i < 2; i++)
		if (fcntl(fds[i], F_SETFL, O_NONBLOCK) != 0 || fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0)
			return -1;
	return 0;
}

/* Every host descriptor is still open, each pipe with its data unread. */
static int host_fds_intact(void)
{
	int i, n;

	for (i = 0; i < NUM_PIPES; i++)
		if (fcntl(pipes[i][0], F_GETFD) < 0 || fcntl(pipes[i][1], F_GETFD) < 0 ||
		    ioctl(pipes[i][0], FIONREAD, &n) != 0 || n != (int)sizeof PENDING)
			return 0;
	for (i = 0; i < NUM_EMPTY; i++)
		if (fcntl(empty[i][0], F_GETFD) < 0 || fcntl(empty[i][1], F_GETFD) < 0 ||
		    ioctl(empty[i][0], FIONREAD, &n) != 0 || n != 0)
			return 0;
	return 1;
}

/* -------------------------------------------------- the host's functions */

/* What finalizers say while lua_close runs (host.note). */
#define MAX_NOTES 8
static char notes[MAX_NOTES][256];
static int num_notes;

static int host_note(lua_State *L)
{
	const char *s = luaL_checkstring(L, 1);

	if (num_notes < MAX_NOTES)
		snprintf(notes[num_notes], sizeof notes[0], "%s", s);
	num_notes++;
	return 0;
}

static const luaL_Reg host_functions[] = {
	{"note", host_note},
	{NULL, NULL},
};

/* { {r=, w=}, ... } */
static void push_pipes(lua_State *L, int (*fds)[2], int n)
{
	int i;

	lua_createtable(L, n, 0);
	for (i = 0; i < n; i++) {
		lua_createtable(L, 0, 2);
		lua_pushinteger(L, fds[i][0]);
		lua_setfield(L, -2, "r");
		lua_pushinteger(L, fds[i][1]);
		lua_setfield(L, -2, "w");
		lua_rawseti(L, -2, i + 1);
	}
}

/* ------------------------------------------------------------- the script */

static const char *const close_script[] = {
	"-- Run by close_host in a fresh lua_State: leaves epoll sets (and loops) open\n"
	"-- with pending events, then the host calls lua_close (after a full garbage\n"
	"-- collection in the \"-collected\" variants). Returns how many epoll\n"
	"-- descriptors it leaves open, how many of them stay reachable, and one set\n"
	"-- for the host to hold in its registry; nil when the scenario cannot run.\n"
	"collectgarbage('stop') -- nothing is collected before the host says so\n"
	"local scenario, collected = ...\n"
	"local lepoll = require 'lepoll'\n"
	"local format = string.format\n"
	"local pipes, empty = HOST_PIPES, HOST_EMPTY -- {r=, w=}: data unread; nothing written\n"
	"local open, reachable = 0, 0                -- epoll descriptors left open\n"
	"\n"
	"local function check(cond, fmt, ...)\n"
	"  if not cond then error(format('%s: ' .. fmt, scenario, ...), 2) end\n"
	"end\n"
	"\n"
	"-- Watches every host pipe, both ends: all of them are ready. The wait\n"
	"-- stores max_ready events; with fewer, the rest stay pending in the kernel.\n"
	"local function full_set(max_ready, mode)\n"
	"  local s = lepoll.create(nil, max_ready)\n"
	"  for _, p in ipairs(pipes) do\n"
	"    s:set(p.r, mode or 'in')\n"
	"    s:set(p.w, 'out')\n"
	"  end\n"
	"  check(s:wait(0) == 'ok', 'nothing ready')\n"
	"  local n = s:fold_ready(0, function(acc) return acc + 1 end)\n"
	"  check(n == math.min(max_ready, 2 * #pipes), 'ready set holds %d events', n)\n"
	"  s:invariant()\n"
	"  open = open + 1\n"
	"  return s\n"
	"end\n"
	"\n"
	"KEEP = {}\n"
	"local scenarios = {}\n"
	"\n"
	"function scenarios.sets()\n"
	"  -- Referenced from globals, of every kind of flags; one waited twice.\n"
	"  KEEP[1] = full_set(3)\n"
	"  KEEP[2] = full_set(64, 'in|et')\n"
	"  KEEP[3] = full_set(5, 'in|oneshot|rdhup')\n"
	"  check(KEEP[1]:wait(0) == 'ok', 'second wait found nothing')\n"
	"  reachable = reachable + 3\n"
	"  -- Unreferenced: garbage that is never collected before lua_close.\n"
	"  for i = 1, 40 do full_set(i % 7 + 1) end\n"
	"  -- Closed explicitly, then left for the collector.\n"
	"  local c = full_set(2)\n"
	"  c:close()\n"
	"  open = open - 1\n"
	"  -- A set watching another: the inner one is reachable only through KEEP.\n"
	"  local inner = full_set(4)\n"
	"  local outer = lepoll.create()\n"
	"  outer:set(inner, 'in')\n"
	"  check(outer:wait(0) == 'ok', 'outer set sees nothing')\n"
	"  open = open + 1\n"
	"  KEEP[4] = outer\n"
	"  KEEP[5] = inner\n"
	"  reachable = reachable + 2\n"
	"  -- A callback error in iter_ready: the set stays usable, and open.\n"
	"  local e = full_set(4)\n"
	"  local ok, err = pcall(e.iter_ready, e, function() error('boom') end)\n"
	"  check(not ok and tostring(err):find('boom'), 'iter_ready error lost: %s', tostring(err))\n"
	"  check(e:wait(0) == 'ok', 'no wait after the error')\n"
	"  KEEP[6] = e\n"
	"  reachable = reachable + 1\n"
	"  -- To-be-closed variables in suspended coroutines, which lua_close does\n"
	"  -- not close: one coroutine kept, one not.\n"
	"  for i = 1, 2 do\n"
	"    local co = coroutine.wrap(function()\n"
	"      local s <close> = full_set(2)\n"
	"      coroutine.yield()\n"
	"      s:wait(0)\n"
	"    end)\n"
	"    co()\n"
	"    if i == 1 then\n"
	"      KEEP[7] = co\n"
	"      reachable = reachable + 1\n"
	"    end\n"
	"  end\n"
	"  -- Finalizers that use a set. lua_close calls finalizers in the reverse\n"
	"  -- order objects got them: the one made before the set runs after the\n"
	"  -- set's own and must find it closed; the one made after runs first and\n"
	"  -- finds it open, its events there.\n"
	"  if not collected then\n"
	"    local late\n"
	"    setmetatable({}, { __gc = function()\n"
	"      local okw, errw = pcall(late.wait, late, 0)\n"
	"      local good = not okw and tostring(errw):find('closed epoll set', 1, true)\n"
	"        and tostring(late) == 'epoll{closed}' and #late == 0\n"
	"      host.note(format('%s: a finalizer run after the set\\'s own: wait: %s; %s; #set %d',\n"
	"        good and 'ok' or 'bad', tostring(errw), tostring(late), #late))\n"
	"    end })\n"
	"    late = full_set(6)\n"
	"    setmetatable({}, { __gc = function()\n"
	"      local n = late:wait(0) == 'ok' and late:fold_ready(0, function(acc) return acc + 1 end)\n",
	"      local good = n == 6 and #late == 2 * #pipes\n"
	"      host.note(format('%s: a finalizer run before the set\\'s own: %s events, #set %d',\n"
	"        good and 'ok' or 'bad', tostring(n), #late))\n"
	"    end })\n"
	"  end\n"
	"  -- For the host's registry.\n"
	"  local h = full_set(8)\n"
	"  reachable = reachable + 1\n"
	"  return h\n"
	"end\n"
	"\n"
	"-- lepoll.loop with live watchers (on pipes with unread data), timers and\n"
	"-- tasks: waiting on a descriptor, sleeping, holding a to-be-closed set,\n"
	"-- never started. One loop kept, one not.\n"
	"function scenarios.loop()\n"
	"  local ok, loop = pcall(require, 'lepoll.loop')\n"
	"  if not ok then return nil end\n"
	"  local calls = 0\n"
	"  for i = 1, 2 do\n"
	"    local l = loop.new()\n"
	"    open = open + 1\n"
	"    for _, p in ipairs(pipes) do\n"
	"      l:io(p.r, 'in', function() calls = calls + 1 end)\n"
	"    end\n"
	"    l:io(pipes[1].w, 'out', function() calls = calls + 1 end)\n"
	"    l:timer(0, function() calls = calls + 1 end, 0.001)\n"
	"    l:timer(3600, function() error('never') end)\n"
	"    l:spawn(function() l:readable(empty[1].r) end)\n"
	"    l:spawn(function() l:readable(empty[2].r, 3600) end)\n"
	"    l:spawn(function() l:sleep(3600) end)\n"
	"    l:spawn(function()\n"
	"      local s <close> = full_set(4)\n"
	"      l:sleep(3600)\n"
	"    end)\n"
	"    check(l:run('nowait') == true, 'the loop has nothing to do')\n"
	"    check(l:run('nowait') == true, 'the loop has nothing to do')\n"
	"    l:spawn(function() error('never started') end)\n"
	"    l:invariant()\n"
	"    if i == 1 then\n"
	"      KEEP[1] = l\n"
	"      reachable = reachable + 2 -- its set and its task's\n"
	"    end\n"
	"  end\n"
	"  check(calls > 0, 'no callback ran')\n"
	"  local h = full_set(8)\n"
	"  reachable = reachable + 1\n"
	"  return h\n"
	"end\n"
	"\n"
	"-- Child processes (running, with pipes; one ended and not reaped) and\n"
	"-- signal sets, kept and garbage, some in a loop: lua_close kills and\n"
	"-- reaps every child, closes every descriptor, and unblocks every signal.\n"
	"function scenarios.processes()\n"
	"  KEEP[1] = assert(lepoll.spawn { 'sleep', '3600', stdin = 'pipe', stdout = 'pipe', stderr = 'pipe' })\n"
	"  assert(lepoll.spawn { 'sleep', '3600', stdout = 'pipe' }) -- garbage\n"
	"  local ended = assert(lepoll.spawn { 'true' })\n"
	"  KEEP[2] = ended\n"
	"  KEEP[3] = lepoll.signals('USR1')\n"
	"  lepoll.signals('USR2') -- garbage\n"
	"  local ok, loop = pcall(require, 'lepoll.loop')\n"
	"  if ok then\n"
	"    local l = loop.new()\n"
	"    open = open + 1\n"
	"    l:process({ 'sleep', '3600' }, function() end)\n"
	"    l:signal('HUP', function() end)\n"
	"    check(l:run('nowait') == true, 'the loop has nothing to do')\n"
	"    KEEP[4] = l\n"
	"    reachable = reachable + 1\n"
	"  end\n"
	"  local h = full_set(8)\n"
	"  reachable = reachable + 1\n"
	"  return h\n"
	"end\n"
	"\n"
	"local h = scenarios[scenario]()\n"
	"if h == nil then return nil end\n"
	"return open, reachable, h\n",
	NULL,
};

static const char *read_script(lua_State *L, void *ud, size_t *size)
{
	size_t *next = ud;
	const char *piece = close_script[*next];

	(void)L;
	if (piece == NULL)
		return NULL;
	(*next)++;
	*size = strlen(piece);
	return piece;
}

static int traceback(lua_State *L)
{
	luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
	return 1;
}

/* --------------------------------------------------------------- scenarios */

/* This process's children, running or not reaped. */
static int count_children(void)
{
	char path[64];
	FILE *f;
	int n = 0, c;
	long pid;

	snprintf(path, sizeof path, "/proc/self/task/%ld/children", (long)getpid());
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fscanf(f, "%ld", &pid) == 1)
		n++;
	c = ferror(f);
	fclose(f);
	return c ? -1 : n;
}

/* The signals this thread blocks, as a number (the first 64). */
static unsigned long long blocked_signals(void)
{
	sigset_t set;
	unsigned long long bits = 0;
	int sig;

	sigprocmask(SIG_BLOCK, NULL, &set);
	for (sig = 1; sig < 64; sig++)
		if (sigismember(&set, sig) == 1)
			bits |= 1ULL << sig;
	return bits;
}

static void scenario(const char *name, int collect)
{
	char label[64];
	int fds_before, ep_before, fds_open, ep_open, fds_after, ep_after, ep_collected = 0;
	int open, reachable, ref, i, children_before, children_open;
	unsigned long long mask_before, mask_open;
	size_t next = 0;
	lua_State *L;
	lepoll_set *set;

	snprintf(label, sizeof label, "%s%s", name, collect ? "-collected" : "");
	fds_before = count_fds(&ep_before);
	children_before = count_children();
	mask_before = blocked_signals();
	num_notes = 0;

	L = luaL_newstate();
	if (!check(L != NULL, "%s: a new lua_State (luaL_newstate)", label))
		return;
	luaL_openlibs(L);
	luaL_requiref(L, "lepoll", luaopen_lepoll, 0);
	lua_pop(L, 1);
	luaL_newlib(L, host_functions);
	lua_setglobal(L, "host");
	push_pipes(L, pipes, NUM_PIPES);
	lua_setglobal(L, "HOST_PIPES");
	push_pipes(L, empty, NUM_EMPTY);
	lua_setglobal(L, "HOST_EMPTY");

	lua_pushcfunction(L, traceback);
	if (lua_load(L, read_script, &next, "=close_script", "t") != LUA_OK) {
		check(0, "%s: load: %s", label, lua_tostring(L, -1));
		lua_close(L);
		return;
	}
	lua_pushstring(L, name);
	lua_pushboolean(L, collect);
	if (lua_pcall(L, 2, 3, 1) != LUA_OK) {
		check(0, "%s: script: %s", label, lua_tostring(L, -1));
		lua_close(L);
		return;
	}
	if (lua_isnil(L, -3)) {
		printf("close: skip %s: lepoll.loop not found (LUA_PATH)\n", label);
		lua_close(L);
		return;
	}
	open = (int)lua_tointeger(L, -3);
	reachable = (int)lua_tointeger(L, -2);
	/* The host holds the third result in its registry, as a C host would. */
	set = lepoll_checkset(L, -1);
	check(lepoll_getfd(set) >= 0, "%s: the set handed to the host is open (fd %d)", label,
	      lepoll_getfd(set));
	ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_settop(L, 0);

	fds_open = count_fds(&ep_open);
	children_open = count_children();
	mask_open = blocked_signals();
	if (strcmp(name, "processes") == 0)
		check(children_open >= children_before + 3 && mask_open != mask_before,
		      "%s: %d children and signals blocked (%llx) before lua_close", label,
		      children_open - children_before, mask_open);
	check(ep_open - ep_before == open && open > 0,
	      "%s: %d epoll sets open before lua_close (the script counts %d)", label,
	      ep_open - ep_before, open);
	if (collect) {
		/* Two cycles: what the first one's finalizers use lives until the next. */
		lua_gc(L, LUA_GCRESTART);
		lua_gc(L, LUA_GCCOLLECT);
		lua_gc(L, LUA_GCCOLLECT);
		(void)count_fds(&ep_collected);
		check(ep_collected - ep_before == reachable,
		      "%s: %d epoll sets left after collecting the garbage (%d reachable)", label,
		      ep_collected - ep_before, reachable);
	}
	(void)ref; /* never unref'd: lua_close frees what the registry holds */

	lua_close(L);
	fds_after = count_fds(&ep_after);
	check(fds_after == fds_before && ep_after == ep_before,
	      "%s: after lua_close: %d descriptors (%d before the state, %d with it), "
	      "%d epoll sets (%d before)", label, fds_after, fds_before, fds_open, ep_after, ep_before);
	check(host_fds_intact(), "%s: the host's descriptors are open, their data unread", label);
	check(count_children() == children_before && children_before >= 0,
	      "%s: after lua_close: %d children (%d before the state, %d with it)", label, count_children(),
	      children_before, children_open);
	check(blocked_signals() == mask_before, "%s: after lua_close: blocked signals %llx (%llx before)",
	      label, blocked_signals(), mask_before);
	if (strcmp(name, "sets") == 0 && !collect) {
		check(num_notes == 2, "%s: finalizers ran during lua_close (%d notes)", label, num_notes);
		for (i = 0; i < num_notes && i < MAX_NOTES; i++)
			check(strncmp(notes[i], "ok:", 3) == 0, "%s: %s", label, notes[i]);
	}
}

int main(void)
{
	int fds_start, ep_start, fds_end, ep_end, i, ok = 1;

	fds_start = count_fds(&ep_start);
	for (i = 0; i < NUM_PIPES; i++) {
		ok = ok && open_pipe(pipes[i]) == 0;
		ok = ok && write(pipes[i][1], PENDING, sizeof PENDING) == (ssize_t)sizeof PENDING;
	}
	for (i = 0; i < NUM_EMPTY; i++)
		ok = ok && open_pipe(empty[i]) == 0;
	if (!check(ok && fds_start > 0, "the host's pipes (%s)", ok ? "open" : strerror(errno))) {
		printf("%d passed, %d failed\n", passed, failed);
		return 1;
	}

	scenario("sets", 0);
	scenario("sets", 1);
	scenario("loop", 0);
	scenario("loop", 1);
	scenario("processes", 0);
	scenario("processes", 1);

	for (i = 0; i < NUM_PIPES; i++) {
		close(pipes[i][0]);
		close(pipes[i][1]);
	}
	for (i = 0; i < NUM_EMPTY; i++) {
		close(empty[i][0]);
		close(empty[i][1]);
	}
	fds_end = count_fds(&ep_end);
	check(fds_end == fds_start && ep_end == 0,
	      "after closing the host's own: %d descriptors (%d at the start), %d epoll sets",
	      fds_end, fds_start, ep_end);

#if defined(HAVE_VALGRIND)
	if (RUNNING_ON_VALGRIND) {
		unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0;
		check(VALGRIND_COUNT_ERRORS == 0, "valgrind: %u memory errors", VALGRIND_COUNT_ERRORS);
		VALGRIND_DO_QUICK_LEAK_CHECK; /* details come at exit */
		VALGRIND_COUNT_LEAKS(leaked, dubious, reachable, suppressed);
		check(leaked == 0, "valgrind: once every state is closed, %lu bytes leaked (definitely or "
		      "indirectly; %lu possibly, %lu still reachable, %lu suppressed)", leaked, dubious,
		      reachable, suppressed);
	} else {
		printf("close: skip valgrind's own counts: not running under valgrind\n");
	}
#else
	printf("close: skip valgrind's own counts: built without <valgrind/memcheck.h>\n");
#endif
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
