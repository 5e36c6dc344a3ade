/* metrics.c: collapse metrics of an embedding batch (see metrics.h for every definition and
 * its source). Invariants: nothing is allocated (the workspace, LAPACK's included, is the
 * caller's); inputs are read only; all accumulation is in double.
 *
 * Workspace layout for an (n, d) input, m = min(n, d):
 *   x      (n, d)  fp64 copy of z, centred and/or row-normalised in place
 *   g      (m, m)  X^T X (d <= n) or X X^T (n < d), column-major upper triangle
 *   eig    (m)     eigenvalues, descending
 *   s      (2m)    two singular-value vectors for ssl_metrics_compute
 *   lwork, liwork  dsyevd's workspaces (sizes for jobz = 'V', a safe superset of 'N') */
#include "metrics.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stddef.h>

#include "check.h"

/* torch F.normalize's floor on the norm. */
#define NORM_FLOOR 1e-12
/* WassersteinSSL code/{BYOL,BarlowTwins,MoCov2}/metric.py adds 1e-8 to every eigenvalue before the sqrt. */
#define W2_EIG_EPS 1e-8
/* RankMe paper, eq. 1. */
#define RANKME_EPS 1e-7

/* dsyevd's workspace sizes for jobz = 'V' (LAPACK documentation of DSYEVD). */
static int64_t syevd_lwork(int64_t m) { return 1 + 6 * m + 2 * m * m; }
static int64_t syevd_liwork(int64_t m) { return 3 + 5 * m; }
static int64_t syevd_iwork_doubles(int64_t m)
{
    int64_t n_bytes = syevd_liwork(m) * (int64_t)sizeof(lapack_int);
    return (n_bytes + (int64_t)sizeof(double) - 1) / (int64_t)sizeof(double);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

int64_t ssl_metrics_work_elems(int64_t n, int64_t d)
{
    SSL_CHECK(n >= 1 && d >= 1);
    int64_t m = min64(n, d);
    return n * d + m * m + 3 * m + syevd_lwork(m) + syevd_iwork_doubles(m);
}

struct mwork {
    double *x;  /* (n, d) */
    double *g;  /* (m, m) */
    double *eig; /* (m) */
    double *s;  /* (2 m) */
    double *lwork;
    lapack_int *iwork;
};

static struct mwork carve(double *work, int64_t n, int64_t d)
{
    int64_t m = min64(n, d);
    struct mwork w;
    w.x = work;
    w.g = w.x + n * d;
    w.eig = w.g + m * m;
    w.s = w.eig + m;
    w.lwork = w.s + 2 * m;
    w.iwork = (lapack_int *)(void *)(w.lwork + syevd_lwork(m));
    return w;
}

/* x = z in double; false if z holds a non-finite value. */
static bool load(double *x, const ssl_real *z, int64_t n, int64_t d)
{
    bool finite = true;
    for (int64_t i = 0; i < n * d; i++) {
        x[i] = (double)z[i];
        if (!isfinite(x[i])) finite = false;
    }
    return finite;
}

static void normalise_rows(double *x, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++) {
        double *r = x + i * d;
        double ss = 0.0;
        for (int64_t j = 0; j < d; j++) ss += r[j] * r[j];
        double inv = 1.0 / fmax(sqrt(ss), NORM_FLOOR);
        for (int64_t j = 0; j < d; j++) r[j] *= inv;
    }
}

/* Subtracts the column means from x; mean (d) receives them if not NULL. */
static void centre_cols(double *x, double *mean, int64_t n, int64_t d)
{
    for (int64_t j = 0; j < d; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += x[i * d + j];
        double mu = s / (double)n;
        for (int64_t i = 0; i < n; i++) x[i * d + j] -= mu;
        if (mean) mean[j] = mu;
    }
}

/* The min(n, d) eigenvalues of X^T X (equivalently X X^T) into w->eig, descending, not
 * clamped. Row-major X (n, d) is column-major A = X^T (d, n), lda = d: X^T X = A A^T (syrk
 * NoTrans), X X^T = A^T A (syrk Trans). Column-major throughout so that LAPACKE does not
 * transpose into a buffer of its own. Returns 0 or SSL_E_NONFINITE. */
