/*
 * harness.h - the small test framework every tests/test_*.c uses.
 *
 * A test file defines its tests with TEST(name) and lists them in main via
 * RUN(name); tsl_test_main() prints one line per test and closes with
 * "N passed, N failed".  CHECK* record a failure and return from the test.
 * Fixtures live in a fresh temporary directory (tsl_test_tmpdir()).
 */
#ifndef TSL_TEST_HARNESS_H
#define TSL_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdbool.h>

extern int tsl_test_failed_;
extern const char *tsl_test_name_;

#define TEST(name) static void name(void)

#define FAILF_(...)                                                              \
    do {                                                                         \
        fprintf(stderr, "  %s:%d: %s: ", __FILE__, __LINE__, tsl_test_name_);    \
        fprintf(stderr, __VA_ARGS__);                                            \
        fputc('\n', stderr);                                                     \
        tsl_test_failed_ = 1;                                                    \
        return;                                                                  \
    } while (0)

#define CHECK(cond)                                                              \
    do { if (!(cond)) FAILF_("CHECK(%s) failed", #cond); } while (0)
#define CHECK_INT(a, b)                                                          \
    do {                                                                         \
        long long a_ = (long long)(a), b_ = (long long)(b);                      \
        if (a_ != b_) FAILF_("%s == %lld, expected %s == %lld", #a, a_, #b, b_); \
    } while (0)
#define CHECK_STR(a, b)                                                          \
    do {                                                                         \
        const char *a_ = (a), *b_ = (b);                                         \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                   \
            FAILF_("%s == \"%s\", expected \"%s\"", #a, a_ ? a_ : "(null)",      \
                   b_ ? b_ : "(null)");                                          \
    } while (0)
#define CHECK_NULL(a)                                                            \
    do { if ((a) != NULL) FAILF_("%s is not NULL", #a); } while (0)
#define CHECK_CONTAINS(hay, needle)                                              \
    do {                                                                         \
        const char *h_ = (hay), *n_ = (needle);                                  \
        if (!h_ || !strstr(h_, n_))                                              \
            FAILF_("%s does not contain \"%s\": \"%s\"", #hay, n_, h_ ? h_ : "(null)"); \
    } while (0)
/* A tsl call that must succeed; prints tsl_error_last() when it does not. */
#define CHECK_OK(call)                                                           \
    do {                                                                         \
        int rc_ = (call);                                                        \
        if (rc_ != 0) FAILF_("%s returned %d: %s", #call, rc_, tsl_error_last()); \
    } while (0)

#define RUN(name) tsl_test_run_(#name, name)

void tsl_test_run_(const char *name, void (*fn)(void));
/* Prints the closing line and returns the process exit status. */
int tsl_test_main(void);
/* A fresh directory for this process's fixtures, removed at exit. */
const char *tsl_test_tmpdir(void);
/* tmpdir/name, in a static rotating buffer. */
const char *tsl_test_path(const char *name);
/* Reads a whole file (malloc'd, NUL-terminated; free() it); NULL when it
 * cannot be read.  *len (may be NULL) gets its length. */
char *tsl_test_read(const char *path, size_t *len);
/* Writes a file (fixture). Returns 0 on success. */
int tsl_test_write(const char *path, const char *text);
/* Runs a shell command, captures stdout (and stderr if merge) into *out
 * (malloc'd), returns the exit status. */
int tsl_test_sh(char **out, bool merge, const char *fmt, ...);

#endif
