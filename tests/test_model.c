/* test_model.c: whole-model gradient checks in fp64 (convnet, CIFAR ResNet-18, mlp, with
 * projector and predictor variants) against central differences, on sampled parameter
 * elements of EVERY entry (all elements would take minutes for ResNet-18), plus checks of the
 * model's structure: feature sizes, PyTorch-default initialisation bounds, and that eval mode
 * uses the running statistics. Seed printed; SSL_TEST_SEED overrides it. */
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gradcheck.h"
#include "models/model.h"

struct fixture {
    struct ssl_model m;
    double *x, *rz, *rp; /* input (n, c, h, w); random projections of z and p */
    double *running;     /* BN running statistics as initialised, restored before each loss */
    int64_t n, in_elems;
};

static struct ssl_model_cfg small_cfg(enum ssl_backbone b, int64_t c, int64_t size)
{
    struct ssl_model_cfg mc = {.backbone = b, .in_channels = c, .image_size = size,
                               .bn_eps = 1e-5, .bn_momentum = 0.1};
    mc.n_mlp_hidden = 2;
    mc.mlp_hidden[0] = 12;
    mc.mlp_hidden[1] = 7;
    mc.projector = (struct ssl_head_cfg){.n_hidden = 1, .hidden = {6}, .out = 5,
                                         .hidden_bias = true, .last_bias = true};
    return mc;
}

static void fixture_init(struct fixture *f, const struct ssl_model_cfg *mc, int64_t n,
                         struct ssl_rng *rng)
{
    struct ssl_error err = {0};
    assert_int_equal(ssl_model_build(&f->m, mc, n, 1, &err), SSL_OK);
    ssl_model_init_params(&f->m, 7);
    f->n = n;
    f->in_elems = n * mc->in_channels * mc->image_size * mc->image_size;
    f->x = malloc((size_t)f->in_elems * sizeof(double));
    int64_t nz = n * f->m.projection_dim, np = n * (f->m.prediction_dim ? f->m.prediction_dim : 1);
    f->rz = malloc((size_t)nz * sizeof(double));
    f->rp = malloc((size_t)np * sizeof(double));
    gc_fill_normal(rng, f->x, f->in_elems, 0, 1);
    gc_fill_normal(rng, f->rz, nz, 0, 1);
    gc_fill_normal(rng, f->rp, np, 0, 1);
    f->running = malloc((size_t)f->m.params.n_buffers * sizeof(double));
    memcpy(f->running, f->m.params.buffers, (size_t)f->m.params.n_buffers * sizeof(double));
    /* BN affine parameters away from their 1/0 init so their gradients are generic */
    for (int i = 0; i < f->m.params.n_items; i++) {
        const struct ssl_param *e = &f->m.params.items[i];
        if (e->kind == SSL_PK_BN_WEIGHT || e->kind == SSL_PK_BN_BIAS)
            gc_fill_normal(rng, ssl_param_data(&f->m.params, i), e->n_elems,
                           e->kind == SSL_PK_BN_WEIGHT ? 1 : 0, 0.3);
    }
}

static void fixture_free(struct fixture *f)
{
    ssl_model_free(&f->m);
    free(f->x);
    free(f->rz);
    free(f->rp);
    free(f->running);
}

/* Every evaluation must be the same function of the parameters: a train-mode forward updates
 * the running statistics, and BN shifts its sums by the running mean, so without the restore
 * each call would round differently (seen: ~1e-8 noise in L, 5e-3 in the differences). */
static double model_loss(struct fixture *f)
{
    memcpy(f->m.params.buffers, f->running, (size_t)f->m.params.n_buffers * sizeof(double));
    assert_int_equal(ssl_model_forward(&f->m, 0, f->x, true), 0);
    double L = gc_dot(f->rz, ssl_model_projection(&f->m, 0), f->n * f->m.projection_dim);
    if (f->m.node_prediction >= 0)
        L += gc_dot(f->rp, ssl_model_prediction(&f->m, 0), f->n * f->m.prediction_dim);
    return L;
}

