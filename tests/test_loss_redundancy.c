/* test_loss_redundancy.c: Barlow Twins, VICReg and Zero-CL (src/losses/redundancy.c) on the
 * fp64 core:
 *   - central-difference gradient checks of both inputs, for each loss, each statistics path
 *     (FEATURE (d, d) and INSTANCE (n, n) Gram) with n < d and n > d, each Zero-CL mode (the
 *     whitening W is a detached constant, so it is frozen at the checked point through
 *     ssl_zerocl_opts.whiten and the finite differences see the same function);
 *   - accumulate (+=) and NULL-gradient checks;
 *   - a second, independent computation of every value by naive loops straight from the
 *     official formulas, the two paths against each other, W against its definition
 *     W (S + eps I) W = I, and the losses.h VICReg wrappers against the new API;
 *   - known values on a hand-made batch with orthogonal, equal-variance columns;
 *   - the global batch through a fake comm of P ranks holding identical copies (sum multiplies
 *     by P, global_rows returns P n): Barlow Twins and VICReg (global-batch statistics) must
 *     equal one process on the P-times duplicated batch, value and the gradient of the rank's
 *     own rows; Zero-CL (per-rank standardisation and whitening, summed c diagonal) must equal
 *     one process on the local batch in value, with 1/P of its gradient (each rank's rows make
 *     1/P of c);
 *   - the status convention: a failing comm's code is returned and the value is NAN; NULL
 *     options are the defaults.
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

#include "check.h"
#include "gradcheck.h"
#include "losses/losses.h"
#include "losses/redundancy.h"
#include "rng.h"

#ifndef SSL_F64
#error "test_loss_redundancy needs the fp64 core (ssl_core_f64)"
#endif

static double *xalloc(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}

static double maxdiff(const double *x, const double *y, int64_t n)
{
    double w = 0.0;
    for (int64_t i = 0; i < n; i++) w = fmax(w, fabs(x[i] - y[i]));
    return w;
}

static double maxabs(const double *x, int64_t n)
{
    double w = 0.0;
    for (int64_t i = 0; i < n; i++) w = fmax(w, fabs(x[i]));
    return w;
}

/* ------------------------------------------------------------------------------------------
 * One loss behind a common call
 * ------------------------------------------------------------------------------------------ */

enum kind { K_BARLOW, K_VICREG, K_ZEROCL };

struct lctx {
    enum kind kind;
    int64_t n, d;
    double *a, *b, *da, *db;
    struct ssl_barlow_opts bo;
    struct ssl_vicreg_opts vo;
    struct ssl_zerocl_opts zo;
    const struct ssl_loss_ctx *c;
    double *work;
};

static int64_t lwork(const struct lctx *l)
{
    switch (l->kind) {
    case K_BARLOW: return ssl_barlow_work_elems(l->c, l->n, l->d, &l->bo);
    case K_VICREG: return ssl_vicreg_full_work_elems(l->c, l->n, l->d, &l->vo);
    default: return ssl_zerocl_work_elems(l->c, l->n, l->d, &l->zo);
    }
}

static double lrun(struct lctx *l, double *da, double *db, double *terms)
{
    double v = NAN;
    int rc;
    switch (l->kind) {
    case K_BARLOW:
        rc = ssl_barlow_loss(&v, terms, da, db, l->a, l->b, l->n, l->d, &l->bo, l->c, l->work);
        break;
    case K_VICREG:
        rc = ssl_vicreg_full_loss(&v, terms, da, db, l->a, l->b, l->n, l->d, &l->vo, l->c,
                                  l->work);
        break;
    default:
        rc = ssl_zerocl_loss(&v, terms, da, db, l->a, l->b, l->n, l->d, &l->zo, l->c, l->work);
        break;
    }
    assert_int_equal(rc, 0);
    return v;
}

static double gc_loss_fn(void *ctx) { return lrun(ctx, NULL, NULL, NULL); }

static void gc_backward_fn(void *ctx)
{
    struct lctx *l = ctx;
    lrun(l, l->da, l->db, NULL);
}

static void lalloc(struct lctx *l)
{
    l->a = xalloc(l->n * l->d);
    l->b = xalloc(l->n * l->d);
    l->da = xalloc(l->n * l->d);
    l->db = xalloc(l->n * l->d);
    l->work = xalloc(lwork(l));
}

static void lfree(struct lctx *l)
{
    free(l->a);
    free(l->b);
    free(l->da);
    free(l->db);
    free(l->work);
}

