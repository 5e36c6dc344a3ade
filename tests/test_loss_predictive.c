/* test_loss_predictive.c: BYOL, SimSiam and the RDM predictors (src/losses/predictive.c) on the
 * fp64 core:
 *   - gradients of p1, p2 against central differences (gradcheck.c), accumulate and NULL
 *     gradient checks. RDM's online map W is a stop-gradient constant in the official code, so
 *     its finite differences are taken of the FROZEN-map objective base(p W*, z) with W* built
 *     here, independently, from LAPACK's SVD (dgesvd) at the unperturbed point;
 *   - a second computation of every value, naive loops straight from the official formulas
 *     (RDM through dgesvd's thin SVD, not the library's eigendecomposition route);
 *   - known values (identical, opposite, orthogonal pairs; sigma = 0; equal singular values;
 *     the zero-norm row of BYOL's clamped normalisation; SSL_E_NONFINITE and NaN for an
 *     ill-defined log map, SSL_E_USAGE for an out-of-range option);
 *   - the global batch through a fake comm of P = 2, 3 ranks that all hold the same rows: the
 *     value equals the one-process value on the P-times-duplicated batch and each rank's
 *     gradient equals that batch's gradient of its block (all three losses are global-batch
 *     means; RDM's map is also a global statistic, by sum (N >= d) or by gather (N < d)).
 * The seed is printed by gc_rng_begin (override with SSL_TEST_SEED). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lapacke.h>

#include "check.h"
#include "gradcheck.h"
#include "losses/loss.h"
#include "losses/predictive.h"
#include "rng.h"

#ifndef SSL_F64
#error "test_loss_predictive needs the fp64 core (ssl_core_f64)"
#endif

static double *xalloc(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}

static void expect_close(double a, double b, double rtol, const char *what)
{
    double tol = rtol * fmax(1.0, fmax(fabs(a), fabs(b)));
    if (!(fabs(a - b) <= tol)) {
        printf("[predictive] %s: %.17g vs %.17g\n", what, a, b);
        fail();
    }
}

/* ------------------------------------------------------------------------------------------
 * Naive computations, straight from the official formulas
 * ------------------------------------------------------------------------------------------ */

/* torch F.cosine_similarity: x.y / (max(|x|, eps) max(|y|, eps)) */
static double naive_cos(const double *a, const double *b, int64_t d, double eps)
{
    double aa = 0, bb = 0, ab = 0;
    for (int64_t k = 0; k < d; k++) {
        aa += a[k] * a[k];
        bb += b[k] * b[k];
        ab += a[k] * b[k];
    }
    return ab / (fmax(sqrt(aa), eps) * fmax(sqrt(bb), eps));
}

/* deepmind byol helpers: sum_k (x rsqrt(max(|x|^2, 1e-12)) - y rsqrt(max(|y|^2, 1e-12)))_k^2 */
static double naive_reg(const double *x, const double *y, int64_t d)
{
    double xx = 0, yy = 0, s = 0;
    for (int64_t k = 0; k < d; k++) {
        xx += x[k] * x[k];
        yy += y[k] * y[k];
    }
    for (int64_t k = 0; k < d; k++) {
        double e = x[k] / sqrt(fmax(xx, 1e-12)) - y[k] / sqrt(fmax(yy, 1e-12));
        s += e * e;
    }
    return s;
}

static double naive_byol(const double *p1, const double *p2, const double *t1, const double *t2,
                         int64_t n, int64_t d)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += naive_reg(p1 + i * d, t2 + i * d, d) + naive_reg(p2 + i * d, t1 + i * d, d);
    return s / (double)n;
}

static double naive_simsiam(const double *p1, const double *p2, const double *t1,
                            const double *t2, int64_t n, int64_t d)
{
    double c1 = 0, c2 = 0;
    for (int64_t i = 0; i < n; i++) {
        c1 += naive_cos(p1 + i * d, t2 + i * d, d, 1e-8);
        c2 += naive_cos(p2 + i * d, t1 + i * d, d, 1e-8);
    }
    return -(c1 / (double)n + c2 / (double)n) * 0.5;
}

