/* check.c: the error record and the fatal path shared by every module. */
#include "check.h"

#include <stdlib.h>
#include <string.h>

#include <mpi.h>

enum ssl_status ssl_error_set(struct ssl_error *err, enum ssl_status code, const char *fmt, ...)
{
    if (err == NULL || err->code != SSL_OK) return err ? err->code : code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

_Noreturn void ssl_fatal(const char *file, int line, const char *fmt, ...)
{
    int up = 0, down = 0, rank = 0, size = 1;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down) {
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[rank %d/%d] %s:%d: %s\n", rank, size, file, line, msg);
    fflush(stderr);
    if (up && !down) MPI_Abort(MPI_COMM_WORLD, SSL_E_OTHER);
    abort();
}