/* Work for every path (tests that switch l->bo.path / l->vo.path after setup). */
static void lwork_all_paths(struct lctx *l)
{
    int64_t w = 0;
    struct ssl_barlow_opts bo = l->bo;
    struct ssl_vicreg_opts vo = l->vo;
    for (int p = 0; p < 3; p++) {
        l->bo.path = (enum ssl_redundancy_path)p;
        l->vo.path = (enum ssl_redundancy_path)p;
        int64_t x = lwork(l);
        w = x > w ? x : w;
    }
    l->bo = bo;
    l->vo = vo;
    free(l->work);
    l->work = xalloc(w);
}

/* b = a mixed with fresh noise: correlated views, as two augmentations give. */
static void fill_views(struct ssl_rng *r, struct lctx *l, double scale)
{
    int64_t m = l->n * l->d;
    gc_fill_mixed(r, l->a, l->n, l->d, 1.0);
    gc_fill_normal(r, l->b, m, 0.0, 1.0);
    for (int64_t i = 0; i < m; i++) {
        l->b[i] = scale * (0.8 * l->a[i] + 0.6 * l->b[i]);
        l->a[i] *= scale;
    }
}

static const char *kname(enum kind k)
{
    return k == K_BARLOW ? "barlow" : k == K_VICREG ? "vicreg" : "zerocl";
}

/* ------------------------------------------------------------------------------------------
 * Naive references, straight from the official formulas
 * ------------------------------------------------------------------------------------------ */

/* facebookresearch/barlowtwins main.py: BN (biased, eps), c = BN(a)^T BN(b) / n. */
static double naive_barlow(const double *a, const double *b, int64_t n, int64_t d, double lambd,
                           double eps)
{
    double *ya = xalloc(n * d), *yb = xalloc(n * d);
    const double *src[2] = {a, b};
    double *dst[2] = {ya, yb};
    for (int v = 0; v < 2; v++)
        for (int64_t j = 0; j < d; j++) {
            double m = 0.0, var = 0.0;
            for (int64_t i = 0; i < n; i++) m += src[v][i * d + j];
            m /= (double)n;
            for (int64_t i = 0; i < n; i++) var += pow(src[v][i * d + j] - m, 2);
            var /= (double)n;
            for (int64_t i = 0; i < n; i++)
                dst[v][i * d + j] = (src[v][i * d + j] - m) / sqrt(var + eps);
        }
    double L = 0.0;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) {
            double c = 0.0;
            for (int64_t k = 0; k < n; k++) c += ya[k * d + i] * yb[k * d + j];
            c /= (double)n;
            L += i == j ? (1.0 - c) * (1.0 - c) : lambd * c * c;
        }
    free(ya);
    free(yb);
    return L;
}

/* facebookresearch/vicreg main_vicreg.py VICReg.forward. */
static double naive_vicreg(const double *a, const double *b, int64_t n, int64_t d,
                           const struct ssl_vicreg_opts *o)
{
    double repr = 0.0;
    for (int64_t i = 0; i < n * d; i++) repr += (a[i] - b[i]) * (a[i] - b[i]);
    repr /= (double)(n * d);
    double stdt = 0.0, covt = 0.0;
    const double *src[2] = {a, b};
    double *xc = xalloc(n * d);
    for (int v = 0; v < 2; v++) {
        for (int64_t j = 0; j < d; j++) {
            double m = 0.0;
            for (int64_t i = 0; i < n; i++) m += src[v][i * d + j];
            m /= (double)n;
            for (int64_t i = 0; i < n; i++) xc[i * d + j] = src[v][i * d + j] - m;
        }
        double hinge = 0.0, off = 0.0;
        for (int64_t p = 0; p < d; p++)
            for (int64_t q = 0; q < d; q++) {
                double cov = 0.0;
                for (int64_t i = 0; i < n; i++) cov += xc[i * d + p] * xc[i * d + q];
                cov /= (double)(n - 1);
                if (p == q)
                    hinge += fmax(0.0, 1.0 - sqrt(cov + o->var_eps));
                else
                    off += cov * cov;
            }
        stdt += hinge / (double)d / 2.0;
        covt += off / (double)d;
    }
    free(xc);
    return o->sim * repr + o->std * stdt + o->cov * covt;
}

