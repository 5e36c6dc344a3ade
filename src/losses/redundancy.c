/* redundancy.c: redundancy-reduction losses (redundancy.h): Barlow Twins
 * (facebookresearch/barlowtwins main.py), VICReg (facebookresearch/vicreg main_vicreg.py),
 * Zero-CL FCL/ICL (Sherrylone/Zero-CL ImageNet-100/main.py), and the old VICReg entry points of
 * losses.h as thin wrappers (one process, the official weights passed by the caller).
 *
 * Invariants: inputs are copied to fp64 first; every statistic that spans the batch goes
 * through ssl_loss_sum; after the sums, every rank computes the same value and the same
 * dL/dstatistics, and local gradients follow by the chain rule. Centring needs no term in the
 * backward: the gradients dL/dzc built here (zc G, K zc, y2 G^T, ...) have zero column sums
 * over the global batch because zc's columns do (see each loss). */
#include "redundancy.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include "../check.h"
#include "../linalg.h"
#include "losses.h"

/* The path of this call; several ranks (global rows != n) take INSTANCE only through
 * gathered_instance below, so what is resolved here for them is FEATURE. */
static enum ssl_redundancy_path resolve_path(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                                             enum ssl_redundancy_path p)
{
    int64_t N = ssl_loss_global_rows(c, n);
    if (N != n) return SSL_REDUNDANCY_PATH_FEATURE;
    if (p == SSL_REDUNDANCY_PATH_AUTO)
        return n < d ? SSL_REDUNDANCY_PATH_INSTANCE : SSL_REDUNDANCY_PATH_FEATURE;
    return p;
}

/* Several ranks and the INSTANCE path wanted (asked for, or AUTO with N < d): both views are
 * gathered and the loss is computed on the global batch as in one process. */
static bool gathered_instance(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                              enum ssl_redundancy_path p)
{
    if (c == NULL || c->comm == NULL || c->comm->gather == NULL) return false;
    int64_t N = ssl_loss_global_rows(c, n);
    return N != n && (p == SSL_REDUNDANCY_PATH_INSTANCE || (p == SSL_REDUNDANCY_PATH_AUTO && N < d));
}

/* Doubles of the gathered route besides the one-process work: this rank's rows, the gathered
 * rows, and both views and their gradients as ssl_real (one double slot per element). */
static int64_t gathered_elems(int64_t n, int64_t N, int64_t d)
{
    return n * d + N * d + 4 * N * d;
}

typedef int (*pair_loss)(double *value, double *terms, ssl_real *da, ssl_real *db,
                         const ssl_real *a, const ssl_real *b, int64_t n, int64_t d,
                         const void *o, const struct ssl_loss_ctx *c, double *work);

/* The gathered route: f is the loss itself, called once on the global batch without a comm. */
static int gathered_loss(pair_loss f, double *value, double *terms, ssl_real *da, ssl_real *db,
                         const ssl_real *a, const ssl_real *b, int64_t n, int64_t d, const void *o,
                         const struct ssl_loss_ctx *c, double *work)
{
    int64_t N = ssl_loss_global_rows(c, n), off = 0;
    double *loc = work, *glob = loc + n * d, *slots = glob + N * d;
    ssl_real *g[2], *dg[2];
    for (int v = 0; v < 2; v++) {
        g[v] = (ssl_real *)(void *)(slots + v * N * d);
        dg[v] = (ssl_real *)(void *)(slots + (2 + v) * N * d);
        ssl_loss_to_double(loc, v ? b : a, n * d);
        int rc = ssl_loss_gather(c, loc, n, d, glob, &off);
        if (rc) return rc;
        for (int64_t i = 0; i < N * d; i++) g[v][i] = (ssl_real)glob[i]; /* exact: they were ssl_real */
        memset(dg[v], 0, (size_t)(N * d) * sizeof(ssl_real));
    }
    struct ssl_loss_ctx one = {.comm = NULL, .seed = c->seed, .step = c->step};
    int rc = f(value, terms, da ? dg[0] : NULL, db ? dg[1] : NULL, g[0], g[1], N, d, o, &one,
               slots + 4 * N * d);
    if (rc) return rc;
    /* every rank holds the whole gradient: its own rows need no scatter */
    ssl_real *dz[2] = {da, db};
    for (int v = 0; v < 2; v++)
        if (dz[v])
            for (int64_t i = 0; i < n * d; i++) dz[v][i] += dg[v][off * d + i];
    return 0;
}

/* The losses with their options type erased, for gathered_loss. */
static int barlow_erased(double *value, double *terms, ssl_real *da, ssl_real *db,
                         const ssl_real *a, const ssl_real *b, int64_t n, int64_t d, const void *o,
                         const struct ssl_loss_ctx *c, double *work)
{
    return ssl_barlow_loss(value, terms, da, db, a, b, n, d, o, c, work);
}

static int vicreg_erased(double *value, double *terms, ssl_real *da, ssl_real *db,
                         const ssl_real *a, const ssl_real *b, int64_t n, int64_t d, const void *o,
                         const struct ssl_loss_ctx *c, double *work)
{
    return ssl_vicreg_full_loss(value, terms, da, db, a, b, n, d, o, c, work);
}

