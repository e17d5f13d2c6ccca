/*
 * args.c: Lua values to what the core takes: the set itself, descriptors,
 * flag specs, timeouts and counts, all integers through one range check.
 * Each conversion gives its value or the reason it refuses one, so that
 * methods raise it and the try_ forms return it.
 */
#define _POSIX_C_SOURCE 200809L /* fileno */

#include "binding.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <lualib.h>

#define FD_KINDS "file descriptor (integer, file handle or object with getfd/pollfd/fileno)"
#define INTSTR_SIZE 24

/* ------------------------------------------------------------- the set */

const char *lepb_pushtypereason(lua_State *L, int idx, const char *expected)
{
	const char *got = luaL_typename(L, idx);

	if (lua_type(L, idx) == LUA_TLIGHTUSERDATA) {
		got = "light userdata";
	} else if (lua_type(L, idx) == LUA_TUSERDATA) {
		if (luaL_getmetafield(L, idx, "__name") != LUA_TNIL) {
			if (lua_type(L, -1) == LUA_TSTRING)
				got = lua_tostring(L, -1); /* stays on the stack below the reason */
			else
				lua_pop(L, 1);
		}
	}
	return lua_pushfstring(L, "%s expected, got %s", expected, got);
}

int lepb_typeerror(lua_State *L, int idx, const char *expected)
{
	return luaL_argerror(L, idx, lepb_pushtypereason(L, idx, expected));
}

lepb_set *lepb_toset(lua_State *L)
{
	lepb_set *set = lua_touserdata(L, 1);

	if (lua_type(L, 1) != LUA_TUSERDATA || !lua_getmetatable(L, 1) ||
	    !lua_rawequal(L, -1, LEPB_UV_SETMT))
		lepb_typeerror(L, 1, LEPOLL_SET_MT);
	lua_pop(L, 1);
	return set;
}

lepb_set *lepb_checkset(lua_State *L)
{
	lepb_set *set = lepb_toset(L);

	if (!lep_is_open(&set->core))
		luaL_error(L, LEPB_CLOSED_MSG);
	return set;
}

/* ------------------------------------------------------------ integers */

enum { INT_OK, INT_FRACTION, INT_OUT_OF_RANGE };

/* Finite with no fraction; beyond 2^53 every double is. */
static int is_integral(lua_Number n)
{
	if (!(n - n == 0))
		return 0; /* NaN or infinite */
	if (n >= 9007199254740992.0 || n <= -9007199254740992.0)
		return 1;
	return (lua_Number)(long long)n == n;
}

/* The one integer check: the number at idx as an integer in [lo, hi].
 * An integral float counts; INT_FRACTION for a fraction, NaN or an
 * infinity; INT_OUT_OF_RANGE for an integral value outside. */
static int intrange(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, lua_Integer *out)
{
	int isint;
	lua_Integer v = lua_tointegerx(L, idx, &isint);

	if (!isint)
		return is_integral(lua_tonumber(L, idx)) ? INT_OUT_OF_RANGE : INT_FRACTION;
	if (v < lo || v > hi)
		return INT_OUT_OF_RANGE;
	*out = v;
	return INT_OK;
}

/* The number at idx as text: an integral value exactly (%I is 5.3's),
 * others as Lua shows them. Converts a copy: the argument stays a number. */
static const char *numtext(lua_State *L, int idx, char *buf)
{
	int isint;
	lua_Integer v = lua_tointegerx(L, idx, &isint);

	if (isint) {
		(void)snprintf(buf, INTSTR_SIZE, "%lld", (long long)v);
		return buf;
	}
	lua_pushvalue(L, idx);
	(void)snprintf(buf, INTSTR_SIZE, "%s", lua_tostring(L, -1));
	lua_pop(L, 1);
	return buf;
}

/* ---------------------------------------------------------- descriptors */

