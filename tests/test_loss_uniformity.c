/* test_loss_uniformity.c: src/losses/uniformity.c on the fp64 core.
 *
 * For W2, L_U and alignment: central-difference gradient checks (both W2 routes, cov_eps 0 and
 * > 0, tall and wide batches), the accumulate and NULL-gradient checks, a second independent
 * computation of the value (naive loops written here from LOSSES-SPEC 1b/1c, with a Jacobi
 * eigenvalue solver instead of LAPACK), agreement of the covariance and Gram routes, agreement
 * with src/metrics.h where the definitions coincide, known values (W2 = 0 for exact N(0, I/D)
 * moments, W2^2 = 1 + (1 - sqrt(D eps))^2 at full collapse, W2 invariant and L_U not under
 * instance cloning), the weight schedule, SSL_E_NONFINITE (value NAN) on non-finite input, the
 * status convention (NULL opts = defaults, SSL_E_USAGE, a comm's own code), and the global
 * batch through a fake struct ssl_loss_comm of P = 3 ranks that all hold the same batch
 * (compared with one process on the 3-times-stacked batch). The seed is printed by gc_rng_begin (override with
 * SSL_TEST_SEED). */
#include <float.h>
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
#include "losses/uniformity.h"
#include "metrics.h"
#include "rng.h"

#ifndef SSL_F64
#error "test_loss_uniformity needs the fp64 core (ssl_core_f64)"
#endif

static double *xalloc(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}

/* ------------------------------------------------------------------------------------------
 * One context for the three losses
 * ------------------------------------------------------------------------------------------ */

enum kind { K_W2, K_UNIF, K_ALIGN };

struct uctx {
    enum kind kind;
    int64_t n, d;
    double *z1, *z2, *dz1, *dz2; /* (n, d) */
    struct ssl_w2_opts w2;
    struct ssl_uniformity_opts unif;
    struct ssl_alignment_opts align;
    const struct ssl_loss_ctx *lc;
    double *work;
    double w2_sq;
};

static int64_t work_elems(const struct uctx *c)
{
    switch (c->kind) {
    case K_W2: return ssl_w2_work_elems(c->lc, c->n, c->d, &c->w2);
    case K_UNIF: return ssl_uniformity_work_elems(c->lc, c->n, c->d, &c->unif);
    case K_ALIGN: return ssl_alignment_work_elems(c->lc, c->n, c->d, &c->align);
    }
    return 0;
}

/* The status of one call; *value as the loss left it. */
static int run_rc(struct uctx *c, double *value, double *dz1, double *dz2)
{
    switch (c->kind) {
    case K_W2:
        return ssl_w2_loss(value, &c->w2_sq, dz1, dz2, c->z1, c->z2, c->n, c->d, &c->w2, c->lc,
                           c->work);
    case K_UNIF:
        return ssl_uniformity_loss(value, dz1, dz2, c->z1, c->z2, c->n, c->d, &c->unif, c->lc,
                                   c->work);
    case K_ALIGN:
        return ssl_alignment_loss(value, dz1, dz2, c->z1, c->z2, c->n, c->d, &c->align, c->lc,
                                  c->work);
    }
    return SSL_E_OTHER;
}

/* The value of a call that must succeed. */
static double run(struct uctx *c, double *dz1, double *dz2)
{
    double v = 0.0;
    assert_int_equal(run_rc(c, &v, dz1, dz2), 0);
    return v;
}

static double u_loss(void *ctx) { return run(ctx, NULL, NULL); }

static void u_backward(void *ctx)
{
    struct uctx *c = ctx;
    (void)run(c, c->dz1, c->dz2);
}

static struct uctx make(enum kind kind, int64_t n, int64_t d, const struct ssl_loss_ctx *lc)
{
    struct uctx c = {.kind = kind, .n = n, .d = d, .lc = lc};
    c.w2 = ssl_w2_defaults();
    c.unif = ssl_uniformity_defaults();
    c.align = ssl_alignment_defaults();
    c.z1 = xalloc(n * d);
    c.z2 = xalloc(n * d);
    c.dz1 = xalloc(n * d);
    c.dz2 = xalloc(n * d);
    return c;
}

static void alloc_work(struct uctx *c)
{
    free(c->work);
    c->work = xalloc(work_elems(c));
}

static void release(struct uctx *c)
{
    free(c->z1);
    free(c->z2);
    free(c->dz1);
    free(c->dz2);
    free(c->work);
}

/* Random rows with a common offset, so the mean of the normalised rows is not 0 and the rows
 * are far from unit norm (the normalisation's backward is exercised). */
static void fill(struct ssl_rng *r, struct uctx *c, double offset_std)
{
    gc_fill_mixed(r, c->z1, c->n, c->d, offset_std);
    gc_fill_mixed(r, c->z2, c->n, c->d, offset_std);
}

/* gc_check + accumulate + NULL-gradient checks of one problem. */
static int check_all(struct uctx *c, const char *name, struct ssl_rng *r)
{
    alloc_work(c);
    struct gc_param p[2] = {
        {.name = "z1", .x = c->z1, .grad = c->dz1, .n = c->n * c->d, .grad_slot = &c->dz1},
        {.name = "z2", .x = c->z2, .grad = c->dz2, .n = c->n * c->d, .grad_slot = &c->dz2},
    };
    struct gc_problem prob = {.name = name, .loss = u_loss, .backward = u_backward, .ctx = c,
                              .params = p, .n_params = 2};
    int bad = gc_check(&prob, &GC_TOL_DEFAULT);
    bad += gc_check_accumulates(&prob, r);
    bad += gc_check_null_grads(&prob);
    return bad;
}

