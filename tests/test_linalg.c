/* test_linalg.c: src/linalg.c on the fp64 core: covariance against a naive double loop,
 * eigendecomposition reconstruction, spectral / eigen-sum backward and every whitening
 * backward against central differences (gradcheck.c), whitened outputs against their defining
 * properties (identity covariance with the same normaliser, Cholesky = ZCA up to a rotation,
 * BN per-feature moments), and SSL_E_NONFINITE on non-finite or singular input.
 *
 * Inputs are random normal rows times a fixed random mix (I + 0.5 N(0,1)/sqrt(d)) plus a
 * per-feature offset: well conditioned and not already centred. The seed is printed by
 * gc_rng_begin (override with SSL_TEST_SEED). */
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

#include "check.h"
#include "gradcheck.h"
#include "linalg.h"
#include "rng.h"

#ifndef SSL_F64
#error "test_linalg needs the fp64 core (ssl_core_f64)"
#endif

static double *xalloc(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}


/* max |A^T B c - I| over (d, d), A and B (n, d). */
static double cross_cov_dev(const double *a, const double *b, int64_t n, int64_t d, double c,
                            bool identity)
{
    double worst = 0.0;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) {
            double s = 0.0;
            for (int64_t r = 0; r < n; r++) s += a[r * d + i] * b[r * d + j];
            worst = fmax(worst, fabs(c * s - (identity && i == j ? 1.0 : 0.0)));
        }
    return worst;
}

/* A random orthogonal q (m, m): the eigenvectors of a random symmetric matrix. */
static void random_orthogonal(struct ssl_rng *r, double *q, int64_t m)
{
    double *a = xalloc(m * m), *l = xalloc(m), *work = xalloc(ssl_linalg_syevd_work_elems(m));
    gc_fill_normal(r, a, m * m, 0.0, 1.0);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < i; j++) a[i * m + j] = a[j * m + i];
    assert_int_equal(ssl_linalg_syevd(a, l, m, work), 0);
    memcpy(q, a, (size_t)(m * m) * sizeof *q);
    free(a);
    free(l);
    free(work);
}

/* ------------------------------------------------------------------------------------------
 * Covariance
 * ------------------------------------------------------------------------------------------ */

static void test_cov_naive(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "linalg_cov_naive");
    const int64_t n = 13, d = 5;
    double *x = xalloc(n * d), *sig = xalloc(d * d), *mean = xalloc(d);
    double *work = xalloc(ssl_linalg_cov_work_elems(n, d));
    gc_fill_mixed(&r, x, n, d, 2.0);
    for (int ub = 0; ub < 2; ub++) {
        ssl_linalg_cov(sig, mean, x, n, d, ub, work);
        double worst = 0.0;
        for (int64_t j = 0; j < d; j++) {
            double m = 0.0;
            for (int64_t a = 0; a < n; a++) m += x[a * d + j];
            m /= (double)n;
            worst = fmax(worst, fabs(m - mean[j]));
        }
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++) {
                double mi = 0.0, mj = 0.0, s = 0.0;
                for (int64_t a = 0; a < n; a++) {
                    mi += x[a * d + i];
                    mj += x[a * d + j];
                }
                mi /= (double)n;
                mj /= (double)n;
                for (int64_t a = 0; a < n; a++) s += (x[a * d + i] - mi) * (x[a * d + j] - mj);
                s /= (double)(ub ? n - 1 : n);
                worst = fmax(worst, fabs(s - sig[i * d + j]));
                assert_true(sig[i * d + j] == sig[j * d + i]);
            }
        printf("[cov_naive] unbiased=%d max |err| %.3g\n", ub, worst);
        assert_true(worst < 1e-12);
    }
    free(x);
    free(sig);
    free(mean);
    free(work);
}

struct covctx {
    int64_t n, d;
    bool unbiased;
    double *x, *dx, *sig, *mean, *rs, *rm, *work;
};

static double cov_loss(void *ctx)
{
    struct covctx *c = ctx;
    ssl_linalg_cov(c->sig, c->mean, c->x, c->n, c->d, c->unbiased, c->work);
    return gc_dot(c->rs, c->sig, c->d * c->d) + gc_dot(c->rm, c->mean, c->d);
}

static void cov_backward(void *ctx)
{
    struct covctx *c = ctx;
    ssl_linalg_cov_backward(c->dx, c->rs, c->rm, c->x, c->mean, c->n, c->d, c->unbiased,
                            c->work);
}