/* y (n, d) -= 1 (s / N)^T: centres with the global column sums s. */
static void centre(double *y, const double *s, int64_t n, int64_t d, double N)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) y[i * d + j] -= s[j] / N;
}

static void colsums(double *s, const double *y, int64_t n, int64_t d)
{
    for (int64_t j = 0; j < d; j++) s[j] = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) s[j] += y[i * d + j];
}

/* (m, k) row-major products, C = alpha op(A) op(B) + beta C. */
static void gemm(bool ta, bool tb, int64_t m, int64_t nn, int64_t k, double alpha, const double *a,
                 const double *b, double beta, double *cc)
{
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                ssl_int(m), ssl_int(nn), ssl_int(k), alpha, a, ssl_int(ta ? m : k), b,
                ssl_int(tb ? k : nn), beta, cc, ssl_int(nn));
}

/* ==========================================================================================
 * Barlow Twins
 *   Forward: sums s (2d) -> means; centred v (2d) = sum zc^2 and, FEATURE, C = zc1^T zc2 (d, d),
 *   summed in one call; sd = sqrt(v / N + eps), y = zc / sd, c = C / (N sd1 sd2^T).
 *   Backward with G = dL/dc (G_ii = 2 (c_ii - 1), G_ij = 2 lambd c_ij):
 *     dy1 = y2 G^T / N, dy2 = y1 G / N;
 *     BN backward: dz = (dy - mean(dy) - y o mean(dy o y)) / sd, means over the global batch;
 *     mean(dy1) = 1^T y2 G^T / N^2 = 0, mean(dy1 o y1)_i = (c G^T)_ii / N and
 *     mean(dy2 o y2)_j = (c^T G)_jj / N: global quantities from c alone, no further sum.
 *   INSTANCE (one process): ||c||_F^2 = <K1, K2>_F / N^2 with K = y y^T (n, n);
 *     L = sum_i f(c_ii) + lambd ||c||_F^2, f(x) = (1 - x)^2 - lambd x^2, so
 *     dy1 = y2 o f'(c_ii) / N + 2 lambd K2 y1 / N^2 (and symmetrically), and
 *     mean(dy o y) is taken directly over the rows.
 * ========================================================================================== */

struct ssl_barlow_opts ssl_barlow_defaults(void)
{
    return (struct ssl_barlow_opts){
        .lambd = 0.0051, .bn_eps = 1e-5, .path = SSL_REDUNDANCY_PATH_AUTO};
}

int64_t ssl_barlow_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                              const struct ssl_barlow_opts *o)
{
    struct ssl_barlow_opts dflt = ssl_barlow_defaults();
    if (o == NULL) o = &dflt;
    if (gathered_instance(c, n, d, o->path)) {
        int64_t N = ssl_loss_global_rows(c, n);
        return gathered_elems(n, N, d) + ssl_barlow_work_elems(NULL, N, d, o);
    }
    bool feature = resolve_path(c, n, d, o->path) == SSL_REDUNDANCY_PATH_FEATURE;
    return 4 * n * d + 6 * d + (feature ? d * d : 2 * n * n);
}

/* dz (n, d) += (g - y o r) / sd, column-wise r and sd. */
static void bn_grad(ssl_real *dz, const double *g, const double *y, const double *r,
                    const double *sd, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            dz[i * d + j] += (ssl_real)((g[i * d + j] - y[i * d + j] * r[j]) / sd[j]);
}