/* ------------------------------------------------------------------------------------------
 * Independent computations, straight from the formulas
 * ------------------------------------------------------------------------------------------ */

/* Eigenvalues of a symmetric a (m, m) (destroyed) into l (m), by cyclic Jacobi rotations
 * (Golub & Van Loan, Matrix Computations, 4th ed., 8.5): no LAPACK. */
static void jacobi_eig(double *a, double *l, int64_t m)
{
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0, all = 0.0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < m; j++) {
                all += a[i * m + j] * a[i * m + j];
                if (i != j) off += a[i * m + j] * a[i * m + j];
            }
        if (off <= 1e-32 * all || all == 0.0) break;
        for (int64_t p = 0; p < m; p++)
            for (int64_t q = p + 1; q < m; q++) {
                double apq = a[p * m + q];
                if (apq == 0.0) continue;
                double theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                double t = (theta >= 0.0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double cs = 1.0 / sqrt(t * t + 1.0), sn = t * cs;
                for (int64_t k = 0; k < m; k++) {
                    double akp = a[k * m + p], akq = a[k * m + q];
                    a[k * m + p] = cs * akp - sn * akq;
                    a[k * m + q] = sn * akp + cs * akq;
                }
                for (int64_t k = 0; k < m; k++) {
                    double apk = a[p * m + k], aqk = a[q * m + k];
                    a[p * m + k] = cs * apk - sn * aqk;
                    a[q * m + k] = sn * apk + cs * aqk;
                }
            }
    }
    for (int64_t i = 0; i < m; i++) l[i] = a[i * m + i];
}

/* x (rows, d) = the rows of z1 then z2, each divided by max(||.||, 1e-12). */
static void naive_cat_normalised(double *x, const double *z1, const double *z2, int64_t n,
                                 int64_t d)
{
    for (int64_t i = 0; i < 2 * n; i++) {
        const double *z = i < n ? z1 + i * d : z2 + (i - n) * d;
        double s = 0.0;
        for (int64_t k = 0; k < d; k++) s += z[k] * z[k];
        double den = fmax(sqrt(s), 1e-12);
        for (int64_t k = 0; k < d; k++) x[i * d + k] = z[k] / den;
    }
}

/* Eigenvalues l (d) of the biased covariance of cat(n(z1), n(z2)), two-pass; *mu_sq = ||mu||^2. */
static void naive_cov_eig(double *l, double *mu_sq, const double *z1, const double *z2, int64_t n,
                          int64_t d)
{
    int64_t m = 2 * n;
    double *x = xalloc(m * d), *mu = xalloc(d), *s = xalloc(d * d);
    naive_cat_normalised(x, z1, z2, n, d);
    *mu_sq = 0.0;
    for (int64_t k = 0; k < d; k++) {
        for (int64_t i = 0; i < m; i++) mu[k] += x[i * d + k];
        mu[k] /= (double)m;
        *mu_sq += mu[k] * mu[k];
    }
    for (int64_t a = 0; a < d; a++)
        for (int64_t b = 0; b < d; b++) {
            double acc = 0.0;
            for (int64_t i = 0; i < m; i++) acc += (x[i * d + a] - mu[a]) * (x[i * d + b] - mu[b]);
            s[a * d + b] = acc / (double)m;
        }
    jacobi_eig(s, l, d);
    free(x);
    free(mu);
    free(s);
}

/* W2^2 of LOSSES-SPEC 1b with the eps on the diagonal and sqrt(|lam + eps|), no clamping. */
static double naive_w2_sq(const double *z1, const double *z2, int64_t n, int64_t d, double eps)
{
    double *l = xalloc(d), mu_sq;
    naive_cov_eig(l, &mu_sq, z1, z2, n, d);
    double tr = 0.0, ss = 0.0;
    for (int64_t k = 0; k < d; k++) {
        tr += l[k] + eps;
        ss += sqrt(fabs(l[k] + eps));
    }
    free(l);
    return mu_sq + 1.0 + tr - 2.0 / sqrt((double)d) * ss;
}

/* log( mean_{i<j} exp(-t ||n(z_i) - n(z_j)||^2) ), plain sums. */
static double naive_unif(const double *z, int64_t n, int64_t d, double t)
{
    double *x = xalloc(n * d);
    for (int64_t i = 0; i < n; i++) {
        double s2 = 0.0;
        for (int64_t k = 0; k < d; k++) s2 += z[i * d + k] * z[i * d + k];
        double den = fmax(sqrt(s2), 1e-12);
        for (int64_t k = 0; k < d; k++) x[i * d + k] = z[i * d + k] / den;
    }
    double s = 0.0, cnt = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            double dist = 0.0;
            for (int64_t k = 0; k < d; k++) {
                double df = x[i * d + k] - x[j * d + k];
                dist += df * df;
            }
            s += exp(-t * dist);
            cnt += 1.0;
        }
    free(x);
    return log(s / cnt);
}

