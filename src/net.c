/* net.c: node builders, sizing, and the forward/backward walks over the layer pairs. */
#include "net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { SSL_MAX_VIEWS = 8 };

void ssl_net_init(struct ssl_net *net, struct ssl_params *params, int64_t batch)
{
    memset(net, 0, sizeof *net);
    net->params = params;
    net->batch = batch;
}

void ssl_net_free(struct ssl_net *net)
{
    for (int v = 0; v < net->n_views; v++) ssl_arena_free(&net->views[v]);
    ssl_arena_free(&net->grads);
    free(net->views);
    free(net->nodes);
    free(net->live);
    memset(net, 0, sizeof *net);
}

static struct ssl_node *net_append(struct ssl_net *net, enum ssl_op op, int in0, int in1)
{
    if (net->n_nodes == net->cap) {
        int cap = net->cap ? 2 * net->cap : 32;
        struct ssl_node *nodes = realloc(net->nodes, (size_t)cap * sizeof *nodes);
        SSL_CHECK(nodes != NULL);
        net->nodes = nodes;
        net->cap = cap;
    }
    SSL_CHECK(in0 < net->n_nodes && in1 < net->n_nodes);
    struct ssl_node *nd = &net->nodes[net->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->in0 = in0;
    nd->in1 = in1;
    nd->p_weight = nd->p_bias = nd->p_mean = nd->p_var = nd->p_count = -1;
    if (in0 >= 0) {
        const struct ssl_node *src = &net->nodes[in0];
        nd->rows = src->rows;
        nd->c = src->c;
        nd->h = src->h;
        nd->w = src->w;
    }
    return nd;
}

static int add_param(struct ssl_net *net, const char *prefix, const char *leaf,
                     enum ssl_param_kind kind, enum ssl_param_group group, struct ssl_shape shape)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", prefix, leaf);
    return ssl_params_add(net->params, name, kind, group, shape);
}

int ssl_net_input(struct ssl_net *net, int64_t c, int64_t h, int64_t w)
{
    struct ssl_node *nd = net_append(net, SSL_OP_INPUT, -1, -1);
    nd->c = c;
    nd->h = h;
    nd->w = w;
    return net->n_nodes - 1;
}

int ssl_net_conv(struct ssl_net *net, const char *prefix, int in, int64_t c_out, int64_t k,
                 int64_t stride, int64_t pad, bool bias, enum ssl_param_group group)
{
    struct ssl_node *nd = net_append(net, SSL_OP_CONV, in, -1);
    SSL_CHECKF(!nd->rows, "%s: a convolution needs an image input", prefix);
    SSL_CHECKF(ssl_conv2d_dims_init(&nd->conv, net->batch, nd->c, nd->h, nd->w, c_out, k, stride, pad),
               "%s: a %lldx%lld input is too small for kernel %lld", prefix, (long long)nd->h,
               (long long)nd->w, (long long)k);
    nd->c = c_out;
    nd->h = nd->conv.h_out;
    nd->w = nd->conv.w_out;
    nd->p_weight = add_param(net, prefix, "weight", SSL_PK_WEIGHT, group,
                             (struct ssl_shape){4, {c_out, nd->conv.c_in, k, k}});
    if (bias) nd->p_bias = add_param(net, prefix, "bias", SSL_PK_BIAS, group, (struct ssl_shape){1, {c_out}});
    return net->n_nodes - 1;
}

