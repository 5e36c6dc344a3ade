/* test_optim.c: the optimizers, the learning-rate schedule and the EMA against updates
 * computed independently in this file (against the double core).
 *
 * Every optimizer runs on one small table in PyTorch module order: fc.weight (2, 3), fc.bias
 * (2), bn.weight (2), bn.bias (2), BN running statistics and counter, and pred.weight (2, 2) in
 * the predictor group, with fixed gradients for three steps. Expected values come from
 * element-wise loops over the formulas, from numbers worked out by hand in the comments, and
 * from PyTorch 1.13 (Debian python3-torch, float64) run once by hand: those numbers are pasted
 * as literals, so the test needs no Python. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"
#include "params.h"

enum { N_PARAMS = 16, N_STEPS = 3, N_ENTRIES = 5 };

/* The trainable entries as flat ranges of params: offset, length, decayed (a weight), group. */
struct range {
    int offset, n;
    bool weight;
    int group;
};
static const struct range ranges[N_ENTRIES] = {
    {0, 6, true, 0}, {6, 2, false, 0}, {8, 2, false, 0}, {10, 2, false, 0}, {12, 4, true, 1},
};

/* fc.weight | fc.bias | bn.weight | bn.bias | pred.weight */
static const double p0[N_PARAMS] = {0.5, -1.0, 0.25, 2.0, 0.0, -0.5, 0.1, -0.2,
                                    1.0, 1.5,  0.0,  0.3, 0.3, -0.4, 0.6, 0.8};
static const double grads[N_STEPS][N_PARAMS] = {
    {0.2, -0.1, 0.4, -0.3, 0.5, 0.1, 0.05, -0.15, 0.3, -0.2, -0.1, 0.25, 0.1, 0.2, -0.3, 0.05},
    {-0.1, 0.3, 0.2, 0.1, -0.2, 0.4, 0.1, 0.05, -0.05, 0.1, 0.2, -0.1, -0.2, 0.1, 0.15, 0.3},
    {0.2, -0.1, 0.4, -0.3, 0.5, 0.1, 0.05, -0.15, 0.3, -0.2, -0.1, 0.25, 0.1, 0.2, -0.3, 0.05},
};
static const double bn_mean0[2] = {0.7, -0.7}, bn_var0[2] = {1.2, 0.8};
static const int64_t bn_count0 = 5;

static struct ssl_shape shape(int n_dims, int64_t d0, int64_t d1)
{
    struct ssl_shape s = {.n_dims = n_dims, .dim = {d0, d1, 0, 0}};
    return s;
}

/* Builds the table (running statistics between the BN affine and pred.weight, to check that
 * they are skipped) and fills it with p0, the BN statistics and grads[0]. */
static void table_build(struct ssl_params *p)
{
    ssl_params_init(p);
    ssl_params_add(p, "fc.weight", SSL_PK_WEIGHT, SSL_GROUP_MAIN, shape(2, 2, 3));
    ssl_params_add(p, "fc.bias", SSL_PK_BIAS, SSL_GROUP_MAIN, shape(1, 2, 0));
    ssl_params_add(p, "bn.weight", SSL_PK_BN_WEIGHT, SSL_GROUP_MAIN, shape(1, 2, 0));
    ssl_params_add(p, "bn.bias", SSL_PK_BN_BIAS, SSL_GROUP_MAIN, shape(1, 2, 0));
    ssl_params_add(p, "bn.running_mean", SSL_PK_BN_MEAN, SSL_GROUP_MAIN, shape(1, 2, 0));
    ssl_params_add(p, "bn.running_var", SSL_PK_BN_VAR, SSL_GROUP_MAIN, shape(1, 2, 0));
    ssl_params_add(p, "bn.num_batches_tracked", SSL_PK_BN_COUNT, SSL_GROUP_MAIN, shape(0, 0, 0));
    ssl_params_add(p, "pred.weight", SSL_PK_WEIGHT, SSL_GROUP_PREDICTOR, shape(2, 2, 2));
    assert_int_equal(ssl_params_alloc(p), 0);
    assert_int_equal(p->n_params, N_PARAMS);
    assert_int_equal(p->items[ssl_params_find(p, "pred.weight")].offset, 12);
    for (int i = 0; i < N_PARAMS; i++) p->params[i] = p0[i];
    memcpy(ssl_param_data(p, ssl_params_find(p, "bn.running_mean")), bn_mean0, sizeof bn_mean0);
    memcpy(ssl_param_data(p, ssl_params_find(p, "bn.running_var")), bn_var0, sizeof bn_var0);
    p->counters[0] = bn_count0;
}