static double naive_align(const double *z1, const double *z2, int64_t n, int64_t d, double alpha)
{
    double *x = xalloc(2 * n * d);
    naive_cat_normalised(x, z1, z2, n, d);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double sq = 0.0;
        for (int64_t k = 0; k < d; k++) {
            double df = x[i * d + k] - x[(n + i) * d + k];
            sq += df * df;
        }
        s += pow(sqrt(sq), alpha);
    }
    free(x);
    return s / (double)n;
}

/* ------------------------------------------------------------------------------------------
 * Gradient checks
 * ------------------------------------------------------------------------------------------ */

static void test_w2_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_w2_grad");
    int bad = 0;
    /* tall (M = 2n > d: Sigma full rank) and wide (M < d: d - M + 1 null eigenvalues) */
    const int64_t shapes[][2] = {{10, 5}, {3, 10}};
    const double eps[] = {0.0, 1e-4};
    const enum ssl_w2_route routes[] = {SSL_W2_ROUTE_COV, SSL_W2_ROUTE_GRAM};
    for (int s = 0; s < 2; s++)
        for (int e = 0; e < 2; e++)
            for (int rt = 0; rt < 2; rt++) {
                struct uctx c = make(K_W2, shapes[s][0], shapes[s][1], NULL);
                c.w2.cov_eps = eps[e];
                c.w2.route = routes[rt];
                fill(&r, &c, 1.0);
                char name[96];
                snprintf(name, sizeof name, "w2 n=%lld d=%lld eps=%g %s",
                         (long long)c.n, (long long)c.d, eps[e], rt ? "gram" : "cov");
                bad += check_all(&c, name, &r);
                release(&c);
            }
    assert_int_equal(bad, 0);
}

static void test_unif_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_unif_grad");
    int bad = 0;
    const double ts[] = {2.0, 0.5};
    for (int i = 0; i < 2; i++) {
        struct uctx c = make(K_UNIF, 7, 4, NULL);
        c.unif.t = ts[i];
        fill(&r, &c, 0.5);
        bad += check_all(&c, ts[i] == 2.0 ? "uniformity t=2" : "uniformity t=0.5", &r);
        release(&c);
    }
    assert_int_equal(bad, 0);
}

static void test_align_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_align_grad");
    int bad = 0;
    const double alphas[] = {2.0, 1.5, 3.0};
    for (int i = 0; i < 3; i++) {
        struct uctx c = make(K_ALIGN, 6, 5, NULL);
        c.align.alpha = alphas[i];
        fill(&r, &c, 0.5);
        char name[64];
        snprintf(name, sizeof name, "alignment alpha=%g", alphas[i]);
        bad += check_all(&c, name, &r);
        release(&c);
    }
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------------------------------
 * Second computations and the metrics
 * ------------------------------------------------------------------------------------------ */

static void test_w2_naive_and_metric(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_w2_naive");
    const int64_t shapes[][2] = {{10, 5}, {3, 10}, {8, 16}, {20, 3}};
    const double eps[] = {0.0, 1e-12, 1e-4};
    for (int s = 0; s < 4; s++)
        for (int e = 0; e < 3; e++) {
            struct uctx c = make(K_W2, shapes[s][0], shapes[s][1], NULL);
            c.w2.cov_eps = eps[e];
            fill(&r, &c, 1.0);
            alloc_work(&c);
            double v = run(&c, NULL, NULL);
            double ref_sq = naive_w2_sq(c.z1, c.z2, c.n, c.d, eps[e]);
            /* the naive sum takes sqrt of the rounding noise of the structurally null
             * eigenvalues (~1e-17 -> ~3e-9 each) where the loss takes 0 */
            bool wide = 2 * c.n <= c.d;
            double tol = wide && eps[e] < 1e-6 ? 1e-7 : 1e-11;
            printf("  w2 n=%lld d=%lld eps=%g: loss^2 %.15f naive %.15f\n", (long long)c.n,
                   (long long)c.d, eps[e], c.w2_sq, ref_sq);
            assert_true(fabs(c.w2_sq - ref_sq) <= tol);
            assert_true(fabs(v - sqrt(fmax(ref_sq, 0.0))) <= 10.0 * tol);

            /* ssl_metric_w2_sq on the stacked (2n, d) rows, eps = 0: the metric's
             * sqrt(|lam| + 1e-8) differs from sqrt(|lam|) by a known amount. */
            if (eps[e] == 0.0) {
                int64_t m = 2 * c.n;
                double *zz = xalloc(m * c.d), *l = xalloc(c.d), mu_sq;
                memcpy(zz, c.z1, (size_t)(c.n * c.d) * sizeof *zz);
                memcpy(zz + c.n * c.d, c.z2, (size_t)(c.n * c.d) * sizeof *zz);
                double *mw = xalloc(ssl_metrics_work_elems(m, c.d));
                double metric_sq = ssl_metric_w2_sq(zz, m, c.d, mw);
                naive_cov_eig(l, &mu_sq, c.z1, c.z2, c.n, c.d);
                double corr = 0.0;
                for (int64_t k = 0; k < c.d; k++) {
                    double lk = fabs(l[k]) < 1e-13 ? 0.0 : fabs(l[k]);
                    corr += sqrt(lk + 1e-8) - sqrt(lk);
                }
                double expect = c.w2_sq - 2.0 / sqrt((double)c.d) * corr;
                printf("    metric^2 %.15f expected %.15f (loss - %.3e)\n", metric_sq, expect,
                       2.0 / sqrt((double)c.d) * corr);
                assert_true(fabs(metric_sq - expect) <= 1e-11);
                free(zz);
                free(l);
                free(mw);
            }
            release(&c);
        }
}