/* rdmsimsiam.py's functions of the singular values, literally */
static double naive_f(const struct ssl_rdm_opts *o, double s)
{
    switch (o->pred_type) {
    case SSL_RDM_PRED_POLY: return pow(s, o->sigma);
    case SSL_RDM_PRED_LOG: return log(s);
    case SSL_RDM_PRED_LOG_1: return log(s + 1.0);
    case SSL_RDM_PRED_LOG_2: return log(s * s + 1.0);
    }
    return NAN;
}

/* Thin SVD of x (n, d) by dgesvd, k = min(n, d):
 *   w (d, d) = V diag(f(s)) V^T                         (online map), or
 *   zp (n, d) = U diag(s^(1 + sigma)) V^T               (target: the map applied). */
static void svd_map(double *w, double *zp, const double *x, int64_t n, int64_t d,
                    const struct ssl_rdm_opts *o)
{
    int64_t k = n < d ? n : d;
    double *a = xalloc(n * d), *s = xalloc(k), *u = xalloc(n * k), *vt = xalloc(k * d),
           *sup = xalloc(k);
    memcpy(a, x, (size_t)(n * d) * sizeof *a);
    lapack_int info = LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'S', 'S', (lapack_int)n, (lapack_int)d, a,
                                     (lapack_int)d, s, u, (lapack_int)k, vt, (lapack_int)d, sup);
    assert_int_equal(info, 0);
    if (w != NULL)
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++) {
                double acc = 0;
                for (int64_t q = 0; q < k; q++) acc += vt[q * d + i] * naive_f(o, s[q]) * vt[q * d + j];
                w[i * d + j] = acc;
            }
    if (zp != NULL)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) {
                double acc = 0;
                for (int64_t q = 0; q < k; q++)
                    acc += u[i * k + q] * pow(s[q], 1.0 + o->sigma) * vt[q * d + j];
                zp[i * d + j] = acc;
            }
    free(a);
    free(s);
    free(u);
    free(vt);
    free(sup);
}

/* One direction of rdmsimsiam.py loss(p, z), as mean cos of the mapped pair; w1 frozen map of
 * p (online) or NULL (then built here). */
static double naive_rdm_meancos(const double *p, const double *z, int64_t n, int64_t d,
                                const struct ssl_rdm_opts *o, const double *wfrozen)
{
    double *pa = xalloc(n * d), *zb = xalloc(n * d), *w = xalloc(d * d);
    if (o->location == SSL_RDM_LOC_ONLINE) {
        if (wfrozen != NULL) memcpy(w, wfrozen, (size_t)(d * d) * sizeof *w);
        else svd_map(w, NULL, p, n, d, o);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) {
                double acc = 0;
                for (int64_t q = 0; q < d; q++) acc += p[i * d + q] * w[q * d + j];
                pa[i * d + j] = acc;
            }
        memcpy(zb, z, (size_t)(n * d) * sizeof *zb);
    } else {
        memcpy(pa, p, (size_t)(n * d) * sizeof *pa);
        svd_map(NULL, zb, z, n, d, o);
    }
    double c = 0;
    for (int64_t i = 0; i < n; i++) c += naive_cos(pa + i * d, zb + i * d, d, 1e-8);
    free(pa);
    free(zb);
    free(w);
    return c / (double)n;
}

/* RDM-SimSiam: loss(z1, z2)/2 + loss(z2, z1)/2; RDM-BYOL: loss(z_2, zm_1) + loss(z_1, zm_2) */
static double naive_rdm(const double *p1, const double *p2, const double *t1, const double *t2,
                        int64_t n, int64_t d, const struct ssl_rdm_opts *o, const double *w1,
                        const double *w2)
{
    double m1 = naive_rdm_meancos(p1, t2, n, d, o, w1), m2 = naive_rdm_meancos(p2, t1, n, d, o, w2);
    if (o->base == SSL_RDM_BASE_BYOL) return (2.0 - 2.0 * m1) + (2.0 - 2.0 * m2);
    return -m1 / 2.0 - m2 / 2.0;
}

/* ------------------------------------------------------------------------------------------
 * The losses behind one interface, and gradcheck closures
 * ------------------------------------------------------------------------------------------ */