static void test_cov_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "linalg_cov_grad");
    int bad = 0;
    for (int ub = 0; ub < 2; ub++) {
        struct covctx c = {.n = 16, .d = 4, .unbiased = ub};
        c.x = xalloc(c.n * c.d);
        c.dx = xalloc(c.n * c.d);
        c.sig = xalloc(c.d * c.d);
        c.mean = xalloc(c.d);
        c.rs = xalloc(c.d * c.d); /* not symmetric: the backward must symmetrise */
        c.rm = xalloc(c.d);
        c.work = xalloc(ssl_linalg_cov_backward_work_elems(c.n, c.d));
        gc_fill_mixed(&r, c.x, c.n, c.d, 2.0);
        gc_fill_normal(&r, c.rs, c.d * c.d, 0.0, 1.0);
        gc_fill_normal(&r, c.rm, c.d, 0.0, 1.0);
        struct gc_param p = {.name = "x", .x = c.x, .grad = c.dx, .n = c.n * c.d};
        struct gc_problem prob = {.name = ub ? "cov unbiased" : "cov biased", .loss = cov_loss,
                                  .backward = cov_backward, .ctx = &c, .params = &p,
                                  .n_params = 1};
        bad += gc_check(&prob, &GC_TOL_DEFAULT);
        bad += gc_check_accumulates(&prob, &r);
        free(c.x);
        free(c.dx);
        free(c.sig);
        free(c.mean);
        free(c.rs);
        free(c.rm);
        free(c.work);
    }
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------------------------------
 * Eigendecomposition
 * ------------------------------------------------------------------------------------------ */

static void test_syevd_reconstructs(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "linalg_syevd");
    const int64_t m = 7;
    double *s = xalloc(m * m), *u = xalloc(m * m), *l = xalloc(m);
    double *work = xalloc(ssl_linalg_syevd_work_elems(m));
    gc_fill_normal(&r, s, m * m, 0.0, 1.0);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < i; j++) s[i * m + j] = s[j * m + i];
    memcpy(u, s, (size_t)(m * m) * sizeof *u);
    assert_int_equal(ssl_linalg_syevd(u, l, m, work), 0);
    double rec = 0.0, orth = 0.0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) {
            double a = 0.0, o = 0.0;
            for (int64_t k = 0; k < m; k++) {
                a += u[i * m + k] * l[k] * u[j * m + k];
                o += u[k * m + i] * u[k * m + j];
            }
            rec = fmax(rec, fabs(a - s[i * m + j]));
            orth = fmax(orth, fabs(o - (i == j ? 1.0 : 0.0)));
        }
    for (int64_t k = 0; k + 1 < m; k++) assert_true(l[k] <= l[k + 1]);
    /* Sign convention: the largest-magnitude entry of each eigenvector is positive. */
    for (int64_t k = 0; k < m; k++) {
        int64_t arg = 0;
        for (int64_t i = 1; i < m; i++)
            if (fabs(u[i * m + k]) > fabs(u[arg * m + k])) arg = i;
        assert_true(u[arg * m + k] > 0.0);
    }
    printf("[syevd] |U diag(l) U^T - S| %.3g, |U^T U - I| %.3g\n", rec, orth);
    assert_true(rec < 1e-12 && orth < 1e-12);
    s[3] = NAN;
    assert_int_equal(ssl_linalg_syevd(s, l, m, work), SSL_E_NONFINITE);
    free(s);
    free(u);
    free(l);
    free(work);
}

/* F = f(S) with S = S0 + sym(A), A the parameter (zero at the checked point), so that the
 * finite differences perturb S symmetrically. */
enum fkind { F_SQRT, F_INVSQRT, F_LOGDET };

struct spctx {
    int64_t m;
    enum fkind f;
    double *a, *da, *s0, *s, *u, *l, *fl, *dfl, *fm, *r, *work;
};

static void spectral_eval(struct spctx *c)
{
    int64_t m = c->m;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++)
            c->u[i * m + j] = c->s0[i * m + j] + 0.5 * (c->a[i * m + j] + c->a[j * m + i]);
    assert_int_equal(ssl_linalg_syevd(c->u, c->l, m, c->work), 0);
    for (int64_t k = 0; k < m; k++) {
        double l = c->l[k];
        assert_true(l > 0.0);
        switch (c->f) {
        case F_SQRT: c->fl[k] = sqrt(l); c->dfl[k] = 0.5 / sqrt(l); break;
        case F_INVSQRT: c->fl[k] = 1.0 / sqrt(l); c->dfl[k] = -0.5 / (l * sqrt(l)); break;
        case F_LOGDET: c->fl[k] = log(l); c->dfl[k] = 1.0 / l; break;
        }
    }
}

