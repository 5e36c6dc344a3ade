/* trainer.h: `ssltrain train`: the whole run (docs/TRAINING.md).
 *
 * Opens the data, builds the engine (src/engine.h), opens and locks the run directory, resumes
 * from its newest valid checkpoint, then loops over epochs and steps: the sampler's indices,
 * the keyed augmentations, one engine step, logging (metrics.jsonl and a progress line on
 * rank 0), checkpoints every ckpt.every steps and at each epoch end, the end-of-epoch
 * evaluation, embedding dumps every dump.every epochs. SIGUSR1 / SIGTERM / SIGINT finish the
 * step, checkpoint and return SSL_E_REQUEUE (exit 85) with a REQUEUE marker. */
#ifndef SSL_TRAINER_H
#define SSL_TRAINER_H

#include <stdbool.h>

#include "check.h"
#include "comm.h"
#include "config.h"
#include "log.h"

/* Collective. job_path names the run when run.name is empty (may be NULL). dry_run: validate
 * everything, print the plan (steps, per-rank batch, memory per rank) and return. */
enum ssl_status ssl_train_run(const struct ssl_config *cfg, const char *job_path, bool dry_run,
                              const struct ssl_comm *comm, const struct ssl_logger *lg,
                              struct ssl_error *err);

/* Collective. Checks a job without its data: every key known and in range (done by the
 * config loader), the method against the model and views, the model buildable for the per-rank
 * batch, the batch divisible by the ranks and micro-batches. For validating job catalogues. */
enum ssl_status ssl_train_check(const struct ssl_config *cfg, const struct ssl_comm *comm,
                                const struct ssl_logger *lg, struct ssl_error *err);

#endif