enum which { W_BYOL, W_SIMSIAM, W_RDM };
static const char *const which_name[] = {"byol", "simsiam", "rdm"};

struct pctx {
    enum which which;
    int64_t n, d;
    double *p1, *p2, *t1, *t2; /* (n, d) */
    double *dp1, *dp2;         /* (n, d) */
    double *work;
    struct ssl_rdm_opts rdm;
    const struct ssl_loss_ctx *lctx;
    double *w1, *w2; /* (d, d) frozen online maps (RDM online), else NULL */
};

static int64_t work_elems(enum which w, const struct ssl_loss_ctx *lctx, int64_t n, int64_t d)
{
    switch (w) {
    case W_BYOL: return ssl_byol_work_elems(lctx, n, d, NULL);
    case W_SIMSIAM: return ssl_simsiam_work_elems(lctx, n, d, NULL);
    case W_RDM: return ssl_rdm_work_elems(lctx, n, d, NULL);
    }
    return 0;
}

/* The loss's status; *value as the loss left it. */
static int run_rc(struct pctx *c, double *value, double *dp1, double *dp2)
{
    *value = 0.0; /* a failure must overwrite it with NAN */
    switch (c->which) {
    case W_BYOL:
        return ssl_byol_loss(value, dp1, dp2, c->p1, c->p2, c->t1, c->t2, c->n, c->d, NULL,
                             c->lctx, c->work);
    case W_SIMSIAM:
        return ssl_simsiam_loss(value, dp1, dp2, c->p1, c->p2, c->t1, c->t2, c->n, c->d, NULL,
                                c->lctx, c->work);
    case W_RDM:
        return ssl_rdm_loss(value, dp1, dp2, c->p1, c->p2, c->t1, c->t2, c->n, c->d, &c->rdm,
                            c->lctx, c->work);
    }
    return -1;
}

/* A run that must succeed: status 0, the value returned. */
static double run(struct pctx *c, double *dp1, double *dp2)
{
    double v = NAN;
    assert_int_equal(run_rc(c, &v, dp1, dp2), 0);
    return v;
}

/* lctx: the ctx the loss will run with (RDM's workspace depends on its global rows). */
static void pctx_init(struct pctx *c, enum which w, int64_t n, int64_t d,
                      const struct ssl_loss_ctx *lctx)
{
    memset(c, 0, sizeof *c);
    c->which = w;
    c->n = n;
    c->d = d;
    c->lctx = lctx;
    c->p1 = xalloc(n * d);
    c->p2 = xalloc(n * d);
    c->t1 = xalloc(n * d);
    c->t2 = xalloc(n * d);
    c->dp1 = xalloc(n * d);
    c->dp2 = xalloc(n * d);
    c->work = xalloc(work_elems(w, lctx, n, d));
    c->rdm = ssl_rdm_defaults();
}

static void pctx_fill(struct pctx *c, struct ssl_rng *r)
{
    gc_fill_mixed(r, c->p1, c->n, c->d, 0.5);
    gc_fill_mixed(r, c->p2, c->n, c->d, 0.5);
    gc_fill_mixed(r, c->t1, c->n, c->d, 0.5);
    gc_fill_mixed(r, c->t2, c->n, c->d, 0.5);
}

static void pctx_free(struct pctx *c)
{
    free(c->p1);
    free(c->p2);
    free(c->t1);
    free(c->t2);
    free(c->dp1);
    free(c->dp2);
    free(c->work);
    free(c->w1);
    free(c->w2);
}

static double gc_loss_fn(void *ctx)
{
    struct pctx *c = ctx;
    if (c->w1 != NULL) /* RDM online: the frozen-map objective */
        return naive_rdm(c->p1, c->p2, c->t1, c->t2, c->n, c->d, &c->rdm, c->w1, c->w2);
    return run(c, NULL, NULL);
}

static void gc_backward_fn(void *ctx)
{
    struct pctx *c = ctx;
    run(c, c->dp1, c->dp2);
}