int ssl_barlow_loss(double *value, double *terms, ssl_real *da, ssl_real *db, const ssl_real *a,
                    const ssl_real *b, int64_t n, int64_t d, const struct ssl_barlow_opts *o,
                    const struct ssl_loss_ctx *c, double *work)
{
    SSL_CHECK(value != NULL && a != NULL && b != NULL && work != NULL);
    struct ssl_barlow_opts dflt = ssl_barlow_defaults();
    if (o == NULL) o = &dflt;
    *value = NAN; /* until it is known: every failure returns before the end */
    SSL_CHECK(n >= 1 && d >= 1);
    if (gathered_instance(c, n, d, o->path)) {
        struct ssl_barlow_opts inst = *o;
        inst.path = SSL_REDUNDANCY_PATH_INSTANCE;
        return gathered_loss(barlow_erased, value, terms, da, db, a, b, n, d, &inst, c, work);
    }
    bool feature = resolve_path(c, n, d, o->path) == SSL_REDUNDANCY_PATH_FEATURE;
    double *y1 = work, *y2 = y1 + n * d, *g1 = y2 + n * d, *g2 = g1 + n * d; /* (n, d) each */
    double *s = g2 + n * d;                    /* (2d): column sums, then c_ii and f'(c_ii) */
    double *r = s + 2 * d;                     /* (2d): mean(dy o y) of each view */
    double *v = r + 2 * d;                     /* (2d): sum zc^2, then sd; followed by */
    double *big = v + 2 * d;                   /* FEATURE: C (d, d); INSTANCE: K1, K2 (n, n) */
    ssl_loss_to_double(y1, a, n * d);
    ssl_loss_to_double(y2, b, n * d);
    colsums(s, y1, n, d);
    colsums(s + d, y2, n, d);
    int rc = ssl_loss_sum(c, s, 2 * d);
    if (rc != 0) return rc;
    double N = (double)ssl_loss_global_rows(c, n);
    centre(y1, s, n, d, N);
    centre(y2, s + d, n, d, N);
    for (int64_t j = 0; j < 2 * d; j++) v[j] = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            v[j] += y1[i * d + j] * y1[i * d + j];
            v[d + j] += y2[i * d + j] * y2[i * d + j];
        }
    if (feature) gemm(true, false, d, d, n, 1.0, y1, y2, 0.0, big);
    rc = ssl_loss_sum(c, v, 2 * d + (feature ? d * d : 0));
    if (rc != 0) return rc;
    double *sd1 = v, *sd2 = v + d;
    for (int64_t j = 0; j < 2 * d; j++) v[j] = sqrt(v[j] / N + o->bn_eps);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            y1[i * d + j] /= sd1[j];
            y2[i * d + j] /= sd2[j];
        }
    double on = 0.0, off = 0.0, lam = o->lambd;
    bool grad = da != NULL || db != NULL;
    if (feature) {
        double *cc = big; /* c, then G in place */
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++) {
                double x = cc[i * d + j] / (N * sd1[i] * sd2[j]);
                cc[i * d + j] = x;
                if (i == j)
                    on += (1.0 - x) * (1.0 - x);
                else
                    off += x * x;
            }
        if (grad) {
            for (int64_t j = 0; j < 2 * d; j++) r[j] = 0.0;
            for (int64_t i = 0; i < d; i++)
                for (int64_t j = 0; j < d; j++) {
                    double x = cc[i * d + j], gg = i == j ? 2.0 * (x - 1.0) : 2.0 * lam * x;
                    r[i] += x * gg / N;
                    r[d + j] += x * gg / N;
                    cc[i * d + j] = gg;
                }
            if (da) gemm(false, true, n, d, d, 1.0 / N, y2, cc, 0.0, g1);
            if (db) gemm(false, false, n, d, d, 1.0 / N, y1, cc, 0.0, g2);
        }
    } else {
        double *k1 = big, *k2 = big + n * n, *cd = s, *fd = s + d;
        for (int64_t j = 0; j < d; j++) cd[j] = 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) cd[j] += y1[i * d + j] * y2[i * d + j] / N;
        gemm(false, true, n, n, d, 1.0, y1, y1, 0.0, k1);
        gemm(false, true, n, n, d, 1.0, y2, y2, 0.0, k2);
        double frob = 0.0, diag2 = 0.0;
        for (int64_t i = 0; i < n * n; i++) frob += k1[i] * k2[i];
        for (int64_t j = 0; j < d; j++) {
            on += (1.0 - cd[j]) * (1.0 - cd[j]);
            diag2 += cd[j] * cd[j];
            fd[j] = -2.0 * (1.0 - cd[j]) - 2.0 * lam * cd[j];
        }
        off = frob / (N * N) - diag2;
        if (grad) {
            gemm(false, false, n, d, n, 2.0 * lam / (N * N), k2, y1, 0.0, g1);
            gemm(false, false, n, d, n, 2.0 * lam / (N * N), k1, y2, 0.0, g2);
            for (int64_t j = 0; j < 2 * d; j++) r[j] = 0.0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < d; j++) {
                    g1[i * d + j] += y2[i * d + j] * fd[j] / N;
                    g2[i * d + j] += y1[i * d + j] * fd[j] / N;
                    r[j] += g1[i * d + j] * y1[i * d + j] / N;
                    r[d + j] += g2[i * d + j] * y2[i * d + j] / N;
                }
        }
    }
    if (da) bn_grad(da, g1, y1, r, sd1, n, d);
    if (db) bn_grad(db, g2, y2, r + d, sd2, n, d);
    if (terms) {
        terms[0] = on;
        terms[1] = off;
    }
    *value = on + lam * off;
    return 0;
}

/* ==========================================================================================
 * VICReg
 *   Forward: sums [s1 | s2 | sum (a - b)^2] (2d + 1) -> means and inv; then FEATURE: C = zc^T zc
 *   of both views (2 d^2) summed in one call (var = diag C / (N - 1)); INSTANCE: v = sum zc^2
 *   (2d) and K = zc zc^T (n, n) per view, ||C||_F^2 = ||K||_F^2.
 *   Backward per view with G = dL/dC (symmetric): dzc = 2 zc G, whose column sums vanish;
 *   G_ij = 2 cov C_ij / (d (N-1)^2) (i != j), G_jj = -std [sd_j < 1] / (4 d (N-1) sd_j).
 *   INSTANCE: 2 zc G = 4 cov / (d (N-1)^2) K zc + zc diag(2 G_jj - 4 cov C_jj / (d (N-1)^2)).
 * ========================================================================================== */

struct ssl_vicreg_opts ssl_vicreg_defaults(void)
{
    return (struct ssl_vicreg_opts){
        .sim = 25.0, .std = 25.0, .cov = 1.0, .var_eps = 1e-4, .path = SSL_REDUNDANCY_PATH_AUTO};
}

