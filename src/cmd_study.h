/* cmd_study.h: `ssltrain study NAME`: the synthetic studies of the W2 paper's repository
 * (statsle/WassersteinSSL, EmpiricalStudy/, DistributionApproximation/, LargeMeans/) on
 * generated data, W2 and L_U from metrics.h, written as CSV, Markdown and a PNG plot. */
#ifndef SSL_CMD_STUDY_H
#define SSL_CMD_STUDY_H

#include <stdbool.h>
#include <stdint.h>

#include "check.h"

/* The study names, space separated, for help and error messages. */
#define SSL_STUDY_NAMES \
    "distribution collapse dimension feature-cloning feature-baby instance-cloning large-mean"

struct ssl_study_args {
    const char *study;   /* one of SSL_STUDY_NAMES */
    const char *out_dir; /* created if absent (one level at a time) */
    bool quick;          /* small sizes: the whole set in seconds */
    uint64_t seed;       /* key of the SSL_RNG_BENCH streams */
    int64_t lu_rows;     /* L_U on the first lu_rows rows; 0 = all; < 0 = the study's default */
};

/* Not collective: the caller runs it on one rank. Prints the table to stdout and writes
 * out_dir/<study>.{csv,md,png}, each written to a .tmp file and renamed. */
enum ssl_status ssl_cmd_study(const struct ssl_study_args *a, struct ssl_error *err);

#endif
