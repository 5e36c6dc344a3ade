/* tensor.h: arenas (one allocation per lifetime, sized by a measuring pass) and the
 * shape record used in parameter tables and logs.
 *
 * Measure-then-allocate: a builder runs once against an arena in measuring mode
 * (ssl_arena_measure), which only counts bytes, then against the real arena
 * (ssl_arena_alloc with the measured size), where ssl_arena_take carves pointers.
 * Every carve is 64-byte aligned so BLAS and vector loops see aligned rows. */
#ifndef SSL_TENSOR_H
#define SSL_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "real.h"

#define SSL_MAX_DIMS 4

struct ssl_shape {
    int n_dims;
    int64_t dim[SSL_MAX_DIMS];
};

int64_t ssl_shape_elems(const struct ssl_shape *s);
/* "(64, 3, 3, 3)" into buf; returns buf. */
const char *ssl_shape_str(const struct ssl_shape *s, char *buf, size_t n_bytes);

struct ssl_arena {
    unsigned char *base; /* NULL while measuring */
    size_t n_bytes;      /* capacity (0 while measuring) */
    size_t used;         /* bytes carved so far, alignment included */
};

void ssl_arena_measure(struct ssl_arena *a);
/* Allocates n_bytes, zero-filled. Returns 0, or -1 if the allocation failed. */
int ssl_arena_alloc(struct ssl_arena *a, size_t n_bytes);
void ssl_arena_free(struct ssl_arena *a);
/* Carves n_bytes; NULL while measuring. Aborts if a real arena is exhausted (a sizing bug). */
void *ssl_arena_take(struct ssl_arena *a, size_t n_bytes);
ssl_real *ssl_arena_reals(struct ssl_arena *a, int64_t n_elems);

#endif