static void grads_set(struct ssl_params *p, int step)
{
    for (int i = 0; i < N_PARAMS; i++) p->grads[i] = grads[step][i];
}

/* Runs n_steps of the optimizer on the table with grads[0], grads[1], ... */
static void run_steps(struct ssl_optim *o, struct ssl_params *p, const double lr[2], int n_steps)
{
    for (int s = 0; s < n_steps; s++) {
        grads_set(p, s);
        ssl_optim_step(o, p, lr);
    }
}

/* The optimizer must leave the gradients, BN statistics and counter alone. */
static void assert_untouched(const struct ssl_params *p, int last_step)
{
    for (int i = 0; i < N_PARAMS; i++) assert_true(p->grads[i] == grads[last_step][i]);
    const ssl_real *mean = ssl_param_data(p, ssl_params_find(p, "bn.running_mean"));
    const ssl_real *var = ssl_param_data(p, ssl_params_find(p, "bn.running_var"));
    for (int i = 0; i < 2; i++) assert_true(mean[i] == bn_mean0[i] && var[i] == bn_var0[i]);
    assert_true(p->counters[0] == bn_count0);
}

static void assert_close_(double got, double want, double rtol, const char *what, int i)
{
    double tol = rtol * fmax(1.0, fabs(want));
    if (fabs(got - want) > tol) fail_msg("%s[%d]: got %.17g, want %.17g", what, i, got, want);
}

static void assert_params(const struct ssl_params *p, const double *want, double rtol,
                          const char *what)
{
    for (int i = 0; i < N_PARAMS; i++) assert_close_((double)p->params[i], want[i], rtol, what, i);
}

/* ---- independent references: element-wise loops over the formulas ---- */

static const struct range *range_of(int i)
{
    for (int k = 0; k < N_ENTRIES; k++)
        if (i >= ranges[k].offset && i < ranges[k].offset + ranges[k].n) return &ranges[k];
    return NULL;
}

/* torch SGD: decay on every parameter, buffer = g' on the first step. */
static void ref_sgd(double *p, const double lr[2], double mom, double wd, int n_steps)
{
    for (int i = 0; i < N_PARAMS; i++) {
        double buf = 0.0;
        p[i] = p0[i];
        for (int s = 0; s < n_steps; s++) {
            double g = grads[s][i] + wd * p[i];
            buf = s == 0 ? g : mom * buf + g;
            p[i] -= lr[range_of(i)->group] * buf;
        }
    }
}

/* LARS of Barlow Twins / VICReg, with the solo-learn clip when clip is set. */
static void ref_lars(double *p, const double lr[2], double mom, double wd, double eta, bool clip,
                     int n_steps)
{
    double mu[N_PARAMS] = {0};
    for (int i = 0; i < N_PARAMS; i++) p[i] = p0[i];
    for (int s = 0; s < n_steps; s++) {
        for (int k = 0; k < N_ENTRIES; k++) {
            const struct range *r = &ranges[k];
            double rate = lr[r->group], d = r->weight ? wd : 0.0;
            double pn = 0.0, gn = 0.0;
            for (int i = r->offset; i < r->offset + r->n; i++) {
                pn += p[i] * p[i];
                gn += (grads[s][i] + d * p[i]) * (grads[s][i] + d * p[i]);
            }
            double q = 1.0;
            if (r->weight && pn > 0.0 && gn > 0.0) q = eta * sqrt(pn) / sqrt(gn);
            if (r->weight && clip) q = fmin(q / rate, 1.0);
            for (int i = r->offset; i < r->offset + r->n; i++) {
                mu[i] = mom * mu[i] + q * (grads[s][i] + d * p[i]);
                p[i] -= rate * mu[i];
            }
        }
    }
}

