/* test_whiten.c: group ZCA whitening (src/layers/whiten.c) against its defining properties, a
 * second computation of S^{-1/2} that shares no code with the layer (a coupled Newton-Schulz
 * iteration in naive loops), and central finite differences (gradcheck.c) on the fp64 core.
 *
 * Inputs are random normal rows times a fixed random mix (I + 0.5 N(0,1)/sqrt(d)) plus a
 * per-feature offset, so the groups' covariances are well conditioned and not already
 * centred. The seed is printed by gc_rng_begin (override with SSL_TEST_SEED). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "check.h"
#include "gradcheck.h"
#include "layers/layers.h"
#include "rng.h"

#ifndef SSL_F64
#error "test_whiten needs the fp64 core (ssl_core_f64)"
#endif

/* ------------------------------------------------------------------------------------------
 * The layer with its buffers, as one context
 * ------------------------------------------------------------------------------------------ */

struct wctx {
    int64_t n, d, group;
    double eps;
    int64_t *perm;           /* (d) or NULL */
    double *x, *y, *dx, *r;  /* (n, d) each; r = dL/dy of the gradient checks */
    double *saved, *scratch;
    int rc;                  /* last forward's return code */
};

static double *xalloc(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}

static void wctx_init(struct wctx *c, int64_t n, int64_t d, int64_t group, double eps)
{
    *c = (struct wctx){.n = n, .d = d, .group = group, .eps = eps};
    c->x = xalloc(n * d);
    c->y = xalloc(n * d);
    c->dx = xalloc(n * d);
    c->r = xalloc(n * d);
    c->saved = xalloc(ssl_whiten_saved_elems(n, d, group));
    c->scratch = xalloc(ssl_whiten_scratch_elems(n, d, group));
}

static void wctx_free(struct wctx *c)
{
    free(c->perm);
    free(c->x);
    free(c->y);
    free(c->dx);
    free(c->r);
    free(c->saved);
    free(c->scratch);
}

static int wforward(struct wctx *c)
{
    c->rc = ssl_whiten_forward(c->y, c->saved, c->x, c->perm, c->n, c->d, c->group, c->eps,
                               c->scratch);
    return c->rc;
}