/* Sherrylone/Zero-CL ImageNet-100/main.py fea_loss / ins_loss with the given W (2, m, m). */
static double naive_zerocl(const double *a, const double *b, int64_t n, int64_t d,
                           const struct ssl_zerocl_opts *o, const double *w)
{
    bool fcl = o->mode == SSL_ZEROCL_FCL;
    int64_t m = fcl ? d : n;
    const double *src[2] = {a, b};
    double *s[2] = {xalloc(n * d), xalloc(n * d)}, *t[2] = {xalloc(n * d), xalloc(n * d)};
    for (int v = 0; v < 2; v++) {
        /* standardization(dim=0) for FCL: per column; dim=-1 for ICL: per row */
        int64_t groups = fcl ? d : n, len = fcl ? n : d;
        for (int64_t g = 0; g < groups; g++) {
#define AT(e) (fcl ? (e) * d + g : g * d + (e))
            double mu = 0.0, var = 0.0;
            for (int64_t e = 0; e < len; e++) mu += src[v][AT(e)];
            mu /= (double)len;
            for (int64_t e = 0; e < len; e++) var += pow(src[v][AT(e)] - mu, 2);
            double sd = sqrt(var / (double)(len - 1));
            for (int64_t e = 0; e < len; e++) s[v][AT(e)] = (src[v][AT(e)] - mu) / (sd + o->std_eps);
#undef AT
        }
        const double *W = w + v * m * m;
        if (fcl) { /* zca(s) = (W s^T)^T: t_kj = sum_l W_jl s_kl */
            for (int64_t k = 0; k < n; k++)
                for (int64_t j = 0; j < d; j++) {
                    double acc = 0.0;
                    for (int64_t l = 0; l < d; l++) acc += W[j * d + l] * s[v][k * d + l];
                    t[v][k * d + j] = acc;
                }
        } else { /* x = s^T (d, n); zca(x) = (W x^T)^T (d, n): entry (k, i) = sum_l W_il s_lk */
            for (int64_t i = 0; i < n; i++)
                for (int64_t k = 0; k < d; k++) {
                    double acc = 0.0;
                    for (int64_t l = 0; l < n; l++) acc += W[i * n + l] * s[v][l * d + k];
                    t[v][i * d + k] = acc; /* stored transposed: (n, d) */
                }
        }
    }
    double L = 0.0;
    for (int64_t i = 0; i < m; i++) {
        double c = 0.0;
        if (fcl)
            for (int64_t k = 0; k < n; k++) c += t[0][k * d + i] * t[1][k * d + i];
        else
            for (int64_t k = 0; k < d; k++) c += t[0][i * d + k] * t[1][i * d + k];
        c /= (double)(fcl ? n : d);
        L += (c - 1.0) * (c - 1.0);
    }
    for (int v = 0; v < 2; v++) {
        free(s[v]);
        free(t[v]);
    }
    return L;
}

/* ------------------------------------------------------------------------------------------
 * Configurations
 * ------------------------------------------------------------------------------------------ */

struct config {
    const char *name;
    enum kind kind;
    int64_t n, d;
    enum ssl_redundancy_path path;
    enum ssl_zerocl_mode mode;
    double scale; /* of the data: VICReg at 0.6 puts stds on both sides of the hinge */
};

static const struct config CONFIGS[] = {
    {"barlow feature n<d", K_BARLOW, 6, 9, SSL_REDUNDANCY_PATH_FEATURE, 0, 1.0},
    {"barlow instance n<d", K_BARLOW, 6, 9, SSL_REDUNDANCY_PATH_INSTANCE, 0, 1.0},
    {"barlow feature n>d", K_BARLOW, 11, 5, SSL_REDUNDANCY_PATH_FEATURE, 0, 1.0},
    {"barlow instance n>d", K_BARLOW, 11, 5, SSL_REDUNDANCY_PATH_INSTANCE, 0, 1.0},
    {"vicreg feature n<d", K_VICREG, 6, 9, SSL_REDUNDANCY_PATH_FEATURE, 0, 0.6},
    {"vicreg instance n<d", K_VICREG, 6, 9, SSL_REDUNDANCY_PATH_INSTANCE, 0, 0.6},
    {"vicreg feature n>d", K_VICREG, 11, 5, SSL_REDUNDANCY_PATH_FEATURE, 0, 0.6},
    {"vicreg instance n>d", K_VICREG, 11, 5, SSL_REDUNDANCY_PATH_INSTANCE, 0, 0.6},
    {"zero-fcl n>d", K_ZEROCL, 10, 4, 0, SSL_ZEROCL_FCL, 1.0},
    {"zero-fcl n<d", K_ZEROCL, 5, 8, 0, SSL_ZEROCL_FCL, 1.0},
    {"zero-icl n<d", K_ZEROCL, 5, 8, 0, SSL_ZEROCL_ICL, 1.0},
    {"zero-icl n>d", K_ZEROCL, 9, 4, 0, SSL_ZEROCL_ICL, 1.0},
};
#define N_CONFIGS ((int)(sizeof CONFIGS / sizeof CONFIGS[0]))