/* Gradient, accumulate and NULL-gradient checks; returns the number of failures. */
static int check_grads(struct pctx *c, struct ssl_rng *r, const char *name)
{
    if (c->which == W_RDM && c->rdm.location == SSL_RDM_LOC_ONLINE) {
        c->w1 = xalloc(c->d * c->d);
        c->w2 = xalloc(c->d * c->d);
        svd_map(c->w1, NULL, c->p1, c->n, c->d, &c->rdm);
        svd_map(c->w2, NULL, c->p2, c->n, c->d, &c->rdm);
        /* the frozen objective is the loss at the unperturbed point */
        expect_close(run(c, NULL, NULL), gc_loss_fn(c), 1e-11, name);
    }
    struct gc_param ps[2] = {
        {.name = "p1", .x = c->p1, .grad = c->dp1, .n = c->n * c->d, .grad_slot = &c->dp1},
        {.name = "p2", .x = c->p2, .grad = c->dp2, .n = c->n * c->d, .grad_slot = &c->dp2},
    };
    struct gc_problem prob = {.name = name, .loss = gc_loss_fn, .backward = gc_backward_fn,
                              .ctx = c, .params = ps, .n_params = 2};
    int bad = gc_check(&prob, &GC_TOL_DEFAULT);
    bad += gc_check_accumulates(&prob, r);
    bad += gc_check_null_grads(&prob);
    return bad;
}

/* ------------------------------------------------------------------------------------------
 * BYOL and SimSiam
 * ------------------------------------------------------------------------------------------ */

static void test_byol_simsiam_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "predictive_byol_simsiam_grad");
    int bad = 0;
    for (int w = W_BYOL; w <= W_SIMSIAM; w++) {
        struct pctx c;
        pctx_init(&c, (enum which)w, 6, 5, NULL);
        pctx_fill(&c, &r);
        bad += check_grads(&c, &r, which_name[w]);
        pctx_free(&c);
    }
    assert_int_equal(bad, 0);
}