/* Fingerprint of which ReLU units are active (FNV-1a over the masks). */
static uint64_t relu_pattern(const struct fixture *f)
{
    uint64_t hash = 1469598103934665603u;
    const struct ssl_net *net = &f->m.net;
    for (int i = 0; i < net->n_nodes; i++) {
        if (net->nodes[i].op != SSL_OP_RELU) continue;
        const double *y = ssl_net_out(net, 0, i);
        for (int64_t k = 0; k < ssl_net_out_elems(net, i); k++)
            hash = (hash ^ (uint64_t)(y[k] > 0)) * 1099511628211u;
    }
    return hash;
}

/* Central difference of the loss in element k of x, step h; *kink tells whether a ReLU
 * changed state within the step (there the loss is not differentiable). */
static double central(struct fixture *f, double *x, int64_t k, double h, uint64_t base, bool *kink)
{
    double keep = x[k];
    x[k] = keep + h;
    double up = model_loss(f);
    *kink = relu_pattern(f) != base;
    x[k] = keep - h;
    double down = model_loss(f);
    *kink = *kink || relu_pattern(f) != base;
    x[k] = keep;
    return (up - down) / (2 * h);
}

/* Analytic gradient of every trainable entry against central differences on up to
 * `per_entry` sampled elements of each (all of them for small entries).
 * With ~1e6 ReLUs, some unit sits within the reach of a 1e-6 step for some seeds, and one
 * such unit spoils the differences of every parameter upstream of it. The test sees this
 * exactly: an element whose steps change any ReLU's state is skipped (replaced when
 * sampling). At most half may be skipped, so the check never passes on a handful of points.
 * Returns the number of mismatches (plus one if too many points were skipped). */
static int check_model(struct fixture *f, struct ssl_rng *rng, int per_entry)
{
    struct ssl_params *p = &f->m.params;
    ssl_model_zero_grads(&f->m);
    model_loss(f);
    uint64_t base = relu_pattern(f);
    assert_int_equal(ssl_model_backward(&f->m, 0, f->rz, f->m.node_prediction >= 0 ? f->rp : NULL), 0);
    struct gc_tol tol = GC_TOL_DEFAULT;
    int bad = 0, checked = 0, kinks = 0;
    for (int i = 0; i < p->n_items; i++) {
        const struct ssl_param *e = &p->items[i];
        if (!ssl_param_trainable(e->kind)) continue;
        double *x = ssl_param_data(p, i), *g = ssl_param_grad(p, i);
        bool every = e->n_elems <= per_entry;
        int64_t want = every ? e->n_elems : per_entry;
        for (int64_t s = 0, done = 0; done < want && s < (every ? e->n_elems : 4 * want); s++) {
            int64_t k = every ? s : (int64_t)ssl_rng_below(rng, (uint64_t)e->n_elems);
            bool kink;
            double num = central(f, x, k, tol.h_rel * fmax(fabs(x[k]), 1.0), base, &kink);
            if (kink) {
                kinks++;
                continue;
            }
            done++;
            checked++;
            if (fabs(num - g[k]) > tol.atol + tol.rtol * fmax(fabs(num), fabs(g[k]))) {
                if (bad < 10) printf("  %s[%lld]: analytic %.10g numeric %.10g\n", e->name, (long long)k, g[k], num);
                bad++;
            }
        }
    }
    printf("  %d sampled elements over %d entries, %d out of tolerance, %d ReLU kinks skipped\n",
           checked, p->n_items, bad, kinks);
    return bad + (kinks > checked);
}

static void test_convnet_grad(void **state)
{
    (void)state;
    struct ssl_rng rng;
    gc_rng_begin(&rng, "convnet_grad");
    struct ssl_model_cfg mc = small_cfg(SSL_BACKBONE_CONVNET, 1, 8);
    mc.has_predictor = true;
    mc.predictor = (struct ssl_head_cfg){.n_hidden = 1, .hidden = {4}, .out = 0,
                                         .hidden_bias = true, .last_bias = true};
    struct fixture f;
    fixture_init(&f, &mc, 3, &rng);
    assert_int_equal(f.m.feature_dim, 128);
    assert_int_equal(check_model(&f, &rng, 24), 0);
    fixture_free(&f);
}

