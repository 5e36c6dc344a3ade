/* eval_features.h: frozen features of dataset images, for evaluation and embedding dumps.
 *
 * Images go through the "plain" view (the training view 0's output size and normalisation,
 * no random op) and the model in eval mode (BatchNorm running statistics), in chunks of the
 * model's batch; each rank extracts its own list of dataset indices. */
#ifndef SSL_EVAL_FEATURES_H
#define SSL_EVAL_FEATURES_H

#include <stdint.h>

#include "augment.h"
#include "check.h"
#include "comm.h"
#include "dataset.h"
#include "models/model.h"

struct ssl_features {
    float *h;        /* (n, dh) backbone features */
    float *z;        /* (n, dz) projector outputs */
    int64_t *labels; /* (n) */
    int64_t *index;  /* (n) dataset indices */
    int64_t n, dh, dz;
};

/* The evaluation view: r's size and normalisation, every random op off. */
struct ssl_aug_recipe ssl_plain_recipe(const struct ssl_aug_recipe *r);

/* Collective (the dataset read is, for HDF5): every rank calls it, with its own indices (n may
 * differ, even be 0). Uses view 0's activations of m. The view's randomness (for a random
 * recipe) is keyed by (seed, epoch 0, index, view). */
enum ssl_status ssl_features_extract(struct ssl_features *out, struct ssl_model *m,
                                     struct ssl_dataset *ds, const struct ssl_aug_recipe *plain,
                                     uint64_t seed, uint32_t view,
                                     const int64_t *indices, int64_t n,
                                     const struct ssl_comm *comm, struct ssl_error *err);
void ssl_features_free(struct ssl_features *f);

/* This rank's contiguous block of `count` indices drawn without replacement from [0, total)
 * by a permutation keyed by (seed, what) (count 0 or >= total: all of them, in order). */
int64_t *ssl_eval_subset(int64_t *n_local, int64_t total, int64_t count, uint64_t seed,
                         uint32_t what, const struct ssl_comm *comm);

#endif