/* torch AdamW: decoupled decay of every parameter, bias-corrected moments. */
static void ref_adamw(double *p, const double lr[2], double b1, double b2, double eps,
                      double wd, int n_steps)
{
    for (int i = 0; i < N_PARAMS; i++) {
        double m = 0.0, v = 0.0, rate = lr[range_of(i)->group];
        p[i] = p0[i];
        for (int t = 1; t <= n_steps; t++) {
            double g = grads[t - 1][i];
            p[i] = p[i] - rate * wd * p[i];
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            double mhat = m / (1.0 - pow(b1, t)), vhat = v / (1.0 - pow(b2, t));
            p[i] -= rate * mhat / (sqrt(vhat) + eps);
        }
    }
}

/* ---- SGD ---- */

static const struct ssl_optim_cfg sgd_cfg = {.kind = SSL_OPTIM_SGD, .momentum = 0.9,
                                             .weight_decay = 0.05};

/* First step: buf = g + wd*p exactly (no (1 - momentum) factor, no zero buffer scaled);
 * second step: buf = 0.9*buf + g'. fc.weight[0] by hand: p = 0.5, g = 0.2 ->
 * g' = 0.225, p = 0.5 - 0.1*0.225 = 0.4775; then g = -0.1 -> g' = -0.1 + 0.05*0.4775 =
 * -0.076125, buf = 0.9*0.225 - 0.076125 = 0.126375, p = 0.4775 - 0.0126375 = 0.4648625.
 * fc.bias[0] is decayed too (torch): g' = 0.05 + 0.05*0.1 = 0.055, p = 0.1 - 0.0055 = 0.0945. */
