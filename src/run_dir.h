/* run_dir.h: a run's directory: created, locked while a run writes to it, and its files.
 *
 *   <run.dir>/<name>/config.yaml     the resolved config, each key with its origin
 *   <run.dir>/<name>/metrics.jsonl   one JSON object per line (docs/TRAINING.md lists fields)
 *   <run.dir>/<name>/checkpoints/    step-XXXXXXXX.h5 and latest.h5 (io/checkpoint.h)
 *   <run.dir>/<name>/LOCK            flock()ed by rank 0 while the run is alive: a second job
 *                                    on the same directory fails at once; the kernel releases
 *                                    the lock when the process dies, so no stale lock remains
 *   <run.dir>/<name>/REQUEUE         written when the run stopped on a signal to be requeued
 * The name is run.name, or the job file's base name without extension, or "run". */
#ifndef SSL_RUN_DIR_H
#define SSL_RUN_DIR_H

#include <stdio.h>

#include "check.h"
#include "comm.h"
#include "config.h"

enum { SSL_RUN_PATH_MAX = 4096 };

struct ssl_run_dir {
    char path[SSL_RUN_PATH_MAX];
    char ckpt[SSL_RUN_PATH_MAX]; /* path/checkpoints */
    int lock_fd;                 /* rank 0; -1 elsewhere */
    FILE *metrics;               /* rank 0: metrics.jsonl, appended; NULL elsewhere */
};

/* Collective. Creates and locks the directory (rank 0), writes config.yaml, opens
 * metrics.jsonl for appending, removes a REQUEUE marker of a previous stop. Every rank gets
 * the same status and the paths. */
enum ssl_status ssl_run_dir_open(struct ssl_run_dir *rd, const struct ssl_config *cfg,
                                 const char *job_path, const struct ssl_comm *comm,
                                 struct ssl_error *err);
/* Collective-safe (rank 0 acts): writes the REQUEUE marker with the signal's name. */
void ssl_run_dir_mark_requeue(const struct ssl_run_dir *rd, const char *why,
                              const struct ssl_comm *comm);
void ssl_run_dir_close(struct ssl_run_dir *rd);

#endif
