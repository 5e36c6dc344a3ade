/* params.c: the parameter table and its one allocation. */
#include "params.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

bool ssl_param_trainable(enum ssl_param_kind kind)
{
    return kind == SSL_PK_WEIGHT || kind == SSL_PK_BIAS || kind == SSL_PK_BN_WEIGHT ||
           kind == SSL_PK_BN_BIAS;
}

bool ssl_param_decayed(enum ssl_param_kind kind) { return kind == SSL_PK_WEIGHT; }

void ssl_params_init(struct ssl_params *p) { memset(p, 0, sizeof *p); }

int ssl_params_add(struct ssl_params *p, const char *name, enum ssl_param_kind kind,
                   enum ssl_param_group group, struct ssl_shape shape)
{
    SSL_CHECK(p->params == NULL && p->counters == NULL);
    SSL_CHECKF(strlen(name) < sizeof p->items[0].name, "parameter name too long: %s", name);
    if (p->n_items == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        struct ssl_param *items = realloc(p->items, (size_t)cap * sizeof *items);
        SSL_CHECK(items != NULL);
        p->items = items;
        p->cap = cap;
    }
    struct ssl_param *e = &p->items[p->n_items];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->shape = shape;
    e->kind = kind;
    e->group = group;
    e->n_elems = ssl_shape_elems(&shape);
    if (ssl_param_trainable(kind)) {
        e->offset = p->n_params;
        p->n_params += e->n_elems;
    } else if (kind == SSL_PK_BN_COUNT) {
        e->offset = p->n_counters;
        p->n_counters += e->n_elems;
    } else {
        e->offset = p->n_buffers;
        p->n_buffers += e->n_elems;
    }
    return p->n_items++;
}

int ssl_params_alloc(struct ssl_params *p)
{
    /* Counters first keeps them 8-byte aligned; every region starts on a 64-byte boundary. */
    size_t counter_bytes = ((size_t)p->n_counters * sizeof(int64_t) + 63) / 64 * 64;
    size_t param_bytes = ((size_t)p->n_params * sizeof(ssl_real) + 63) / 64 * 64;
    size_t buffer_bytes = ((size_t)p->n_buffers * sizeof(ssl_real) + 63) / 64 * 64;
    size_t n_bytes = counter_bytes + 2 * param_bytes + buffer_bytes + 64;
    unsigned char *mem = aligned_alloc(64, n_bytes);
    if (mem == NULL) return -1;
    memset(mem, 0, n_bytes);
    p->counters = (int64_t *)(void *)mem;
    p->params = (ssl_real *)(void *)(mem + counter_bytes);
    p->grads = (ssl_real *)(void *)(mem + counter_bytes + param_bytes);
    p->buffers = (ssl_real *)(void *)(mem + counter_bytes + 2 * param_bytes);
    return 0;
}

void ssl_params_free(struct ssl_params *p)
{
    free(p->counters);
    free(p->items);
    memset(p, 0, sizeof *p);
}

ssl_real *ssl_param_data(const struct ssl_params *p, int index)
{
    const struct ssl_param *e = &p->items[index];
    if (ssl_param_trainable(e->kind)) return p->params + e->offset;
    if (e->kind == SSL_PK_BN_COUNT) return (ssl_real *)(void *)(p->counters + e->offset);
    return p->buffers + e->offset;
}

ssl_real *ssl_param_grad(const struct ssl_params *p, int index)
{
    const struct ssl_param *e = &p->items[index];
    SSL_CHECK(ssl_param_trainable(e->kind));
    return p->grads + e->offset;
}

int ssl_params_find(const struct ssl_params *p, const char *name)
{
    for (int i = 0; i < p->n_items; i++)
        if (strcmp(p->items[i].name, name) == 0) return i;
    return -1;
}