static double spectral_loss(void *ctx)
{
    struct spctx *c = ctx;
    int64_t m = c->m;
    spectral_eval(c);
    if (c->f == F_LOGDET) {
        double s = 0.0;
        for (int64_t k = 0; k < m; k++) s += c->fl[k];
        return 0.7 * s;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < m; k++) s += c->u[i * m + k] * c->fl[k] * c->u[j * m + k];
            c->fm[i * m + j] = s;
        }
    return gc_dot(c->r, c->fm, m * m);
}

static void spectral_backward(void *ctx)
{
    struct spctx *c = ctx;
    /* dS is symmetric, so dL/dA = dS (dA_ij = (dS_ij + dS_ji) / 2). */
    if (c->f == F_LOGDET)
        ssl_linalg_eigsum_backward(c->da, 0.7, c->u, c->dfl, c->m, c->work);
    else
        ssl_linalg_spectral_backward(c->da, c->r, c->u, c->l, c->fl, c->dfl, c->m, c->work);
}

static int spectral_case(struct ssl_rng *r, const char *name, enum fkind f, const double *l0,
                         int64_t m)
{
    struct spctx c = {.m = m, .f = f};
    double **bufs[] = {&c.a, &c.da, &c.s0, &c.s, &c.u, &c.fm, &c.r};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) *bufs[i] = xalloc(m * m);
    c.l = xalloc(m);
    c.fl = xalloc(m);
    c.dfl = xalloc(m);
    int64_t nw = ssl_linalg_syevd_work_elems(m);
    if (ssl_linalg_spectral_backward_work_elems(m) > nw)
        nw = ssl_linalg_spectral_backward_work_elems(m);
    c.work = xalloc(nw);
    double *q = c.s;
    random_orthogonal(r, q, m);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < m; k++) s += q[i * m + k] * l0[k] * q[j * m + k];
            c.s0[i * m + j] = s;
        }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < i; j++) c.s0[i * m + j] = c.s0[j * m + i];
    gc_fill_normal(r, c.r, m * m, 0.0, 1.0); /* not symmetric: the backward symmetrises */
    struct gc_param p = {.name = "S", .x = c.a, .grad = c.da, .n = m * m};
    struct gc_problem prob = {.name = name, .loss = spectral_loss,
                              .backward = spectral_backward, .ctx = &c, .params = &p,
                              .n_params = 1};
    int bad = gc_check(&prob, &GC_TOL_DEFAULT);
    bad += gc_check_accumulates(&prob, r);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(*bufs[i]);
    free(c.l);
    free(c.fl);
    free(c.dfl);
    free(c.work);
    return bad;
}

static void test_spectral_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "linalg_spectral_grad");
    const double spread[5] = {0.5, 1.0, 1.7, 2.5, 4.0};
    /* Two eigenvalues 1e-9 apart: the divided difference would cancel to ~1e-7 relative
     * accuracy; the tie rule must take over. */
    const double close[5] = {0.5, 1.0, 2.0, 2.0 + 1e-9, 3.0};
    /* An exact repeat, where the divided difference is 0/0. */
    const double equal[5] = {0.8, 1.5, 1.5, 2.0, 3.0};
    int bad = 0;
    bad += spectral_case(&r, "sqrt spread", F_SQRT, spread, 5);
    bad += spectral_case(&r, "invsqrt spread", F_INVSQRT, spread, 5);
    bad += spectral_case(&r, "sqrt close", F_SQRT, close, 5);
    bad += spectral_case(&r, "invsqrt close", F_INVSQRT, close, 5);
    bad += spectral_case(&r, "invsqrt equal", F_INVSQRT, equal, 5);
    bad += spectral_case(&r, "logdet spread", F_LOGDET, spread, 5);
    bad += spectral_case(&r, "logdet close", F_LOGDET, close, 5);
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------------------------------
 * Whitening
 * ------------------------------------------------------------------------------------------ */

static const enum ssl_whiten_kind all_kinds[5] = {SSL_WHITEN_NONE, SSL_WHITEN_BN,
                                                  SSL_WHITEN_CHOLESKY, SSL_WHITEN_ZCA,
                                                  SSL_WHITEN_PCA};