/* Fisher-Yates with the test's stream. */
static int64_t *random_perm(struct ssl_rng *r, int64_t d)
{
    int64_t *p = malloc((size_t)d * sizeof *p);
    assert_non_null(p);
    for (int64_t i = 0; i < d; i++) p[i] = i;
    for (int64_t i = d - 1; i > 0; i--) {
        int64_t j = (int64_t)ssl_rng_below(r, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}


static int64_t col(const struct wctx *c, int64_t j) { return c->perm ? c->perm[j] : j; }

/* ------------------------------------------------------------------------------------------
 * Naive dense helpers for the independent reference
 * ------------------------------------------------------------------------------------------ */

/* c (g, g) = a b, naive. */
static void matmul(double *c, const double *a, const double *b, int64_t g)
{
    for (int64_t i = 0; i < g; i++)
        for (int64_t j = 0; j < g; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < g; k++) s += a[i * g + k] * b[k * g + j];
            c[i * g + j] = s;
        }
}

/* Group k's centred columns xc (n, g) and covariance s (g, g), naive, from c->x. */
static void group_cov(const struct wctx *c, int64_t k, double *xc, double *s)
{
    int64_t n = c->n, g = c->group;
    for (int64_t j = 0; j < g; j++) {
        double m = 0.0;
        for (int64_t a = 0; a < n; a++) m += c->x[a * c->d + col(c, k * g + j)];
        m /= (double)n;
        for (int64_t a = 0; a < n; a++) xc[a * g + j] = c->x[a * c->d + col(c, k * g + j)] - m;
    }
    for (int64_t i = 0; i < g; i++)
        for (int64_t j = 0; j < g; j++) {
            double v = 0.0;
            for (int64_t a = 0; a < n; a++) v += xc[a * g + i] * xc[a * g + j];
            s[i * g + j] = v / (double)n + (i == j ? c->eps : 0.0);
        }
}

/* z (g, g) = S^{-1/2} by the coupled Newton-Schulz iteration on A = S / tr(S) (eigenvalues in
 * (0, 1], where it converges): Y -> A^{1/2}, Z -> A^{-1/2}; then S^{-1/2} = Z / sqrt(tr S). */
static void inv_sqrt_newton_schulz(double *z, const double *s, int64_t g)
{
    double *y = xalloc(g * g), *t = xalloc(g * g), *u = xalloc(g * g);
    double tr = 0.0;
    for (int64_t i = 0; i < g; i++) tr += s[i * g + i];
    for (int64_t i = 0; i < g * g; i++) {
        y[i] = s[i] / tr;
        z[i] = (i % (g + 1) == 0) ? 1.0 : 0.0;
    }
    for (int it = 0; it < 200; it++) {
        matmul(t, z, y, g); /* T = (3 I - Z Y) / 2 */
        double change = 0.0;
        for (int64_t i = 0; i < g * g; i++) {
            t[i] = ((i % (g + 1) == 0) ? 1.5 : 0.0) - 0.5 * t[i];
            change = fmax(change, fabs(t[i] - ((i % (g + 1) == 0) ? 1.0 : 0.0)));
        }
        matmul(u, y, t, g);
        memcpy(y, u, (size_t)(g * g) * sizeof *y);
        matmul(u, t, z, g);
        memcpy(z, u, (size_t)(g * g) * sizeof *z);
        if (change < 1e-15) break;
    }
    for (int64_t i = 0; i < g * g; i++) z[i] /= sqrt(tr);
    free(y);
    free(t);
    free(u);
}

/* ------------------------------------------------------------------------------------------
 * (1) identity covariance and zero mean; (2) the output is Xc S^{-1/2}
 * ------------------------------------------------------------------------------------------ */

/* Max over groups of |Y_g^T Y_g / n - I| and |mean(Y_g)|. */
static double white_error(const struct wctx *c)
{
    int64_t n = c->n, g = c->group;
    double worst = 0.0;
    for (int64_t k = 0; k < c->d / g; k++)
        for (int64_t i = 0; i < g; i++) {
            double m = 0.0;
            for (int64_t a = 0; a < n; a++) m += c->y[a * c->d + col(c, k * g + i)];
            worst = fmax(worst, fabs(m / (double)n));
            for (int64_t j = 0; j < g; j++) {
                double v = 0.0;
                for (int64_t a = 0; a < n; a++)
                    v += c->y[a * c->d + col(c, k * g + i)] * c->y[a * c->d + col(c, k * g + j)];
                worst = fmax(worst, fabs(v / (double)n - (i == j ? 1.0 : 0.0)));
            }
        }
    return worst;
}

static void test_identity_covariance(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "whiten_identity_covariance");
    struct wctx c;
    wctx_init(&c, 64, 16, 8, 0.0);
    gc_fill_mixed(&r, c.x, c.n, c.d, 3.0);
    c.perm = random_perm(&r, c.d);
    assert_int_equal(wforward(&c), 0);
    double err = white_error(&c);
    printf("  identity covariance, zero mean: max error %.2e\n", err);
    assert_true(err < 1e-10);
    wctx_free(&c);
}

/* |y - Xc S^{-1/2}| over all groups, S^{-1/2} by Newton-Schulz, relative to max |y|. */
static double zca_error(const struct wctx *c)
{
    int64_t n = c->n, g = c->group;
    double *xc = xalloc(n * g), *s = xalloc(g * g), *w = xalloc(g * g);
    double worst = 0.0, ymax = 0.0;
    for (int64_t k = 0; k < c->d / g; k++) {
        group_cov(c, k, xc, s);
        inv_sqrt_newton_schulz(w, s, g);
        for (int64_t a = 0; a < n; a++)
            for (int64_t j = 0; j < g; j++) {
                double v = 0.0;
                for (int64_t i = 0; i < g; i++) v += xc[a * g + i] * w[i * g + j];
                double got = c->y[a * c->d + col(c, k * g + j)];
                worst = fmax(worst, fabs(got - v));
                ymax = fmax(ymax, fabs(v));
            }
    }
    free(xc);
    free(s);
    free(w);
    return worst / ymax;
}