static int gram_eig(const struct mwork *w, int64_t n, int64_t d)
{
    int64_t m = min64(n, d);
    if (d <= n)
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, ssl_int(d), ssl_int(n), 1.0, w->x,
                    ssl_int(d), 0.0, w->g, ssl_int(m));
    else
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, ssl_int(n), ssl_int(d), 1.0, w->x,
                    ssl_int(d), 0.0, w->g, ssl_int(m));
    lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'N', 'U', ssl_int(m), w->g,
                                          ssl_int(m), w->eig, w->lwork,
                                          ssl_int(syevd_lwork(m)), w->iwork,
                                          ssl_int(syevd_liwork(m)));
    if (info != 0) return SSL_E_NONFINITE;
    for (int64_t i = 0, j = m - 1; i < j; i++, j--) {
        double t = w->eig[i];
        w->eig[i] = w->eig[j];
        w->eig[j] = t;
    }
    for (int64_t k = 0; k < m; k++)
        if (!isfinite(w->eig[k])) return SSL_E_NONFINITE;
    return 0;
}

int ssl_metric_spectrum(double *eig_desc, const ssl_real *z, int64_t n, int64_t d, bool centred,
                        double *work)
{
    SSL_CHECK(n >= 1 && d >= 1);
    struct mwork w = carve(work, n, d);
    int64_t m = min64(n, d);
    if (!load(w.x, z, n, d)) return SSL_E_NONFINITE;
    if (centred) centre_cols(w.x, NULL, n, d);
    int rc = gram_eig(&w, n, d);
    if (rc != 0) return rc;
    double scale = centred ? 1.0 / (double)n : 1.0;
    for (int64_t k = 0; k < m; k++) eig_desc[k] = fmax(w.eig[k], 0.0) * scale;
    return 0;
}

/* W2^2 argument on an x already loaded into w->x (raw rows). */
static double w2_sq_loaded(const struct mwork *w, int64_t n, int64_t d)
{
    normalise_rows(w->x, n, d);
    double mu_sq = 0.0, tr = 0.0;
    for (int64_t j = 0; j < d; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += w->x[i * d + j];
        double mu = s / (double)n;
        mu_sq += mu * mu;
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double c = w->x[i * d + j] - mu;
            w->x[i * d + j] = c;
            ss += c * c;
        }
        tr += ss / (double)n;
    }
    if (gram_eig(w, n, d) != 0) return NAN;
    int64_t m = min64(n, d);
    double sum_sqrt = 0.0;
    for (int64_t k = 0; k < m; k++) sum_sqrt += sqrt(fabs(w->eig[k]) / (double)n + W2_EIG_EPS);
    /* The d - m eigenvalues of the (d, d) Sigma that a wide batch (n < d) leaves out are
     * exactly 0; numpy computes them as rounding noise, which |.| + 1e-8 makes 1e-8 too. */
    sum_sqrt += (double)(d - m) * sqrt(W2_EIG_EPS);
    return mu_sq + 1.0 + tr - 2.0 / sqrt((double)d) * sum_sqrt;
}

double ssl_metric_w2_sq(const ssl_real *z, int64_t n, int64_t d, double *work)
{
    SSL_CHECK(n >= 1 && d >= 1);
    struct mwork w = carve(work, n, d);
    if (!load(w.x, z, n, d)) return NAN;
    return w2_sq_loaded(&w, n, d);
}

double ssl_metric_w2(const ssl_real *z, int64_t n, int64_t d, double *work)
{
    /* math.sqrt in the Python raises on a negative argument; it is negative only at the
     * 1e-8 level when the moments are exactly (0, I/d), so clamp (LOSSES-SPEC 1a). */
    double a = ssl_metric_w2_sq(z, n, d, work);
    if (isnan(a)) return a;
    return sqrt(fmax(a, 0.0));
}