int64_t ssl_vicreg_full_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                                   const struct ssl_vicreg_opts *o)
{
    struct ssl_vicreg_opts dflt = ssl_vicreg_defaults();
    if (o == NULL) o = &dflt;
    if (gathered_instance(c, n, d, o->path)) {
        int64_t N = ssl_loss_global_rows(c, n);
        return gathered_elems(n, N, d) + ssl_vicreg_full_work_elems(NULL, N, d, o);
    }
    bool feature = resolve_path(c, n, d, o->path) == SSL_REDUNDANCY_PATH_FEATURE;
    return 3 * n * d + 4 * d + 1 + (feature ? 2 * d * d : n * n);
}

/* The variance hinge's dL/dvar_j factor: returns G_jj (per unit of C_jj) and adds the hinge. */
static double vicreg_hinge(double var, double var_eps, double nm1, double d, double *hinge)
{
    double sd = sqrt(var + var_eps);
    if (sd < 1.0) {
        *hinge += 1.0 - sd;
        return -1.0 / (4.0 * d * nm1 * sd);
    }
    return 0.0;
}

int ssl_vicreg_full_loss(double *value, double *terms, ssl_real *da, ssl_real *db,
                         const ssl_real *a, const ssl_real *b, int64_t n, int64_t d,
                         const struct ssl_vicreg_opts *o, const struct ssl_loss_ctx *c,
                         double *work)
{
    SSL_CHECK(value != NULL && a != NULL && b != NULL && work != NULL);
    struct ssl_vicreg_opts dflt = ssl_vicreg_defaults();
    if (o == NULL) o = &dflt;
    *value = NAN; /* until it is known: every failure returns before the end */
    SSL_CHECK(n >= 1 && d >= 1);
    if (gathered_instance(c, n, d, o->path)) {
        struct ssl_vicreg_opts inst = *o;
        inst.path = SSL_REDUNDANCY_PATH_INSTANCE;
        return gathered_loss(vicreg_erased, value, terms, da, db, a, b, n, d, &inst, c, work);
    }
    bool feature = resolve_path(c, n, d, o->path) == SSL_REDUNDANCY_PATH_FEATURE;
    double *x[2] = {work, work + n * d}, *gx = work + 2 * n * d; /* (n, d) each */
    double *s = gx + n * d;                                     /* (2d + 1) */
    double *v = s + 2 * d + 1;                                  /* (2d) */
    double *big = v + 2 * d; /* FEATURE: C1, C2 (d, d); INSTANCE: K (n, n) */
    ssl_real *dz[2] = {da, db};
    ssl_loss_to_double(x[0], a, n * d);
    ssl_loss_to_double(x[1], b, n * d);
    colsums(s, x[0], n, d);
    colsums(s + d, x[1], n, d);
    s[2 * d] = 0.0;
    for (int64_t i = 0; i < n * d; i++) s[2 * d] += (x[0][i] - x[1][i]) * (x[0][i] - x[1][i]);
    int rc = ssl_loss_sum(c, s, 2 * d + 1);
    if (rc != 0) return rc;
    int64_t Ng = ssl_loss_global_rows(c, n);
    SSL_CHECK(Ng >= 2);
    double N = (double)Ng, nm1 = N - 1.0, dd = (double)d;
    double inv = s[2 * d] / (N * dd), isc = 2.0 * o->sim / (N * dd);
    for (int64_t i = 0; i < n * d; i++) {
        double diff = x[0][i] - x[1][i];
        if (da) da[i] += (ssl_real)(isc * diff);
        if (db) db[i] -= (ssl_real)(isc * diff);
    }
    centre(x[0], s, n, d, N);
    centre(x[1], s + d, n, d, N);
    double var_term = 0.0, cov_term = 0.0;
    if (feature) {
        for (int w = 0; w < 2; w++)
            gemm(true, false, d, d, n, 1.0, x[w], x[w], 0.0, big + (int64_t)w * d * d);
        rc = ssl_loss_sum(c, big, 2 * d * d);
        if (rc != 0) return rc;
        for (int w = 0; w < 2; w++) {
            double *C = big + (int64_t)w * d * d, hinge = 0.0, off = 0.0; /* C, then G */
            for (int64_t i = 0; i < d; i++)
                for (int64_t j = 0; j < d; j++) {
                    double cij = C[i * d + j] / nm1;
                    if (i == j) {
                        C[i * d + j] = o->std * vicreg_hinge(cij, o->var_eps, nm1, dd, &hinge);
                    } else {
                        off += cij * cij;
                        C[i * d + j] = 2.0 * o->cov * cij / (dd * nm1);
                    }
                }
            var_term += hinge / (2.0 * dd);
            cov_term += off / dd;
            if (dz[w] == NULL) continue;
            gemm(false, false, n, d, d, 2.0, x[w], C, 0.0, gx);
            ssl_loss_add_grad(dz[w], gx, n * d);
        }
    } else {
        for (int64_t j = 0; j < 2 * d; j++) v[j] = 0.0;
        for (int w = 0; w < 2; w++)
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < d; j++) v[w * d + j] += x[w][i * d + j] * x[w][i * d + j];
        rc = ssl_loss_sum(c, v, 2 * d);
        if (rc != 0) return rc;
        double ck = 4.0 * o->cov / (nm1 * nm1 * dd), cdg = 4.0 * o->cov / (nm1 * dd);
        for (int w = 0; w < 2; w++) {
            double *K = big, *var = v + w * d, hinge = 0.0, diag2 = 0.0, frob = 0.0;
            gemm(false, true, n, n, d, 1.0, x[w], x[w], 0.0, K);
            for (int64_t i = 0; i < n * n; i++) frob += K[i] * K[i];
            for (int64_t j = 0; j < d; j++) {
                var[j] /= nm1;
                diag2 += var[j] * var[j];
                double gjj = o->std * vicreg_hinge(var[j], o->var_eps, nm1, dd, &hinge);
                var[j] = 2.0 * gjj - cdg * var[j]; /* per-column factor on zc */
            }
            var_term += hinge / (2.0 * dd);
            cov_term += (frob / (nm1 * nm1) - diag2) / dd;
            if (dz[w] == NULL) continue;
            gemm(false, false, n, d, n, ck, K, x[w], 0.0, gx);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < d; j++)
                    dz[w][i * d + j] += (ssl_real)(gx[i * d + j] + var[j] * x[w][i * d + j]);
        }
    }
    if (terms) {
        terms[0] = inv;
        terms[1] = var_term;
        terms[2] = cov_term;
    }
    *value = o->sim * inv + o->std * var_term + o->cov * cov_term;
    return 0;
}