static void test_zca_matches_newton_schulz(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "whiten_zca_newton_schulz");
    const double eps[2] = {0.0, 1e-2};
    for (int e = 0; e < 2; e++) {
        struct wctx c;
        wctx_init(&c, 40, 12, 6, eps[e]);
        gc_fill_mixed(&r, c.x, c.n, c.d, 3.0);
        c.perm = random_perm(&r, c.d);
        assert_int_equal(wforward(&c), 0);
        double err = zca_error(&c);
        printf("  y vs Xc S^-1/2 (Newton-Schulz), eps %g: max rel error %.2e\n", eps[e], err);
        assert_true(err < 1e-10);
        wctx_free(&c);
    }
}

/* ------------------------------------------------------------------------------------------
 * (3) permutation
 * ------------------------------------------------------------------------------------------ */

/* Whitening with perm equals un-permuting the whitening of the permuted input. */
static void test_perm_is_gather_scatter(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "whiten_perm_gather_scatter");
    struct wctx a, b;
    wctx_init(&a, 20, 12, 4, 1e-3);
    wctx_init(&b, 20, 12, 4, 1e-3);
    gc_fill_mixed(&r, a.x, a.n, a.d, 3.0);
    a.perm = random_perm(&r, a.d);
    for (int64_t i = 0; i < a.n; i++)
        for (int64_t j = 0; j < a.d; j++) b.x[i * a.d + j] = a.x[i * a.d + a.perm[j]];
    assert_int_equal(wforward(&a), 0);
    assert_int_equal(wforward(&b), 0);
    double worst = 0.0;
    for (int64_t i = 0; i < a.n; i++)
        for (int64_t j = 0; j < a.d; j++)
            worst = fmax(worst, fabs(a.y[i * a.d + a.perm[j]] - b.y[i * a.d + j]));
    printf("  perm vs permuted input: max |diff| %.2e\n", worst);
    assert_true(worst == 0.0); /* the same numbers in the same order */
    wctx_free(&a);
    wctx_free(&b);
}

/* With one group the result does not depend on perm: full ZCA is permutation-equivariant. */
static void test_full_group_perm_invariant(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "whiten_full_group_perm");
    struct wctx a, b;
    wctx_init(&a, 30, 10, 10, 0.0);
    wctx_init(&b, 30, 10, 10, 0.0);
    gc_fill_mixed(&r, a.x, a.n, a.d, 3.0);
    memcpy(b.x, a.x, (size_t)(a.n * a.d) * sizeof *a.x);
    a.perm = random_perm(&r, a.d);
    assert_int_equal(wforward(&a), 0);
    assert_int_equal(wforward(&b), 0);
    double worst = 0.0;
    for (int64_t i = 0; i < a.n * a.d; i++) worst = fmax(worst, fabs(a.y[i] - b.y[i]));
    printf("  group = d, perm vs identity: max |diff| %.2e\n", worst);
    assert_true(worst < 1e-10);
    /* ... whereas with smaller groups the perm matters (the test above can fail). A fixed
     * rotation, since a random perm may keep every group's set of features. */
    struct wctx g;
    wctx_init(&g, 30, 10, 5, 0.0);
    memcpy(g.x, a.x, (size_t)(a.n * a.d) * sizeof *a.x);
    assert_int_equal(wforward(&g), 0);
    memcpy(b.y, g.y, (size_t)(a.n * a.d) * sizeof *b.y);
    g.perm = malloc((size_t)g.d * sizeof *g.perm);
    assert_non_null(g.perm);
    for (int64_t j = 0; j < g.d; j++) g.perm[j] = (j + 1) % g.d;
    assert_int_equal(wforward(&g), 0);
    worst = 0.0;
    for (int64_t i = 0; i < a.n * a.d; i++) worst = fmax(worst, fabs(g.y[i] - b.y[i]));
    printf("  group = d/2, perm vs identity: max |diff| %.2e (must differ)\n", worst);
    assert_true(worst > 1e-3);
    wctx_free(&a);
    wctx_free(&b);
    wctx_free(&g);
}