double ssl_metric_uniformity(const ssl_real *z, int64_t n, int64_t d, double t)
{
    SSL_CHECK(d >= 1);
    if (n < 2) return NAN;
    /* Online log-sum-exp over the pairs: mx is the largest exponent so far and acc the sum of
     * exp(a - mx); when a new maximum comes, the old sum is rescaled. Exponents are <= 0 and
     * the first pair is (0, 1), so mx starts finite. Norms are recomputed per pair rather
     * than stored, to need no workspace; the cost is dominated by the pair loop anyway. */
    double mx = -INFINITY, acc = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const ssl_real *a = z + i * d;
        double na = 0.0;
        for (int64_t k = 0; k < d; k++) na += (double)a[k] * (double)a[k];
        double ia = 1.0 / fmax(sqrt(na), NORM_FLOOR);
        for (int64_t j = i + 1; j < n; j++) {
            const ssl_real *b = z + j * d;
            double nb = 0.0;
            for (int64_t k = 0; k < d; k++) nb += (double)b[k] * (double)b[k];
            double ib = 1.0 / fmax(sqrt(nb), NORM_FLOOR);
            double dist2 = 0.0;
            for (int64_t k = 0; k < d; k++) {
                double diff = (double)a[k] * ia - (double)b[k] * ib;
                dist2 += diff * diff;
            }
            double e = -t * dist2;
            if (e <= mx) {
                acc += exp(e - mx);
            } else {
                acc = acc * exp(mx - e) + 1.0;
                mx = e;
            }
        }
    }
    double n_pairs = (double)n * (double)(n - 1) / 2.0;
    return mx + log(acc) - log(n_pairs);
}

double ssl_metric_alignment(const ssl_real *z1, const ssl_real *z2, int64_t n, int64_t d,
                            double alpha)
{
    SSL_CHECK(n >= 1 && d >= 1);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const ssl_real *a = z1 + i * d, *b = z2 + i * d;
        double na = 0.0, nb = 0.0;
        for (int64_t k = 0; k < d; k++) {
            na += (double)a[k] * (double)a[k];
            nb += (double)b[k] * (double)b[k];
        }
        double ia = 1.0 / fmax(sqrt(na), NORM_FLOOR), ib = 1.0 / fmax(sqrt(nb), NORM_FLOOR);
        double dist2 = 0.0;
        for (int64_t k = 0; k < d; k++) {
            double diff = (double)a[k] * ia - (double)b[k] * ib;
            dist2 += diff * diff;
        }
        /* alpha = 2 (the default) without a sqrt-then-square rounding */
        sum += alpha == 2.0 ? dist2 : pow(sqrt(dist2), alpha);
    }
    return sum / (double)n;
}

double ssl_metric_effective_rank(const double *s, int64_t m)
{
    double l1 = 0.0;
    for (int64_t k = 0; k < m; k++) l1 += s[k];
    if (!(l1 > 0.0)) return 0.0;
    double h = 0.0;
    for (int64_t k = 0; k < m; k++) {
        double p = s[k] / l1;
        if (p > 0.0) h -= p * log(p); /* 0 log 0 = 0 */
    }
    return exp(h);
}

double ssl_metric_rankme(const double *s, int64_t m)
{
    double l1 = 0.0;
    for (int64_t k = 0; k < m; k++) l1 += s[k];
    if (!(l1 > 0.0)) return 0.0;
    double h = 0.0;
    for (int64_t k = 0; k < m; k++) {
        double p = s[k] / l1 + RANKME_EPS;
        h -= p * log(p);
    }
    return exp(h);
}

/* Singular values s (m) from the descending eigenvalues eig of X^T X. An eigenvalue below
 * max(n, d) * DBL_EPSILON * lam_max is rounding noise of forming and solving X^T X (it would
 * otherwise surface as a singular value of ~1e-8 sigma_max, which biases sum(sigma) and the
 * entropies of an exactly low-rank Z); it is set to 0. The floor's sqrt,
 * sqrt(max(n,d) DBL_EPSILON) sigma_max, is always below the rank tolerance
 * max(n,d) FLT_EPSILON sigma_max, so no rank changes because of it. */
