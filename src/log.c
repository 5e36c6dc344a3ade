/* log.c: rank-aware logging. */
#include "log.h"

#include <stdarg.h>

void ssl_logger_init(struct ssl_logger *lg, int rank, int size)
{
    lg->rank = rank;
    lg->size = size;
    lg->level = SSL_LOG_INFO;
    lg->out = stdout;
    lg->err = stderr;
}

void ssl_log(const struct ssl_logger *lg, enum ssl_log_level level, const char *fmt, ...)
{
    if (level > lg->level) return;
    int is_problem = level <= SSL_LOG_WARN;
    if (!is_problem && lg->rank != 0) return;
    FILE *f = is_problem ? lg->err : lg->out;
    if (is_problem) fprintf(f, "[rank %d/%d] %s: ", lg->rank, lg->size, level == SSL_LOG_ERROR ? "error" : "warning");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}
