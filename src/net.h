/* net.h: a model as a list of nodes (a static graph) over the layer pairs of layers/.
 *
 * Builders append nodes in topological order; ssl_net_alloc then sizes everything once:
 * per view, an arena with every node's output and saved statistics (the views of one step
 * are all kept for backward, and their BatchNorm statistics stay separate as in PyTorch's
 * net(x1), net(x2)); one set of node gradients shared by the views, since one view's backward
 * finishes before the next starts; and the largest layer scratch. Nothing is allocated after.
 *
 * Backward walks the nodes in reverse from the outputs the caller seeded; a node's gradient
 * is zeroed the first time something flows into it, and nodes nothing flows into are skipped
 * (e.g. the predictor when only the projector output has a gradient). */
#ifndef SSL_NET_H
#define SSL_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "layers/layers.h"
#include "params.h"
#include "tensor.h"

enum ssl_op {
    SSL_OP_INPUT,   /* NCHW images, stored channel-major */
    SSL_OP_CONV,
    SSL_OP_BN,
    SSL_OP_RELU,
    SSL_OP_POOL,    /* global average pool -> rows */
    SSL_OP_FLATTEN, /* image -> rows in (c, h, w) order */
    SSL_OP_LINEAR,
    SSL_OP_ADD,
    SSL_OP_L2NORM,
    SSL_OP_WHITEN,  /* group ZCA whitening of rows (Shuffled-DBN) */
};

struct ssl_node {
    enum ssl_op op;
    int in0, in1;      /* producing nodes, -1 for none */
    bool rows;         /* output (n, c) rows; otherwise (c, n, h, w) channel-major */
    int64_t c, h, w;   /* output channels/features and spatial size (1, 1 for rows) */
    int p_weight, p_bias, p_mean, p_var, p_count; /* parameter entries, -1 for none */
    struct ssl_conv2d_dims conv;
    struct ssl_bn_dims bn;
    int64_t whiten_group; /* features per whitening group */
    double whiten_eps;
    size_t perm_off;      /* whitening: (c) int64 permutation in the view arena */
    size_t out_off, saved_off, grad_off; /* byte offsets into a view's arena / the grad arena */
};

struct ssl_net {
    struct ssl_node *nodes;
    int n_nodes, cap;
    int64_t batch; /* samples per view on this rank */
    int n_views;
    struct ssl_params *params; /* entries are registered as nodes are added */
    struct ssl_arena *views;   /* (n_views) activation arenas */
    struct ssl_arena grads;    /* node gradients + layer scratch */
    ssl_real *scratch;         /* largest conv scratch */
    double *bn_scratch;        /* largest batchnorm or whitening scratch */
    bool *live;                /* (n_nodes) gradient flowing during backward */
    struct ssl_bn_sync bn_sync; /* SyncBN hook for every BatchNorm (default: local) */
    /* Backward progress (NULL: none): after a node's parameter gradients are complete for this
     * backward, called with the lowest gradient element that no later node of this backward
     * will touch again. Values never increase within one backward. The gradient allreduce
     * (mpi/reduce.h ssl_grad_reduce_ready) hangs here to overlap with the rest of the walk;
     * set it only for the LAST backward of a step, since every view adds into the same
     * gradients. */
    void (*grads_ready)(void *ctx, int64_t first_elem);
    void *grads_ready_ctx;
    bool train_mode[8];        /* per view: the mode of its last forward */
};

void ssl_net_init(struct ssl_net *net, struct ssl_params *params, int64_t batch);
void ssl_net_free(struct ssl_net *net);

/* Builders: return the new node's index. `prefix` is the PyTorch module name ("backbone.conv1"). */
int ssl_net_input(struct ssl_net *net, int64_t c, int64_t h, int64_t w);
int ssl_net_conv(struct ssl_net *net, const char *prefix, int in, int64_t c_out, int64_t k,
                 int64_t stride, int64_t pad, bool bias, enum ssl_param_group group);
int ssl_net_bn(struct ssl_net *net, const char *prefix, int in, bool affine, double eps,
               double momentum, enum ssl_param_group group);
int ssl_net_relu(struct ssl_net *net, int in);
int ssl_net_pool(struct ssl_net *net, int in);
int ssl_net_flatten(struct ssl_net *net, int in);
int ssl_net_linear(struct ssl_net *net, const char *prefix, int in, int64_t out, bool bias,
                   enum ssl_param_group group);
int ssl_net_add(struct ssl_net *net, int a, int b);
int ssl_net_l2norm(struct ssl_net *net, int in);
/* Group ZCA whitening of rows in groups of `group` features (c % group == 0). Its feature
 * permutation lives per view (ssl_net_whiten_perm), identity until the caller sets it. */
int ssl_net_whiten(struct ssl_net *net, int in, int64_t group, double eps);
int64_t *ssl_net_whiten_perm(const struct ssl_net *net, int view, int node);

/* Allocates parameters and arenas for n_views views (<= 8). Returns 0 or -1 (out of memory). */
int ssl_net_alloc(struct ssl_net *net, int n_views);
/* Bytes of activations per view, node gradients and scratch, for memory estimates. */
size_t ssl_net_view_bytes(const struct ssl_net *net);
size_t ssl_net_work_bytes(const struct ssl_net *net);

int64_t ssl_net_out_elems(const struct ssl_net *net, int node);
ssl_real *ssl_net_out(const struct ssl_net *net, int view, int node);

/* Forward of a view: x (batch, c, h, w) NCHW. Returns 0 or the sync hook's error. */
int ssl_net_forward(struct ssl_net *net, int view, const ssl_real *x, bool train);
/* Starts a backward: no node gradient is live. */
void ssl_net_backward_begin(struct ssl_net *net);
/* Gradient of a node's output to fill (zeroed and made live on first call). */
ssl_real *ssl_net_seed(struct ssl_net *net, int node);
/* Propagates the seeded gradients of a view down to the parameters (accumulating into
 * params->grads). */
int ssl_net_backward(struct ssl_net *net, int view);

#endif
