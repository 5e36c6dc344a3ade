/* train_ckpt.h: the trainer's state in a checkpoint (io/checkpoint.h) and back.
 *
 * Layout (docs/CHECKPOINTS.md "What the trainer stores"):
 *   model/<state_dict name>   the online model: parameters and BatchNorm buffers (float32),
 *                             num_batches_tracked (int64 scalars), prototypes.weight (SwAV)
 *   target/<state_dict name>  the EMA target network (BYOL, MoCo, RDM on BYOL)
 *   optim/state               momentum (SGD, LARS) or the two AdamW moments, float32 (n)
 *   optim/steps               optimizer steps taken (int64)
 *   state/queue, state/queue_ptr   MoCo's keys (float64 (K, d)) and write position
 * Root attributes: config (the resolved YAML), git_revision, method, epoch, epoch_step (steps
 * done in that epoch: the data cursor), ranks, global_batch, and the library's own
 * (format, format_version, step, checksums).
 * Every random stream is keyed by (seed, epoch, step, index), so the cursor is all of the RNG
 * state there is: resuming reproduces the run bit for bit at the same rank count. */
#ifndef SSL_TRAIN_CKPT_H
#define SSL_TRAIN_CKPT_H

#include <stdint.h>

#include "check.h"
#include "comm.h"
#include "config.h"
#include "engine.h"

struct ssl_train_cursor {
    int64_t step;       /* optimizer steps done */
    int64_t epoch;      /* the epoch the next step belongs to */
    int64_t epoch_step; /* steps of that epoch already done */
};

/* Collective. Writes <dir>/step-XXXXXXXX.h5 (cursor->step) and updates latest.h5. */
enum ssl_status ssl_train_ckpt_write(const struct ssl_engine *e, const struct ssl_train_cursor *cur,
                                     const struct ssl_config *cfg, const char *dir, int keep,
                                     const struct ssl_comm *comm, struct ssl_error *err);

/* Collective. Loads path into e and *cur. The stored config must agree with cfg on every key
 * that changes the run (all but run.*, train.log_every, train.max_steps, train.on_nonfinite,
 * ckpt.*, dump.*, eval.*, linalg.*, data.path, bench.*): otherwise SSL_E_USAGE listing the
 * differing keys with both values. */
enum ssl_status ssl_train_ckpt_load(struct ssl_engine *e, struct ssl_train_cursor *cur,
                                    const struct ssl_config *cfg, const char *path,
                                    const struct ssl_comm *comm, struct ssl_error *err);

/* Collective. Loads only the online model's model/<name> entries of a checkpoint into m (for
 * `ssltrain dump` and `ssltrain eval`); *config_text (malloc'd) gets the stored config. */
enum ssl_status ssl_train_ckpt_load_model(struct ssl_model *m, char **config_text,
                                          const char *path, const struct ssl_comm *comm,
                                          struct ssl_error *err);

/* The stored config of a checkpoint (malloc'd text into *config_text). Collective. */
enum ssl_status ssl_train_ckpt_config(char **config_text, const char *path,
                                      const struct ssl_comm *comm, struct ssl_error *err);

/* The value of a key as text ("0.05", "512,512", "true"), for messages and comparisons. */
void ssl_config_value_text(const struct ssl_config *cfg, const struct ssl_key_spec *k, char *buf,
                           size_t n_bytes);

#endif
