/* rng.h: counter-based random streams (Random123 Philox4x32-10).
 * A stream is keyed by (seed, purpose) and positioned by up to three counter words chosen by
 * the caller, e.g. (epoch, sample index, view) for augmentations or (step, 0, 0) inside a loss.
 * The same key and words give the same numbers on every rank and at every rank count, so
 * nothing random ever depends on the rank. The whole state is this small struct, which a
 * checkpoint can store as it is. */
#ifndef SSL_RNG_H
#define SSL_RNG_H

#include <stdint.h>

enum ssl_rng_purpose {
    SSL_RNG_INIT = 1,     /* parameter initialisation: words (parameter index, 0, 0) */
    SSL_RNG_EPOCH = 2,    /* global permutation of the data: (epoch, 0, 0) */
    SSL_RNG_AUGMENT = 3,  /* (epoch, sample index, view) */
    SSL_RNG_LOSS = 4,     /* randomness inside a loss: (step, purpose detail, 0) */
    SSL_RNG_BENCH = 5,    /* synthetic inputs of the benchmark */
    SSL_RNG_TEST = 6,     /* tests */
    SSL_RNG_SHUFFLE = 7,  /* feature permutations inside the model: (step, view, node) */
    SSL_RNG_STATE = 8,    /* initial method state (MoCo's queue): (what, 0, 0) */
    SSL_RNG_EVAL = 9,     /* evaluation: sample subsets and the linear probe's order */
};

struct ssl_rng {
    uint32_t key[2];
    uint32_t ctr[4]; /* ctr[0] counts blocks drawn; ctr[1..3] are the caller's words */
    uint32_t block[4];
    int n_left; /* unread words of block */
};

void ssl_rng_init(struct ssl_rng *r, uint64_t seed, enum ssl_rng_purpose purpose, uint32_t w1,
                  uint32_t w2, uint32_t w3);
uint32_t ssl_rng_u32(struct ssl_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double ssl_rng_uniform(struct ssl_rng *r);
/* Uniform integer in [0, n), unbiased. n >= 1. */
uint64_t ssl_rng_below(struct ssl_rng *r, uint64_t n);
/* Standard normal (Box-Muller; one value per call, no cached state beyond the counter). */
double ssl_rng_normal(struct ssl_rng *r);

#endif