static void setup(struct lctx *l, const struct config *cf)
{
    memset(l, 0, sizeof *l);
    l->kind = cf->kind;
    l->n = cf->n;
    l->d = cf->d;
    l->bo = ssl_barlow_defaults();
    l->bo.lambd = 0.3; /* the official 0.0051 hides a wrong off-diagonal gradient in atol */
    l->bo.path = cf->path;
    l->vo = ssl_vicreg_defaults();
    l->vo.path = cf->path;
    l->zo = ssl_zerocl_defaults(cf->mode);
    lalloc(l);
}

/* ------------------------------------------------------------------------------------------
 * Gradients
 * ------------------------------------------------------------------------------------------ */

static void test_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_redundancy_grad");
    int bad = 0;
    for (int k = 0; k < N_CONFIGS; k++) {
        struct lctx l;
        setup(&l, &CONFIGS[k]);
        fill_views(&r, &l, CONFIGS[k].scale);
        double *w = NULL;
        if (l.kind == K_ZEROCL) {
            int64_t m = l.zo.mode == SSL_ZEROCL_FCL ? l.d : l.n;
            w = xalloc(2 * m * m);
            assert_int_equal(ssl_zerocl_whitening(w, l.a, l.b, l.n, l.d, &l.zo, l.work), 0);
            /* the detached W: freezing it changes neither the value nor the gradient here */
            double v0 = lrun(&l, l.da, l.db, NULL);
            double *g0 = xalloc(2 * l.n * l.d);
            memcpy(g0, l.da, (size_t)(l.n * l.d) * sizeof *g0);
            memcpy(g0 + l.n * l.d, l.db, (size_t)(l.n * l.d) * sizeof *g0);
            memset(l.da, 0, (size_t)(l.n * l.d) * sizeof *l.da);
            memset(l.db, 0, (size_t)(l.n * l.d) * sizeof *l.db);
            l.zo.whiten = w;
            double v1 = lrun(&l, l.da, l.db, NULL);
            assert_true(v0 == v1);
            assert_true(maxdiff(g0, l.da, l.n * l.d) == 0.0);
            assert_true(maxdiff(g0 + l.n * l.d, l.db, l.n * l.d) == 0.0);
            memset(l.da, 0, (size_t)(l.n * l.d) * sizeof *l.da);
            memset(l.db, 0, (size_t)(l.n * l.d) * sizeof *l.db);
            free(g0);
        }
        struct gc_param p[2] = {
            {.name = "a", .x = l.a, .grad = l.da, .n = l.n * l.d, .grad_slot = &l.da},
            {.name = "b", .x = l.b, .grad = l.db, .n = l.n * l.d, .grad_slot = &l.db}};
        struct gc_problem prob = {.name = CONFIGS[k].name, .loss = gc_loss_fn,
                                  .backward = gc_backward_fn, .ctx = &l, .params = p,
                                  .n_params = 2};
        printf("[grad] %s: L = %.6g\n", CONFIGS[k].name, gc_loss_fn(&l));
        int b1 = gc_check(&prob, &GC_TOL_DEFAULT);
        int b2 = gc_check_accumulates(&prob, &r);
        int b3 = gc_check_null_grads(&prob);
        if (b1 + b2 + b3) printf("[grad] %s FAILED: %d %d %d\n", CONFIGS[k].name, b1, b2, b3);
        bad += b1 + b2 + b3;
        free(w);
        lfree(&l);
    }
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------------------------------
 * Values: naive references, the two paths, W's definition, the losses.h wrappers
 * ------------------------------------------------------------------------------------------ */

