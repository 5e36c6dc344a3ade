/* rng.c: Philox4x32-10 from Random123, read four words per block. */
#include "rng.h"

#include <math.h>

#include <Random123/philox.h>

void ssl_rng_init(struct ssl_rng *r, uint64_t seed, enum ssl_rng_purpose purpose, uint32_t w1,
                  uint32_t w2, uint32_t w3)
{
    /* The purpose is folded into the key so streams of different purposes never overlap,
     * whatever counter words they use. */
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32) ^ ((uint32_t)purpose * 0x9E3779B9u);
    r->ctr[0] = 0;
    r->ctr[1] = w1;
    r->ctr[2] = w2;
    r->ctr[3] = w3;
    r->n_left = 0;
}

uint32_t ssl_rng_u32(struct ssl_rng *r)
{
    if (r->n_left == 0) {
        philox4x32_ctr_t c = {{r->ctr[0], r->ctr[1], r->ctr[2], r->ctr[3]}};
        philox4x32_key_t k = {{r->key[0], r->key[1]}};
        philox4x32_ctr_t out = philox4x32(c, k);
        for (int i = 0; i < 4; i++) r->block[i] = out.v[i];
        r->ctr[0]++;
        r->n_left = 4;
    }
    return r->block[4 - r->n_left--];
}

double ssl_rng_uniform(struct ssl_rng *r)
{
    uint64_t hi = ssl_rng_u32(r) >> 5, lo = ssl_rng_u32(r) >> 6; /* 27 + 26 bits */
    return (double)(hi * 67108864u + lo) * (1.0 / 9007199254740992.0);
}

uint64_t ssl_rng_below(struct ssl_rng *r, uint64_t n)
{
    /* Rejection keeps the result exactly uniform. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t x = ((uint64_t)ssl_rng_u32(r) << 32) | ssl_rng_u32(r);
        if (x < limit) return x % n;
    }
}

double ssl_rng_normal(struct ssl_rng *r)
{
    double u1 = 1.0 - ssl_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = ssl_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