static void test_sgd_first_step_buffer_and_decay(void **unused)
{
    (void)unused;
    struct ssl_params p;
    struct ssl_optim o;
    const double lr[2] = {0.1, 0.02};
    table_build(&p);
    assert_int_equal(ssl_optim_init(&o, &sgd_cfg, &p), 0);
    assert_int_equal(o.n_state, N_PARAMS);
    run_steps(&o, &p, lr, 1);
    for (int i = 0; i < N_PARAMS; i++)
        assert_close_((double)o.state[i], grads[0][i] + 0.05 * p0[i], 1e-15, "buf", i);
    assert_close_((double)p.params[0], 0.4775, 1e-15, "fc.weight", 0);
    assert_close_((double)p.params[6], 0.0945, 1e-15, "fc.bias", 0);
    grads_set(&p, 1);
    ssl_optim_step(&o, &p, lr);
    assert_close_((double)o.state[0], 0.126375, 1e-15, "buf", 0);
    assert_close_((double)p.params[0], 0.4648625, 1e-15, "fc.weight", 0);
    assert_int_equal(o.n_steps, 2);
    assert_untouched(&p, 1);
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* Three steps against the loop reference and against torch.optim.SGD(momentum=0.9,
 * weight_decay=0.05), groups lr 0.1 (main) and 0.02 (predictor). */
static void test_sgd_three_steps(void **unused)
{
    (void)unused;
    static const double torch_sgd[N_PARAMS] = {
        0.43116443749999994,  -0.99200962500000001, 0.057476468749999954, 2.0359205,
        -0.14665125000000001, -0.59874518749999994, 0.05980186249999999,  -0.14852360000000001,
        0.87081412499999988,  1.5129753125000001,   -0.00098974999999999823, 0.21829533749999996,
        0.29850203769999994,  -0.41638072360000006, 0.61317708539999993,  0.78041563819999993};
    struct ssl_params p;
    struct ssl_optim o;
    const double lr[2] = {0.1, 0.02};
    double want[N_PARAMS];
    table_build(&p);
    assert_int_equal(ssl_optim_init(&o, &sgd_cfg, &p), 0);
    run_steps(&o, &p, lr, N_STEPS);
    ref_sgd(want, lr, 0.9, 0.05, N_STEPS);
    assert_params(&p, want, 1e-14, "sgd vs loops");
    assert_params(&p, torch_sgd, 1e-14, "sgd vs torch");
    assert_untouched(&p, N_STEPS - 1);
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* Each entry moves with its group's rate: a zero predictor rate freezes pred.weight only, and
 * the predictor rate alone decides its update (0.02 vs 0.1 for the rest). */
static void test_groups_have_their_own_lr(void **unused)
{
    (void)unused;
    struct ssl_params p;
    struct ssl_optim o;
    const double frozen[2] = {0.1, 0.0}, split[2] = {0.1, 0.02};
    table_build(&p);
    assert_int_equal(ssl_optim_init(&o, &sgd_cfg, &p), 0);
    run_steps(&o, &p, frozen, 1);
    for (int i = 12; i < N_PARAMS; i++) assert_true(p.params[i] == p0[i]);
    for (int i = 0; i < 12; i++) assert_true(p.params[i] != p0[i]);
    ssl_optim_free(&o);
    ssl_params_free(&p);

    table_build(&p);
    assert_int_equal(ssl_optim_init(&o, &sgd_cfg, &p), 0);
    run_steps(&o, &p, split, 1);
    for (int i = 0; i < N_PARAMS; i++) {
        double rate = i >= 12 ? 0.02 : 0.1;
        assert_close_((double)p.params[i], p0[i] - rate * (grads[0][i] + 0.05 * p0[i]), 1e-15,
                      "group", i);
    }
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* ---- LARS ---- */

static const struct ssl_optim_cfg lars_cfg = {.kind = SSL_OPTIM_LARS, .momentum = 0.9,
                                              .weight_decay = 0.1, .lars_eta = 0.02};

/* Weights are decayed and scaled by eta*||p||/||g + wd*p||; biases and BN parameters get plain
 * momentum SGD without decay. By hand, fc.bias[0] (lr 0.5): p = 0.1 - 0.5*0.05 = 0.075;
 * bn.weight[1]: p = 1.5 - 0.5*(-0.2) = 1.6. fc.weight[0] after step 1: ||p||^2 = 5.5625,
 * g' = g + 0.1*p = (0.25, -0.2, 0.425, -0.1, 0.5, 0.05), ||g'||^2 = 0.545625,
 * q = 0.02*sqrt(5.5625/0.545625), p = 0.5 - 0.5*q*0.25. */
static void test_lars_trust_ratio_and_exclusions(void **unused)
{
    (void)unused;
    static const double fb_lars[N_PARAMS] = {
        0.47427959080444954,   -0.99157712674602305, 0.18272798704404156,  1.9890196189989093,
        -0.043844909577061317, -0.53248935356965243, -0.087750000000000022, 0.030750000000000013,
        0.49099999999999999,   1.7760000000000002,   -0.0044999999999999971, -0.068750000000000006,
        0.29838480290478298,   -0.40442097177146658, 0.60392035941386335,  0.79341445612533279};
    struct ssl_params p;
    struct ssl_optim o;
    const double lr[2] = {0.5, 0.1};
    double want[N_PARAMS];
    table_build(&p);
    assert_int_equal(ssl_optim_init(&o, &lars_cfg, &p), 0);
    run_steps(&o, &p, lr, 1);
    double q = 0.02 * sqrt(5.5625 / 0.545625);
    assert_close_((double)p.params[0], 0.5 - 0.5 * q * 0.25, 1e-15, "fc.weight", 0);
    assert_close_((double)p.params[6], 0.075, 1e-15, "fc.bias", 0);
    assert_close_((double)p.params[9], 1.6, 1e-15, "bn.weight", 1);
    ssl_optim_free(&o);
    ssl_params_free(&p);

    table_build(&p);
    assert_int_equal(ssl_optim_init(&o, &lars_cfg, &p), 0);
    run_steps(&o, &p, lr, N_STEPS);
    ref_lars(want, lr, 0.9, 0.1, 0.02, false, N_STEPS);
    assert_params(&p, want, 1e-14, "lars vs loops");
    /* A Python transcription of the facebookresearch LARS class over torch tensors. */
    assert_params(&p, fb_lars, 1e-14, "lars vs python");
    assert_untouched(&p, N_STEPS - 1);
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* Two (1, 2) weights: "zero.weight" = 0 has ||p|| = 0, "cancel.weight" has g = -wd*p so
 * ||g'|| = 0. Both get q = 1: the first moves by lr*g (no eta), the second not at all. */
static void test_lars_zero_norms(void **unused)
{
    (void)unused;
    struct ssl_params p;
    struct ssl_optim o;
    struct ssl_optim_cfg cfg = lars_cfg;
    const double lr[2] = {0.5, 0.5};
    cfg.weight_decay = 0.5;
    ssl_params_init(&p);
    ssl_params_add(&p, "zero.weight", SSL_PK_WEIGHT, SSL_GROUP_MAIN, shape(2, 1, 2));
    ssl_params_add(&p, "cancel.weight", SSL_PK_WEIGHT, SSL_GROUP_MAIN, shape(2, 1, 2));
    assert_int_equal(ssl_params_alloc(&p), 0);
    const double g[4] = {0.3, -0.4, -1.0, 2.0}, p_init[4] = {0.0, 0.0, 2.0, -4.0};
    for (int i = 0; i < 4; i++) {
        p.params[i] = p_init[i];
        p.grads[i] = g[i];
    }
    assert_int_equal(ssl_optim_init(&o, &cfg, &p), 0);
    ssl_optim_step(&o, &p, lr);
    assert_close_((double)p.params[0], -0.15, 1e-15, "zero.weight", 0);
    assert_close_((double)p.params[1], 0.2, 1e-15, "zero.weight", 1);
    assert_true(p.params[2] == 2.0 && p.params[3] == -4.0);
    assert_true(o.state[2] == 0.0 && o.state[3] == 0.0);
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* solo-learn clip: q = min(q/lr, 1). By hand with eta = 0.001, wd = 0, lr = 0.1:
 * "big.weight" p = (3, 4), g = (0.006, 0.008): q = 0.001*5/0.01 = 0.5 >= lr, so q = 1 and
 * p -= 0.1*g = (2.9994, 3.9992) (unclipped: p -= 0.05*g).
 * "small.weight" p = (0.3, 0.4), g = (0.6, 0.8): q = 0.001*0.5/1 = 0.0005 < lr, q/lr = 0.005,
 * p -= 0.1*0.005*g = (0.2997, 0.3996): the layer's own rate 0.0005 is used as is. */
static void test_lars_clip(void **unused)
{
    (void)unused;
    struct ssl_params p;
    struct ssl_optim o;
    const struct ssl_optim_cfg cfg = {.kind = SSL_OPTIM_LARS, .momentum = 0.9, .lars_eta = 0.001,
                                      .lars_clip = true};
    const double lr[2] = {0.1, 0.1};
    ssl_params_init(&p);
    ssl_params_add(&p, "big.weight", SSL_PK_WEIGHT, SSL_GROUP_MAIN, shape(2, 1, 2));
    ssl_params_add(&p, "small.weight", SSL_PK_WEIGHT, SSL_GROUP_MAIN, shape(2, 1, 2));
    assert_int_equal(ssl_params_alloc(&p), 0);
    const double g[4] = {0.006, 0.008, 0.6, 0.8}, p_init[4] = {3.0, 4.0, 0.3, 0.4};
    const double want[4] = {2.9994, 3.9992, 0.2997, 0.3996};
    for (int i = 0; i < 4; i++) {
        p.params[i] = p_init[i];
        p.grads[i] = g[i];
    }
    assert_int_equal(ssl_optim_init(&o, &cfg, &p), 0);
    ssl_optim_step(&o, &p, lr);
    for (int i = 0; i < 4; i++) assert_close_((double)p.params[i], want[i], 1e-14, "clip", i);
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* A zero rate (the first warmup step with warmup_start = 0) leaves the parameters and gives
 * q = 1 (solo-learn: q/0 = inf, min(inf, 1) = 1): the buffer holds the unscaled g + wd*p. */
static void test_lars_clip_zero_lr(void **unused)
{
    (void)unused;
    struct ssl_params p;
    struct ssl_optim o;
    struct ssl_optim_cfg cfg = lars_cfg;
    const double lr[2] = {0.0, 0.0};
    cfg.lars_clip = true;
    table_build(&p);
    assert_int_equal(ssl_optim_init(&o, &cfg, &p), 0);
    run_steps(&o, &p, lr, 1);
    for (int i = 0; i < N_PARAMS; i++) {
        double d = range_of(i)->weight ? 0.1 : 0.0;
        assert_true(p.params[i] == p0[i]);
        assert_close_((double)o.state[i], grads[0][i] + d * p0[i], 1e-15, "mu", i);
    }
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* Three clipped steps with two group rates against the loop reference and the Python
 * transcription (fc.weight has q < lr, so its clipped rate differs from the unclipped one). */
static void test_lars_clip_three_steps(void **unused)
{
    (void)unused;
    static const double py_clip[N_PARAMS] = {
        0.44871873503846066,   -0.98319950348296248, 0.11588685087675703,  1.978119603943276,
        -0.087422207765457532, -0.56476141275974445, -0.087750000000000022, 0.030750000000000013,
        0.49099999999999999,   1.7760000000000002,   -0.0044999999999999971, -0.068750000000000006,
        0.2839653975105127,    -0.44405924460525453, 0.63898459204760938,  0.73427422693334654};
    struct ssl_params p;
    struct ssl_optim o;
    struct ssl_optim_cfg cfg = lars_cfg;
    const double lr[2] = {0.5, 0.1};
    double want[N_PARAMS];
    cfg.lars_clip = true;
    table_build(&p);
    assert_int_equal(ssl_optim_init(&o, &cfg, &p), 0);
    run_steps(&o, &p, lr, N_STEPS);
    ref_lars(want, lr, 0.9, 0.1, 0.02, true, N_STEPS);
    assert_params(&p, want, 1e-14, "lars clip vs loops");
    assert_params(&p, py_clip, 1e-14, "lars clip vs python");
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* ---- AdamW ---- */

static const struct ssl_optim_cfg adamw_cfg = {.kind = SSL_OPTIM_ADAMW, .weight_decay = 0.1,
                                               .beta1 = 0.9, .beta2 = 0.999, .adam_eps = 1e-8};

/* fc.weight[0] by hand, lr 0.01: step 1, g = 0.2: p = 0.5*(1 - 0.001) = 0.4995,
 * m = 0.02, v = 0.00004, mhat = 0.02/0.1 = 0.2, vhat = 0.00004/0.001 = 0.04,
 * p = 0.4995 - 0.01*0.2/(0.2 + 1e-8).
 * Step 2, g = -0.1: p *= 0.999, m = 0.9*0.02 - 0.01 = 0.008,
 * v = 0.999*0.00004 + 0.001*0.01 = 0.00004996, mhat = 0.008/0.19,
 * vhat = 0.00004996/0.001999, p -= 0.01*mhat/(sqrt(vhat) + 1e-8). */
static void test_adamw_bias_correction(void **unused)
{
    (void)unused;
    struct ssl_params p;
    struct ssl_optim o;
    const double lr[2] = {0.01, 0.002};
    table_build(&p);
    assert_int_equal(ssl_optim_init(&o, &adamw_cfg, &p), 0);
    assert_int_equal(o.n_state, 2 * N_PARAMS);
    run_steps(&o, &p, lr, 1);
    double want = 0.4995 - 0.01 * 0.2 / (0.2 + 1e-8);
    assert_close_((double)p.params[0], want, 1e-14, "step 1", 0);
    assert_close_((double)o.state[0], 0.02, 1e-15, "m", 0);
    assert_close_((double)o.state[N_PARAMS], 0.00004, 1e-15, "v", 0);
    grads_set(&p, 1);
    ssl_optim_step(&o, &p, lr);
    want *= 0.999;
    want -= 0.01 * (0.008 / 0.19) / (sqrt(0.00004996 / 0.001999) + 1e-8);
    assert_close_((double)p.params[0], want, 1e-14, "step 2", 0);
    assert_int_equal(o.n_steps, 2);
    assert_untouched(&p, 1);
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* Decoupled decay: with zero gradients the moments stay 0, the Adam term is 0/(0 + eps) = 0
 * and every entry, biases and BN included (torch), shrinks by exactly (1 - lr*wd). Decay put
 * into the gradient (Adam with L2) would instead move each element by about lr. */
static void test_adamw_decoupled_decay(void **unused)
{
    (void)unused;
    struct ssl_params p;
    struct ssl_optim o;
    const double lr[2] = {0.01, 0.002};
    table_build(&p);
    memset(p.grads, 0, N_PARAMS * sizeof *p.grads);
    assert_int_equal(ssl_optim_init(&o, &adamw_cfg, &p), 0);
    ssl_optim_step(&o, &p, lr);
    ssl_optim_step(&o, &p, lr);
    for (int i = 0; i < N_PARAMS; i++) {
        double keep = 1.0 - lr[range_of(i)->group] * 0.1;
        assert_close_((double)p.params[i], p0[i] * keep * keep, 1e-15, "decay", i);
    }
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* Three steps against the loops and torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8,
 * weight_decay=0.1), groups lr 0.01 and 0.002. */
static void test_adamw_three_steps(void **unused)
{
    (void)unused;
    static const double torch_adamw[N_PARAMS] = {
        0.48006597666804163,   -0.99367502877102176, 0.22032866054998138,  2.0146264023702152,
        -0.019738299350731799, -0.52546633143694399, 0.070658732308438874, -0.17878019620522667,
        0.97419243470373829,   1.5139400213319583,   0.0063487274996712906, 0.27936260078818098,
        0.29854767818359174,   -0.40554915523956897, 0.60333080084752178,  0.79433790212470012};
    struct ssl_params p;
    struct ssl_optim o;
    const double lr[2] = {0.01, 0.002};
    double want[N_PARAMS];
    table_build(&p);
    assert_int_equal(ssl_optim_init(&o, &adamw_cfg, &p), 0);
    run_steps(&o, &p, lr, N_STEPS);
    ref_adamw(want, lr, 0.9, 0.999, 1e-8, 0.1, N_STEPS);
    assert_params(&p, want, 1e-13, "adamw vs loops");
    assert_params(&p, torch_adamw, 1e-13, "adamw vs torch");
    ssl_optim_free(&o);
    ssl_params_free(&p);
}

/* ---- schedule ---- */

/* Group rates: the predictor follows the schedule unless a fixed rate is set (SimSiam's
 * fixed predictor LR). Warmup 0.1*base over 10 steps, so step 5 gives 0.44 (see below). */
static void test_group_lrs(void **unused)
{
    (void)unused;
    struct ssl_schedule s = {.base_lr = 0.8, .final_lr = 0.008, .warmup_start = 0.1,
                             .warmup_steps = 10, .total_steps = 30, .cosine = true,
                             .predictor_lr = -1};
    double lr[SSL_GROUP_COUNT];
    ssl_schedule_group_lrs(&s, 5, lr);
    assert_close_(lr[SSL_GROUP_MAIN], 0.44, 1e-15, "main", 5);
    assert_close_(lr[SSL_GROUP_PREDICTOR], 0.44, 1e-15, "predictor follows", 5);
    s.predictor_lr = 0.05;
    ssl_schedule_group_lrs(&s, 5, lr);
    assert_close_(lr[SSL_GROUP_MAIN], 0.44, 1e-15, "main", 5);
    assert_close_(lr[SSL_GROUP_PREDICTOR], 0.05, 0, "predictor fixed", 5);
    s.predictor_lr = 0;
    ssl_schedule_group_lrs(&s, 20, lr);
    assert_close_(lr[SSL_GROUP_PREDICTOR], 0.0, 0, "predictor fixed at 0", 20);
}

/* base 0.8, final 0.008, warmup from 0.1*base over 10 steps, cosine to step 30.
 * By hand: 0 -> 0.08; 5 -> 0.8*(0.1 + 0.9*0.5) = 0.44; 10 -> 0.8;
 * 15 -> c = (1 + cos(pi/4))/2, 0.8*c + 0.008*(1 - c); 20 -> c = 1/2, 0.404;
 * 30 and 40 -> 0.008. Without cosine: 0.8 from step 10 on. */
static void test_schedule(void **unused)
{
    (void)unused;
    struct ssl_schedule s = {.base_lr = 0.8, .final_lr = 0.008, .warmup_start = 0.1,
                             .warmup_steps = 10, .total_steps = 30, .cosine = true};
    const double pi = acos(-1.0); /* M_PI is not in strict C17 */
    double c15 = (1.0 + sqrt(0.5)) / 2.0;
    assert_close_(ssl_schedule_lr(&s, 0), 0.08, 1e-15, "lr", 0);
    assert_close_(ssl_schedule_lr(&s, 5), 0.44, 1e-15, "lr", 5);
    assert_close_(ssl_schedule_lr(&s, 10), 0.8, 1e-15, "lr", 10);
    assert_close_(ssl_schedule_lr(&s, 15), 0.8 * c15 + 0.008 * (1.0 - c15), 1e-15, "lr", 15);
    assert_close_(ssl_schedule_lr(&s, 20), 0.404, 1e-15, "lr", 20);
    assert_close_(ssl_schedule_lr(&s, 29), 0.008 + 0.792 * (1.0 - cos(pi / 20)) / 2, 1e-15,
                  "lr", 29);
    assert_close_(ssl_schedule_lr(&s, 30), 0.008, 1e-15, "lr", 30);
    assert_close_(ssl_schedule_lr(&s, 40), 0.008, 1e-15, "lr", 40);
    s.cosine = false;
    assert_close_(ssl_schedule_lr(&s, 5), 0.44, 1e-15, "const", 5);
    assert_close_(ssl_schedule_lr(&s, 20), 0.8, 1e-15, "const", 20);
    assert_close_(ssl_schedule_lr(&s, 40), 0.8, 1e-15, "const", 40);
    /* No warmup: the cosine starts at base on step 0 (Barlow Twins with warmup_start 0 gives
     * 0 on step 0 instead: that is the warmup branch). */
    s.cosine = true;
    s.warmup_steps = 0;
    assert_close_(ssl_schedule_lr(&s, 0), 0.8, 1e-15, "nowarm", 0);
    assert_close_(ssl_schedule_lr(&s, 15), 0.404, 1e-15, "nowarm", 15);
    s.warmup_steps = 10;
    s.warmup_start = 0.0;
    assert_close_(ssl_schedule_lr(&s, 0), 0.0, 1e-15, "zero start", 0);
    assert_close_(ssl_schedule_lr(&s, 4), 0.32, 1e-15, "zero start", 4);
}

/* ---- EMA ---- */

/* BYOL: base 0.996 -> tau(0) = 0.996, tau(K/2) = 1 - 0.004*0.5 = 0.998, tau(K) = 1, clamped
 * past K. One update with tau = 0.75: 0.75*(1, 2, 0) + 0.25*(3, -2, 4) = (1.5, 1, 1). */
static void test_ema(void **unused)
{
    (void)unused;
    assert_close_(ssl_ema_tau(0.996, 0, 100), 0.996, 1e-15, "tau", 0);
    assert_close_(ssl_ema_tau(0.996, 50, 100), 0.998, 1e-15, "tau", 50);
    assert_close_(ssl_ema_tau(0.996, 100, 100), 1.0, 1e-15, "tau", 100);
    assert_close_(ssl_ema_tau(0.996, 150, 100), 1.0, 1e-15, "tau", 150);
    assert_close_(ssl_ema_tau(0.996, 25, 100), 1.0 - 0.004 * (sqrt(0.5) + 1.0) / 2.0, 1e-15,
                  "tau", 25);
    ssl_real target[3] = {1.0, 2.0, 0.0};
    const ssl_real online[3] = {3.0, -2.0, 4.0};
    const double want[3] = {1.5, 1.0, 1.0};
    ssl_ema_update(target, online, 3, 0.75);
    for (int i = 0; i < 3; i++) assert_close_((double)target[i], want[i], 1e-15, "ema", i);
    assert_true(online[0] == 3.0 && online[1] == -2.0 && online[2] == 4.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_first_step_buffer_and_decay),
        cmocka_unit_test(test_sgd_three_steps),
        cmocka_unit_test(test_groups_have_their_own_lr),
        cmocka_unit_test(test_lars_trust_ratio_and_exclusions),
        cmocka_unit_test(test_lars_zero_norms),
        cmocka_unit_test(test_lars_clip),
        cmocka_unit_test(test_lars_clip_zero_lr),
        cmocka_unit_test(test_lars_clip_three_steps),
        cmocka_unit_test(test_adamw_bias_correction),
        cmocka_unit_test(test_adamw_decoupled_decay),
        cmocka_unit_test(test_adamw_three_steps),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_group_lrs),
        cmocka_unit_test(test_ema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