/* The losses.h entry points (src/bench.c): one process, AUTO path. */
int64_t ssl_vicreg_work_elems(int64_t n, int64_t d)
{
    struct ssl_vicreg_opts o = ssl_vicreg_defaults();
    return ssl_vicreg_full_work_elems(NULL, n, d, &o);
}

double ssl_vicreg_loss(ssl_real *da, ssl_real *db, const ssl_real *a, const ssl_real *b, int64_t n,
                       int64_t d, const struct ssl_vicreg_weights *w, double *terms, double *work)
{
    struct ssl_vicreg_opts o = ssl_vicreg_defaults();
    o.sim = w->sim;
    o.std = w->std;
    o.cov = w->cov;
    double loss = 0.0;
    SSL_CHECK(ssl_vicreg_full_loss(&loss, terms, da, db, a, b, n, d, &o, NULL, work) == 0);
    return loss;
}

/* ==========================================================================================
 * Zero-CL
 *   Both modes work on s (n, d), standardised per column (FCL) or per row (ICL), and on
 *   t (n, d): FCL t = s W^T (W (d, d) from s^T s / n); ICL t = W s (W (n, n) from s s^T / d),
 *   the transpose of the official (d, n) zca(s^T). c_ii: column (FCL) or row (ICL) dots of
 *   t1, t2. Backward: dt1 = t2 o g (g_i = 2 (c_ii - 1) / norm along i), ds1 = dt1 W (FCL) or
 *   W^T dt1 (ICL), then the standardisation's backward along its groups:
 *     s = xc / (sd + e):  dx = (ds - mean(ds)) / (sd + e) - s sum(ds o s) / (sd (len - 1)).
 * ========================================================================================== */

struct ssl_zerocl_opts ssl_zerocl_defaults(enum ssl_zerocl_mode mode)
{
    return (struct ssl_zerocl_opts){
        .mode = mode, .std_eps = 1e-4, .zca_eps = 0.01, .whiten = NULL};
}

struct zcl_work {
    int64_t m;      /* whitening size: d (FCL) or n (ICL) */
    double *s[2];   /* (n, d): standardised views */
    double *t[2];   /* (n, d): whitened views, then dt */
    double *ds;     /* (n, d) */
    double *w[2];   /* (m, m) */
    double *sd[2];  /* (max(n, d)) unbiased std of each group */
    double *cd;     /* (2 max(n, d)) c_ii, then g_i; group sums */
    double *eig;    /* (m, m) + m + syevd work, or (m, m) for W's U diag */
};

static struct zcl_work zcl_carve(int64_t n, int64_t d, enum ssl_zerocl_mode mode, double *work)
{
    struct zcl_work z;
    z.m = mode == SSL_ZEROCL_FCL ? d : n;
    int64_t q = n > d ? n : d;
    double *p = work;
    for (int w = 0; w < 2; w++, p += n * d) z.s[w] = p;
    for (int w = 0; w < 2; w++, p += n * d) z.t[w] = p;
    z.ds = p;
    p += n * d;
    for (int w = 0; w < 2; w++, p += z.m * z.m) z.w[w] = p;
    for (int w = 0; w < 2; w++, p += q) z.sd[w] = p;
    z.cd = p;
    p += 2 * q;
    z.eig = p;
    return z;
}

/* The global ICL path (several ranks): the gathered views sg, their gradient dsg (N, d), this
 * rank's block rows of G and of W (n, N). */
struct zcl_icl {
    double *sg[2], *dsg, *g_rows, *w_rows[2];
};

static bool zcl_is_global(const struct ssl_loss_ctx *c, const struct ssl_zerocl_opts *o, int64_t n)
{
    return !o->per_rank && ssl_loss_global_rows(c, n) != n;
}

static int64_t zcl_local_elems(int64_t n, int64_t d, int64_t m)
{
    int64_t q = n > d ? n : d;
    return 5 * n * d + 3 * m * m + 4 * q + m + ssl_linalg_syevd_work_elems(m);
}

