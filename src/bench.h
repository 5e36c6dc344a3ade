/* bench.h: `ssltrain bench`: images/s of the full training step (two views: forward, loss,
 * backward, optimizer step) on synthetic inputs, for the model, batch, projector width and
 * thread count the config gives. */
#ifndef SSL_BENCH_H
#define SSL_BENCH_H

#include "comm.h"
#include "config.h"
#include "log.h"

/* Collective: every rank runs its shard of the global batch in the distributed step (SyncBN, the
 * loss over the global batch, the overlapped gradient allreduce); the slowest rank's step time
 * decides images_per_s. */
enum ssl_status ssl_bench_run(const struct ssl_config *cfg, const struct ssl_comm *comm,
                              const struct ssl_logger *lg, double *images_per_s,
                              struct ssl_error *err);

#endif
