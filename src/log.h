/* log.h: the one logging entry point. Info goes out on rank 0 only; warnings and errors from
 * any rank carry "[rank r/n]". The logger is passed explicitly (no global state). */
#ifndef SSL_LOG_H
#define SSL_LOG_H

#include <stdio.h>

enum ssl_log_level { SSL_LOG_ERROR, SSL_LOG_WARN, SSL_LOG_INFO, SSL_LOG_DEBUG };

struct ssl_logger {
    int rank, size;
    enum ssl_log_level level; /* messages above it are dropped */
    FILE *out;                /* info and debug */
    FILE *err;                /* warnings and errors */
};

void ssl_logger_init(struct ssl_logger *lg, int rank, int size);
void ssl_log(const struct ssl_logger *lg, enum ssl_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