int64_t ssl_zerocl_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                              const struct ssl_zerocl_opts *o)
{
    struct ssl_zerocl_opts dflt = ssl_zerocl_defaults(SSL_ZEROCL_FCL);
    if (o == NULL) o = &dflt;
    if (o->mode == SSL_ZEROCL_FCL || !zcl_is_global(c, o, n))
        return zcl_local_elems(n, d, o->mode == SSL_ZEROCL_FCL ? d : n);
    int64_t N = ssl_loss_global_rows(c, n);
    return zcl_local_elems(n, d, 1) + 3 * N * d + 3 * n * N;
}

/* Element (g, e) of a group layout: x[g * gs + e * es]; FCL: groups = columns, ICL: rows. */
struct groups {
    int64_t count, len, gs, es;
};

static struct groups zcl_groups(int64_t n, int64_t d, enum ssl_zerocl_mode mode)
{
    return mode == SSL_ZEROCL_FCL ? (struct groups){d, n, 1, d} : (struct groups){n, d, d, 1};
}

/* x -> (x - mean) / (sd + eps) in place along each group; sd (count) = unbiased std over
 * `total` elements per group. cg non-NULL (global FCL): the group sums are summed over the
 * ranks, whose rows together make the groups. acc (count) scratch. */
static int zcl_standardize(double *x, double *sd, double *acc, struct groups g, int64_t total,
                           double eps, const struct ssl_loss_ctx *cg)
{
    for (int64_t k = 0; k < g.count; k++) {
        const double *p = x + k * g.gs;
        acc[k] = 0.0;
        for (int64_t e = 0; e < g.len; e++) acc[k] += p[e * g.es];
    }
    int rc = cg ? ssl_loss_sum(cg, acc, g.count) : 0;
    if (rc) return rc;
    for (int64_t k = 0; k < g.count; k++) {
        double *p = x + k * g.gs, mean = acc[k] / (double)total;
        acc[k] = 0.0;
        for (int64_t e = 0; e < g.len; e++) {
            p[e * g.es] -= mean;
            acc[k] += p[e * g.es] * p[e * g.es];
        }
    }
    rc = cg ? ssl_loss_sum(cg, acc, g.count) : 0;
    if (rc) return rc;
    for (int64_t k = 0; k < g.count; k++) {
        double *p = x + k * g.gs;
        sd[k] = sqrt(acc[k] / (double)(total - 1));
        for (int64_t e = 0; e < g.len; e++) p[e * g.es] /= sd[k] + eps;
    }
    return 0;
}

/* dx += backward of zcl_standardize given ds, s and sd (cg and total as there; acc (2 count)).
 * A constant group (sd = 0) has s = 0, and its std term is dropped there (torch would produce
 * 0 * inf). */
static int zcl_standardize_backward(ssl_real *dx, const double *ds, const double *s,
                                    const double *sd, struct groups g, int64_t total, double eps,
                                    const struct ssl_loss_ctx *cg, double *acc)
{
    double *msum = acc, *dot = acc + g.count;
    for (int64_t k = 0; k < g.count; k++) {
        int64_t o = k * g.gs;
        msum[k] = dot[k] = 0.0;
        for (int64_t e = 0; e < g.len; e++) {
            msum[k] += ds[o + e * g.es];
            dot[k] += ds[o + e * g.es] * s[o + e * g.es];
        }
    }
    int rc = cg ? ssl_loss_sum(cg, acc, 2 * g.count) : 0;
    if (rc) return rc;
    for (int64_t k = 0; k < g.count; k++) {
        int64_t o = k * g.gs;
        double m = msum[k] / (double)total, t = sd[k] + eps;
        double f = sd[k] > 0.0 ? dot[k] / (sd[k] * (double)(total - 1)) : 0.0;
        for (int64_t e = 0; e < g.len; e++) {
            int64_t i = o + e * g.es;
            dx[i] += (ssl_real)((ds[i] - m) / t - s[i] * f);
        }
    }
    return 0;
}

/* W = U diag((l + eps)^-1/2) U^T into w from the symmetric S (m, m), destroyed; l (m) and sw
 * the syevd work follow S in z->eig. cg non-NULL: S is replicated (c->comm->eig). */
static int zcl_zca(double *w, double *S, int64_t m, double eps, const struct ssl_loss_ctx *cg)
{
    double *l = S + m * m, *sw = l + m;
    int rc = ssl_loss_eig(cg, S, l, m, sw);
    if (rc != 0) return rc;
    /* (U D) (U D)^T with D = diag((l + eps)^-1/4): U's columns are scaled in place */
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < m; k++) S[i * m + k] *= 1.0 / sqrt(sqrt(l[k] + eps));
    gemm(false, true, m, m, m, 1.0, S, S, 0.0, w);
    return 0;
}

/* Standardises both views into z.s; computes W into z.w if compute_w. cg non-NULL: the global
 * FCL statistics over N rows (see zcl_standardize). */
