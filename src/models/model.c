/* model.c: builds backbone + heads into one net, PyTorch-default initialisation, and the
 * per-view forward/backward entry points. */
#include "model.h"

#include <math.h>
#include <string.h>

#include "../rng.h"
#include "backbones.h"

static enum ssl_status model_check(const struct ssl_model_cfg *cfg, int64_t batch,
                                   struct ssl_error *err)
{
    if (batch < 2)
        return ssl_error_set(err, SSL_E_USAGE,
                             "batch per view and rank is %lld: BatchNorm in training needs at least 2",
                             (long long)batch);
    if (cfg->backbone == SSL_BACKBONE_MLP && cfg->n_mlp_hidden < 1)
        return ssl_error_set(err, SSL_E_USAGE, "model.mlp.hidden: the mlp backbone needs at least one width");
    if (cfg->projector.out < 1)
        return ssl_error_set(err, SSL_E_USAGE, "model.projector.out must be at least 1");
    int64_t groups = cfg->projector.whiten_groups;
    if (groups > 0 && cfg->projector.out % groups != 0)
        return ssl_error_set(err, SSL_E_USAGE,
                             "model.projector.whiten_groups=%lld does not divide model.projector.out=%lld",
                             (long long)groups, (long long)cfg->projector.out);
    if (groups > 0 && cfg->projector.last_bn != SSL_LAST_BN_NONE)
        return ssl_error_set(err, SSL_E_USAGE,
                             "model.projector.whiten_groups and model.projector.last_bn exclude each other");
    return SSL_OK;
}

enum ssl_status ssl_model_build(struct ssl_model *m, const struct ssl_model_cfg *cfg,
                                int64_t batch, int n_views, struct ssl_error *err)
{
    enum ssl_status rc = model_check(cfg, batch, err);
    if (rc) return rc;
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    ssl_params_init(&m->params);
    ssl_net_init(&m->net, &m->params, batch);
    struct ssl_net *net = &m->net;
    m->node_input = ssl_net_input(net, cfg->in_channels, cfg->image_size, cfg->image_size);
    m->node_features = ssl_backbone_build(net, m->node_input, cfg);
    m->feature_dim = net->nodes[m->node_features].c;
    m->node_projection = ssl_head_build(net, "projector", m->node_features, &cfg->projector,
                                        SSL_GROUP_MAIN, cfg);
    m->projection_dim = cfg->projector.out;
    m->node_prediction = -1;
    if (cfg->has_predictor) {
        struct ssl_head_cfg pred = cfg->predictor;
        if (pred.out == 0) pred.out = m->projection_dim;
        m->node_prediction = ssl_head_build(net, "predictor", m->node_projection, &pred,
                                            SSL_GROUP_PREDICTOR, cfg);
        m->prediction_dim = pred.out;
    }
    m->param_prototypes = -1;
    if (cfg->prototypes > 0) /* last, after every node's entries: PyTorch registers it last */
        m->param_prototypes = ssl_params_add(&m->params, "prototypes.weight", SSL_PK_WEIGHT,
                                             SSL_GROUP_MAIN,
                                             (struct ssl_shape){2, {cfg->prototypes, m->projection_dim}});
    if (ssl_net_alloc(net, n_views) != 0) {
        ssl_model_free(m);
        return ssl_error_set(err, SSL_E_OTHER, "out of memory allocating the model for batch %lld",
                             (long long)batch);
    }
    return SSL_OK;
}

void ssl_model_free(struct ssl_model *m)
{
    ssl_net_free(&m->net);
    ssl_params_free(&m->params);
}

/* fan_in of a weight: every dimension but the first (out channels / out features). */
static int64_t fan_in(const struct ssl_param *e)
{
    int64_t f = 1;
    for (int d = 1; d < e->shape.n_dims; d++) f *= e->shape.dim[d];
    return f;
}