struct wctx {
    enum ssl_whiten_kind kind;
    int64_t n, d;
    bool unbiased;
    double eps;
    double *x, *y, *dx, *r, *saved, *work;
};

static void wctx_init(struct wctx *c, enum ssl_whiten_kind kind, int64_t n, int64_t d,
                      bool unbiased, double eps)
{
    *c = (struct wctx){.kind = kind, .n = n, .d = d, .unbiased = unbiased, .eps = eps};
    c->x = xalloc(n * d);
    c->y = xalloc(n * d);
    c->dx = xalloc(n * d);
    c->r = xalloc(n * d);
    c->saved = xalloc(ssl_linalg_whiten_saved_elems(d));
    c->work = xalloc(ssl_linalg_whiten_work_elems(n, d));
}

static void wctx_free(struct wctx *c)
{
    free(c->x);
    free(c->y);
    free(c->dx);
    free(c->r);
    free(c->saved);
    free(c->work);
}

static int wforward(struct wctx *c)
{
    return ssl_linalg_whiten_forward(c->kind, c->y, c->saved, c->x, c->n, c->d, c->unbiased,
                                     c->eps, c->work);
}

static double w_loss(void *ctx)
{
    struct wctx *c = ctx;
    assert_int_equal(wforward(c), 0);
    return gc_dot(c->r, c->y, c->n * c->d);
}

static void w_backward(void *ctx)
{
    struct wctx *c = ctx;
    ssl_linalg_whiten_backward(c->kind, c->dx, c->r, c->x, c->saved, c->n, c->d, c->unbiased,
                               c->eps, c->work);
}

static void test_whiten_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "linalg_whiten_grad");
    int bad = 0;
    for (int ki = 0; ki < 5; ki++)
        for (int variant = 0; variant < 2; variant++) {
            /* variant 0: W-MSE's setting (unbiased, eps = 0); 1: biased with shrinkage */
            struct wctx c;
            wctx_init(&c, all_kinds[ki], 16, 4, variant == 0, variant == 0 ? 0.0 : 0.1);
            gc_fill_mixed(&r, c.x, c.n, c.d, 2.0);
            gc_fill_normal(&r, c.r, c.n * c.d, 0.0, 1.0);
            char name[64];
            snprintf(name, sizeof name, "whiten %s %s", ssl_whiten_kind_name(c.kind),
                     variant == 0 ? "unbiased eps=0" : "biased eps=0.1");
            struct gc_param p = {.name = "x", .x = c.x, .grad = c.dx, .n = c.n * c.d};
            struct gc_problem prob = {.name = name, .loss = w_loss, .backward = w_backward,
                                      .ctx = &c, .params = &p, .n_params = 1};
            bad += gc_check(&prob, &GC_TOL_DEFAULT);
            bad += gc_check_accumulates(&prob, &r);
            wctx_free(&c);
        }
    assert_int_equal(bad, 0);
}