/* ------------------------------------------------------------------------------------------
 * (4, 5, 7) gradients
 * ------------------------------------------------------------------------------------------ */

static double gc_loss(void *ctx)
{
    struct wctx *c = ctx;
    if (wforward(c) != 0) return NAN;
    return gc_dot(c->r, c->y, c->n * c->d);
}

static void gc_backward(void *ctx)
{
    struct wctx *c = ctx;
    assert_int_equal(ssl_whiten_backward(c->dx, c->r, c->x, c->saved, c->perm, c->n, c->d,
                                         c->group, c->eps, c->scratch),
                     0);
}

static int run_gradcheck(struct wctx *c, const char *name, const struct gc_tol *tol,
                         struct ssl_rng *r, bool extras)
{
    struct gc_param p = {.name = "x", .x = c->x, .grad = c->dx, .n = c->n * c->d,
                         .grad_slot = &c->dx};
    struct gc_problem prob = {.name = name, .loss = gc_loss, .backward = gc_backward, .ctx = c,
                              .params = &p, .n_params = 1};
    int bad = gc_check(&prob, tol);
    if (extras) {
        bad += gc_check_accumulates(&prob, r);
        bad += gc_check_null_grads(&prob);
    }
    return bad;
}

static void test_gradcheck(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "whiten_gradcheck");
    const int64_t groups[2] = {4, 8};
    const double eps[2] = {0.0, 1e-3};
    int bad = 0;
    for (int gi = 0; gi < 2; gi++)
        for (int e = 0; e < 2; e++) {
            struct wctx c;
            wctx_init(&c, 12, 8, groups[gi], eps[e]);
            gc_fill_mixed(&r, c.x, c.n, c.d, 3.0);
            gc_fill_normal(&r, c.r, c.n * c.d, 0.0, 1.0);
            c.perm = random_perm(&r, c.d);
            char name[64];
            snprintf(name, sizeof name, "whiten_g%d_eps%g", (int)groups[gi], eps[e]);
            struct gc_tol tol = GC_TOL_DEFAULT;
            bad += run_gradcheck(&c, name, &tol, &r, true);
            wctx_free(&c);
        }
    assert_int_equal(bad, 0);
}

/* Backward adds to dx: dx pre-filled with ones ends up as 1 + the gradient. Also, the sum of
 * the gradient over the batch is zero in every column (centring makes the layer invariant to
 * a shift of a feature). */
static void test_backward_accumulates(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "whiten_accumulates");
    struct wctx c;
    wctx_init(&c, 16, 8, 4, 0.0);
    gc_fill_mixed(&r, c.x, c.n, c.d, 3.0);
    gc_fill_normal(&r, c.r, c.n * c.d, 0.0, 1.0);
    c.perm = random_perm(&r, c.d);
    assert_int_equal(wforward(&c), 0);
    gc_backward(&c);
    double *g = xalloc(c.n * c.d);
    memcpy(g, c.dx, (size_t)(c.n * c.d) * sizeof *g);
    for (int64_t i = 0; i < c.n * c.d; i++) c.dx[i] = 1.0;
    gc_backward(&c);
    double worst = 0.0, colsum = 0.0;
    for (int64_t i = 0; i < c.n * c.d; i++) worst = fmax(worst, fabs(c.dx[i] - (1.0 + g[i])));
    for (int64_t j = 0; j < c.d; j++) {
        double s = 0.0;
        for (int64_t a = 0; a < c.n; a++) s += g[a * c.d + j];
        colsum = fmax(colsum, fabs(s));
    }
    printf("  accumulate: max |dx - (1 + g)| %.2e; max |column sum of g| %.2e\n", worst, colsum);
    assert_true(worst < 1e-13);
    assert_true(colsum < 1e-12);
    wctx_free(&c);
    free(g);
}

/* x (n, d) whitened in place by the layer (whole-feature ZCA), then nudged by `noise` so the
 * covariance's eigenvalues lie within ~noise of 1 (or coincide to rounding for noise 0). */