static void test_values_naive(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_redundancy_naive");
    for (int k = 0; k < N_CONFIGS; k++) {
        struct lctx l;
        setup(&l, &CONFIGS[k]);
        if (l.kind == K_BARLOW) l.bo.lambd = 0.0051; /* official default */
        fill_views(&r, &l, CONFIGS[k].scale);
        double v = lrun(&l, NULL, NULL, NULL), ref;
        if (l.kind == K_BARLOW) {
            ref = naive_barlow(l.a, l.b, l.n, l.d, l.bo.lambd, l.bo.bn_eps);
        } else if (l.kind == K_VICREG) {
            ref = naive_vicreg(l.a, l.b, l.n, l.d, &l.vo);
        } else {
            int64_t m = l.zo.mode == SSL_ZEROCL_FCL ? l.d : l.n;
            double *w = xalloc(2 * m * m);
            assert_int_equal(ssl_zerocl_whitening(w, l.a, l.b, l.n, l.d, &l.zo, l.work), 0);
            ref = naive_zerocl(l.a, l.b, l.n, l.d, &l.zo, w);
            free(w);
        }
        printf("[naive] %s: %.15g vs naive %.15g\n", CONFIGS[k].name, v, ref);
        assert_true(fabs(v - ref) <= 1e-11 * fmax(1.0, fabs(ref)));
        lfree(&l);
    }
}

/* W (S + eps I) W = I with S = x^T x / rows of the standardised view (computed here). */
static void test_zerocl_whitening_definition(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_redundancy_zca");
    for (int mode = 0; mode < 2; mode++) {
        struct config cf = {"zca", K_ZEROCL, 7, 5, 0, (enum ssl_zerocl_mode)mode, 1.0};
        struct lctx l;
        setup(&l, &cf);
        fill_views(&r, &l, 1.0);
        bool fcl = mode == SSL_ZEROCL_FCL;
        int64_t n = l.n, d = l.d, m = fcl ? d : n;
        double *w = xalloc(2 * m * m), *s = xalloc(n * d), *S = xalloc(m * m);
        assert_int_equal(ssl_zerocl_whitening(w, l.a, l.b, n, d, &l.zo, l.work), 0);
        const double *src[2] = {l.a, l.b};
        double worst = 0.0, asym = 0.0;
        for (int v = 0; v < 2; v++) {
            int64_t groups = fcl ? d : n, len = fcl ? n : d;
            for (int64_t g = 0; g < groups; g++) {
#define AT(e) (fcl ? (e) * d + g : g * d + (e))
                double mu = 0.0, var = 0.0;
                for (int64_t e = 0; e < len; e++) mu += src[v][AT(e)];
                mu /= (double)len;
                for (int64_t e = 0; e < len; e++) var += pow(src[v][AT(e)] - mu, 2);
                double sd = sqrt(var / (double)(len - 1));
                for (int64_t e = 0; e < len; e++) s[AT(e)] = (src[v][AT(e)] - mu) / (sd + 1e-4);
#undef AT
            }
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < m; j++) {
                    double acc = 0.0;
                    if (fcl)
                        for (int64_t k = 0; k < n; k++) acc += s[k * d + i] * s[k * d + j];
                    else
                        for (int64_t k = 0; k < d; k++) acc += s[i * d + k] * s[j * d + k];
                    S[i * m + j] = acc / (double)(fcl ? n : d) + (i == j ? 0.01 : 0.0);
                }
            const double *W = w + v * m * m;
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < m; j++) {
                    double acc = 0.0;
                    for (int64_t p = 0; p < m; p++)
                        for (int64_t q = 0; q < m; q++)
                            acc += W[i * m + p] * S[p * m + q] * W[q * m + j];
                    worst = fmax(worst, fabs(acc - (i == j ? 1.0 : 0.0)));
                    asym = fmax(asym, fabs(W[i * m + j] - W[j * m + i]));
                }
        }
        printf("[zca] mode %d: |W (S + eps I) W - I| %.3g, |W - W^T| %.3g\n", mode, worst, asym);
        assert_true(worst < 1e-10 && asym < 1e-12);
        free(w);
        free(s);
        free(S);
        lfree(&l);
    }
}