static void test_resnet18_grad(void **state)
{
    (void)state;
    struct ssl_rng rng;
    gc_rng_begin(&rng, "resnet18_grad");
    struct ssl_model_cfg mc = small_cfg(SSL_BACKBONE_RESNET18, 3, 16);
    mc.projector.last_bn = SSL_LAST_BN_AFFINE; /* SimSiam-style head */
    /* 16x16 and 4 samples: layer4 then sees 2x2 maps, 16 values per BN channel. With 8x8 and
     * 2 samples it sees 2 values per channel, where BN is so curved that central differences
     * at h = 1e-6 are off by ~1e-5 (seen), though the gradient is right. */
    struct fixture f;
    fixture_init(&f, &mc, 4, &rng);
    assert_int_equal(f.m.feature_dim, 512);
    assert_int_equal(check_model(&f, &rng, 2), 0);
    fixture_free(&f);
}

static void test_mlp_grad(void **state)
{
    (void)state;
    struct ssl_rng rng;
    gc_rng_begin(&rng, "mlp_grad");
    struct ssl_model_cfg mc = small_cfg(SSL_BACKBONE_MLP, 1, 5);
    mc.projector.last_bias = false; /* Barlow Twins-style head */
    mc.projector.last_bn = SSL_LAST_BN_NOAFFINE;
    struct fixture f;
    fixture_init(&f, &mc, 5, &rng);
    assert_int_equal(f.m.feature_dim, 7);
    assert_int_equal(check_model(&f, &rng, 1000), 0); /* small enough to check every element */
    fixture_free(&f);
}

/* Shuffled-DBN head: the projector ends in group ZCA whitening with a fresh permutation. */
static void test_whitened_head_grad(void **state)
{
    (void)state;
    struct ssl_rng rng;
    gc_rng_begin(&rng, "whitened_head_grad");
    struct ssl_model_cfg mc = small_cfg(SSL_BACKBONE_MLP, 1, 5);
    mc.projector.out = 8;
    mc.projector.whiten_groups = 2;
    mc.projector.whiten_shuffle = true;
    struct fixture f;
    fixture_init(&f, &mc, 12, &rng);
    ssl_model_set_step(&f.m, 3, 5);
    assert_int_equal(check_model(&f, &rng, 1000), 0);
    /* each group of the output is white: identity covariance over the batch */
    const double *z = ssl_model_projection(&f.m, 0);
    const int64_t *perm = ssl_net_whiten_perm(&f.m.net, 0, f.m.node_projection);
    for (int g = 0; g < 2; g++)
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++) {
                int64_t ja = perm[4 * g + a], jb = perm[4 * g + b];
                double s = 0;
                for (int i = 0; i < 12; i++) s += z[i * 8 + ja] * z[i * 8 + jb];
                assert_true(fabs(s / 12 - (a == b)) < 1e-9);
            }
    fixture_free(&f);
}

/* The backward-progress hook: offsets never increase, and the gradients at and above an
 * announced offset do not change afterwards (so an allreduce of them may start). */
struct ready_log {
    const struct ssl_params *p;
    int n_calls;
    int64_t offsets[256];
    double *snapshots[256]; /* grads[offset..n_params) at the time of the call */
};

static void record_ready(void *ctx, int64_t first)
{
    struct ready_log *log = ctx;
    assert_true(log->n_calls < 256);
    int64_t n = log->p->n_params - first;
    log->offsets[log->n_calls] = first;
    log->snapshots[log->n_calls] = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    memcpy(log->snapshots[log->n_calls], log->p->grads + first, (size_t)n * sizeof(double));
    log->n_calls++;
}