static int number_to_fd(lua_State *L, int idx, const lep_set *s, int *fd)
{
	char num[INTSTR_SIZE];
	lua_Integer v = -1;
	int rc = intrange(L, idx, 0, (lua_Integer)lep_num_fds(s) - 1, &v);

	if (rc == INT_OK) {
		*fd = (int)v;
		return 1;
	}
	if (rc == INT_OUT_OF_RANGE)
		lua_pushfstring(L, "fd %s out of range [0, %d)", numtext(L, idx, num), lep_num_fds(s));
	else
		lua_pushfstring(L, "fd %s is not an integer (valid range [0, %d))", numtext(L, idx, num),
		                lep_num_fds(s));
	return 0;
}

int lepb_tofile(lua_State *L, int idx, FILE **file)
{
#if LUA_VERSION_NUM >= 502
	luaL_Stream *stream = luaL_testudata(L, idx, LUA_FILEHANDLE);

	if (stream == NULL)
		return 0;
	*file = stream->closef != NULL ? stream->f : NULL;
#else
	FILE **filep = compat_tofilep(L, idx);

	if (filep == NULL)
		return 0;
	*file = *filep;
#endif
	return 1;
}

/* File handles and objects with a getfd, pollfd or fileno method
 * (LuaSocket, cqueues and the like), the first one found. */
static int object_to_fd(lua_State *L, int idx, const lep_set *s, int *fd)
{
	static const char *const methods[] = {"getfd", "pollfd", "fileno"};
	FILE *file = NULL;
	int top = lua_gettop(L);

	if (lepb_tofile(L, idx, &file)) {
		if (file == NULL) {
			lua_pushfstring(L, "closed file handle (valid range [0, %d))", lep_num_fds(s));
			return 0;
		}
		lua_pushinteger(L, fileno(file));
		lua_replace(L, idx);
		return number_to_fd(L, idx, s, fd);
	}
	if (lua_type(L, idx) == LUA_TTABLE ||
	    (lua_type(L, idx) == LUA_TUSERDATA && luaL_getmetafield(L, idx, "__index") != LUA_TNIL)) {
		size_t i;

		lua_settop(L, top);
		for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
			int t = lua_getfield(L, idx, methods[i]);
			if (t == LUA_TNIL) {
				lua_pop(L, 1);
				continue;
			}
			if (t != LUA_TFUNCTION && luaL_getmetafield(L, -1, "__call") == LUA_TNIL) {
				lua_pushfstring(L, "%s is %s, not a method", methods[i], luaL_typename(L, -1));
				return 0;
			}
			lua_settop(L, top + 1);
			lua_pushvalue(L, idx);
			lua_call(L, 1, 1);
			if (lua_type(L, -1) != LUA_TNUMBER) {
				lua_pushfstring(L, "%s returned %s, not an fd", methods[i], luaL_typename(L, -1));
				return 0;
			}
			if (!lep_is_open(s)) { /* the method closed the set */
				lua_pushliteral(L, LEPB_CLOSED_MSG);
				return 0;
			}
			lua_replace(L, idx); /* judged as if it had been passed */
			return number_to_fd(L, idx, s, fd);
		}
	}
	lua_settop(L, top);
	lepb_pushtypereason(L, idx, FD_KINDS);
	return 0;
}

int lepb_tofd(lua_State *L, int idx, const lep_set *s, int *fd)
{
	if (lua_type(L, idx) == LUA_TNUMBER)
		return number_to_fd(L, idx, s, fd);
	return object_to_fd(L, idx, s, fd);
}