static void test_whiten_properties(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "linalg_whiten_properties");
    const int64_t n = 40, d = 6;
    struct wctx c[5];
    for (int ki = 0; ki < 5; ki++) {
        wctx_init(&c[ki], all_kinds[ki], n, d, true, 0.0);
        if (ki == 0)
            gc_fill_mixed(&r, c[0].x, n, d, 2.0);
        else
            memcpy(c[ki].x, c[0].x, (size_t)(n * d) * sizeof *c[0].x);
        assert_int_equal(wforward(&c[ki]), 0);
    }
    double cs = 1.0 / (double)(n - 1); /* the spec's normaliser: Z^T Z / (n - 1) = I */
    double tol = 1e-10;
    /* none is the identity */
    assert_memory_equal(c[0].y, c[0].x, (size_t)(n * d) * sizeof *c[0].x);
    /* bn: zero mean, unit variance per feature */
    double bn_mean = 0.0, bn_var = 0.0;
    for (int64_t j = 0; j < d; j++) {
        double m = 0.0, v = 0.0;
        for (int64_t a = 0; a < n; a++) m += c[1].y[a * d + j];
        for (int64_t a = 0; a < n; a++) v += c[1].y[a * d + j] * c[1].y[a * d + j];
        bn_mean = fmax(bn_mean, fabs(m / (double)n));
        bn_var = fmax(bn_var, fabs(v * cs - 1.0));
    }
    printf("[whiten] bn: max |mean| %.3g, max |var - 1| %.3g\n", bn_mean, bn_var);
    assert_true(bn_mean < tol && bn_var < tol);
    /* cholesky, zca, pca: identity covariance (pca: uncorrelated columns, unit variance) */
    for (int ki = 2; ki < 5; ki++) {
        double dev = cross_cov_dev(c[ki].y, c[ki].y, n, d, cs, true);
        printf("[whiten] %s: max |Y^T Y / (n-1) - I| %.3g\n", ssl_whiten_kind_name(all_kinds[ki]),
               dev);
        assert_true(dev < tol);
    }
    /* Cholesky and ZCA whitening differ by an orthogonal R = Y_cd^T Y_zca / (n-1):
     * R^T R = I and Y_cd R = Y_zca. */
    double *rm = xalloc(d * d);
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) {
            double s = 0.0;
            for (int64_t a = 0; a < n; a++) s += c[2].y[a * d + i] * c[3].y[a * d + j];
            rm[i * d + j] = s * cs;
        }
    double orth = 0.0, rot = 0.0;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < d; k++) s += rm[k * d + i] * rm[k * d + j];
            orth = fmax(orth, fabs(s - (i == j ? 1.0 : 0.0)));
        }
    for (int64_t a = 0; a < n; a++)
        for (int64_t j = 0; j < d; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < d; k++) s += c[2].y[a * d + k] * rm[k * d + j];
            rot = fmax(rot, fabs(s - c[3].y[a * d + j]));
        }
    printf("[whiten] cholesky vs zca: |R^T R - I| %.3g, |Y_cd R - Y_zca| %.3g\n", orth, rot);
    assert_true(orth < tol && rot < tol);
    /* The Cholesky factor in the saved state is lower triangular with a positive diagonal;
     * PCA's eigenvalues are stored in decreasing order. */
    const double *L = c[2].saved + 2 * d, *s = c[4].saved + d;
    for (int64_t i = 0; i < d; i++) {
        assert_true(L[i * d + i] > 0.0);
        for (int64_t j = i + 1; j < d; j++) assert_true(L[i * d + j] == 0.0);
        if (i + 1 < d) assert_true(s[i] >= s[i + 1]);
    }
    free(rm);
    for (int ki = 0; ki < 5; ki++) wctx_free(&c[ki]);
}

static void test_whiten_nonfinite(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "linalg_whiten_nonfinite");
    const int64_t n = 16, d = 4;
    for (int ki = 1; ki < 5; ki++) {
        struct wctx c;
        wctx_init(&c, all_kinds[ki], n, d, true, 0.0);
        gc_fill_mixed(&r, c.x, n, d, 2.0);
        c.x[5] = NAN;
        assert_int_equal(wforward(&c), SSL_E_NONFINITE);
        gc_fill_mixed(&r, c.x, n, d, 2.0);
        c.x[6] = INFINITY;
        assert_int_equal(wforward(&c), SSL_E_NONFINITE);
        if (all_kinds[ki] != SSL_WHITEN_BN) {
            /* singular: feature 3 = feature 0 - 2 feature 1 (rank d - 1) */
            gc_fill_mixed(&r, c.x, n, d, 2.0);
            for (int64_t a = 0; a < n; a++) c.x[a * d + 3] = c.x[a * d] - 2.0 * c.x[a * d + 1];
            assert_int_equal(wforward(&c), SSL_E_NONFINITE);
            /* fewer rows than features: rank <= n - 1 < d */
            struct wctx t;
            wctx_init(&t, all_kinds[ki], 3, d, true, 0.0);
            gc_fill_mixed(&r, t.x, 3, d, 2.0);
            assert_int_equal(wforward(&t), SSL_E_NONFINITE);
            wctx_free(&t);
        } else {
            /* a constant feature has zero variance */
            gc_fill_mixed(&r, c.x, n, d, 2.0);
            for (int64_t a = 0; a < n; a++) c.x[a * d + 2] = 1.5;
            assert_int_equal(wforward(&c), SSL_E_NONFINITE);
        }
        /* shrinkage makes the singular case well posed again */
        c.eps = 0.1;
        assert_int_equal(wforward(&c), 0);
        printf("[whiten] %s: non-finite and singular input rejected\n",
               ssl_whiten_kind_name(all_kinds[ki]));
        wctx_free(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cov_naive),
        cmocka_unit_test(test_cov_grad),
        cmocka_unit_test(test_syevd_reconstructs),
        cmocka_unit_test(test_spectral_grad),
        cmocka_unit_test(test_whiten_grad),
        cmocka_unit_test(test_whiten_properties),
        cmocka_unit_test(test_whiten_nonfinite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