static void test_w2_routes_agree(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_w2_routes");
    const int64_t shapes[][2] = {{3, 10}, {10, 5}, {8, 16}, {2, 40}, {30, 6}};
    const double eps[] = {0.0, 1e-12, 1e-4};
    for (int s = 0; s < 5; s++)
        for (int e = 0; e < 3; e++) {
            struct uctx a = make(K_W2, shapes[s][0], shapes[s][1], NULL);
            struct uctx b = make(K_W2, shapes[s][0], shapes[s][1], NULL);
            fill(&r, &a, 1.0);
            memcpy(b.z1, a.z1, (size_t)(a.n * a.d) * sizeof *a.z1);
            memcpy(b.z2, a.z2, (size_t)(a.n * a.d) * sizeof *a.z2);
            a.w2.cov_eps = b.w2.cov_eps = eps[e];
            a.w2.route = SSL_W2_ROUTE_COV;
            b.w2.route = SSL_W2_ROUTE_GRAM;
            alloc_work(&a);
            alloc_work(&b);
            double va = run(&a, a.dz1, a.dz2), vb = run(&b, b.dz1, b.dz2);
            double gdiff = 0.0, gmax = 0.0;
            for (int64_t i = 0; i < a.n * a.d; i++) {
                gdiff = fmax(gdiff, fmax(fabs(a.dz1[i] - b.dz1[i]), fabs(a.dz2[i] - b.dz2[i])));
                gmax = fmax(gmax, fmax(fabs(a.dz1[i]), fabs(a.dz2[i])));
            }
            printf("  routes n=%lld d=%lld eps=%g: cov %.15f gram %.15f |dgrad| %.2e of %.2e\n",
                   (long long)a.n, (long long)a.d, eps[e], va, vb, gdiff, gmax);
            assert_true(isfinite(va) && fabs(va - vb) <= 1e-12);
            assert_true(gdiff <= 1e-9 * fmax(gmax, 1.0));
            release(&a);
            release(&b);
        }
}

static void test_unif_align_naive_and_metric(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_unif_naive");
    const double ts[] = {2.0, 1.0, 7.0};
    for (int i = 0; i < 3; i++) {
        struct uctx c = make(K_UNIF, 9, 6, NULL);
        c.unif.t = ts[i];
        fill(&r, &c, 0.7);
        alloc_work(&c);
        double v = run(&c, NULL, NULL);
        double ref = 0.5 * (naive_unif(c.z1, c.n, c.d, ts[i]) + naive_unif(c.z2, c.n, c.d, ts[i]));
        double met = 0.5 * (ssl_metric_uniformity(c.z1, c.n, c.d, ts[i]) +
                            ssl_metric_uniformity(c.z2, c.n, c.d, ts[i]));
        printf("  uniformity t=%g: loss %.15f naive %.15f metric %.15f\n", ts[i], v, ref, met);
        assert_true(fabs(v - ref) <= 1e-12 * fmax(1.0, fabs(ref)));
        assert_true(fabs(v - met) <= 1e-12 * fmax(1.0, fabs(ref)));
        release(&c);
    }
    const double alphas[] = {2.0, 1.0, 2.5};
    for (int i = 0; i < 3; i++) {
        struct uctx c = make(K_ALIGN, 9, 6, NULL);
        c.align.alpha = alphas[i];
        fill(&r, &c, 0.7);
        alloc_work(&c);
        double v = run(&c, NULL, NULL);
        double ref = naive_align(c.z1, c.z2, c.n, c.d, alphas[i]);
        double met = ssl_metric_alignment(c.z1, c.z2, c.n, c.d, alphas[i]);
        printf("  alignment alpha=%g: loss %.15f naive %.15f metric %.15f\n", alphas[i], v, ref,
               met);
        assert_true(fabs(v - ref) <= 1e-13);
        assert_true(fabs(v - met) <= 1e-13);
        release(&c);
    }
}

/* ------------------------------------------------------------------------------------------
 * Known values
 * ------------------------------------------------------------------------------------------ */

/* z1 rows = s_k e_k, z2 rows = -s_k e_k (k < d, scales s_k > 0): n(.) gives +-e_k, so the
 * normalised batch has mean 0 and biased covariance 2 sum e_k e_k^T / (2d) = I/d exactly. */
static void test_w2_exact_moments(void **state)
{
    (void)state;
    const int64_t ds[] = {4, 16};
    for (int di = 0; di < 2; di++) {
        for (int rt = 0; rt < 3; rt++) {
            int64_t d = ds[di];
            struct uctx c = make(K_W2, d, d, NULL);
            c.w2.route = (enum ssl_w2_route)rt;
            for (int64_t k = 0; k < d; k++) {
                c.z1[k * d + k] = 0.5 + (double)k;
                c.z2[k * d + k] = -3.0;
            }
            alloc_work(&c);
            double v = run(&c, c.dz1, c.dz2);
            printf("  exact N(0, I/%lld) moments, route %d: W2 %.3e W2^2 %.3e\n", (long long)d,
                   rt, v, c.w2_sq);
            assert_true(fabs(c.w2_sq) <= 1e-14);
            assert_true(v <= 1e-7);
            for (int64_t i = 0; i < d * d; i++)
                assert_true(isfinite(c.dz1[i]) && isfinite(c.dz2[i]));
            release(&c);
        }
    }
}