int lepb_todescriptor(lua_State *L, int idx, int *fd)
{
	FILE *file;
	int indexable, isint = 0;
	lua_Integer v;

	if (lua_type(L, idx) == LUA_TNUMBER) {
		v = lua_tointegerx(L, idx, &isint);
		if (!isint || v < 0 || v > INT_MAX) {
			lua_pushliteral(L, "descriptor must be an integer in [0, 2147483647]");
			return 0;
		}
		*fd = (int)v;
		return 1;
	}
	if (lepb_tofile(L, idx, &file)) {
		if (file == NULL) {
			lua_pushliteral(L, "attempt to use a closed file");
			return 0;
		}
		*fd = fileno(file);
		return 1;
	}
	indexable = lua_type(L, idx) == LUA_TTABLE;
	if (lua_type(L, idx) == LUA_TUSERDATA && luaL_getmetafield(L, idx, "__index") != LUA_TNIL) {
		lua_pop(L, 1);
		indexable = 1;
	}
	if (indexable) {
		if (lua_getfield(L, idx, "getfd") != LUA_TNIL) {
			lua_pushvalue(L, idx);
			lua_call(L, 1, 1);
			v = lua_tointegerx(L, -1, &isint);
			lua_pop(L, 1);
			if (!isint || v < 0 || v > INT_MAX) {
				lua_pushliteral(L, "getfd returned no descriptor (closed?)");
				return 0;
			}
			*fd = (int)v;
			return 1;
		}
		lua_pop(L, 1);
	}
	lepb_pushtypereason(L, idx, "descriptor (integer, file handle or object with getfd)");
	return 0;
}

int lepb_checkdescriptor(lua_State *L, int idx)
{
	int fd = -1;
	if (!lepb_todescriptor(L, idx, &fd))
		luaL_argerror(L, idx, lua_tostring(L, -1));
	return fd;
}

int lepb_checkfd(lua_State *L, int idx, const lep_set *s)
{
	int fd = -1;

	if (lua_isinteger(L, idx)) { /* the common case, without a detour */
		lua_Integer v = lua_tointeger(L, idx);
		if (v >= 0 && v < lep_num_fds(s))
			return (int)v;
	}
	if (!lepb_tofd(L, idx, s, &fd)) {
		if (!lep_is_open(s))
			luaL_error(L, LEPB_CLOSED_MSG);
		luaL_argerror(L, idx, lua_tostring(L, -1));
	}
	return fd;
}

/* ---------------------------------------------------------------- flags */

static int flags_from_number(lua_State *L, int idx, uint32_t *flags)
{
	char num[INTSTR_SIZE];
	lua_Integer v = 0;
	int rc = intrange(L, idx, 0, (lua_Integer)UINT32_MAX, &v);

	if (rc == INT_OK) {
		*flags = (uint32_t)v;
		return 1;
	}
	if (rc == INT_OUT_OF_RANGE)
		lua_pushfstring(L, "flags %s out of range [0, 0xffffffff]", numtext(L, idx, num));
	else
		lua_pushfstring(L, "flags %s are not an integer", numtext(L, idx, num));
	return 0;
}

/* A string as it can be shown in a message: control bytes (NUL included,
 * which would cut the message short) as \ddd, long ones cut with "...". */
static const char *printable(const char *str, size_t len, char *out, size_t n)
{
	size_t i, k = 0;

	for (i = 0; i < len && k + 8 < n; i++) {
		unsigned char c = (unsigned char)str[i];
		if (c < 0x20 || c == 0x7f)
			k += (size_t)snprintf(out + k, n - k, "\\%d", c);
		else
			out[k++] = (char)c;
	}
	if (i < len)
		k += (size_t)snprintf(out + k, n - k, "...");
	out[k] = '\0';
	return out;
}

static int flags_from_string(lua_State *L, int idx, uint32_t *flags)
{
	size_t len, bad = 0, badlen = 0;
	const char *str = lua_tolstring(L, idx, &len);
	char shown[64];

	if (lep_parse_flags(str, len, flags, &bad, &badlen) == 0)
		return 1;
	lua_pushfstring(L, "unknown flag name '%s'", printable(str + bad, badlen, shown, sizeof shown));
	return 0;
}

static int flags_from_list(lua_State *L, int idx, uint32_t *flags)
{
	char num[INTSTR_SIZE];
	lua_Integer i, n = (lua_Integer)lua_rawlen(L, idx);
	uint32_t item;

	*flags = 0;
	for (i = 1; i <= n; i++) {
		int t = lua_rawgeti(L, idx, i), ok;

		if (t == LUA_TSTRING) {
			ok = flags_from_string(L, -1, &item);
		} else if (t == LUA_TNUMBER) {
			ok = flags_from_number(L, -1, &item);
		} else {
			(void)snprintf(num, sizeof num, "%lld", (long long)i);
			lua_pushfstring(L, "flag list item %s is %s, not a name", num, luaL_typename(L, -1));
			ok = 0;
		}
		if (!ok)
			return 0; /* the reason on top */
		lua_pop(L, 1);
		*flags |= item;
	}
	return 1;
}