static void test_byol_simsiam_values(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "predictive_byol_simsiam_values");
    const int64_t n = 7, d = 5;
    struct pctx b, s;
    pctx_init(&b, W_BYOL, n, d, NULL);
    pctx_init(&s, W_SIMSIAM, n, d, NULL);
    for (int rep = 0; rep < 3; rep++) {
        pctx_fill(&b, &r);
        memcpy(s.p1, b.p1, sizeof(double) * (size_t)(n * d));
        memcpy(s.p2, b.p2, sizeof(double) * (size_t)(n * d));
        memcpy(s.t1, b.t1, sizeof(double) * (size_t)(n * d));
        memcpy(s.t2, b.t2, sizeof(double) * (size_t)(n * d));
        double vb = run(&b, NULL, NULL), vs = run(&s, NULL, NULL);
        expect_close(vb, naive_byol(b.p1, b.p2, b.t1, b.t2, n, d), 1e-13, "byol naive");
        expect_close(vs, naive_simsiam(s.p1, s.p2, s.t1, s.t2, n, d), 1e-13, "simsiam naive");
        /* above the clamps, reg = 2 - 2 cos: BYOL = 4 + 4 SimSiam */
        expect_close(vb, 4.0 + 4.0 * vs, 1e-12, "byol = 4 + 4 simsiam");
    }
    /* known values: identical directions (any positive scale), opposite, orthogonal */
    for (int64_t i = 0; i < n * d; i++) {
        b.t2[i] = 3.0 * b.p1[i];
        b.t1[i] = 0.5 * b.p2[i];
    }
    expect_close(run(&b, NULL, NULL), 0.0, 1e-14, "byol identical");
    for (int64_t i = 0; i < n * d; i++) {
        b.t2[i] = -b.p1[i];
        b.t1[i] = -2.0 * b.p2[i];
    }
    expect_close(run(&b, NULL, NULL), 8.0, 1e-14, "byol opposite");
    memset(b.p1, 0, sizeof(double) * (size_t)(n * d));
    memset(b.p2, 0, sizeof(double) * (size_t)(n * d));
    memset(b.t1, 0, sizeof(double) * (size_t)(n * d));
    memset(b.t2, 0, sizeof(double) * (size_t)(n * d));
    for (int64_t i = 0; i < n; i++) {
        b.p1[i * d + 0] = 1.0 + (double)i;
        b.t2[i * d + 1] = 2.0;
        b.p2[i * d + 2] = -1.0;
        b.t1[i * d + 3] = 0.25;
    }
    expect_close(run(&b, NULL, NULL), 4.0, 1e-14, "byol orthogonal");
    /* a zero row: l2n(0) = 0, so reg = |l2n(t)|^2 = 1, not 2 - 2 cos = 2 (official formula) */
    memset(b.p1, 0, sizeof(double) * (size_t)(n * d));
    memcpy(b.t2, b.p2, sizeof(double) * (size_t)(n * d));
    memcpy(b.t1, b.p2, sizeof(double) * (size_t)(n * d));
    expect_close(run(&b, NULL, NULL), 1.0, 1e-14, "byol zero rows");
    expect_close(run(&b, NULL, NULL), naive_byol(b.p1, b.p2, b.t1, b.t2, n, d), 1e-14,
                 "byol zero rows naive");

    for (int64_t i = 0; i < n * d; i++) {
        s.t2[i] = 3.0 * s.p1[i];
        s.t1[i] = 0.5 * s.p2[i];
    }
    expect_close(run(&s, NULL, NULL), -1.0, 1e-14, "simsiam identical");
    for (int64_t i = 0; i < n * d; i++) s.t2[i] = -s.p1[i];
    expect_close(run(&s, NULL, NULL), 0.0, 1e-14, "simsiam half opposite");
    for (int64_t i = 0; i < n * d; i++) s.t1[i] = -s.p2[i];
    expect_close(run(&s, NULL, NULL), 1.0, 1e-14, "simsiam opposite");
    /* the target is stop-gradient: no output for it, and p's gradient of a perfectly aligned
     * pair is zero */
    for (int64_t i = 0; i < n * d; i++) {
        s.t2[i] = s.p1[i];
        s.t1[i] = s.p2[i];
    }
    memset(s.dp1, 0, sizeof(double) * (size_t)(n * d));
    run(&s, s.dp1, NULL);
    for (int64_t i = 0; i < n * d; i++) assert_true(fabs(s.dp1[i]) < 1e-14);
    printf("[predictive] byol/simsiam values: naive, known values ok\n");
    pctx_free(&b);
    pctx_free(&s);
}

/* ------------------------------------------------------------------------------------------
 * RDM
 * ------------------------------------------------------------------------------------------ */

struct shape {
    int64_t n, d;
};
/* n >= d: the (d, d) route; n < d: the Gram route */
static const struct shape rdm_shapes[] = {{8, 4}, {3, 6}};

static void test_rdm_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "predictive_rdm_grad");
    int bad = 0;
    for (int si = 0; si < 2; si++)
        for (int base = 0; base < 2; base++) {
            /* online: every pred_type; target: a few sigma (pred_type ignored) */
            for (int k = 0; k < 7; k++) {
                struct shape sh = rdm_shapes[si];
                struct pctx c;
                pctx_init(&c, W_RDM, sh.n, sh.d, NULL);
                pctx_fill(&c, &r);
                c.rdm.base = (enum ssl_rdm_base)base;
                if (k < 4) {
                    c.rdm.pred_type = (enum ssl_rdm_pred)k;
                    c.rdm.sigma = k == 0 ? 1.0 : 0.7;
                } else {
                    static const double sig[] = {1.0, -1.0, 0.5};
                    c.rdm.location = SSL_RDM_LOC_TARGET;
                    c.rdm.sigma = sig[k - 4];
                }
                char name[128];
                snprintf(name, sizeof name, "rdm %s %s %s sigma %g n %lld d %lld",
                         ssl_rdm_base_name(c.rdm.base), ssl_rdm_location_name(c.rdm.location),
                         ssl_rdm_pred_name(c.rdm.pred_type), c.rdm.sigma, (long long)sh.n,
                         (long long)sh.d);
                bad += check_grads(&c, &r, name);
                pctx_free(&c);
            }
        }
    assert_int_equal(bad, 0);
}