/* FEATURE and INSTANCE paths agree in value, terms and gradient. */
static void test_paths_agree(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_redundancy_paths");
    for (int k = 0; k < N_CONFIGS; k += 2) {
        if (CONFIGS[k].kind == K_ZEROCL) continue;
        struct lctx f, g;
        setup(&f, &CONFIGS[k]);
        setup(&g, &CONFIGS[k + 1]);
        fill_views(&r, &f, CONFIGS[k].scale);
        memcpy(g.a, f.a, (size_t)(f.n * f.d) * sizeof *g.a);
        memcpy(g.b, f.b, (size_t)(f.n * f.d) * sizeof *g.b);
        double tf[3] = {0}, tg[3] = {0};
        double vf = lrun(&f, f.da, f.db, tf), vg = lrun(&g, g.da, g.db, tg);
        double e = fmax(maxdiff(f.da, g.da, f.n * f.d), maxdiff(f.db, g.db, f.n * f.d));
        printf("[paths] %s: value %.3g, terms %.3g %.3g %.3g, grad %.3g\n", CONFIGS[k].name,
               fabs(vf - vg), fabs(tf[0] - tg[0]), fabs(tf[1] - tg[1]), fabs(tf[2] - tg[2]), e);
        assert_true(fabs(vf - vg) < 1e-11 * fmax(1.0, fabs(vf)));
        for (int t = 0; t < 3; t++) assert_true(fabs(tf[t] - tg[t]) < 1e-11 * fmax(1.0, fabs(tf[t])));
        assert_true(e < 1e-11 * fmax(1.0, maxabs(f.da, f.n * f.d)));
        lfree(&f);
        lfree(&g);
    }
}

static void test_vicreg_wrapper(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_redundancy_wrapper");
    const int64_t shapes[2][2] = {{6, 9}, {11, 5}};
    for (int s = 0; s < 2; s++) {
        struct config cf = {"wrap", K_VICREG, shapes[s][0], shapes[s][1], 0, 0, 0.6};
        struct lctx l;
        setup(&l, &cf);
        fill_views(&r, &l, 0.6);
        struct ssl_vicreg_weights w = {25, 25, 1};
        double *work = xalloc(ssl_vicreg_work_elems(l.n, l.d)), *ga = xalloc(l.n * l.d),
               *gb = xalloc(l.n * l.d), t0[3], t1[3];
        double v0 = ssl_vicreg_loss(ga, gb, l.a, l.b, l.n, l.d, &w, t0, work);
        double v1 = lrun(&l, l.da, l.db, t1);
        assert_true(v0 == v1);
        assert_true(memcmp(t0, t1, sizeof t0) == 0);
        assert_true(maxdiff(ga, l.da, l.n * l.d) == 0.0 && maxdiff(gb, l.db, l.n * l.d) == 0.0);
        free(work);
        free(ga);
        free(gb);
        lfree(&l);
    }
}

/* ------------------------------------------------------------------------------------------
 * Known values on z = [1 1; 1 -1; -1 1; -1 -1] * scale: zero means, orthogonal columns,
 * biased variance scale^2, unbiased 4 scale^2 / 3.
 * ------------------------------------------------------------------------------------------ */

