/* Shared by the test hosts in test/c that run under ThreadSanitizer:
 * counting its reports, so that a report turns into a failed test. */
#ifndef LEPOLL_TEST_TSAN_H
#define LEPOLL_TEST_TSAN_H

#if defined(__SANITIZE_THREAD__)
static int tsan_reports;

/* ThreadSanitizer calls this for every report it prints (a weak hook of
 * its runtime). */
void __tsan_on_report(const void *report);
void __tsan_on_report(const void *report)
{
	(void)report;
	__atomic_add_fetch(&tsan_reports, 1, __ATOMIC_SEQ_CST);
}

/* The reports printed so far. */
static inline int tsan_report_count(void)
{
	return __atomic_load_n(&tsan_reports, __ATOMIC_SEQ_CST);
}
#endif

#endif