static void test_rdm_values(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "predictive_rdm_values");
    for (int si = 0; si < 2; si++) {
        struct shape sh = rdm_shapes[si];
        int64_t n = sh.n, d = sh.d;
        struct pctx c, s;
        pctx_init(&c, W_RDM, n, d, NULL);
        pctx_init(&s, W_SIMSIAM, n, d, NULL);
        pctx_fill(&c, &r);
        memcpy(s.p1, c.p1, sizeof(double) * (size_t)(n * d));
        memcpy(s.p2, c.p2, sizeof(double) * (size_t)(n * d));
        memcpy(s.t1, c.t1, sizeof(double) * (size_t)(n * d));
        memcpy(s.t2, c.t2, sizeof(double) * (size_t)(n * d));
        double simsiam = run(&s, NULL, NULL);
        for (int base = 0; base < 2; base++)
            for (int loc = 0; loc < 2; loc++)
                for (int pt = 0; pt < 4; pt++)
                    for (int sg = 0; sg < 3; sg++) {
                        static const double sig[] = {1.0, 0.5, -1.0};
                        c.rdm.base = (enum ssl_rdm_base)base;
                        c.rdm.location = (enum ssl_rdm_location)loc;
                        c.rdm.pred_type = (enum ssl_rdm_pred)pt;
                        c.rdm.sigma = sig[sg];
                        double v = run(&c, NULL, NULL);
                        double nv = naive_rdm(c.p1, c.p2, c.t1, c.t2, n, d, &c.rdm, NULL, NULL);
                        expect_close(v, nv, 1e-10, "rdm naive (dgesvd)");
                    }
        /* sigma = 0: poly online on the (d, d) route is W = I, target is z' = z (full rank);
         * both equal SimSiam, and RDM-BYOL = 4 + 4 SimSiam */
        c.rdm.sigma = 0.0;
        c.rdm.pred_type = SSL_RDM_PRED_POLY;
        for (int loc = 0; loc < 2; loc++) {
            c.rdm.location = (enum ssl_rdm_location)loc;
            if (loc == SSL_RDM_LOC_ONLINE && n < d) continue; /* W = row-space projector */
            c.rdm.base = SSL_RDM_BASE_SIMSIAM;
            expect_close(run(&c, NULL, NULL), simsiam, 1e-12, "rdm sigma 0 = simsiam");
            c.rdm.base = SSL_RDM_BASE_BYOL;
            expect_close(run(&c, NULL, NULL), 4.0 + 4.0 * simsiam, 1e-12, "rdm-byol sigma 0");
        }
        pctx_free(&c);
        pctx_free(&s);
    }

    /* equal singular values: p1 = 2 I, p2 = 3 I (n = d = 4) => W = c^sigma I, a rescaling that
     * the cosine ignores: RDM = SimSiam for every pred_type (log_*: positive scale) */
    {
        const int64_t n = 4, d = 4;
        struct pctx c, s;
        pctx_init(&c, W_RDM, n, d, NULL);
        pctx_init(&s, W_SIMSIAM, n, d, NULL);
        pctx_fill(&c, &r);
        memset(c.p1, 0, sizeof(double) * (size_t)(n * d));
        memset(c.p2, 0, sizeof(double) * (size_t)(n * d));
        for (int64_t i = 0; i < n; i++) {
            c.p1[i * d + i] = 2.0;
            c.p2[i * d + (i + 1) % d] = 3.0;
        }
        memcpy(s.p1, c.p1, sizeof(double) * (size_t)(n * d));
        memcpy(s.p2, c.p2, sizeof(double) * (size_t)(n * d));
        memcpy(s.t1, c.t1, sizeof(double) * (size_t)(n * d));
        memcpy(s.t2, c.t2, sizeof(double) * (size_t)(n * d));
        double simsiam = run(&s, NULL, NULL);
        for (int pt = 0; pt < 4; pt++) {
            c.rdm.pred_type = (enum ssl_rdm_pred)pt;
            expect_close(run(&c, NULL, NULL), simsiam, 1e-13, "rdm equal singular values");
        }
        /* gradient: dp = dp' W = c^sigma dp'(p W) = SimSiam's gradient (p W = c^sigma p and
         * cos is 0-homogeneous, whose gradient is (-1)-homogeneous) */
        c.rdm.pred_type = SSL_RDM_PRED_POLY;
        memset(c.dp1, 0, sizeof(double) * (size_t)(n * d));
        memset(s.dp1, 0, sizeof(double) * (size_t)(n * d));
        run(&c, c.dp1, NULL);
        run(&s, s.dp1, NULL);
        for (int64_t i = 0; i < n * d; i++) expect_close(c.dp1[i], s.dp1[i], 1e-12, "rdm grad");

        /* a rank-deficient p (two equal columns): log(0) makes the map ill-defined ->
         * SSL_E_NONFINITE, NaN; poly with sigma > 0 drops the zero singular value (its exact
         * limit) */
        pctx_fill(&c, &r);
        for (int64_t i = 0; i < n; i++) c.p1[i * d + 3] = c.p1[i * d + 2];
        c.rdm.pred_type = SSL_RDM_PRED_LOG;
        double bad_v = 0.0;
        assert_int_equal(run_rc(&c, &bad_v, NULL, NULL), SSL_E_NONFINITE);
        assert_true(isnan(bad_v));
        /* options out of range: SSL_E_USAGE, NAN */
        c.rdm.pred_type = (enum ssl_rdm_pred)7;
        assert_int_equal(run_rc(&c, &bad_v, NULL, NULL), SSL_E_USAGE);
        assert_true(isnan(bad_v));
        c.rdm.pred_type = SSL_RDM_PRED_POLY;
        c.rdm.sigma = 1.0;
        double v = run(&c, NULL, NULL);
        assert_true(isfinite(v));
        expect_close(v, naive_rdm(c.p1, c.p2, c.t1, c.t2, n, d, &c.rdm, NULL, NULL), 1e-10,
                     "rdm rank-deficient poly");
        pctx_free(&c);
        pctx_free(&s);
    }

    /* names */
    enum ssl_rdm_pred p;
    enum ssl_rdm_location l;
    enum ssl_rdm_base b;
    assert_int_equal(ssl_rdm_pred_parse("log_2", &p), 0);
    assert_int_equal(p, SSL_RDM_PRED_LOG_2);
    assert_int_equal(ssl_rdm_pred_parse("log3", &p), -1);
    assert_int_equal(ssl_rdm_location_parse("target", &l), 0);
    assert_int_equal(l, SSL_RDM_LOC_TARGET);
    assert_int_equal(ssl_rdm_base_parse("byol", &b), 0);
    assert_int_equal(b, SSL_RDM_BASE_BYOL);
    assert_null(ssl_rdm_pred_name((enum ssl_rdm_pred)7));
    printf("[predictive] rdm values: dgesvd route, sigma 0, equal singular values, rank "
           "deficiency ok\n");
}