/* All 2n rows equal (any positive scales): mu = x, Sigma = eps I, so
 * W2^2 = 1 + 1 + d eps - 2 sqrt(d eps) = 1 + (1 - sqrt(d eps))^2, 2 at eps = 0. */
static void test_w2_collapse(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_w2_collapse");
    const double eps[] = {0.0, 1e-12, 1e-4, 1e-2};
    for (int e = 0; e < 4; e++)
        for (int rt = 1; rt < 3; rt++) {
            int64_t n = 5, d = 8;
            struct uctx c = make(K_W2, n, d, NULL);
            c.w2.cov_eps = eps[e];
            c.w2.route = (enum ssl_w2_route)rt;
            double v0[8];
            gc_fill_normal(&r, v0, d, 0.0, 1.0);
            for (int64_t i = 0; i < n; i++)
                for (int64_t k = 0; k < d; k++) {
                    c.z1[i * d + k] = v0[k] * (1.0 + 0.1 * (double)i);
                    c.z2[i * d + k] = v0[k] * (3.0 + 0.7 * (double)i);
                }
            alloc_work(&c);
            double v = run(&c, c.dz1, c.dz2);
            double q = 1.0 - sqrt((double)d * eps[e]), expect = 1.0 + q * q;
            printf("  collapse eps=%g route %d: W2^2 %.15f expected %.15f\n", eps[e], rt, c.w2_sq,
                   expect);
            assert_true(fabs(c.w2_sq - expect) <= 1e-12);
            assert_true(fabs(v - sqrt(expect)) <= 1e-12);
            for (int64_t i = 0; i < n * d; i++)
                assert_true(isfinite(c.dz1[i]) && isfinite(c.dz2[i]));
            release(&c);
        }
}

/* Instance cloning: every sample twice. W2 uses the biased covariance, so it is unchanged; L_U
 * is not, since the n zero-distance pairs enter the mean: with P = sum_{i<j} exp(-t d_ij) of
 * the original view, the cloned view has 4P + n over n(2n - 1) pairs. */
static void test_instance_cloning(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_instance_cloning");
    int64_t n = 6, d = 5;
    const enum ssl_w2_route routes[] = {SSL_W2_ROUTE_COV, SSL_W2_ROUTE_GRAM};
    for (int rt = 0; rt < 2; rt++) {
        struct uctx a = make(K_W2, n, d, NULL), b = make(K_W2, 2 * n, d, NULL);
        a.w2.route = b.w2.route = routes[rt];
        fill(&r, &a, 1.0);
        for (int copy = 0; copy < 2; copy++) {
            memcpy(b.z1 + copy * n * d, a.z1, (size_t)(n * d) * sizeof *a.z1);
            memcpy(b.z2 + copy * n * d, a.z2, (size_t)(n * d) * sizeof *a.z2);
        }
        alloc_work(&a);
        alloc_work(&b);
        double va = run(&a, NULL, NULL), vb = run(&b, NULL, NULL);
        printf("  cloning W2 route %d: %.15f -> %.15f\n", rt, va, vb);
        assert_true(fabs(va - vb) <= 1e-13);
        release(&a);
        release(&b);
    }
    struct uctx a = make(K_UNIF, n, d, NULL), b = make(K_UNIF, 2 * n, d, NULL);
    fill(&r, &a, 1.0);
    for (int copy = 0; copy < 2; copy++) {
        memcpy(b.z1 + copy * n * d, a.z1, (size_t)(n * d) * sizeof *a.z1);
        memcpy(b.z2 + copy * n * d, a.z2, (size_t)(n * d) * sizeof *a.z2);
    }
    alloc_work(&a);
    alloc_work(&b);
    double ua = run(&a, NULL, NULL), ub = run(&b, NULL, NULL);
    double np = (double)n * (double)(n - 1) / 2.0, expect = 0.0;
    for (int v = 0; v < 2; v++) {
        double p = exp(naive_unif(v ? a.z2 : a.z1, n, d, 2.0)) * np; /* sum over pairs */
        expect += 0.5 * log((4.0 * p + (double)n) / ((double)n * (double)(2 * n - 1)));
    }
    printf("  cloning L_U: %.15f -> %.15f (expected %.15f)\n", ua, ub, expect);
    assert_true(fabs(ub - expect) <= 1e-12);
    assert_true(fabs(ua - ub) > 1e-3);
    release(&a);
    release(&b);
}

static void test_weight_schedule(void **state)
{
    (void)state;
    /* BarlowTwins+W2 run script: 30 -> 0 over the epochs; BYOL 0.2 -> 0.2 constant. */
    int64_t epochs = 200;
    for (int64_t ep = 1; ep <= epochs; ep++) {
        double w = ssl_uniformity_weight(30.0, 0.0, ep, epochs);
        double ref = 30.0 - 30.0 * (double)ep / (double)epochs;
        assert_true(fabs(w - ref) <= 1e-12);
        assert_true(ssl_uniformity_weight(0.2, 0.2, ep, epochs) == 0.2);
    }
    assert_true(fabs(ssl_uniformity_weight(30.0, 0.0, 1, 200) - 29.85) <= 1e-12);
    assert_true(fabs(ssl_uniformity_weight(30.0, 0.0, 200, 200)) <= 1e-12);
    assert_true(fabs(ssl_uniformity_weight(1.0, 0.5, 0, 10) - 1.0) <= 1e-15);
}