int ssl_net_bn(struct ssl_net *net, const char *prefix, int in, bool affine, double eps,
               double momentum, enum ssl_param_group group)
{
    struct ssl_node *nd = net_append(net, SSL_OP_BN, in, -1);
    struct ssl_shape vec = {1, {nd->c}};
    nd->bn = (struct ssl_bn_dims){.c = nd->c, .m = net->batch * nd->h * nd->w,
                                  .layout = nd->rows ? SSL_BN_ROW_MAJOR : SSL_BN_CHANNEL_MAJOR,
                                  .eps = eps, .momentum = momentum};
    if (affine) {
        nd->p_weight = add_param(net, prefix, "weight", SSL_PK_BN_WEIGHT, group, vec);
        nd->p_bias = add_param(net, prefix, "bias", SSL_PK_BN_BIAS, group, vec);
    }
    nd->p_mean = add_param(net, prefix, "running_mean", SSL_PK_BN_MEAN, group, vec);
    nd->p_var = add_param(net, prefix, "running_var", SSL_PK_BN_VAR, group, vec);
    nd->p_count = add_param(net, prefix, "num_batches_tracked", SSL_PK_BN_COUNT, group,
                            (struct ssl_shape){0, {0}});
    return net->n_nodes - 1;
}

int ssl_net_relu(struct ssl_net *net, int in)
{
    net_append(net, SSL_OP_RELU, in, -1);
    return net->n_nodes - 1;
}

int ssl_net_pool(struct ssl_net *net, int in)
{
    struct ssl_node *nd = net_append(net, SSL_OP_POOL, in, -1);
    SSL_CHECK(!nd->rows);
    nd->rows = true;
    nd->h = nd->w = 1;
    return net->n_nodes - 1;
}

int ssl_net_flatten(struct ssl_net *net, int in)
{
    struct ssl_node *nd = net_append(net, SSL_OP_FLATTEN, in, -1);
    if (!nd->rows) {
        nd->c *= nd->h * nd->w;
        nd->rows = true;
        nd->h = nd->w = 1;
    }
    return net->n_nodes - 1;
}

int ssl_net_linear(struct ssl_net *net, const char *prefix, int in, int64_t out, bool bias,
                   enum ssl_param_group group)
{
    struct ssl_node *nd = net_append(net, SSL_OP_LINEAR, in, -1);
    SSL_CHECKF(nd->rows, "%s: a linear layer needs rows (flatten or pool first)", prefix);
    int64_t in_features = nd->c;
    nd->c = out;
    nd->p_weight = add_param(net, prefix, "weight", SSL_PK_WEIGHT, group,
                             (struct ssl_shape){2, {out, in_features}});
    if (bias) nd->p_bias = add_param(net, prefix, "bias", SSL_PK_BIAS, group, (struct ssl_shape){1, {out}});
    return net->n_nodes - 1;
}

int ssl_net_add(struct ssl_net *net, int a, int b)
{
    struct ssl_node *nd = net_append(net, SSL_OP_ADD, a, b);
    const struct ssl_node *nb = &net->nodes[b];
    SSL_CHECKF(nd->rows == nb->rows && nd->c == nb->c && nd->h == nb->h && nd->w == nb->w,
               "residual add of different shapes");
    return net->n_nodes - 1;
}

int ssl_net_l2norm(struct ssl_net *net, int in)
{
    struct ssl_node *nd = net_append(net, SSL_OP_L2NORM, in, -1);
    SSL_CHECK(nd->rows);
    return net->n_nodes - 1;
}

int ssl_net_whiten(struct ssl_net *net, int in, int64_t group, double eps)
{
    struct ssl_node *nd = net_append(net, SSL_OP_WHITEN, in, -1);
    SSL_CHECKF(nd->rows && group >= 1 && nd->c % group == 0,
               "whitening: %lld features do not split into groups of %lld", (long long)nd->c,
               (long long)group);
    nd->whiten_group = group;
    nd->whiten_eps = eps;
    return net->n_nodes - 1;
}

int64_t ssl_net_out_elems(const struct ssl_net *net, int node)
{
    const struct ssl_node *nd = &net->nodes[node];
    return net->batch * nd->c * nd->h * nd->w;
}

/* Bytes a node saves for backward besides its output. */
static size_t node_saved_bytes(const struct ssl_net *net, const struct ssl_node *nd)
{
    if (nd->op == SSL_OP_BN) return (size_t)(2 * nd->c) * sizeof(double);
    if (nd->op == SSL_OP_L2NORM) return (size_t)net->batch * sizeof(ssl_real);
    if (nd->op == SSL_OP_WHITEN)
        return (size_t)ssl_whiten_saved_elems(net->batch, nd->c, nd->whiten_group) * sizeof(double);
    return 0;
}

