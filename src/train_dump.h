/* train_dump.h: embeddings of a whole split into an HDF5 dump (io/embeddings.h): /h backbone
 * features, /z projector outputs, /labels, /index, with attributes method, step, epoch, split,
 * config, git_revision, dataset. Used by the trainer (dump.every) and `ssltrain dump`. */
#ifndef SSL_TRAIN_DUMP_H
#define SSL_TRAIN_DUMP_H

#include <stdint.h>

#include "augment.h"
#include "check.h"
#include "comm.h"
#include "config.h"
#include "dataset.h"
#include "models/model.h"

/* Collective: each rank extracts its contiguous block of the split and writes it. */
enum ssl_status ssl_train_dump(const char *path, struct ssl_model *m, struct ssl_dataset *ds,
                               enum ssl_split split, const struct ssl_aug_recipe *recipes,
                               const struct ssl_config *cfg, int64_t step, int64_t epoch,
                               const struct ssl_comm *comm, struct ssl_error *err);

#endif