static void singular_values(double *s, const double *eig, int64_t m, int64_t n, int64_t d)
{
    double floor = (double)max64(n, d) * DBL_EPSILON * fmax(eig[0], 0.0);
    for (int64_t k = 0; k < m; k++) s[k] = eig[k] > floor ? sqrt(eig[k]) : 0.0;
}

/* #(s_k > tol) */
static double count_above(const double *s, int64_t m, double tol)
{
    int64_t c = 0;
    for (int64_t k = 0; k < m; k++)
        if (s[k] > tol) c++;
    return (double)c;
}

int ssl_metrics_compute(struct ssl_metrics *out, const ssl_real *z, int64_t n, int64_t d,
                        double *work)
{
    SSL_CHECK(n >= 2 && d >= 1);
    double nan = NAN;
    const struct ssl_metrics all_nan = {nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan};
    *out = all_nan;
    struct mwork w = carve(work, n, d);
    int64_t m = min64(n, d);
    double *s_raw = w.s, *s_c = w.s + m;
    /* FLT_EPSILON whatever ssl_real is: LOSSES-SPEC 14 fixes eps_float32, so that the f32
     * program and the f64 tests report the same rank. */
    double rank_scale = (double)max64(n, d) * (double)FLT_EPSILON;

    /* Uncentred: sigma(z). */
    if (!load(w.x, z, n, d)) return SSL_E_NONFINITE;
    if (gram_eig(&w, n, d) != 0) goto fail;
    singular_values(s_raw, w.eig, m, n, d);

    /* Centred: sigma(Z_c), and ||Z_c||_F^2 straight from the data. */
    load(w.x, z, n, d);
    centre_cols(w.x, NULL, n, d);
    double fro2 = 0.0;
    for (int64_t i = 0; i < n * d; i++) fro2 += w.x[i] * w.x[i];
    if (gram_eig(&w, n, d) != 0) goto fail;
    singular_values(s_c, w.eig, m, n, d);

    out->rank = count_above(s_c, m, s_c[0] * rank_scale);
    out->rank_raw = count_above(s_raw, m, s_raw[0] * rank_scale);
    out->rank_tol01 = count_above(s_raw, m, 0.1);
    /* A zero Z_c (every row equal) has no sigma_max: its stable ranks are 0, like its rank. */
    double lam_max = s_c[0] * s_c[0];
    out->stable_rank = lam_max > 0.0 ? fro2 / lam_max : 0.0;
    double sum_sc = 0.0;
    for (int64_t k = 0; k < m; k++) sum_sc += s_c[k];
    out->stable_rank_sv = s_c[0] > 0.0 ? sum_sc / s_c[0] : 0.0;
    out->effective_rank = ssl_metric_effective_rank(s_raw, m);
    /* Eigenvalues of the biased covariance, sigma(Z_c)^2 / n: the 1/n cancels in p_k. */
    for (int64_t k = 0; k < m; k++) w.eig[k] = s_c[k] * s_c[k] / (double)n;
    out->effective_rank_cov = ssl_metric_effective_rank(w.eig, m);
    out->rankme = ssl_metric_rankme(s_raw, m);

    /* z_std_mean: Chen & He 2021 (SimSiam, Sec. 4.1 "Empirical study", Fig. 2 middle) monitor
     * the per-channel std of the l2-normalised output; unbiased (n - 1) as torch.std. */
    load(w.x, z, n, d);
    normalise_rows(w.x, n, d);
    double std_sum = 0.0;
    for (int64_t j = 0; j < d; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += w.x[i * d + j];
        double mu = s / (double)n, ss = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double c = w.x[i * d + j] - mu;
            ss += c * c;
        }
        std_sum += sqrt(ss / (double)(n - 1));
    }
    out->z_std_mean = std_sum / (double)d;

    load(w.x, z, n, d);
    out->w2 = w2_sq_loaded(&w, n, d);
    if (isnan(out->w2)) goto fail;
    out->w2 = sqrt(fmax(out->w2, 0.0));
    out->uniformity = ssl_metric_uniformity(z, n, d, 2.0);
    return 0;
fail:
    *out = all_nan;
    return SSL_E_NONFINITE;
}