/* One layout pass: offsets of outputs and saved data in a view arena, of gradients and
 * scratch in the work arena; the same pass measures and carves. */
static void net_layout(struct ssl_net *net, struct ssl_arena *view, struct ssl_arena *work)
{
    int64_t conv_scratch = 0, bn_scratch = 0;
    for (int i = 0; i < net->n_nodes; i++) {
        struct ssl_node *nd = &net->nodes[i];
        size_t out_bytes = (size_t)ssl_net_out_elems(net, i) * sizeof(ssl_real);
        if (view) {
            ssl_arena_take(view, out_bytes);
            nd->out_off = view->used - out_bytes;
            size_t saved = node_saved_bytes(net, nd);
            ssl_arena_take(view, saved);
            nd->saved_off = view->used - saved;
            size_t perm = nd->op == SSL_OP_WHITEN ? (size_t)nd->c * sizeof(int64_t) : 0;
            ssl_arena_take(view, perm);
            nd->perm_off = view->used - perm;
        }
        ssl_arena_take(work, out_bytes);
        nd->grad_off = work->used - out_bytes;
        if (nd->op == SSL_OP_CONV && ssl_conv2d_scratch_elems(&nd->conv) > conv_scratch)
            conv_scratch = ssl_conv2d_scratch_elems(&nd->conv);
        if (nd->op == SSL_OP_BN && ssl_batchnorm_scratch_elems(nd->c) > bn_scratch)
            bn_scratch = ssl_batchnorm_scratch_elems(nd->c);
        if (nd->op == SSL_OP_WHITEN && ssl_whiten_scratch_elems(net->batch, nd->c, nd->whiten_group) > bn_scratch)
            bn_scratch = ssl_whiten_scratch_elems(net->batch, nd->c, nd->whiten_group);
    }
    net->scratch = ssl_arena_reals(work, conv_scratch);
    net->bn_scratch = ssl_arena_take(work, (size_t)bn_scratch * sizeof(double));
}

int ssl_net_alloc(struct ssl_net *net, int n_views)
{
    SSL_CHECK(n_views >= 1 && n_views <= SSL_MAX_VIEWS && net->views == NULL);
    if (ssl_params_alloc(net->params) != 0) return -1;
    struct ssl_arena view, work;
    ssl_arena_measure(&view);
    ssl_arena_measure(&work);
    net_layout(net, &view, &work);
    net->views = calloc((size_t)n_views, sizeof *net->views);
    net->live = calloc((size_t)net->n_nodes, sizeof *net->live);
    if (net->views == NULL || net->live == NULL) return -1;
    net->n_views = n_views;
    for (int v = 0; v < n_views; v++)
        if (ssl_arena_alloc(&net->views[v], view.used) != 0) return -1;
    if (ssl_arena_alloc(&net->grads, work.used) != 0) return -1;
    struct ssl_arena carve = net->views[0];
    net_layout(net, &carve, &net->grads);
    for (int v = 0; v < n_views; v++)
        for (int i = 0; i < net->n_nodes; i++)
            if (net->nodes[i].op == SSL_OP_WHITEN) {
                int64_t *perm = ssl_net_whiten_perm(net, v, i);
                for (int64_t j = 0; j < net->nodes[i].c; j++) perm[j] = j;
            }
    return 0;
}

size_t ssl_net_view_bytes(const struct ssl_net *net) { return net->views ? net->views[0].n_bytes : 0; }
size_t ssl_net_work_bytes(const struct ssl_net *net) { return net->grads.n_bytes; }

ssl_real *ssl_net_out(const struct ssl_net *net, int view, int node)
{
    return (ssl_real *)(void *)(net->views[view].base + net->nodes[node].out_off);
}

