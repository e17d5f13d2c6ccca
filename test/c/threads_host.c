/*
 * No global state: several threads, each with its own lua_State that links
 * lepoll statically (luaL_requiref of luaopen_lepoll), run the same Lua
 * script at the same time. Each script makes its own epoll sets and its own
 * pipes (through host.pipe), and drives thousands of rounds of set, wait,
 * iter_ready, fold_ready and remove, checking that every byte written is
 * reported and read, in order, and that invariant() passes; then it closes
 * everything. When lepoll.loop can be required (LUA_PATH), each thread also
 * runs a loop with tasks, a watcher and a timer.
 *
 * Built with -fsanitize=thread by `make test-threads` (build/tsan/), and run
 * there so that any ThreadSanitizer report fails it. Besides the scripts'
 * results it checks that the threads really ran at the same time, that no
 * descriptor is left open once every state is closed, and that
 * ThreadSanitizer reported nothing. Prints one line per thread and test, and
 * last "N passed, N failed"; exits 0 only when nothing failed.
 *
 *   build/tsan/threads_host [THREADS [ROUNDS]]     (default 4 threads, 5000)
 *   build/tsan/threads_host --probe                (exits 0: the runtime works)
 */
#define _POSIX_C_SOURCE 200809L /* pthread_barrier_t, readlinkat, dirfd */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fds.h"
#include "tsan.h"
#include "lepoll.h"

#define MAX_THREADS 64

/* ---------------------------------------------------- the host's functions */

#define MAX_HOST_FDS 256

/* One per thread; its Lua state reaches it as the upvalue of host.*. */
struct worker {
	pthread_t thread;
	int id;
	long rounds;
	double start, end;     /* CLOCK_MONOTONIC, around the scripts */
	enum outcome { NOT_RUN, PASSED, FAILED, SKIPPED } sets, loop, resolver;
	char sets_text[512];   /* the script's summary, or the error */
	char loop_text[512];
	char resolver_text[512];
	int fds[MAX_HOST_FDS]; /* made by host.pipe, not closed yet */
	int nfds, leftover;    /* leftover: still open after lua_close */
};

static struct worker *this_worker(lua_State *L)
{
	return lua_touserdata(L, lua_upvalueindex(1));
}

static void forget_fd(struct worker *w, int fd)
{
	int i;

	for (i = 0; i < w->nfds; i++)
		if (w->fds[i] == fd) {
			w->fds[i] = w->fds[--w->nfds];
			return;
		}
}

/* host.pipe() -> read end, write end: non-blocking, close-on-exec. */
static int host_pipe(lua_State *L)
{
	struct worker *w = this_worker(L);
	int fds[2], i;

	if (w->nfds + 2 > MAX_HOST_FDS)
		return luaL_error(L, "pipe: more than %d descriptors open", MAX_HOST_FDS);
	if (pipe(fds) != 0)
		return luaL_error(L, "pipe: %s", strerror(errno));
	for (i = 0; i < 2; i++)
		if (fcntl(fds[i], F_SETFL, O_NONBLOCK) != 0 || fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0) {
			int err = errno;
			close(fds[0]);
			close(fds[1]);
			return luaL_error(L, "fcntl: %s", strerror(err));
		}
	w->fds[w->nfds++] = fds[0];
	w->fds[w->nfds++] = fds[1];
	lua_pushinteger(L, fds[0]);
	lua_pushinteger(L, fds[1]);
	return 2;
}

