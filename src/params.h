/* params.h: the parameter table of a model, in PyTorch state_dict names and layouts.
 *
 * Trainable tensors live in one contiguous buffer `params`, their gradients in `grads` with the
 * same layout, so the gradient allreduce and the checkpoint each see one flat array. BatchNorm
 * running statistics live in `buffers` (floats) and num_batches_tracked in `counters` (int64,
 * as in PyTorch). Entries keep insertion order, which is the PyTorch module order.
 * Offsets are in elements of the buffer the entry lives in. */
#ifndef SSL_PARAMS_H
#define SSL_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "real.h"
#include "tensor.h"

enum ssl_param_kind {
    SSL_PK_WEIGHT,     /* conv / linear weight: decayed, LARS-adapted */
    SSL_PK_BIAS,       /* linear / conv bias: excluded from LARS adaptation and decay */
    SSL_PK_BN_WEIGHT,  /* BN gamma: excluded likewise */
    SSL_PK_BN_BIAS,    /* BN beta: excluded likewise */
    SSL_PK_BN_MEAN,    /* buffer: running_mean */
    SSL_PK_BN_VAR,     /* buffer: running_var */
    SSL_PK_BN_COUNT,   /* counter: num_batches_tracked */
};

/* Parameter groups with their own learning rate (SimSiam's fixed predictor LR). */
enum ssl_param_group { SSL_GROUP_MAIN = 0, SSL_GROUP_PREDICTOR = 1, SSL_GROUP_COUNT = 2 };

struct ssl_param {
    char name[96];
    struct ssl_shape shape;
    enum ssl_param_kind kind;
    enum ssl_param_group group;
    int64_t offset;  /* into params, buffers or counters, by kind */
    int64_t n_elems;
};

struct ssl_params {
    struct ssl_param *items;
    int n_items, cap;
    int64_t n_params, n_buffers, n_counters;
    ssl_real *params;  /* (n_params) */
    ssl_real *grads;   /* (n_params) */
    ssl_real *buffers; /* (n_buffers) */
    int64_t *counters; /* (n_counters) */
};

bool ssl_param_trainable(enum ssl_param_kind kind);
/* LARS adaptation and weight decay apply to conv/linear weights only. */
bool ssl_param_decayed(enum ssl_param_kind kind);

void ssl_params_init(struct ssl_params *p);
/* Appends an entry; returns its index. Only before ssl_params_alloc. */
int ssl_params_add(struct ssl_params *p, const char *name, enum ssl_param_kind kind,
                   enum ssl_param_group group, struct ssl_shape shape);
/* One allocation for params, grads, buffers and counters; zero-filled. Returns 0 or -1. */
int ssl_params_alloc(struct ssl_params *p);
void ssl_params_free(struct ssl_params *p);

/* Pointer to an entry's data (params, buffers or counters by kind; counters cast). */
ssl_real *ssl_param_data(const struct ssl_params *p, int index);
ssl_real *ssl_param_grad(const struct ssl_params *p, int index);
int ssl_params_find(const struct ssl_params *p, const char *name);

#endif