static void test_nonfinite(void **state)
{
    (void)state;
    for (int k = 0; k < 3; k++) {
        struct uctx c = make((enum kind)k, 4, 3, NULL);
        for (int64_t i = 0; i < 12; i++) {
            c.z1[i] = 1.0 + (double)i;
            c.z2[i] = 2.0 - (double)i * 0.5;
        }
        c.z2[5] = NAN;
        alloc_work(&c);
        double v = 0.0;
        assert_int_equal(run_rc(&c, &v, c.dz1, c.dz2), SSL_E_NONFINITE);
        assert_true(isnan(v));
        if (k == K_W2) assert_true(isnan(c.w2_sq));
        for (int64_t i = 0; i < 12; i++) assert_true(c.dz1[i] == 0.0 && c.dz2[i] == 0.0);
        release(&c);
    }
}

/* Options out of range (and L_U without a pair) are SSL_E_USAGE with *value NAN and the
 * gradients untouched; a NULL opts is the defaults; a comm failure returns its own code. */
static int failing_sum(void *ctx, double *values, int64_t n_values)
{
    (void)ctx;
    (void)values;
    (void)n_values;
    return 7;
}

static void test_status(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_uniformity_status");
    for (int k = 0; k < 3; k++) {
        struct uctx c = make((enum kind)k, 5, 4, NULL);
        fill(&r, &c, 1.0);
        alloc_work(&c);
        double with_defaults = run(&c, NULL, NULL), v = 0.0;
        int rc = 0;
        switch ((enum kind)k) {
        case K_W2:
            assert_int_equal(ssl_w2_loss(&v, NULL, NULL, NULL, c.z1, c.z2, c.n, c.d, NULL, NULL,
                                         c.work), 0);
            break;
        case K_UNIF:
            assert_int_equal(ssl_uniformity_loss(&v, NULL, NULL, c.z1, c.z2, c.n, c.d, NULL,
                                                 NULL, c.work), 0);
            break;
        case K_ALIGN:
            assert_int_equal(ssl_alignment_loss(&v, NULL, NULL, c.z1, c.z2, c.n, c.d, NULL,
                                                NULL, c.work), 0);
            break;
        }
        assert_true(v == with_defaults);
        switch ((enum kind)k) {
        case K_W2: c.w2.cov_eps = -1e-3; break;
        case K_UNIF: c.unif.t = 301.0; break;
        case K_ALIGN: c.align.alpha = 0.0; break;
        }
        rc = run_rc(&c, &v, c.dz1, c.dz2);
        assert_int_equal(rc, SSL_E_USAGE);
        assert_true(isnan(v));
        for (int64_t i = 0; i < c.n * c.d; i++) assert_true(c.dz1[i] == 0.0 && c.dz2[i] == 0.0);
        c.w2 = ssl_w2_defaults();
        c.unif = ssl_uniformity_defaults();
        c.align = ssl_alignment_defaults();
        struct ssl_loss_comm comm = {.sum = failing_sum};
        struct ssl_loss_ctx lc = {.comm = &comm};
        c.lc = &lc;
        c.w2.route = SSL_W2_ROUTE_COV; /* the route that sums */
        assert_int_equal(run_rc(&c, &v, c.dz1, c.dz2), 7);
        assert_true(isnan(v));
        release(&c);
    }
    struct uctx c = make(K_UNIF, 1, 4, NULL);
    fill(&r, &c, 1.0);
    alloc_work(&c);
    double v = 0.0;
    assert_int_equal(run_rc(&c, &v, c.dz1, c.dz2), SSL_E_USAGE);
    assert_true(isnan(v));
    release(&c);
}

/* ------------------------------------------------------------------------------------------
 * The global batch through the comm hooks
 * ------------------------------------------------------------------------------------------
 * P ranks that all hold the same (n, d) batch; this process plays rank `rank`. Then:
 *   sum:     the P identical local values add up to P times this one;
 *   gather:  P copies of the local rows, rank blocks in rank order; offset = rank * rows;
 *   scatter: rank q's global gradient is rank 0's with its blocks shifted by q (the data are
 *            periodic in blocks), so the sum over ranks of block `rank` is the sum of all
 *            blocks of this rank's global gradient;
 *   global rows: P * rows.
 * The loss must then equal the one-process loss on the P-times-stacked batch, and the local
 * gradient its gradient with respect to any one copy (they are all equal by symmetry). */
struct fake {
    int p, rank;
    int n_sum, n_gather, n_scatter;
};

static int fake_sum(void *ctx, double *values, int64_t n_values)
{
    struct fake *f = ctx;
    f->n_sum++;
    for (int64_t i = 0; i < n_values; i++) values[i] *= (double)f->p;
    return 0;
}

static int fake_gather(void *ctx, const double *local, int64_t rows, int64_t cols, double *global,
                       int64_t *offset)
{
    struct fake *f = ctx;
    f->n_gather++;
    for (int q = 0; q < f->p; q++)
        memcpy(global + (int64_t)q * rows * cols, local, (size_t)(rows * cols) * sizeof *local);
    *offset = (int64_t)f->rank * rows;
    return 0;
}