static int zcl_prepare(struct zcl_work *z, const ssl_real *a, const ssl_real *b, int64_t n,
                       int64_t d, const struct ssl_zerocl_opts *o, bool compute_w,
                       const struct ssl_loss_ctx *cg)
{
    struct groups g = zcl_groups(n, d, o->mode);
    int64_t total = cg ? ssl_loss_global_rows(cg, n) : g.len;
    SSL_CHECK(total >= 2);
    ssl_loss_to_double(z->s[0], a, n * d);
    ssl_loss_to_double(z->s[1], b, n * d);
    int64_t m = z->m;
    for (int w = 0; w < 2; w++) {
        int rc = zcl_standardize(z->s[w], z->sd[w], z->cd, g, total, o->std_eps, cg);
        if (rc != 0 || !compute_w) {
            if (rc != 0) return rc;
            continue;
        }
        double *S = z->eig;
        if (o->mode == SSL_ZEROCL_FCL) { /* x = s (n, d): x^T x / N */
            gemm(true, false, d, d, n, 1.0 / (double)total, z->s[w], z->s[w], 0.0, S);
            rc = cg ? ssl_loss_sum(cg, S, d * d) : 0;
        } else { /* x = s^T (d, n): x^T x / d = s s^T / d */
            gemm(false, true, n, n, d, 1.0 / (double)d, z->s[w], z->s[w], 0.0, S);
        }
        if (rc == 0) rc = zcl_zca(z->w[w], S, m, o->zca_eps, cg);
        if (rc != 0) return rc;
    }
    return 0;
}

int ssl_zerocl_whitening(double *w, const ssl_real *a, const ssl_real *b, int64_t n, int64_t d,
                         const struct ssl_zerocl_opts *o, double *work)
{
    SSL_CHECK(w != NULL && a != NULL && b != NULL && work != NULL);
    struct ssl_zerocl_opts dflt = ssl_zerocl_defaults(SSL_ZEROCL_FCL);
    if (o == NULL) o = &dflt;
    struct zcl_work z = zcl_carve(n, d, o->mode, work);
    int rc = zcl_prepare(&z, a, b, n, d, o, true, NULL);
    if (rc != 0) return rc;
    memcpy(w, z.w[0], (size_t)(z.m * z.m) * sizeof *w);
    memcpy(w + z.m * z.m, z.w[1], (size_t)(z.m * z.m) * sizeof *w);
    return 0;
}

/* L = sum_k (cd_k / norm - 1)^2 over the k_count entries; cd becomes g_k = dL/dcd_k. */
static double zcl_diag_loss(double *cd, int64_t k_count, double norm)
{
    double L = 0.0;
    for (int64_t k = 0; k < k_count; k++) {
        double ck = cd[k] / norm;
        L += (ck - 1.0) * (ck - 1.0);
        cd[k] = 2.0 * (ck - 1.0) / norm;
    }
    return L;
}

/* dt1 = t2 o g and dt2 = t1 o g, in place (t is not needed any more); g along rows or columns. */
static void zcl_dt(double *t0, double *t1, const double *g, int64_t n, int64_t d, bool by_column)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            double gk = g[by_column ? j : i], a = t0[i * d + j];
            t0[i * d + j] = t1[i * d + j] * gk;
            t1[i * d + j] = a * gk;
        }
}

/* Global ICL on several ranks (redundancy.h): rows standardised locally, the instance Gram's
 * block rows, W's block rows from c->comm->sym_power_rows, the gradient of the gathered rows
 * back through ssl_loss_scatter. */
static int zcl_icl_global(double *value, ssl_real *const dz[2], const ssl_real *a,
                          const ssl_real *b, int64_t n, int64_t d, const struct ssl_zerocl_opts *o,
                          const struct ssl_loss_ctx *c, double *work)
{
    int64_t N = ssl_loss_global_rows(c, n), off = 0, q = n > d ? n : d;
    struct zcl_work z = {.m = N};
    double *p = work;
    for (int w = 0; w < 2; w++, p += n * d) z.s[w] = p;
    for (int w = 0; w < 2; w++, p += n * d) z.t[w] = p;
    z.ds = p, p += n * d;
    for (int w = 0; w < 2; w++, p += q) z.sd[w] = p;
    z.cd = p, p += 2 * q;
    struct zcl_icl iw = {.sg = {p, p + N * d}, .dsg = p + 2 * N * d, .g_rows = p + 3 * N * d};
    iw.w_rows[0] = iw.g_rows + n * N;
    iw.w_rows[1] = iw.w_rows[0] + n * N;
    struct groups g = zcl_groups(n, d, SSL_ZEROCL_ICL);
    const ssl_real *in[2] = {a, b};
    for (int w = 0; w < 2; w++) {
        ssl_loss_to_double(z.s[w], in[w], n * d);
        int rc = zcl_standardize(z.s[w], z.sd[w], z.cd, g, d, o->std_eps, NULL);
        if (rc == 0) rc = ssl_loss_gather(c, z.s[w], n, d, iw.sg[w], &off);
        if (rc != 0) return rc;
        if (o->whiten) { /* (2, N, N) given: this rank's rows */
            memcpy(iw.w_rows[w], o->whiten + w * N * N + off * N, (size_t)(n * N) * sizeof(double));
        } else {
            gemm(false, true, n, N, d, 1.0 / (double)d, z.s[w], iw.sg[w], 0.0, iw.g_rows);
            rc = ssl_loss_sym_power_rows(c, iw.w_rows[w], iw.g_rows, n, N, o->zca_eps, -0.5, NULL);
            if (rc != 0) return rc;
        }
        gemm(false, false, n, d, N, 1.0, iw.w_rows[w], iw.sg[w], 0.0, z.t[w]);
    }
    for (int64_t i = 0; i < n; i++) {
        z.cd[i] = 0.0;
        for (int64_t j = 0; j < d; j++) z.cd[i] += z.t[0][i * d + j] * z.t[1][i * d + j];
    }
    double L = zcl_diag_loss(z.cd, n, (double)d);
    int rc = ssl_loss_sum(c, &L, 1);
    if (rc != 0) return rc;
    *value = L;
    zcl_dt(z.t[0], z.t[1], z.cd, n, d, false);
    for (int w = 0; w < 2; w++) {
        if (dz[w] == NULL) continue;
        /* t = W_rows s_all: d s_all = W_rows^T dt, summed over the ranks' rows */
        gemm(true, false, N, d, n, 1.0, iw.w_rows[w], z.t[w], 0.0, iw.dsg);
        rc = ssl_loss_scatter(c, iw.dsg, n, d, z.ds);
        if (rc == 0)
            rc = zcl_standardize_backward(dz[w], z.ds, z.s[w], z.sd[w], g, d, o->std_eps, NULL,
                                          z.cd);
        if (rc != 0) return rc;
    }
    return 0;
}