/* host.write(fd, s): all of s, or an error (the pipes never fill up). */
static int host_write(lua_State *L)
{
	size_t len, done = 0;
	int fd = (int)luaL_checkinteger(L, 1);
	const char *s = luaL_checklstring(L, 2, &len);

	while (done < len) {
		ssize_t n = write(fd, s + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return luaL_error(L, "write fd %d: %s", fd, strerror(errno));
		done += (size_t)n;
	}
	return 0;
}

/* host.read(fd) -> the bytes there (up to 4096), "" at end of file, nil
 * when there is nothing yet. */
static int host_read(lua_State *L)
{
	char buf[4096];
	int fd = (int)luaL_checkinteger(L, 1);
	ssize_t n;

	do
		n = read(fd, buf, sizeof buf);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return 0;
	if (n < 0)
		return luaL_error(L, "read fd %d: %s", fd, strerror(errno));
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

/* host.close(fd) */
static int host_close(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);

	forget_fd(this_worker(L), fd);
	if (close(fd) != 0)
		return luaL_error(L, "close fd %d: %s", fd, strerror(errno));
	return 0;
}

static const luaL_Reg host_functions[] = {
	{"pipe", host_pipe},
	{"write", host_write},
	{"read", host_read},
	{"close", host_close},
	{NULL, NULL},
};

/* ------------------------------------------------------------- the script */

static const char *const threads_script[] = {
	"-- One thread's script, run in its own lua_State: defines run_sets, run_loop and run_resolver.\n"
	"local lepoll = require 'lepoll'\n"
	"local host = host\n"
	"local random, format = math.random, string.format\n"
	"local id = THREAD_ID\n"
	"local has, flags_of = lepoll.has, lepoll.flags\n"
	"\n"
	"local function check(cond, fmt, ...)\n"
	"  if not cond then error(format('thread %d: ' .. fmt, id, ...), 2) end\n"
	"end\n"
	"\n"
	"-- A pipe's bytes are a function of its salt (thread and serial) and the\n"
	"-- offset: a byte lost, repeated, reordered or from another pipe is caught.\n"
	"local serial = 0\n"
	"local function new_pipe()\n"
	"  local r, w = host.pipe()\n"
	"  serial = serial + 1\n"
	"  return { r = r, w = w, sent = 0, got = 0, salt = (id * 61 + serial * 7) % 251 }\n"
	"end\n"
	"local function byte_at(p, k) return (k * 13 + p.salt) % 251 end\n"
	"local function send(p, n)\n"
	"  local t = {}\n"
	"  for i = 1, n do t[i] = byte_at(p, p.sent + i - 1) end\n"
	"  host.write(p.w, string.char(table.unpack(t)))\n"
	"  p.sent = p.sent + n\n"
	"end\n"
	"-- Reads everything there is (edge-triggered pipes need it); checks each byte.\n"
	"local function drain(p)\n"
	"  local n = 0\n"
	"  while true do\n"
	"    local s = host.read(p.r)\n"
	"    if s == nil then return n end\n"
	"    check(s ~= '', 'fd %d: unexpected end of pipe', p.r)\n"
	"    for i = 1, #s do\n"
	"      local b, want = s:byte(i), byte_at(p, p.got)\n"
	"      check(b == want, 'fd %d: byte %d is %d, expected %d', p.r, p.got, b, want)\n"
	"      p.got = p.got + 1\n"
	"    end\n"
	"    n = n + #s\n"
	"  end\n"
	"end\n"
	"local function close_pipe(p)\n"
	"  host.close(p.r)\n"
	"  host.close(p.w)\n"
	"end\n"
	"\n"
	"local function closed_set_refuses(s)\n"
	"  local ok, err = pcall(s.set, s, 0, 'in')\n"
	"  check(not ok and tostring(err):find('closed epoll set', 1, true),\n"
	"    'closed set accepted set: %s', tostring(err))\n"
	"  check(#s == 0 and tostring(s) == 'epoll{closed}', 'closed set shows %s', tostring(s))\n"
	"end\n"
	"\n"
	"-- Sets, pipes and the thousands of rounds that drive them.\n"
	"function run_sets(rounds)\n"
	"  local NPIPES, NSETS = 12, 3\n"
	"  local MODES = { 'in', 'in|rdhup', 'in|et', 'in|oneshot', { 'in', 'et', 'oneshot' } }\n"
	"  local st = { bytes = 0, events = 0, waits = 0, removes = 0, pipes = 0, sets = 0, checks = 0,\n"
	"    nested = 0 }\n"
	"  local sets, pipes, byfd = {}, {}, {}\n"
	"\n"
	"  local function make_set(i)\n"
	"    -- max_ready 1 and 3 leave events pending in the kernel between waits.\n"
	"    sets[i] = lepoll.create(nil, i == 1 and 1 or i == 2 and 3 or 64)\n"
	"    st.sets = st.sets + 1\n"
	"  end\n"
	"  local function make_pipe(i)\n"
	"    local p = new_pipe()\n"
	"    check(byfd[p.r] == nil and byfd[p.w] == nil, 'fd %d reused while open', p.r)\n"
	"    pipes[i], byfd[p.r] = p, p\n"
	"    st.pipes = st.pipes + 1\n"
	"  end\n"
	"  local function unwatch(p)\n"
	"    if p.set then\n"
	"      p.set:remove(p.r)\n"
	"      check(p.set:find(p.r) == nil, 'fd %d still found after remove', p.r)\n"
	"      p.set, p.mode = nil, nil\n"
	"      st.removes = st.removes + 1\n"
	"    end\n"
	"  end\n"
	"  local function watch(p, s, mode)\n"
	"    s:set(p.r, mode)\n"
	"    check(s:find(p.r) == flags_of(mode), 'fd %d: find gives %s', p.r, tostring(s:find(p.r)))\n"
	"    p.set, p.mode, p.oneshot = s, mode, has(mode, 'oneshot')\n"
	"  end\n",
	"\n"
	"  local function on_event(fd, flags)\n"
	"    local p = byfd[fd]\n"
	"    check(p ~= nil and p.set ~= nil, 'event for fd %d, not a watched pipe of this thread', fd)\n"
	"    check(has(flags, 'in'), 'fd %d: event \"%s\" without in', fd, lepoll.flagnames(flags))\n"
	"    st.bytes = st.bytes + drain(p)\n"
	"    st.events = st.events + 1\n"
	"    if p.oneshot then p.set:set(fd, p.mode) end -- re-armed from inside iter_ready\n"
	"  end\n"
	"  local function count_event(acc, fd, flags)\n"
	"    on_event(fd, flags)\n"
	"    return acc + 1\n"
	"  end\n"
	"\n"
	"  -- Waits on every set until each byte written is read, through events only.\n"
	"  local function drain_all(round)\n"
	"    for tries = 1, 200 do\n"
	"      local pending = 0\n"
	"      for i = 1, NPIPES do\n"
	"        local p = pipes[i]\n"
	"        if p.got ~= p.sent then pending = pending + 1 end\n"
	"      end\n"
	"      if pending == 0 then return end\n"
	"      for i = 1, NSETS do\n"
	"        local s = sets[i]\n"
	"        local r = s:wait(0)\n"
	"        st.waits = st.waits + 1\n"
	"        check(r == 'ok' or r == 'timeout' or r == 'interrupted', 'wait gave %s', tostring(r))\n"
	"        if r == 'ok' then\n"
	"          if (round + tries) % 2 == 0 then\n"
	"            s:iter_ready(on_event)\n"
	"          else\n"
	"            local before = st.events\n"
	"            local n = s:fold_ready(0, count_event)\n"
	"            check(n == st.events - before and n >= 1, 'fold_ready counted %d events of %d', n,\n"
	"              st.events - before)\n"
	"          end\n"
	"        end\n"
	"      end\n"
	"    end\n"
	"    check(false, 'round %d: bytes written but never reported ready', round)\n"
	"  end\n"
	"\n"
	"  local function check_sets()\n"
	"    for i = 1, NSETS do\n"
	"      local s, n, seen = sets[i], 0, {}\n"
	"      s:invariant()\n"
	"      for fd, fl in pairs(s) do\n"
	"        local p = byfd[fd]\n"
	"        check(p and p.set == s and fl == flags_of(p.mode), 'set %d lists fd %d (%s)', i, fd,\n"
	"          lepoll.flagnames(fl))\n"
	"        seen[fd] = true\n"
	"        n = n + 1\n"
	"      end\n"
	"      for j = 1, NPIPES do\n"
	"        local p = pipes[j]\n"
	"        if p.set == s then\n"
	"          check(seen[p.r], 'set %d lacks fd %d', i, p.r)\n"
	"          check(tostring(s):find('[' .. p.r .. ']=', 1, true), 'tostring lacks fd %d', p.r)\n"
	"        end\n"
	"      end\n"
	"      check(#s == n, 'set %d: #set is %d, pairs gave %d', i, #s, n)\n"
	"      st.checks = st.checks + 1\n"
	"    end\n"
	"  end\n"
	"\n"
	"  -- A set watching another set: it is readable when the inner one has events.\n"
	"  local function nested()\n"
	"    local inner = sets[2]\n"
	"    local p = pipes[random(NPIPES)]\n"
	"    if p.set ~= inner then\n"
	"      unwatch(p)\n"
	"      watch(p, inner, 'in')\n"
	"    end\n"
	"    local outer <close> = lepoll.create(nil, 4)\n"
	"    outer:set(inner, 'in')\n"
	"    check(outer:wait(0) == 'timeout', 'outer set ready with nothing written')\n"
	"    send(p, 5)\n"
	"    check(outer:wait(0) == 'ok', 'outer set not ready after a write')\n"
	"    local n = outer:fold_ready(0, function(acc, fd, fl)\n"
	"      check(fd == inner:getfd() and has(fl, 'in'), 'outer set reported fd %d', fd)\n"
	"      return acc + 1\n"
	"    end)\n"
	"    check(n == 1, 'outer set reported %d events', n)\n"
	"    outer:invariant()\n"
	"    st.nested = st.nested + 1\n"
	"  end\n",
	"\n"
	"  for i = 1, NSETS do make_set(i) end\n"
	"  for i = 1, NPIPES do make_pipe(i) end\n"
	"\n"
	"  for round = 1, rounds do\n"
	"    for _ = 1, random(4) do\n"
	"      local p = pipes[random(NPIPES)]\n"
	"      if not p.set then watch(p, sets[random(NSETS)], MODES[random(#MODES)]) end\n"
	"      send(p, random(64))\n"
	"    end\n"
	"    drain_all(round)\n"
	"    if random(6) == 1 then unwatch(pipes[random(NPIPES)]) end\n"
	"    if random(100) == 1 then -- a pipe is replaced: removed before it is closed\n"
	"      local i = random(NPIPES)\n"
	"      local p = pipes[i]\n"
	"      unwatch(p)\n"
	"      byfd[p.r] = nil\n"
	"      close_pipe(p)\n"
	"      make_pipe(i)\n"
	"    end\n"
	"    if random(250) == 1 then -- a set is replaced, closed with fds in it\n"
	"      local i = random(NSETS)\n"
	"      local s = sets[i]\n"
	"      for j = 1, NPIPES do\n"
	"        if pipes[j].set == s then pipes[j].set = nil end\n"
	"      end\n"
	"      s:close()\n"
	"      closed_set_refuses(s)\n"
	"      make_set(i)\n"
	"    end\n"
	"    if round % 97 == 0 then nested() end\n"
	"    if round % 50 == 0 then check_sets() end\n"
	"  end\n"
	"  drain_all(rounds + 1)\n"
	"  check_sets()\n"
	"  for i = 1, NPIPES do\n"
	"    local p = pipes[i]\n"
	"    check(p.got == p.sent, 'fd %d: %d bytes written, %d read', p.r, p.sent, p.got)\n"
	"    unwatch(p)\n"
	"    close_pipe(p)\n"
	"  end\n"
	"  for i = 1, NSETS do\n"
	"    check(#sets[i] == 0, 'set %d not empty', i)\n"
	"    sets[i]:close()\n"
	"    closed_set_refuses(sets[i])\n"
	"  end\n"
	"  return format('%d rounds, %d sets, %d pipes, %d bytes, %d events, %d waits, %d removes, '\n"
	"    .. '%d checks, %d nested',\n"
	"    rounds, st.sets, st.pipes, st.bytes, st.events, st.waits, st.removes, st.checks, st.nested)\n"
	"end\n"
	"\n"
	"-- lepoll.loop, when it can be required: two tasks play ping-pong over two\n"
	"-- pipes, an I/O watcher counts a third, a repeating timer feeds it.\n"
	"function run_loop(rounds)\n"
	"  local ok, loop = pcall(require, 'lepoll.loop')\n"
	"  if not ok then return nil end\n"
	"  local l <close> = loop.new()\n"
	"  local a, b, c = new_pipe(), new_pipe(), new_pipe()\n"
	"  local exchanges, ticks, n = 0, 0, rounds // 10\n"
	"  l:spawn(function()\n"
	"    for _ = 1, n do\n"
	"      send(a, 3)\n"
	"      check(l:readable(b.r, 5), 'ping: no pong within 5 s')\n"
	"      check(drain(b) == 3, 'ping: short pong')\n"
	"      exchanges = exchanges + 1\n"
	"    end\n"
	"  end)\n"
	"  l:spawn(function()\n"
	"    for _ = 1, n do\n"
	"      check(l:readable(a.r, 5), 'pong: no ping within 5 s')\n"
	"      check(drain(a) == 3, 'pong: short ping')\n"
	"      send(b, 3)\n"
	"    end\n"
	"  end)\n"
	"  l:io(c.r, 'in', function(w)\n"
	"    drain(c)\n"
	"    if c.got == 20 then w:stop() end\n"
	"  end)\n"
	"  l:timer(0, function(t)\n"
	"    ticks = ticks + 1\n"
	"    send(c, 1)\n"
	"    if ticks == 20 then t:stop() end\n"
	"  end, 0.001)\n"
	"  l:run()\n"
	"  l:invariant()\n"
	"  check(exchanges == n and ticks == 20, '%d exchanges of %d, %d ticks', exchanges, n, ticks)\n"
	"  check(a.got == a.sent and b.got == b.sent and c.got == c.sent,\n"
	"    'bytes left unread in the loop pipes')\n"
	"  close_pipe(a) close_pipe(b) close_pipe(c)\n"
	"  return format('%d exchanges, %d timer ticks', exchanges, ticks)\n"
	"end\n",
	"\n"
	"-- lepoll.resolver: lookups on its two threads, answers taken here, a\n"
	"-- quarter cancelled; it closes with lookups still under way.\n"
	"function run_resolver(rounds)\n"
	"  local n = math.max(20, math.floor(rounds / 250))\n"
	"  local r, s = lepoll.resolver(2), lepoll.create()\n"
	"  s:set(r, 'in')\n"
	"  local asked, want, got, waits = {}, 0, 0, 0\n"
	"  for i = 1, n do\n"
	"    local id = r:submit(i % 2 == 0 and 'localhost' or '127.0.0.1', 'inet')\n"
	"    check(id, 'submit %d refused', i)\n"
	"    if random(4) == 1 then\n"
	"      check(r:cancel(id), 'lookup %d not found to cancel', id)\n"
	"    else\n"
	"      asked[id], want = true, want + 1\n"
	"    end\n"
	"  end\n"
	"  while got < want and waits < 1000 do\n"
	"    s:wait(0.01)\n"
	"    waits = waits + 1\n"
	"    while true do\n"
	"      local id, addresses, msg = r:take()\n"
	"      if not id then break end\n"
	"      check(asked[id], 'an answer to %d, not asked or cancelled', id)\n"
	"      check(addresses and addresses[1].address == '127.0.0.1', 'lookup %d: %s', id, tostring(msg))\n"
	"      asked[id], got = nil, got + 1\n"
	"    end\n"
	"  end\n"
	"  check(got == want, '%d answers of %d', got, want)\n"
	"  for _ = 1, 4 do r:submit('localhost') end\n"
	"  r:close()\n"
	"  s:close()\n"
	"  return format('%d lookups, %d answered, %d waits', n, got, waits)\n"
	"end\n",
	NULL,
};

/* lua_Reader over the pieces of the script (each kept below the length of
 * string literal that C99 compilers must accept). */
static const char *read_script(lua_State *L, void *ud, size_t *size)
{
	size_t *next = ud;
	const char *piece = threads_script[*next];

	(void)L;
	if (piece == NULL)
		return NULL;
	(*next)++;
	*size = strlen(piece);
	return piece;
}

/* ----------------------------------------------------------------- threads */

static pthread_barrier_t start_line;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int traceback(lua_State *L)
{
	luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
	return 1;
}

/* Calls global fn(rounds); its string result (or error) goes into text.
 * A nil result means the test did not apply. */
static enum outcome run_test(lua_State *L, const char *fn, long rounds, char *text, size_t n)
{
	enum outcome r;

	lua_pushcfunction(L, traceback);
	lua_getglobal(L, fn);
	lua_pushinteger(L, rounds);
	if (lua_pcall(L, 1, 1, -3) != LUA_OK)
		r = FAILED;
	else
		r = lua_isnil(L, -1) ? SKIPPED : PASSED;
	snprintf(text, n, "%s", r == SKIPPED ? "lepoll.loop not found (LUA_PATH)" : lua_tostring(L, -1));
	lua_pop(L, 2);
	return r;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	lua_State *L = luaL_newstate();
	size_t next = 0;
	int rc;

	if (L == NULL) {
		snprintf(w->sets_text, sizeof w->sets_text, "luaL_newstate failed");
		snprintf(w->loop_text, sizeof w->loop_text, "not run");
		snprintf(w->resolver_text, sizeof w->resolver_text, "not run");
		w->sets = FAILED;
		pthread_barrier_wait(&start_line);
		return NULL;
	}
	luaL_openlibs(L);
	luaL_requiref(L, "lepoll", luaopen_lepoll, 0);
	lua_pop(L, 1);
	luaL_newlibtable(L, host_functions);
	lua_pushlightuserdata(L, w);
	luaL_setfuncs(L, host_functions, 1);
	lua_setglobal(L, "host");
	lua_pushinteger(L, w->id);
	lua_setglobal(L, "THREAD_ID");
	rc = lua_load(L, read_script, &next, "=threads_script", "t");
	if (rc == LUA_OK)
		rc = lua_pcall(L, 0, 0, 0);

	/* Every thread starts its rounds at once. */
	pthread_barrier_wait(&start_line);
	w->start = now();
	if (rc != LUA_OK) {
		snprintf(w->sets_text, sizeof w->sets_text, "%s", lua_tostring(L, -1));
		snprintf(w->loop_text, sizeof w->loop_text, "not run");
		snprintf(w->resolver_text, sizeof w->resolver_text, "not run");
		w->sets = FAILED;
	} else {
		w->sets = run_test(L, "run_sets", w->rounds, w->sets_text, sizeof w->sets_text);
		w->loop = run_test(L, "run_loop", w->rounds, w->loop_text, sizeof w->loop_text);
		w->resolver = run_test(L, "run_resolver", w->rounds, w->resolver_text, sizeof w->resolver_text);
	}
	w->end = now();
	lua_close(L);
	/* Pipes a failed script left open are the host's to close: the check of
	 * descriptors after the threads then sees only lepoll's. */
	w->leftover = w->nfds;
	while (w->nfds > 0)
		close(w->fds[--w->nfds]);
	return NULL;
}

static int passed, failed;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void report(enum outcome r, const char *fmt, ...)
{
	va_list ap;

	if (r == PASSED)
		passed++;
	else if (r == FAILED)
		failed++;
	printf("threads: %s ", r == PASSED ? "ok  " : r == FAILED ? "FAIL" : "skip");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

int main(int argc, char **argv)
{
	struct worker workers[MAX_THREADS];
	int nthreads = 4, i, fds_before, fds_after, ep_before, ep_after, started = 0;
	long rounds = 5000;
	double first_end = 0, last_start = 0, t0;

	if (argc > 1 && strcmp(argv[1], "--probe") == 0)
		return 0;
	if (argc > 1)
		nthreads = atoi(argv[1]);
	if (argc > 2)
		rounds = atol(argv[2]);
	if (nthreads < 2 || nthreads > MAX_THREADS || rounds < 1) {
		fprintf(stderr, "usage: %s [THREADS (2 to %d) [ROUNDS (>= 1)]]\n", argv[0], MAX_THREADS);
		return 2;
	}

	fds_before = count_fds(&ep_before);
	memset(workers, 0, sizeof workers);
	if (pthread_barrier_init(&start_line, NULL, (unsigned)nthreads) != 0) {
		perror("threads: pthread_barrier_init");
		return 1;
	}
	t0 = now();
	for (i = 0; i < nthreads; i++) {
		workers[i].id = i + 1;
		workers[i].rounds = rounds;
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
			perror("threads: pthread_create");
			return 1; /* the others wait at the barrier for ever: give up now */
		}
		started++;
	}
	for (i = 0; i < started; i++)
		pthread_join(workers[i].thread, NULL);
	pthread_barrier_destroy(&start_line);
	fds_after = count_fds(&ep_after);

	for (i = 0; i < nthreads; i++) {
		struct worker *w = &workers[i];
		report(w->sets, "thread %d: sets: %s", w->id, w->sets_text);
		report(w->loop, "thread %d: loop: %s", w->id, w->loop_text);
		report(w->resolver, "thread %d: resolver: %s", w->id, w->resolver_text);
		if (w->leftover > 0)
			printf("threads:      thread %d: its script left %d of its pipes' descriptors open "
			       "(closed by the host)\n", w->id, w->leftover);
		if (i == 0 || w->start > last_start)
			last_start = w->start;
		if (i == 0 || w->end < first_end)
			first_end = w->end;
	}
	report(last_start < first_end ? PASSED : FAILED,
	       "all %d threads ran at the same time (overlap %.2f s of %.2f s)", nthreads,
	       first_end - last_start, now() - t0);
	report(fds_before >= 0 && fds_after == fds_before && ep_after == ep_before ? PASSED : FAILED,
	       "no descriptor left open by the closed states (descriptors: %d before, %d after; "
	       "epoll sets: %d before, %d after)", fds_before, fds_after, ep_before, ep_after);
#if defined(__SANITIZE_THREAD__)
	i = tsan_report_count();
	report(i == 0 ? PASSED : FAILED, "ThreadSanitizer reports: %d", i);
#else
	report(SKIPPED, "ThreadSanitizer reports: not built with -fsanitize=thread");
#endif
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