static int fake_scatter(void *ctx, const double *global_grad, int64_t rows, int64_t cols,
                        double *local_grad)
{
    struct fake *f = ctx;
    f->n_scatter++;
    for (int64_t i = 0; i < rows * cols; i++) {
        double s = 0.0;
        for (int q = 0; q < f->p; q++) s += global_grad[(int64_t)q * rows * cols + i];
        local_grad[i] = s;
    }
    return 0;
}

static int64_t fake_rows(void *ctx, int64_t rows) { return rows * ((struct fake *)ctx)->p; }

static void test_global_comm(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_uniformity_global");
    const int P = 3;
    const int64_t n = 4, d = 6;
    struct {
        enum kind kind;
        enum ssl_w2_route route;
        const char *name;
        int sums, gathers, scatters;
    } cases[] = {
        {K_W2, SSL_W2_ROUTE_COV, "w2 cov", 1, 0, 0},
        {K_W2, SSL_W2_ROUTE_GRAM, "w2 gram", 0, 1, 0},
        {K_UNIF, SSL_W2_ROUTE_AUTO, "uniformity", 1, 2, 2},
        {K_ALIGN, SSL_W2_ROUTE_AUTO, "alignment", 1, 0, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int rank = 0; rank < P; rank++) {
            struct fake f = {.p = P, .rank = rank};
            struct ssl_loss_comm comm = {.sum = fake_sum, .gather = fake_gather,
                                         .scatter = fake_scatter, .global_rows = fake_rows,
                                         .ctx = &f};
            struct ssl_loss_ctx lc = {.comm = &comm, .seed = 1, .step = 0};
            struct uctx g = make(cases[ci].kind, n, d, &lc);
            struct uctx one = make(cases[ci].kind, P * n, d, NULL);
            g.w2.route = one.w2.route = cases[ci].route;
            fill(&r, &g, 1.0);
            for (int q = 0; q < P; q++) {
                memcpy(one.z1 + q * n * d, g.z1, (size_t)(n * d) * sizeof *g.z1);
                memcpy(one.z2 + q * n * d, g.z2, (size_t)(n * d) * sizeof *g.z2);
            }
            alloc_work(&g);
            alloc_work(&one);
            double vg = run(&g, g.dz1, g.dz2), v1 = run(&one, one.dz1, one.dz2);
            double gd = 0.0, gm = 0.0;
            for (int64_t i = 0; i < n * d; i++) {
                int64_t j = rank * n * d + i; /* this rank's copy */
                gd = fmax(gd, fmax(fabs(g.dz1[i] - one.dz1[j]), fabs(g.dz2[i] - one.dz2[j])));
                gm = fmax(gm, fabs(one.dz1[j]));
            }
            printf("  %s P=%d rank %d: global %.15f one-process %.15f |dgrad| %.2e of %.2e"
                   " (sum %d gather %d scatter %d)\n",
                   cases[ci].name, P, rank, vg, v1, gd, gm, f.n_sum, f.n_gather, f.n_scatter);
            assert_true(fabs(vg - v1) <= 1e-12);
            assert_true(gd <= 1e-11 * fmax(gm, 1.0));
            assert_true(gm > 0.0);
            assert_int_equal(f.n_sum, cases[ci].sums);
            assert_int_equal(f.n_gather, cases[ci].gathers);
            assert_int_equal(f.n_scatter, cases[ci].scatters);
            release(&g);
            release(&one);
        }
}

/* Ranks with DIFFERENT data, replayed: the P ranks are run one after the other, four times
 * over. Every operation records its local input per (rank, call); a later pass answers with
 * what the ranks recorded in the pass before, once those recordings are exact: gather from
 * pass 1 on (its input, the normalised local rows, depends on nothing else), sum from pass 2
 * (its input may depend on the gathered rows), scatter from pass 3. Until then each answers as
 * if all ranks held this rank's data (so the row counts stay consistent: every rank has the
 * same number of rows, the rank blocks of a call are equal in size). Pass 3 is a faithful
 * distributed run; it must equal one process on the concatenated batch, rank q's gradient
 * being the rows of its slice. Here the between-rank term of W2's covariance is not 0. */
#define RP_P 3
#define RP_CALLS 2
struct replay {
    int pass, rank;
    int k_sum, k_gather, k_scatter;
    double *sum_rec[RP_P][RP_CALLS], *gather_rec[RP_P][RP_CALLS], *scatter_rec[RP_P][RP_CALLS];
};

static double *rp_record(double **slot, const double *v, int64_t n)
{
    free(*slot);
    *slot = xalloc(n);
    memcpy(*slot, v, (size_t)n * sizeof *v);
    return *slot;
}

static int rp_sum(void *ctx, double *values, int64_t n_values)
{
    struct replay *f = ctx;
    int k = f->k_sum++;
    assert_true(k < RP_CALLS);
    rp_record(&f->sum_rec[f->rank][k], values, n_values);
    for (int64_t i = 0; i < n_values; i++) {
        double s = 0.0;
        for (int q = 0; q < RP_P; q++)
            s += f->pass >= 2 ? f->sum_rec[q][k][i] : values[i];
        values[i] = s;
    }
    return 0;
}

static int rp_gather(void *ctx, const double *local, int64_t rows, int64_t cols, double *global,
                     int64_t *offset)
{
    struct replay *f = ctx;
    int k = f->k_gather++;
    assert_true(k < RP_CALLS);
    rp_record(&f->gather_rec[f->rank][k], local, rows * cols);
    for (int q = 0; q < RP_P; q++)
        memcpy(global + (int64_t)q * rows * cols, f->pass >= 1 ? f->gather_rec[q][k] : local,
               (size_t)(rows * cols) * sizeof *local);
    *offset = (int64_t)f->rank * rows;
    return 0;
}

static int rp_scatter(void *ctx, const double *global_grad, int64_t rows, int64_t cols,
                      double *local_grad)
{
    struct replay *f = ctx;
    int k = f->k_scatter++;
    assert_true(k < RP_CALLS);
    rp_record(&f->scatter_rec[f->rank][k], global_grad, RP_P * rows * cols);
    int64_t off = (int64_t)f->rank * rows * cols;
    for (int64_t i = 0; i < rows * cols; i++) {
        double s = 0.0;
        for (int q = 0; q < RP_P; q++)
            s += f->pass >= 3 ? f->scatter_rec[q][k][off + i] : global_grad[off + i];
        local_grad[i] = s;
    }
    return 0;
}

static int64_t rp_rows(void *ctx, int64_t rows)
{
    (void)ctx;
    return rows * RP_P;
}

static void test_global_comm_distinct(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_uniformity_global_distinct");
    const int64_t n = 3, d = 7; /* M = 18 rows for W2: the Gram route is forced below */
    const struct {
        enum kind kind;
        enum ssl_w2_route route;
        const char *name;
    } cases[] = {
        {K_W2, SSL_W2_ROUTE_COV, "w2 cov"},
        {K_W2, SSL_W2_ROUTE_GRAM, "w2 gram"},
        {K_UNIF, SSL_W2_ROUTE_AUTO, "uniformity"},
        {K_ALIGN, SSL_W2_ROUTE_AUTO, "alignment"},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        struct replay f = {.pass = 0};
        struct ssl_loss_comm comm = {.sum = rp_sum, .gather = rp_gather, .scatter = rp_scatter,
                                     .global_rows = rp_rows, .ctx = &f};
        struct ssl_loss_ctx lc = {.comm = &comm};
        struct uctx one = make(cases[ci].kind, RP_P * n, d, NULL);
        one.w2.route = cases[ci].route;
        one.w2.cov_eps = 1e-4;
        fill(&r, &one, 1.5);
        alloc_work(&one);
        double v1 = run(&one, one.dz1, one.dz2);
        struct uctx g[RP_P];
        for (int q = 0; q < RP_P; q++) {
            g[q] = make(cases[ci].kind, n, d, &lc);
            g[q].w2 = one.w2;
            memcpy(g[q].z1, one.z1 + q * n * d, (size_t)(n * d) * sizeof *one.z1);
            memcpy(g[q].z2, one.z2 + q * n * d, (size_t)(n * d) * sizeof *one.z2);
            alloc_work(&g[q]);
        }
        double vg[RP_P];
        for (f.pass = 0; f.pass < 4; f.pass++)
            for (int q = 0; q < RP_P; q++) {
                f.rank = q;
                f.k_sum = f.k_gather = f.k_scatter = 0;
                memset(g[q].dz1, 0, (size_t)(n * d) * sizeof *g[q].dz1);
                memset(g[q].dz2, 0, (size_t)(n * d) * sizeof *g[q].dz2);
                vg[q] = run(&g[q], g[q].dz1, g[q].dz2);
            }
        for (int q = 0; q < RP_P; q++) {
            double gd = 0.0, gm = 0.0;
            for (int64_t i = 0; i < n * d; i++) {
                int64_t j = q * n * d + i;
                gd = fmax(gd, fmax(fabs(g[q].dz1[i] - one.dz1[j]), fabs(g[q].dz2[i] - one.dz2[j])));
                gm = fmax(gm, fmax(fabs(one.dz1[j]), fabs(one.dz2[j])));
            }
            printf("  %s distinct data, rank %d of %d: %.15f one-process %.15f |dgrad| %.2e of"
                   " %.2e\n", cases[ci].name, q, RP_P, vg[q], v1, gd, gm);
            assert_true(fabs(vg[q] - v1) <= 1e-12);
            assert_true(gd <= 1e-11 * fmax(gm, 1.0) && gm > 0.0);
            release(&g[q]);
        }
        release(&one);
        for (int q = 0; q < RP_P; q++)
            for (int k = 0; k < RP_CALLS; k++) {
                free(f.sum_rec[q][k]);
                free(f.gather_rec[q][k]);
                free(f.scatter_rec[q][k]);
            }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_w2_grad),
        cmocka_unit_test(test_unif_grad),
        cmocka_unit_test(test_align_grad),
        cmocka_unit_test(test_w2_naive_and_metric),
        cmocka_unit_test(test_w2_routes_agree),
        cmocka_unit_test(test_unif_align_naive_and_metric),
        cmocka_unit_test(test_w2_exact_moments),
        cmocka_unit_test(test_w2_collapse),
        cmocka_unit_test(test_instance_cloning),
        cmocka_unit_test(test_weight_schedule),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_global_comm),
        cmocka_unit_test(test_global_comm_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
