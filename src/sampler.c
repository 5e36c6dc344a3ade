/* sampler.c: the epoch permutation (Fisher-Yates over the (seed, epoch) stream) and the slices. */
#include "sampler.h"

#include <stdlib.h>
#include <string.h>

#include "rng.h"

enum ssl_status ssl_sampler_init(struct ssl_sampler *s, int64_t n_samples, int64_t global_batch,
                                 int rank, int size, uint64_t seed, struct ssl_error *err)
{
    memset(s, 0, sizeof *s);
    if (global_batch < 1 || global_batch % size != 0)
        return ssl_error_set(err, SSL_E_USAGE,
                             "data.batch=%lld is not divisible by the %d ranks (the global batch is "
                             "split evenly so results do not depend on the rank count)",
                             (long long)global_batch, size);
    if (global_batch > n_samples)
        return ssl_error_set(err, SSL_E_USAGE, "data.batch=%lld is larger than the dataset (%lld samples)",
                             (long long)global_batch, (long long)n_samples);
    s->perm = malloc((size_t)n_samples * sizeof *s->perm);
    if (s->perm == NULL) return ssl_error_set(err, SSL_E_OTHER, "out of memory for the sampler");
    s->n_samples = n_samples;
    s->global_batch = global_batch;
    s->local_batch = global_batch / size;
    s->steps_per_epoch = n_samples / global_batch;
    s->rank = rank;
    s->size = size;
    s->seed = seed;
    s->epoch = -1;
    return SSL_OK;
}

void ssl_sampler_free(struct ssl_sampler *s)
{
    free(s->perm);
    s->perm = NULL;
}

void ssl_sampler_set_epoch(struct ssl_sampler *s, int64_t epoch)
{
    if (epoch == s->epoch) return;
    struct ssl_rng rng;
    ssl_rng_init(&rng, s->seed, SSL_RNG_EPOCH, (uint32_t)epoch, (uint32_t)((uint64_t)epoch >> 32), 0);
    for (int64_t i = 0; i < s->n_samples; i++) s->perm[i] = i;
    for (int64_t i = s->n_samples - 1; i > 0; i--) {
        int64_t j = (int64_t)ssl_rng_below(&rng, (uint64_t)i + 1), t = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = t;
    }
    s->epoch = epoch;
}

const int64_t *ssl_sampler_local(const struct ssl_sampler *s, int64_t step)
{
    SSL_CHECK(s->epoch >= 0 && step >= 0 && step < s->steps_per_epoch);
    return s->perm + step * s->global_batch + (int64_t)s->rank * s->local_batch;
}