static void nearly_white(struct ssl_rng *r, struct wctx *c, double noise)
{
    struct wctx w;
    wctx_init(&w, c->n, c->d, c->d, 0.0);
    gc_fill_mixed(r, w.x, w.n, w.d, 3.0);
    assert_int_equal(wforward(&w), 0);
    for (int64_t i = 0; i < c->n * c->d; i++)
        c->x[i] = w.y[i] + noise * ssl_rng_normal(r);
    wctx_free(&w);
}

static void test_close_eigenvalues(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "whiten_close_eigenvalues");
    const double noise[2] = {0.0, 1e-10};
    int bad = 0;
    for (int k = 0; k < 2; k++) {
        struct wctx c;
        wctx_init(&c, 12, 8, 4, 0.0);
        nearly_white(&r, &c, noise[k]);
        gc_fill_normal(&r, c.r, c.n * c.d, 0.0, 1.0);
        c.perm = random_perm(&r, c.d);
        assert_int_equal(wforward(&c), 0);
        double spread = 0.0;
        for (int64_t gi = 0; gi < c.d / c.group; gi++) {
            const double *l = c.saved + gi * (c.group * c.group + 2 * c.group) + c.group * c.group;
            spread = fmax(spread, l[c.group - 1] - l[0]);
        }
        printf("  noise %g: eigenvalue spread within groups %.2e\n", noise[k], spread);
        assert_true(spread < 1e-8);
        /* The finite differences move S by ~1e-6, far more than the spread, yet f(S) = S^-1/2
         * is smooth there, so the default tolerance holds (observed |diff| ~ 3e-9). The
         * textbook divided difference (f_i - f_j) / (l_i - l_j) fails it: 1e-2 off at noise 0,
         * 1e-6 at noise 1e-10. */
        struct gc_tol tol = GC_TOL_DEFAULT;
        char name[64];
        snprintf(name, sizeof name, "whiten_close_noise%g", noise[k]);
        bad += run_gradcheck(&c, name, &tol, &r, false);
        wctx_free(&c);
    }
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------------------------------
 * (6) singular groups
 * ------------------------------------------------------------------------------------------ */

static void test_rank_deficient(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "whiten_rank_deficient");
    struct wctx c; /* fewer rows than the group: rank n - 1 after centring */
    wctx_init(&c, 3, 8, 4, 0.0);
    gc_fill_mixed(&r, c.x, c.n, c.d, 3.0);
    assert_int_equal(wforward(&c), SSL_E_NONFINITE);
    wctx_free(&c);

    wctx_init(&c, 12, 8, 4, 0.0); /* a duplicated feature in the second group */
    gc_fill_mixed(&r, c.x, c.n, c.d, 3.0);
    for (int64_t a = 0; a < c.n; a++) c.x[a * c.d + 6] = c.x[a * c.d + 5];
    assert_int_equal(wforward(&c), SSL_E_NONFINITE);
    c.eps = 1e-3; /* eps regularises it */
    assert_int_equal(wforward(&c), 0);
    wctx_free(&c);

    wctx_init(&c, 12, 8, 8, 0.0); /* a constant feature: exactly zero variance */
    gc_fill_mixed(&r, c.x, c.n, c.d, 3.0);
    for (int64_t a = 0; a < c.n; a++) c.x[a * c.d + 2] = 4.0;
    assert_int_equal(wforward(&c), SSL_E_NONFINITE);
    wctx_free(&c);

    wctx_init(&c, 12, 8, 4, 0.0); /* a non-finite input */
    gc_fill_mixed(&r, c.x, c.n, c.d, 3.0);
    c.x[17] = NAN;
    assert_int_equal(wforward(&c), SSL_E_NONFINITE);
    wctx_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_covariance),
        cmocka_unit_test(test_zca_matches_newton_schulz),
        cmocka_unit_test(test_perm_is_gather_scatter),
        cmocka_unit_test(test_full_group_perm_invariant),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_close_eigenvalues),
        cmocka_unit_test(test_rank_deficient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
