/* check.h: error codes, the error record passed to fallible functions, and check macros.
 * Exit codes of the program are the status codes below (docs/ARCHITECTURE.md lists them).
 * Functions that can fail on user input return an enum ssl_status and fill a struct ssl_error;
 * they never abort. SSL_CHECK is for broken invariants (programming errors, allocation
 * failure): it prints file:line and aborts the whole job. */
#ifndef SSL_CHECK_H
#define SSL_CHECK_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

enum ssl_status {
    SSL_OK = 0,
    SSL_E_OTHER = 1,     /* anything else */
    SSL_E_USAGE = 2,     /* usage or config error */
    SSL_E_DATA = 3,      /* bad input data */
    SSL_E_NONFINITE = 4, /* non-finite loss */
    SSL_E_REQUEUE = 85,  /* checkpointed on a signal; the batch script requeues */
};

struct ssl_error {
    enum ssl_status code;
    char msg[1024];
};

/* Records the first error only: the innermost cause is the useful one. Returns code. */
enum ssl_status ssl_error_set(struct ssl_error *err, enum ssl_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Aborts the job (MPI_Abort when MPI is up, abort() otherwise) after printing the message. */
_Noreturn void ssl_fatal(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SSL_CHECK(cond)                                                   \
    do {                                                                  \
        if (!(cond)) ssl_fatal(__FILE__, __LINE__, "check failed: %s", #cond); \
    } while (0)

#define SSL_CHECKF(cond, ...)                                             \
    do {                                                                  \
        if (!(cond)) ssl_fatal(__FILE__, __LINE__, __VA_ARGS__);          \
    } while (0)

/* Hot-loop assertion, compiled out in Release builds. */
#ifdef NDEBUG
#define SSL_ASSERT(cond) ((void)0)
#else
#define SSL_ASSERT(cond) SSL_CHECK(cond)
#endif

/* A count that is passed to an int API (BLAS, MPI) must fit. */
static inline int ssl_int(int64_t n)
{
    SSL_CHECKF(n >= 0 && n <= INT32_MAX, "count %lld does not fit an int", (long long)n);
    return (int)n;
}

#endif
