/* lepoll core: seconds to epoll_wait timeouts, and the monotonic clock. No Lua. */
#define _POSIX_C_SOURCE 200809L

#include "lepoll_core.h"

#include <limits.h>
#include <math.h>
#include <time.h>

int lep_timeout_ms_int(long long seconds)
{
	if (seconds <= 0)
		return 0;
	return seconds > INT_MAX / 1000 ? INT_MAX : (int)seconds * 1000;
}

int lep_timeout_ms(double seconds)
{
	long long ns, ms;

	if (!(seconds > 0))
		return 0;
	if (seconds > (double)INT_MAX / 1000.0)
		return isinf(seconds) ? -1 : INT_MAX;
	/* Through whole nanoseconds, as the reference's Time_ns spans, so that
	 * 0.0015 s is 1.5 ms exactly and rounds up to 2. */
	ns = (long long)(seconds * 1e9 + 0.5);
	ms = (ns + 500000) / 1000000;
	if (ms < 1)
		ms = 1;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

double lep_now(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail on Linux */
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
