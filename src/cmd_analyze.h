/* cmd_analyze.h: `ssltrain analyze EMB.h5`: the collapse metrics of an embedding dump. */
#ifndef SSL_CMD_ANALYZE_H
#define SSL_CMD_ANALYZE_H

#include <stdbool.h>

#include "check.h"

struct ssl_analyze_args {
    const char *path;    /* the HDF5 file */
    const char *dataset; /* default "/z" */
    bool json;
    const char *plot;    /* PNG path for the spectrum, or NULL */
};

/* Not collective: the caller runs it on one rank. */
enum ssl_status ssl_cmd_analyze(const struct ssl_analyze_args *a, struct ssl_error *err);

#endif