int64_t *ssl_net_whiten_perm(const struct ssl_net *net, int view, int node)
{
    SSL_CHECK(net->nodes[node].op == SSL_OP_WHITEN);
    return (int64_t *)(void *)(net->views[view].base + net->nodes[node].perm_off);
}

static void *net_saved(const struct ssl_net *net, int view, int node)
{
    return net->views[view].base + net->nodes[node].saved_off;
}

static ssl_real *net_grad(const struct ssl_net *net, int node)
{
    return (ssl_real *)(void *)(net->grads.base + net->nodes[node].grad_off);
}

static ssl_real *pdata(const struct ssl_net *net, int entry)
{
    return entry < 0 ? NULL : ssl_param_data(net->params, entry);
}

static ssl_real *pgrad(const struct ssl_net *net, int entry)
{
    return entry < 0 ? NULL : ssl_param_grad(net->params, entry);
}

static int node_forward(struct ssl_net *net, int view, int i, bool train)
{
    const struct ssl_node *nd = &net->nodes[i];
    ssl_real *y = ssl_net_out(net, view, i);
    const ssl_real *x = nd->in0 >= 0 ? ssl_net_out(net, view, nd->in0) : NULL;
    const struct ssl_node *src = nd->in0 >= 0 ? &net->nodes[nd->in0] : NULL;
    int64_t n = net->batch;
    switch (nd->op) {
    case SSL_OP_INPUT: return 0; /* filled by ssl_net_forward */
    case SSL_OP_CONV:
        ssl_conv2d_forward(y, net->scratch, x, pdata(net, nd->p_weight), pdata(net, nd->p_bias), &nd->conv);
        return 0;
    case SSL_OP_BN:
        return ssl_batchnorm_forward(y, net_saved(net, view, i), pdata(net, nd->p_mean),
                                     pdata(net, nd->p_var),
                                     nd->p_count >= 0 ? &net->params->counters[net->params->items[nd->p_count].offset] : NULL,
                                     x, pdata(net, nd->p_weight), pdata(net, nd->p_bias), &nd->bn,
                                     train, &net->bn_sync, net->bn_scratch);
    case SSL_OP_RELU: ssl_relu_forward(y, x, ssl_net_out_elems(net, i)); return 0;
    case SSL_OP_POOL: ssl_avgpool_forward(y, x, src->c, n, src->h * src->w); return 0;
    case SSL_OP_FLATTEN:
        if (src->rows) memcpy(y, x, (size_t)ssl_net_out_elems(net, i) * sizeof *y);
        else ssl_flatten_forward(y, x, src->c, n, src->h * src->w);
        return 0;
    case SSL_OP_LINEAR:
        ssl_linear_forward(y, x, pdata(net, nd->p_weight), pdata(net, nd->p_bias), n, src->c, nd->c);
        return 0;
    case SSL_OP_ADD:
        ssl_add_forward(y, x, ssl_net_out(net, view, nd->in1), ssl_net_out_elems(net, i));
        return 0;
    case SSL_OP_L2NORM: ssl_l2norm_forward(y, net_saved(net, view, i), x, n, nd->c, 1e-12); return 0;
    case SSL_OP_WHITEN:
        return ssl_whiten_forward(y, net_saved(net, view, i), x, ssl_net_whiten_perm(net, view, i), n,
                                  nd->c, nd->whiten_group, nd->whiten_eps, net->bn_scratch);
    }
    return 0;
}

int ssl_net_forward(struct ssl_net *net, int view, const ssl_real *x, bool train)
{
    SSL_CHECK(view >= 0 && view < net->n_views);
    net->train_mode[view] = train;
    for (int i = 0; i < net->n_nodes; i++) {
        const struct ssl_node *nd = &net->nodes[i];
        if (nd->op == SSL_OP_INPUT) {
            ssl_nchw_to_cnhw(ssl_net_out(net, view, i), x, net->batch, nd->c, nd->h * nd->w);
            continue;
        }
        int rc = node_forward(net, view, i, train);
        if (rc) return rc;
    }
    return 0;
}