/* ------------------------------------------------------------------------------------------
 * The global batch through a fake comm
 * ------------------------------------------------------------------------------------------ */

/* P ranks that all hold identical rows: sums multiply by P, gather repeats the rows P times
 * (this is rank 0). */
struct fake {
    int P;
    bool fail;
};

static int fake_sum(void *ctx, double *v, int64_t n)
{
    struct fake *f = ctx;
    if (f->fail) return -1;
    for (int64_t i = 0; i < n; i++) v[i] *= (double)f->P;
    return 0;
}

static int fake_gather(void *ctx, const double *local, int64_t rows, int64_t cols, double *global,
                       int64_t *offset)
{
    struct fake *f = ctx;
    for (int r = 0; r < f->P; r++)
        memcpy(global + (int64_t)r * rows * cols, local, (size_t)(rows * cols) * sizeof *global);
    *offset = 0;
    return 0;
}

static int fake_scatter(void *ctx, const double *global_grad, int64_t rows, int64_t cols,
                        double *local_grad)
{
    (void)ctx;
    (void)global_grad;
    (void)rows;
    (void)cols;
    (void)local_grad;
    fail_msg("the predictive losses never scatter");
    return -1;
}

static int64_t fake_rows(void *ctx, int64_t rows)
{
    struct fake *f = ctx;
    return (int64_t)f->P * rows;
}