int ssl_zerocl_loss(double *value, double *terms, ssl_real *da, ssl_real *db, const ssl_real *a,
                    const ssl_real *b, int64_t n, int64_t d, const struct ssl_zerocl_opts *o,
                    const struct ssl_loss_ctx *c, double *work)
{
    (void)terms; /* Zero-CL has no separate parts */
    SSL_CHECK(value != NULL && a != NULL && b != NULL && work != NULL);
    struct ssl_zerocl_opts dflt = ssl_zerocl_defaults(SSL_ZEROCL_FCL);
    if (o == NULL) o = &dflt;
    *value = NAN; /* until it is known: every failure returns before it is set */
    SSL_CHECK(n >= 1 && d >= 1);
    bool fcl = o->mode == SSL_ZEROCL_FCL, global = zcl_is_global(c, o, n);
    ssl_real *dz[2] = {da, db};
    if (global && !fcl) return zcl_icl_global(value, dz, a, b, n, d, o, c, work);
    const struct ssl_loss_ctx *cg = global ? c : NULL; /* global FCL: statistics over N rows */
    struct zcl_work z = zcl_carve(n, d, o->mode, work);
    int rc = zcl_prepare(&z, a, b, n, d, o, o->whiten == NULL, cg);
    if (cg == NULL && ssl_loss_global_rows(c, n) != n) {
        /* per rank: the whitening can fail on one rank only; agree before the next collective */
        double failed = rc != 0;
        int crc = ssl_loss_sum(c, &failed, 1);
        if (crc != 0) return crc;
        if (failed > 0 && rc == 0) rc = SSL_E_NONFINITE;
    }
    if (rc != 0) return rc;
    int64_t m = z.m;
    const double *W[2] = {o->whiten ? o->whiten : z.w[0], o->whiten ? o->whiten + m * m : z.w[1]};
    int64_t k_count = fcl ? d : n; /* entries of c's diagonal */
    for (int w = 0; w < 2; w++) {
        if (fcl)
            gemm(false, true, n, d, d, 1.0, z.s[w], W[w], 0.0, z.t[w]);
        else
            gemm(false, false, n, d, n, 1.0, W[w], z.s[w], 0.0, z.t[w]);
    }
    for (int64_t k = 0; k < k_count; k++) z.cd[k] = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) z.cd[fcl ? j : i] += z.t[0][i * d + j] * z.t[1][i * d + j];
    rc = ssl_loss_sum(c, z.cd, k_count);
    if (rc != 0) return rc;
    int64_t Ng = ssl_loss_global_rows(c, n);
    double norm;
    if (fcl) {
        norm = (double)Ng;
    } else {
        SSL_CHECKF(Ng % n == 0, "Zero-ICL needs the same rows on every rank (%lld of %lld)",
                   (long long)n, (long long)Ng);
        norm = (double)d * (double)(Ng / n);
    }
    *value = zcl_diag_loss(z.cd, k_count, norm);
    struct groups g = zcl_groups(n, d, o->mode);
    int64_t total = cg ? Ng : g.len;
    zcl_dt(z.t[0], z.t[1], z.cd, n, d, fcl);
    for (int w = 0; w < 2; w++) {
        if (dz[w] == NULL) continue;
        if (fcl) /* t = s W^T: ds = dt W */
            gemm(false, false, n, d, d, 1.0, z.t[w], W[w], 0.0, z.ds);
        else /* t = W s: ds = W^T dt */
            gemm(true, false, n, d, n, 1.0, W[w], z.t[w], 0.0, z.ds);
        /* z.cd (g) is consumed by zcl_dt: its 2 q doubles are free for the group sums */
        rc = zcl_standardize_backward(dz[w], z.ds, z.s[w], z.sd[w], g, total, o->std_eps, cg,
                                      z.cd);
        if (rc != 0) return rc;
    }
    return 0;
}