static void test_known_values(void **state)
{
    (void)state;
    const double z[8] = {1, 1, 1, -1, -1, 1, -1, -1};
    struct config cf = {"known", K_BARLOW, 4, 2, SSL_REDUNDANCY_PATH_AUTO, 0, 1.0};
    struct lctx l;
    setup(&l, &cf);
    l.bo = ssl_barlow_defaults();
    assert_true(l.bo.lambd == 0.0051 && l.bo.bn_eps == 1e-5);
    lwork_all_paths(&l);
    memcpy(l.a, z, sizeof z);
    memcpy(l.b, z, sizeof z);
    /* Barlow: c = I / (1 + eps) */
    double eps = 1e-5, q = 1.0 / (1.0 + eps);
    for (int p = 0; p < 3; p++) {
        l.bo.path = (enum ssl_redundancy_path)p;
        double v = lrun(&l, NULL, NULL, NULL);
        printf("[known] barlow a = b: %.17g (expected %.17g)\n", v, 2 * (1 - q) * (1 - q));
        assert_true(fabs(v - 2 * (1 - q) * (1 - q)) < 1e-15);
        for (int i = 0; i < 8; i++) l.b[i] = -z[i];
        v = lrun(&l, NULL, NULL, NULL);
        assert_true(fabs(v - 2 * (1 + q) * (1 + q)) < 1e-12);
        memcpy(l.b, z, sizeof z);
    }
    lfree(&l);
    /* VICReg: scale 1: var = 4/3 > 1, no covariance, a = b: 0. Scale 0.5: var = 1/3, the hinge
     * gives std(a) + std(b) = 1 - sqrt(1/3 + 1e-4); b = -a adds inv = 4 * 0.25 = 1. */
    cf.kind = K_VICREG;
    setup(&l, &cf);
    lwork_all_paths(&l);
    for (int p = 0; p < 3; p++) {
        l.vo.path = (enum ssl_redundancy_path)p;
        memcpy(l.a, z, sizeof z);
        memcpy(l.b, z, sizeof z);
        assert_true(fabs(lrun(&l, NULL, NULL, NULL)) < 1e-15);
        for (int i = 0; i < 8; i++) {
            l.a[i] = 0.5 * z[i];
            l.b[i] = -0.5 * z[i];
        }
        double v = lrun(&l, NULL, NULL, NULL), ex = 25.0 * 1.0 + 25.0 * (1 - sqrt(1.0 / 3 + 1e-4));
        printf("[known] vicreg: %.17g (expected %.17g)\n", v, ex);
        assert_true(fabs(v - ex) < 1e-13);
    }
    lfree(&l);
    /* Zero-FCL, a = b: s = z / (sd + 1e-4), sd = sqrt(4/3); S = s^T s / 4 = sigma2 I with
     * sigma2 = (3/4) sd^2 / (sd + 1e-4)^2, W = I / sqrt(sigma2 + 0.01), so
     * c_ii = sigma2 / (sigma2 + 0.01). */
    cf.kind = K_ZEROCL;
    setup(&l, &cf);
    memcpy(l.a, z, sizeof z);
    memcpy(l.b, z, sizeof z);
    double sd = sqrt(4.0 / 3.0), sigma2 = 0.75 * sd * sd / ((sd + 1e-4) * (sd + 1e-4));
    double cii = sigma2 / (sigma2 + 0.01), ex = 2 * (cii - 1) * (cii - 1);
    double v = lrun(&l, NULL, NULL, NULL);
    printf("[known] zero-fcl: %.17g (expected %.17g)\n", v, ex);
    assert_true(fabs(v - ex) < 1e-14);
    lfree(&l);
}

/* ------------------------------------------------------------------------------------------
 * Global batch through a fake comm: P ranks holding identical copies
 * ------------------------------------------------------------------------------------------ */

struct fake {
    int p;
};

static int fake_sum(void *ctx, double *values, int64_t n)
{
    const struct fake *f = ctx;
    for (int64_t i = 0; i < n; i++) values[i] *= (double)f->p;
    return 0;
}

static int64_t fake_rows(void *ctx, int64_t rows) { return rows * ((const struct fake *)ctx)->p; }

