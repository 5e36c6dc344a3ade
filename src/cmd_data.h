/* cmd_data.h: the data commands of the CLI: convert, augment (a PNG grid of views), and the
 * augmentation throughput part of `bench --data`. */
#ifndef SSL_CMD_DATA_H
#define SSL_CMD_DATA_H

#include "comm.h"
#include "config.h"
#include "log.h"

/* Rank 0 packs the configured dataset (train and test splits) into the HDF5 image format. */
enum ssl_status ssl_cmd_convert(const struct ssl_config *cfg, const struct ssl_comm *comm,
                                const char *out, const struct ssl_logger *lg, struct ssl_error *err);
/* Rank 0 writes a grid: per row a sample's original, then its aug.views views. */
enum ssl_status ssl_cmd_augment(const struct ssl_config *cfg, const struct ssl_comm *comm,
                                const char *out, int64_t count, const struct ssl_logger *lg,
                                struct ssl_error *err);
/* Augmented images (views) per second on one core for synthetic images of the model's input
 * shape with the configured recipes; *per_core receives it. */
enum ssl_status ssl_bench_augment(const struct ssl_config *cfg, double *per_core,
                                  struct ssl_error *err);

#endif