/* An integer, a string of names or a list of names (or integers). */
int lepb_toflags(lua_State *L, int idx, uint32_t *flags)
{
	switch (lua_type(L, idx)) {
	case LUA_TNUMBER:
		return flags_from_number(L, idx, flags);
	case LUA_TSTRING:
		return flags_from_string(L, idx, flags);
	case LUA_TTABLE:
		return flags_from_list(L, idx, flags);
	default:
		lepb_pushtypereason(L, idx, "flags (integer, string of names or list of names)");
		return 0;
	}
}

uint32_t lepb_checkflags(lua_State *L, int idx)
{
	uint32_t flags = 0;

	if (lua_type(L, idx) == LUA_TNUMBER && lua_isinteger(L, idx)) {
		lua_Integer v = lua_tointeger(L, idx);
		if (v >= 0 && v <= (lua_Integer)UINT32_MAX)
			return (uint32_t)v;
	}
	if (!lepb_toflags(L, idx, &flags))
		luaL_argerror(L, idx, lua_tostring(L, -1));
	return flags;
}

const char *lepb_pushexclusivereason(lua_State *L, int rule, int fd)
{
	if (rule == LEP_EXCLUSIVE_ON_MOD)
		return lua_pushfstring(L, "exclusive can only be set when fd %d is added; remove it first",
		                       fd);
	return lua_pushfstring(L, "fd %d was added with exclusive, which the kernel never modifies; "
	                          "remove it first", fd);
}

/* -------------------------------------------------- timeouts and counts */

static int is_literal(const char *s, size_t len, const char *lit)
{
	return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

int lepb_checktimeout(lua_State *L, int idx)
{
	const char *str;
	char shown[64];
	size_t len;
	lua_Number span;

	switch (lua_type(L, idx)) {
	case LUA_TNONE:
	case LUA_TNIL:
		return -1;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			return lep_timeout_ms_int((long long)lua_tointeger(L, idx));
		span = lua_tonumber(L, idx);
		if (span != span)
			luaL_argerror(L, idx, "timeout is NaN");
		return lep_timeout_ms((double)span);
	case LUA_TSTRING:
		str = lua_tolstring(L, idx, &len);
		if (is_literal(str, len, "never"))
			return -1;
		if (is_literal(str, len, "immediately"))
			return 0;
		return luaL_argerror(L, idx, lua_pushfstring(L, "invalid timeout '%s' (expected seconds, "
		                                                "'never' or 'immediately')",
		                                             printable(str, len, shown, sizeof shown)));
	default:
		return lepb_typeerror(L, idx, "timeout (seconds, 'never', 'immediately' or nil)");
	}
}

int lepb_tocount(lua_State *L, int idx, int def, int max, const char *what, int *out)
{
	lua_Integer v = 0;
	int rc;

	if (lua_isnoneornil(L, idx)) {
		*out = def;
		return 1;
	}
	if (lua_type(L, idx) != LUA_TNUMBER) {
		lua_pushfstring(L, "%s must be an integer, got %s", what, luaL_typename(L, idx));
		return 0;
	}
	rc = intrange(L, idx, 1, max, &v);
	if (rc == INT_OK) {
		*out = (int)v;
		return 1;
	}
	if (rc == INT_OUT_OF_RANGE) {
		char num[INTSTR_SIZE];

		lua_pushfstring(L, "%s must be in [1, %d], got %s", what, max, numtext(L, idx, num));
	} else {
		lua_pushfstring(L, "%s must be an integer", what);
	}
	return 0;
}

void lepb_checkcallable(lua_State *L, int idx)
{
	if (lua_type(L, idx) != LUA_TFUNCTION) {
		if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL)
			lepb_typeerror(L, idx, "function");
		lua_pop(L, 1);
	}
}
