/* cmd_train.h: `ssltrain dump` and `ssltrain eval`: a checkpoint's model on a dataset split.
 * The model and data come from the config stored in the checkpoint, with key=value overrides
 * applied on top (e.g. data.path when the data moved). */
#ifndef SSL_CMD_TRAIN_H
#define SSL_CMD_TRAIN_H

#include <stdbool.h>

#include "check.h"
#include "comm.h"
#include "log.h"

/* Collective. Writes the embeddings of `split` ("train" or "test") to out. */
enum ssl_status ssl_cmd_dump(const char *ckpt, const char *out, const char *split, int n_over,
                             char **over, const struct ssl_comm *comm,
                             const struct ssl_logger *lg, struct ssl_error *err);
/* Collective. kNN and linear-probe accuracy (top-1, top-5) on the test split and the collapse
 * metrics; one JSON object on stdout with json. */
enum ssl_status ssl_cmd_eval(const char *ckpt, int n_over, char **over, bool json,
                             const struct ssl_comm *comm, const struct ssl_logger *lg,
                             struct ssl_error *err);

#endif