void ssl_model_init_params(struct ssl_model *m, uint64_t seed)
{
    struct ssl_params *p = &m->params;
    for (int i = 0; i < p->n_items; i++) {
        const struct ssl_param *e = &p->items[i];
        ssl_real *data = ssl_param_data(p, i);
        struct ssl_rng rng;
        ssl_rng_init(&rng, seed, SSL_RNG_INIT, (uint32_t)i, 0, 0);
        double bound = 0, fill = 0;
        switch (e->kind) {
        case SSL_PK_WEIGHT: bound = 1.0 / sqrt((double)fan_in(e)); break;
        case SSL_PK_BIAS: bound = 1.0 / sqrt((double)fan_in(&p->items[i - 1])); break; /* its weight precedes it */
        case SSL_PK_BN_WEIGHT: case SSL_PK_BN_VAR: fill = 1; break;
        case SSL_PK_BN_BIAS: case SSL_PK_BN_MEAN: fill = 0; break;
        case SSL_PK_BN_COUNT: p->counters[e->offset] = 0; continue;
        }
        for (int64_t k = 0; k < e->n_elems; k++)
            data[k] = (ssl_real)(bound > 0 ? (2 * ssl_rng_uniform(&rng) - 1) * bound : fill);
    }
}

void ssl_model_set_step(struct ssl_model *m, uint64_t seed, int64_t step)
{
    m->seed = seed;
    m->step = step;
}

/* Shuffled-DBN draws a fresh feature permutation at every forward call, so each view gets
 * its own; keyed by (seed, step, view, node) it is the same on every rank. */
static void draw_shuffles(struct ssl_model *m, int view)
{
    if (!m->cfg.projector.whiten_shuffle) return;
    for (int i = 0; i < m->net.n_nodes; i++) {
        if (m->net.nodes[i].op != SSL_OP_WHITEN) continue;
        int64_t *perm = ssl_net_whiten_perm(&m->net, view, i), d = m->net.nodes[i].c;
        struct ssl_rng rng;
        ssl_rng_init(&rng, m->seed, SSL_RNG_SHUFFLE, (uint32_t)m->step, (uint32_t)view, (uint32_t)i);
        for (int64_t j = 0; j < d; j++) perm[j] = j;
        for (int64_t j = d - 1; j > 0; j--) {
            int64_t k = (int64_t)ssl_rng_below(&rng, (uint64_t)j + 1), t = perm[j];
            perm[j] = perm[k];
            perm[k] = t;
        }
    }
}

int ssl_model_forward(struct ssl_model *m, int view, const ssl_real *x, bool train)
{
    draw_shuffles(m, view);
    return ssl_net_forward(&m->net, view, x, train);
}

const ssl_real *ssl_model_features(const struct ssl_model *m, int view)
{
    return ssl_net_out(&m->net, view, m->node_features);
}

const ssl_real *ssl_model_projection(const struct ssl_model *m, int view)
{
    return ssl_net_out(&m->net, view, m->node_projection);
}

const ssl_real *ssl_model_prediction(const struct ssl_model *m, int view)
{
    return m->node_prediction < 0 ? NULL : ssl_net_out(&m->net, view, m->node_prediction);
}

static void seed_add(struct ssl_net *net, int node, const ssl_real *g)
{
    ssl_real *dst = ssl_net_seed(net, node);
    int64_t n = ssl_net_out_elems(net, node);
    for (int64_t i = 0; i < n; i++) dst[i] += g[i];
}

int ssl_model_backward(struct ssl_model *m, int view, const ssl_real *dz, const ssl_real *dp)
{
    ssl_net_backward_begin(&m->net);
    if (dz) seed_add(&m->net, m->node_projection, dz);
    if (dp && m->node_prediction >= 0) seed_add(&m->net, m->node_prediction, dp);
    return ssl_net_backward(&m->net, view);
}

void ssl_model_zero_grads(struct ssl_model *m)
{
    memset(m->params.grads, 0, (size_t)m->params.n_params * sizeof *m->params.grads);
}
