/* sampler.h: which samples each rank takes at each step.
 *
 * Every epoch a global permutation of the dataset is drawn from (seed, epoch) — identical on
 * every rank. Step s of the epoch uses the global batch perm[s*B .. (s+1)*B); rank r of P
 * takes its contiguous slice of b = B/P samples. The last incomplete global batch is dropped,
 * so an epoch has floor(N/B) steps. B must be divisible by P, so the global batches (and
 * hence the training) do not depend on the rank count. */
#ifndef SSL_SAMPLER_H
#define SSL_SAMPLER_H

#include <stdint.h>

#include "check.h"

struct ssl_sampler {
    int64_t n_samples, global_batch, local_batch, steps_per_epoch;
    int rank, size;
    uint64_t seed;
    int64_t epoch; /* of the permutation held, -1 before the first */
    int64_t *perm; /* (n_samples) */
};

enum ssl_status ssl_sampler_init(struct ssl_sampler *s, int64_t n_samples, int64_t global_batch,
                                 int rank, int size, uint64_t seed, struct ssl_error *err);
void ssl_sampler_free(struct ssl_sampler *s);
/* Draws the permutation of `epoch` (only when it is not the one held). */
void ssl_sampler_set_epoch(struct ssl_sampler *s, int64_t epoch);
/* This rank's local_batch dataset indices for step `step` (0 <= step < steps_per_epoch) of the
 * current epoch. */
const int64_t *ssl_sampler_local(const struct ssl_sampler *s, int64_t step);

#endif