static void dup_rows(double *dst, const double *src, int64_t n, int64_t d, int P)
{
    for (int r = 0; r < P; r++)
        memcpy(dst + (int64_t)r * n * d, src, (size_t)(n * d) * sizeof *dst);
}

static void test_global_batch(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "predictive_global_batch");
    struct cfg {
        enum which which;
        int64_t n, d;
        int P;
        enum ssl_rdm_location loc;
        enum ssl_rdm_pred pred;
    };
    static const struct cfg cfgs[] = {
        {W_BYOL, 5, 4, 2, 0, 0},
        {W_SIMSIAM, 5, 4, 3, 0, 0},
        {W_RDM, 5, 4, 3, SSL_RDM_LOC_ONLINE, SSL_RDM_PRED_LOG_1},   /* (d, d), full rank */
        {W_RDM, 4, 6, 2, SSL_RDM_LOC_ONLINE, SSL_RDM_PRED_POLY},    /* (d, d), rank 4 < 6 */
        {W_RDM, 2, 6, 2, SSL_RDM_LOC_ONLINE, SSL_RDM_PRED_POLY},    /* Gram: N = 4 < d */
        {W_RDM, 2, 6, 3, SSL_RDM_LOC_ONLINE, SSL_RDM_PRED_LOG_2},   /* (d, d): N = 6 = d, rank 2 */
        {W_RDM, 5, 4, 2, SSL_RDM_LOC_TARGET, SSL_RDM_PRED_POLY},    /* target, sigma 1 */
        {W_RDM, 2, 7, 3, SSL_RDM_LOC_TARGET, SSL_RDM_PRED_POLY},    /* target, Gram */
    };
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        struct cfg g = cfgs[ci];
        int64_t n = g.n, d = g.d, N = g.P * n;
        struct fake f = {.P = g.P};
        struct ssl_loss_comm comm = {.sum = fake_sum, .gather = fake_gather,
                                     .scatter = fake_scatter, .global_rows = fake_rows, .ctx = &f};
        struct ssl_loss_ctx lctx = {.comm = &comm};
        struct pctx loc, one;
        pctx_init(&loc, g.which, n, d, &lctx);
        pctx_init(&one, g.which, N, d, NULL);
        loc.rdm.location = one.rdm.location = g.loc;
        loc.rdm.pred_type = one.rdm.pred_type = g.pred;
        loc.rdm.base = one.rdm.base = ci % 2 ? SSL_RDM_BASE_BYOL : SSL_RDM_BASE_SIMSIAM;
        pctx_fill(&loc, &r);
        dup_rows(one.p1, loc.p1, n, d, g.P);
        dup_rows(one.p2, loc.p2, n, d, g.P);
        dup_rows(one.t1, loc.t1, n, d, g.P);
        dup_rows(one.t2, loc.t2, n, d, g.P);
        double vl = run(&loc, loc.dp1, loc.dp2), vo = run(&one, one.dp1, one.dp2);
        assert_true(isfinite(vl));
        char name[96];
        snprintf(name, sizeof name, "global batch %s P %d n %lld d %lld", which_name[g.which],
                 g.P, (long long)n, (long long)d);
        expect_close(vl, vo, 1e-12, name);
        /* each rank's gradient is the global gradient of its block */
        for (int64_t i = 0; i < n * d; i++) {
            expect_close(loc.dp1[i], one.dp1[i], 1e-11, name);
            expect_close(loc.dp2[i], one.dp2[i], 1e-11, name);
        }
        printf("[predictive] %s: value %.12g ok\n", name, vl);
        /* a failing comm gives its own code and NaN, never a partial value */
        f.fail = true;
        double fv = 0.0;
        assert_int_equal(run_rc(&loc, &fv, NULL, NULL), -1);
        assert_true(isnan(fv));
        pctx_free(&loc);
        pctx_free(&one);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byol_simsiam_grad),
        cmocka_unit_test(test_byol_simsiam_values),
        cmocka_unit_test(test_rdm_grad),
        cmocka_unit_test(test_rdm_values),
        cmocka_unit_test(test_global_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