void ssl_net_backward_begin(struct ssl_net *net)
{
    memset(net->live, 0, (size_t)net->n_nodes * sizeof *net->live);
}

/* The gradient buffer of `node`, zeroed the first time it becomes live; NULL for an input
 * node (images need no gradient). */
static ssl_real *grad_into(struct ssl_net *net, int node)
{
    if (node < 0 || net->nodes[node].op == SSL_OP_INPUT) return NULL;
    ssl_real *g = net_grad(net, node);
    if (!net->live[node]) {
        memset(g, 0, (size_t)ssl_net_out_elems(net, node) * sizeof *g);
        net->live[node] = true;
    }
    return g;
}

ssl_real *ssl_net_seed(struct ssl_net *net, int node) { return grad_into(net, node); }

static int node_backward(struct ssl_net *net, int view, int i)
{
    const struct ssl_node *nd = &net->nodes[i];
    const ssl_real *dy = net_grad(net, i), *y = ssl_net_out(net, view, i);
    const ssl_real *x = nd->in0 >= 0 ? ssl_net_out(net, view, nd->in0) : NULL;
    const struct ssl_node *src = nd->in0 >= 0 ? &net->nodes[nd->in0] : NULL;
    ssl_real *dx = grad_into(net, nd->in0);
    int64_t n = net->batch;
    switch (nd->op) {
    case SSL_OP_INPUT: return 0;
    case SSL_OP_CONV:
        ssl_conv2d_backward(dx, pgrad(net, nd->p_weight), pgrad(net, nd->p_bias), net->scratch, dy, x,
                            pdata(net, nd->p_weight), &nd->conv);
        return 0;
    case SSL_OP_BN:
        return ssl_batchnorm_backward(dx, pgrad(net, nd->p_weight), pgrad(net, nd->p_bias), dy, x,
                                      net_saved(net, view, i), pdata(net, nd->p_weight), &nd->bn,
                                      net->train_mode[view], &net->bn_sync, net->bn_scratch);
    case SSL_OP_RELU: ssl_relu_backward(dx, dy, y, ssl_net_out_elems(net, i)); return 0;
    case SSL_OP_POOL: ssl_avgpool_backward(dx, dy, src->c, n, src->h * src->w); return 0;
    case SSL_OP_FLATTEN:
        if (src->rows) ssl_add_backward(dx, NULL, dy, ssl_net_out_elems(net, i));
        else ssl_flatten_backward(dx, dy, src->c, n, src->h * src->w);
        return 0;
    case SSL_OP_LINEAR:
        ssl_linear_backward(dx, pgrad(net, nd->p_weight), pgrad(net, nd->p_bias), dy, x,
                            pdata(net, nd->p_weight), n, src->c, nd->c);
        return 0;
    case SSL_OP_ADD:
        ssl_add_backward(dx, grad_into(net, nd->in1), dy, ssl_net_out_elems(net, i));
        return 0;
    case SSL_OP_L2NORM:
        ssl_l2norm_backward(dx, dy, y, net_saved(net, view, i), n, nd->c, 1e-12);
        return 0;
    case SSL_OP_WHITEN:
        return ssl_whiten_backward(dx, dy, x, net_saved(net, view, i), ssl_net_whiten_perm(net, view, i),
                                   n, nd->c, nd->whiten_group, nd->whiten_eps, net->bn_scratch);
    }
    return 0;
}

int ssl_net_backward(struct ssl_net *net, int view)
{
    SSL_CHECK(view >= 0 && view < net->n_views);
    for (int i = net->n_nodes - 1; i >= 0; i--) {
        if (!net->live[i]) continue;
        int rc = node_backward(net, view, i);
        if (rc) return rc;
        /* parameters are registered in node order, so a node's first entry has the lowest
         * offset of everything it and the nodes after it own */
        int first = net->nodes[i].p_weight;
        if (net->grads_ready && first >= 0)
            net->grads_ready(net->grads_ready_ctx, net->params->items[first].offset);
    }
    return 0;
}