static void test_global_fake_comm(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_redundancy_global");
    for (int P = 2; P <= 3; P++) {
        struct fake f = {P};
        struct ssl_loss_comm comm = {.sum = fake_sum, .global_rows = fake_rows, .ctx = &f};
        struct ssl_loss_ctx gctx = {.comm = &comm};
        /* Zero-CL twice: per rank (the official statistics), then global (FCL only: global
         * ICL gathers rows, which this comm cannot; tests/mpi_loss_invariance.c covers it) */
        for (int k = 0; k < N_CONFIGS + 2; k++) {
            bool zcl_global = k >= N_CONFIGS;
            const struct config *cf = &CONFIGS[zcl_global ? k - N_CONFIGS + 8 : k];
            struct lctx loc, dup;
            setup(&loc, cf);
            loc.zo.per_rank = !zcl_global;
            loc.c = &gctx; /* forces FEATURE; the work size depends on it */
            free(loc.work);
            loc.work = xalloc(lwork(&loc));
            fill_views(&r, &loc, cf->scale);
            int64_t nd = cf->n * cf->d;
            double vg = lrun(&loc, loc.da, loc.db, NULL), vr, ratio;
            struct config cd = *cf;
            if (cf->kind == K_ZEROCL && !zcl_global) { /* reference: one process on the local batch */
                setup(&dup, cf);
                memcpy(dup.a, loc.a, (size_t)nd * sizeof *dup.a);
                memcpy(dup.b, loc.b, (size_t)nd * sizeof *dup.b);
                ratio = 1.0 / P;
            } else { /* reference: one process on the P-times duplicated batch */
                cd.n = cf->n * P;
                setup(&dup, &cd);
                for (int q = 0; q < P; q++) {
                    memcpy(dup.a + q * nd, loc.a, (size_t)nd * sizeof *dup.a);
                    memcpy(dup.b + q * nd, loc.b, (size_t)nd * sizeof *dup.b);
                }
                ratio = 1.0;
            }
            vr = lrun(&dup, dup.da, dup.db, NULL);
            double ge = 0.0, gs = maxabs(dup.da, nd);
            for (int64_t i = 0; i < nd; i++) {
                ge = fmax(ge, fabs(loc.da[i] - ratio * dup.da[i]));
                ge = fmax(ge, fabs(loc.db[i] - ratio * dup.db[i]));
            }
            printf("[global] P=%d %s (%s%s): value %.15g vs %.15g, grad diff %.3g\n", P, cf->name,
                   kname(cf->kind), cf->kind == K_ZEROCL && !zcl_global ? ", per rank" : "", vg,
                   vr, ge);
            assert_true(fabs(vg - vr) <= 1e-11 * fmax(1.0, fabs(vr)));
            assert_true(ge <= 1e-11 * fmax(1.0, gs));
            lfree(&loc);
            lfree(&dup);
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Status convention: a comm error is returned as is, with *value NAN; o NULL = defaults
 * ------------------------------------------------------------------------------------------ */

static int failing_sum(void *ctx, double *values, int64_t n)
{
    (void)ctx;
    (void)values;
    (void)n;
    return 7;
}

static void test_status_convention(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "loss_redundancy_status");
    struct ssl_loss_comm comm = {.sum = failing_sum};
    struct ssl_loss_ctx bad = {.comm = &comm};
    const int64_t n = 7, d = 5;
    for (int k = 0; k < 3; k++) {
        struct config cf = {"status", (enum kind)k, n, d, SSL_REDUNDANCY_PATH_AUTO,
                            SSL_ZEROCL_FCL, 1.0};
        struct lctx l;
        setup(&l, &cf);
        fill_views(&r, &l, 1.0);
        /* NULL options: the official defaults (Barlow's lambd, unlike setup's 0.3) */
        int64_t w = k == K_BARLOW   ? ssl_barlow_work_elems(&bad, n, d, NULL)
                    : k == K_VICREG ? ssl_vicreg_full_work_elems(&bad, n, d, NULL)
                                    : ssl_zerocl_work_elems(&bad, n, d, NULL);
        double *work = xalloc(w), v0 = 0.0, v1 = 0.0, t0[3] = {0}, t1[3] = {0};
        int rc0, rc1;
        l.bo = ssl_barlow_defaults();
        if (k == K_BARLOW) {
            rc0 = ssl_barlow_loss(&v0, t0, NULL, NULL, l.a, l.b, n, d, NULL, NULL, work);
            rc1 = ssl_barlow_loss(&v1, t1, NULL, NULL, l.a, l.b, n, d, &l.bo, NULL, work);
        } else if (k == K_VICREG) {
            rc0 = ssl_vicreg_full_loss(&v0, t0, NULL, NULL, l.a, l.b, n, d, NULL, NULL, work);
            rc1 = ssl_vicreg_full_loss(&v1, t1, NULL, NULL, l.a, l.b, n, d, &l.vo, NULL, work);
        } else {
            rc0 = ssl_zerocl_loss(&v0, NULL, NULL, NULL, l.a, l.b, n, d, NULL, NULL, work);
            rc1 = ssl_zerocl_loss(&v1, NULL, NULL, NULL, l.a, l.b, n, d, &l.zo, NULL, work);
        }
        assert_int_equal(rc0, 0);
        assert_int_equal(rc1, 0);
        assert_true(v0 == v1 && memcmp(t0, t1, sizeof t0) == 0);
        /* a comm whose sum fails: its code comes back, the value is NAN */
        double v = 0.0;
        int rc = k == K_BARLOW
                     ? ssl_barlow_loss(&v, NULL, l.da, l.db, l.a, l.b, n, d, NULL, &bad, work)
                 : k == K_VICREG
                     ? ssl_vicreg_full_loss(&v, NULL, l.da, l.db, l.a, l.b, n, d, NULL, &bad, work)
                     : ssl_zerocl_loss(&v, NULL, l.da, l.db, l.a, l.b, n, d, NULL, &bad, work);
        printf("[status] %s: rc %d, value %g\n", kname(cf.kind), rc, v);
        assert_int_equal(rc, 7);
        assert_true(isnan(v));
        free(work);
        lfree(&l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad),
        cmocka_unit_test(test_values_naive),
        cmocka_unit_test(test_zerocl_whitening_definition),
        cmocka_unit_test(test_paths_agree),
        cmocka_unit_test(test_vicreg_wrapper),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_global_fake_comm),
        cmocka_unit_test(test_status_convention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