static void test_grads_ready_hook(void **state)
{
    (void)state;
    struct ssl_rng rng;
    gc_rng_begin(&rng, "grads_ready_hook");
    struct ssl_model_cfg mc = small_cfg(SSL_BACKBONE_RESNET18, 3, 8);
    mc.has_predictor = true;
    mc.predictor = (struct ssl_head_cfg){.n_hidden = 1, .hidden = {4}, .hidden_bias = true, .last_bias = true};
    struct fixture f;
    fixture_init(&f, &mc, 3, &rng);
    struct ready_log log = {.p = &f.m.params};
    ssl_model_zero_grads(&f.m);
    model_loss(&f);
    f.m.net.grads_ready = record_ready;
    f.m.net.grads_ready_ctx = &log;
    assert_int_equal(ssl_model_backward(&f.m, 0, f.rz, f.rp), 0);
    f.m.net.grads_ready = NULL;
    assert_true(log.n_calls > 20);            /* every conv, BN and linear node reports */
    assert_int_equal(log.offsets[log.n_calls - 1], 0); /* the first conv owns offset 0 */
    for (int k = 0; k < log.n_calls; k++) {
        if (k) assert_true(log.offsets[k] <= log.offsets[k - 1]);
        int64_t first = log.offsets[k], n = f.m.params.n_params - first;
        assert_memory_equal(log.snapshots[k], f.m.params.grads + first, (size_t)n * sizeof(double));
        free(log.snapshots[k]);
    }
    fixture_free(&f);
}

/* PyTorch's default init: weights and biases within 1/sqrt(fan_in), BN 1/0, running var 1. */
static void test_init_bounds(void **state)
{
    (void)state;
    struct ssl_model m;
    struct ssl_error err = {0};
    struct ssl_model_cfg mc = small_cfg(SSL_BACKBONE_CONVNET, 1, 28);
    assert_int_equal(ssl_model_build(&m, &mc, 2, 1, &err), SSL_OK);
    ssl_model_init_params(&m, 1);
    for (int i = 0; i < m.params.n_items; i++) {
        const struct ssl_param *e = &m.params.items[i];
        const double *x = ssl_param_data(&m.params, i);
        const struct ssl_param *w = e->kind == SSL_PK_BIAS ? e - 1 : e;
        int64_t fan = 1;
        for (int d = 1; d < w->shape.n_dims; d++) fan *= w->shape.dim[d];
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t k = 0; e->kind != SSL_PK_BN_COUNT && k < e->n_elems; k++) {
            lo = fmin(lo, x[k]);
            hi = fmax(hi, x[k]);
        }
        if (e->kind == SSL_PK_WEIGHT || e->kind == SSL_PK_BIAS) {
            double b = 1 / sqrt((double)fan);
            assert_true(lo >= -b && hi <= b);
            if (e->n_elems >= 100) assert_true(hi > 0.8 * b && lo < -0.8 * b); /* spans the range */
        } else if (e->kind == SSL_PK_BN_WEIGHT || e->kind == SSL_PK_BN_VAR) {
            assert_true(lo == 1 && hi == 1);
        } else if (e->kind != SSL_PK_BN_COUNT) {
            assert_true(lo == 0 && hi == 0);
        }
    }
    ssl_model_free(&m);
}

/* Eval mode normalises with the running statistics: after one train step the eval output of
 * a sample must not depend on the other samples of the batch. */
static void test_eval_uses_running_stats(void **state)
{
    (void)state;
    struct ssl_rng rng;
    gc_rng_begin(&rng, "eval_running_stats");
    struct ssl_model_cfg mc = small_cfg(SSL_BACKBONE_CONVNET, 1, 8);
    struct fixture f;
    fixture_init(&f, &mc, 3, &rng);
    model_loss(&f); /* train forward: updates running statistics */
    assert_int_equal(ssl_model_forward(&f.m, 0, f.x, false), 0);
    double first[5];
    memcpy(first, ssl_model_projection(&f.m, 0), sizeof first);
    gc_fill_normal(&rng, f.x + 64, 128, 3, 2); /* change samples 1 and 2 only */
    assert_int_equal(ssl_model_forward(&f.m, 0, f.x, false), 0);
    for (int k = 0; k < 5; k++) assert_true(ssl_model_projection(&f.m, 0)[k] == first[k]);
    /* and in train mode it does depend on them (batch statistics) */
    model_loss(&f);
    int differs = 0;
    for (int k = 0; k < 5; k++) differs += ssl_model_projection(&f.m, 0)[k] != first[k];
    assert_true(differs > 0);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convnet_grad),
        cmocka_unit_test(test_resnet18_grad),
        cmocka_unit_test(test_mlp_grad),
        cmocka_unit_test(test_whitened_head_grad),
        cmocka_unit_test(test_grads_ready_hook),
        cmocka_unit_test(test_init_bounds),
        cmocka_unit_test(test_eval_uses_running_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
