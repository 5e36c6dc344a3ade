/* tensor.c: arenas and shapes. */
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { SSL_ALIGN = 64 };

int64_t ssl_shape_elems(const struct ssl_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->n_dims; i++) n *= s->dim[i];
    return n;
}

const char *ssl_shape_str(const struct ssl_shape *s, char *buf, size_t n_bytes)
{
    size_t at = 0;
    at += (size_t)snprintf(buf, n_bytes, "(");
    for (int i = 0; i < s->n_dims && at < n_bytes; i++)
        at += (size_t)snprintf(buf + at, n_bytes - at, i ? ", %lld" : "%lld", (long long)s->dim[i]);
    if (at < n_bytes) snprintf(buf + at, n_bytes - at, ")");
    return buf;
}

void ssl_arena_measure(struct ssl_arena *a)
{
    a->base = NULL;
    a->n_bytes = 0;
    a->used = 0;
}

int ssl_arena_alloc(struct ssl_arena *a, size_t n_bytes)
{
    size_t rounded = (n_bytes + SSL_ALIGN - 1) / SSL_ALIGN * SSL_ALIGN;
    a->used = 0;
    a->n_bytes = rounded;
    a->base = rounded ? aligned_alloc(SSL_ALIGN, rounded) : NULL;
    if (rounded && a->base == NULL) return -1;
    if (a->base) memset(a->base, 0, rounded);
    return 0;
}

void ssl_arena_free(struct ssl_arena *a)
{
    free(a->base);
    a->base = NULL;
    a->n_bytes = 0;
    a->used = 0;
}

void *ssl_arena_take(struct ssl_arena *a, size_t n_bytes)
{
    size_t start = (a->used + SSL_ALIGN - 1) / SSL_ALIGN * SSL_ALIGN;
    a->used = start + n_bytes;
    if (a->base == NULL) return NULL;
    SSL_CHECKF(a->used <= a->n_bytes, "arena overflow: %zu of %zu bytes (sizing bug)", a->used,
               a->n_bytes);
    return a->base + start;
}

ssl_real *ssl_arena_reals(struct ssl_arena *a, int64_t n_elems)
{
    SSL_CHECK(n_elems >= 0);
    return ssl_arena_take(a, (size_t)n_elems * sizeof(ssl_real));
}
