/* linalg.c: fp64 covariance, symmetric eigendecomposition and its backward, and whitening
 * transforms with their backward (API and formulas in linalg.h).
 *
 * Invariants: nothing here allocates (LAPACKE_*_work with workspaces carved from the
 * caller's double buffer; column-major calls on symmetric or square data so that LAPACKE does
 * not transpose into a buffer of its own); every backward accumulates into its output; every
 * count passed to BLAS/LAPACK goes through ssl_int. Sources of the formulas are cited at each
 * routine. */
#include "linalg.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "check.h"

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------ */

/* C (m, k) = alpha op(A) op(B) + beta C, all row-major with leading dimension = width
 * (as in src/layers/whiten.c). */
static void dgemm(bool ta, bool tb, int64_t m, int64_t k, int64_t inner, double alpha,
                  const double *A, const double *B, double beta, double *C)
{
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                ssl_int(m), ssl_int(k), ssl_int(inner), alpha, A, ssl_int(ta ? m : inner), B,
                ssl_int(tb ? inner : k), beta, C, ssl_int(k));
}

/* B (rows, d) := B op(L)^{-1} (right side) or op(L)^{-1} B (left side, rows = d), L (d, d)
 * lower triangular, row-major. */
static void trsm(bool right, bool trans, int64_t rows, int64_t d, const double *L, double *B)
{
    int64_t cols = right ? d : rows;
    int64_t m = right ? rows : d;
    cblas_dtrsm(CblasRowMajor, right ? CblasRight : CblasLeft, CblasLower,
                trans ? CblasTrans : CblasNoTrans, CblasNonUnit, ssl_int(m), ssl_int(cols), 1.0,
                L, ssl_int(d), B, ssl_int(cols));
}

/* a (m, m) := (a + a^T) / 2. */
static void symmetrise(double *a, int64_t m)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < i; j++) {
            double s = 0.5 * (a[i * m + j] + a[j * m + i]);
            a[i * m + j] = a[j * m + i] = s;
        }
}

static bool all_finite(const double *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return false;
    return true;
}

/* ------------------------------------------------------------------------------------------
 * Covariance
 * ------------------------------------------------------------------------------------------ */

double ssl_linalg_cov_scale(int64_t n, bool unbiased)
{
    SSL_CHECK(unbiased ? n >= 2 : n >= 1);
    return 1.0 / (double)(unbiased ? n - 1 : n);
}

int64_t ssl_linalg_cov_work_elems(int64_t n, int64_t d) { return n * d; }

/* mean (d), xc (n, d) = x - 1 mean^T, sigma (d, d) = c xc^T xc. */
static void cov_into(double *sigma, double *mean, double *xc, const double *x, int64_t n,
                     int64_t d, bool unbiased)
{
    double c = ssl_linalg_cov_scale(n, unbiased);
    for (int64_t j = 0; j < d; j++) mean[j] = 0.0;
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < d; j++) mean[j] += x[r * d + j];
    for (int64_t j = 0; j < d; j++) mean[j] /= (double)n;
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < d; j++) xc[r * d + j] = x[r * d + j] - mean[j];
    /* dsyrk does half the flops of dgemm and only writes the upper triangle; mirroring it
     * makes sigma exactly symmetric, which the eigen and Cholesky routines rely on. */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, ssl_int(d), ssl_int(n), c, xc,
                ssl_int(d), 0.0, sigma, ssl_int(d));
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < i; j++) sigma[i * d + j] = sigma[j * d + i];
}

void ssl_linalg_cov(double *sigma, double *mean, const double *x, int64_t n, int64_t d,
                    bool unbiased, double *work)
{
    SSL_CHECK(n > 0 && d > 0);
    cov_into(sigma, mean, work, x, n, d, unbiased);
}

int64_t ssl_linalg_cov_backward_work_elems(int64_t n, int64_t d) { return n * d + d * d; }

/* dx += c xc (dsigma + dsigma^T) + 1 dmean^T / n, with xc given; tmp (d, d). */
static void cov_backward_xc(double *dx, const double *dsigma, const double *dmean,
                            const double *xc, int64_t n, int64_t d, bool unbiased, double *tmp)
{
    double c = ssl_linalg_cov_scale(n, unbiased);
    if (dsigma) {
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++) tmp[i * d + j] = dsigma[i * d + j] + dsigma[j * d + i];
        dgemm(false, false, n, d, d, c, xc, tmp, 1.0, dx);
    }
    if (dmean)
        for (int64_t r = 0; r < n; r++)
            for (int64_t j = 0; j < d; j++) dx[r * d + j] += dmean[j] / (double)n;
}

void ssl_linalg_cov_backward(double *dx, const double *dsigma, const double *dmean,
                             const double *x, const double *mean, int64_t n, int64_t d,
                             bool unbiased, double *work)
{
    SSL_CHECK(n > 0 && d > 0);
    if (!dx) return;
    double *xc = work, *tmp = work + n * d;
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < d; j++) xc[r * d + j] = x[r * d + j] - mean[j];
    cov_backward_xc(dx, dsigma, dmean, xc, n, d, unbiased, tmp);
}

/* ------------------------------------------------------------------------------------------
 * Eigendecomposition
 * ------------------------------------------------------------------------------------------ */

/* dsyevd's workspace sizes for jobz = 'V' (LAPACK documentation of DSYEVD). */
static int64_t syevd_lwork(int64_t m) { return 1 + 6 * m + 2 * m * m; }
static int64_t syevd_liwork(int64_t m) { return 3 + 5 * m; }

int64_t ssl_linalg_syevd_work_elems(int64_t m)
{
    int64_t iwork_bytes = syevd_liwork(m) * (int64_t)sizeof(lapack_int);
    return syevd_lwork(m) + (iwork_bytes + (int64_t)sizeof(double) - 1) / (int64_t)sizeof(double);
}

int ssl_linalg_syevd(double *s, double *l, int64_t m, double *work)
{
    SSL_CHECK(m > 0);
    if (!all_finite(s, m * m)) return SSL_E_NONFINITE;
    /* A double slot is at least as aligned as a lapack_int. */
    lapack_int *iwork = (lapack_int *)(void *)(work + syevd_lwork(m));
    /* Column-major on a symmetric matrix reads the same data; on return s holds U
     * column-major, i.e. U^T row-major. */
    lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'L', ssl_int(m), s, ssl_int(m),
                                          l, work, ssl_int(syevd_lwork(m)), iwork,
                                          ssl_int(syevd_liwork(m)));
    if (info != 0 || !all_finite(l, m)) return SSL_E_NONFINITE;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < i; j++) {
            double t = s[i * m + j];
            s[i * m + j] = s[j * m + i];
            s[j * m + i] = t;
        }
    /* Sign convention: largest-magnitude entry of each column positive. LAPACK's signs depend
     * on the algorithm's path; a fixed rule makes PCA whitening reproducible and locally
     * smooth (so finite differences see the function the backward differentiates). */
    for (int64_t k = 0; k < m; k++) {
        int64_t arg = 0;
        for (int64_t i = 1; i < m; i++)
            if (fabs(s[i * m + k]) > fabs(s[arg * m + k])) arg = i;
        if (s[arg * m + k] < 0.0)
            for (int64_t i = 0; i < m; i++) s[i * m + k] = -s[i * m + k];
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Backward of functions of the eigendecomposition
 * ------------------------------------------------------------------------------------------ */

static bool eig_tie(double a, double b)
{
    return fabs(a - b) <= SSL_LINALG_EIG_TIE * fmax(fabs(a), fabs(b));
}

int64_t ssl_linalg_spectral_backward_work_elems(int64_t m) { return 2 * m * m; }

void ssl_linalg_spectral_backward(double *ds, const double *df, const double *u,
                                  const double *l, const double *fl, const double *dfl,
                                  int64_t m, double *work)
{
    SSL_CHECK(m > 0);
    if (!ds) return;
    double *a = work, *t = work + m * m;
    memcpy(a, df, (size_t)(m * m) * sizeof *a);
    symmetrise(a, m);                         /* F is symmetric: only sym(dF) counts */
    dgemm(true, false, m, m, m, 1.0, u, a, 0.0, t);  /* U^T A */
    dgemm(false, false, m, m, m, 1.0, t, u, 0.0, a); /* U^T A U */
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) {
            /* Daleckii-Krein kernel (the first divided difference of f); the mean
             * derivative replaces it where it would cancel (see SSL_LINALG_EIG_TIE). */
            double k = eig_tie(l[i], l[j]) ? 0.5 * (dfl[i] + dfl[j])
                                            : (fl[i] - fl[j]) / (l[i] - l[j]);
            a[i * m + j] *= k;
        }
    dgemm(false, false, m, m, m, 1.0, u, a, 0.0, t); /* U M */
    dgemm(false, true, m, m, m, 1.0, t, u, 1.0, ds); /* += U M U^T */
}

int64_t ssl_linalg_eigsum_backward_work_elems(int64_t m) { return m * m; }

void ssl_linalg_eigsum_backward(double *ds, double dout, const double *u, const double *dg,
                                int64_t m, double *work)
{
    SSL_CHECK(m > 0);
    if (!ds) return;
    /* dl_k = u_k^T dS u_k for a symmetric perturbation (first-order perturbation theory,
     * valid even for repeated eigenvalues because the sum is symmetric in them). */
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < m; k++) work[i * m + k] = u[i * m + k] * dg[k];
    dgemm(false, true, m, m, m, dout, work, u, 1.0, ds);
}

int64_t ssl_linalg_eigh_backward_work_elems(int64_t m) { return 2 * m * m; }

void ssl_linalg_eigh_backward(double *ds, const double *dl, const double *du, const double *u,
                              const double *l, int64_t m, double *work)
{
    SSL_CHECK(m > 0);
    if (!ds) return;
    double *a = work, *t = work + m * m;
    if (du)
        dgemm(true, false, m, m, m, 1.0, u, du, 0.0, a); /* U^T dU */
    else
        memset(a, 0, (size_t)(m * m) * sizeof *a);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) {
            if (i == j)
                a[i * m + j] = dl ? dl[i] : 0.0;
            else
                a[i * m + j] = eig_tie(l[i], l[j]) ? 0.0 : a[i * m + j] / (l[j] - l[i]);
        }
    dgemm(false, false, m, m, m, 1.0, u, a, 0.0, t); /* U M */
    dgemm(false, true, m, m, m, 1.0, t, u, 0.0, a);  /* U M U^T */
    symmetrise(a, m);
    for (int64_t i = 0; i < m * m; i++) ds[i] += a[i];
}

/* ------------------------------------------------------------------------------------------
 * Whitening
 * ------------------------------------------------------------------------------------------ */

const char *ssl_whiten_kind_name(enum ssl_whiten_kind kind)
{
    switch (kind) {
    case SSL_WHITEN_NONE: return "none";
    case SSL_WHITEN_BN: return "bn";
    case SSL_WHITEN_CHOLESKY: return "cholesky";
    case SSL_WHITEN_ZCA: return "zca";
    case SSL_WHITEN_PCA: return "pca";
    }
    return NULL;
}

int64_t ssl_linalg_whiten_saved_elems(int64_t d) { return 2 * d + d * d; }

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

int64_t ssl_linalg_whiten_work_elems(int64_t n, int64_t d)
{
    int64_t sub = max64(ssl_linalg_syevd_work_elems(d), 2 * d * d);
    return 3 * n * d + 3 * d * d + 2 * d + sub;
}

/* Pointers into the work buffer: three (n, d) blocks, three (d, d) blocks, and a tail for
 * dsyevd's workspaces or a routine's own (d, d) temporaries. */
struct wwork {
    double *xc, *a, *b; /* (n, d) each */
    double *m[3];       /* (d, d) each */
    double *vec;        /* (2 d) */
    double *sub;
};

static struct wwork carve(double *work, int64_t n, int64_t d)
{
    struct wwork w;
    w.xc = work;
    w.a = w.xc + n * d;
    w.b = w.a + n * d;
    for (int k = 0; k < 3; k++) w.m[k] = w.b + n * d + k * d * d;
    w.vec = w.m[2] + d * d;
    w.sub = w.vec + 2 * d;
    return w;
}

/* The saved state's parts (linalg.h): mean (d) | vals (d) | mat (d, d). */
struct wsaved {
    double *mean, *vals, *mat;
};

struct wsaved_const {
    const double *mean, *vals, *mat;
};

static struct wsaved saved_view(double *s, int64_t d)
{
    return (struct wsaved){.mean = s, .vals = s + d, .mat = s + 2 * d};
}

static struct wsaved_const saved_view_const(const double *s, int64_t d)
{
    return (struct wsaved_const){.mean = s, .vals = s + d, .mat = s + 2 * d};
}

/* y (n, d) = a (n, d) B (d, d). */
static void right_mul(double *y, const double *a, const double *b, int64_t n, int64_t d)
{
    dgemm(false, false, n, d, d, 1.0, a, b, 0.0, y);
}

/* Eigenvalues l (ascending) of a covariance must be clearly positive: l_min > d u l_max, the
 * usual numerical-rank tolerance (as src/layers/whiten.c); below it l^-1/2 is noise. */
static bool eig_rank_ok(const double *l, int64_t d)
{
    return l[0] > (double)d * DBL_EPSILON * l[d - 1];
}

/* W (d, d) = U diag(l^-1/2) U^T; tmp (d, d). */
static void zca_matrix(double *w, double *tmp, const double *u, const double *l, int64_t d)
{
    for (int64_t i = 0; i < d; i++)
        for (int64_t k = 0; k < d; k++) tmp[i * d + k] = u[i * d + k] / sqrt(l[k]);
    dgemm(false, true, d, d, d, 1.0, tmp, u, 0.0, w);
}

int ssl_linalg_whiten_forward(enum ssl_whiten_kind kind, double *y, double *saved,
                              const double *x, int64_t n, int64_t d, bool unbiased, double eps,
                              double *work)
{
    SSL_CHECK(n > 0 && d > 0 && eps >= 0.0 && eps < 1.0);
    SSL_CHECK(ssl_whiten_kind_name(kind) != NULL);
    if (kind == SSL_WHITEN_NONE) {
        memcpy(y, x, (size_t)(n * d) * sizeof *y);
        return 0;
    }
    struct wwork w = carve(work, n, d);
    struct wsaved sv = saved_view(saved, d);
    double *sig = w.m[0];
    cov_into(sig, sv.mean, w.xc, x, n, d, unbiased);
    if (!all_finite(sig, d * d)) return SSL_E_NONFINITE;
    /* Sigma' = (1 - eps) Sigma + eps I (LOSSES-SPEC 3; htdt/self-supervised
     * methods/whitening.py: `f_cov_shrinked = (1 - self.eps) * f_cov + eps * eye`). */
    for (int64_t i = 0; i < d * d; i++) sig[i] *= 1.0 - eps;
    for (int64_t i = 0; i < d; i++) sig[i * d + i] += eps;
    memset(sv.vals, 0, (size_t)d * sizeof *sv.vals);
    memset(sv.mat, 0, (size_t)(d * d) * sizeof *sv.mat);

    switch (kind) {
    case SSL_WHITEN_BN: {
        for (int64_t j = 0; j < d; j++) {
            if (!(sig[j * d + j] > 0.0)) return SSL_E_NONFINITE;
            sv.vals[j] = sqrt(sig[j * d + j]);
        }
        for (int64_t r = 0; r < n; r++)
            for (int64_t j = 0; j < d; j++) y[r * d + j] = w.xc[r * d + j] / sv.vals[j];
        return 0;
    }
    case SSL_WHITEN_CHOLESKY: {
        double *L = sv.mat, max_diag = 0.0;
        for (int64_t j = 0; j < d; j++) max_diag = fmax(max_diag, sig[j * d + j]);
        /* Row-major lower = column-major upper of the same (symmetric) array: dpotrf 'U'
         * column-major leaves R with Sigma = R^T R, and R^T row-major is L, no copy. */
        memcpy(L, sig, (size_t)(d * d) * sizeof *L);
        lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', ssl_int(d), L, ssl_int(d));
        if (info != 0) return SSL_E_NONFINITE;
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = i + 1; j < d; j++) L[i * d + j] = 0.0;
        /* A pivot L_jj^2 at the rounding level of the largest variance means Sigma' is
         * singular to working precision: dpotrf still "succeeds" with a noise pivot. */
        for (int64_t j = 0; j < d; j++)
            if (!(L[j * d + j] * L[j * d + j] > (double)d * DBL_EPSILON * max_diag))
                return SSL_E_NONFINITE;
        /* Y = Xc L^{-T}, i.e. z_k = L^{-1} xc_k (W-MSE: W = L^{-1}, Z = xn W^T). */
        memcpy(y, w.xc, (size_t)(n * d) * sizeof *y);
        trsm(true, true, n, d, L, y);
        return 0;
    }
    case SSL_WHITEN_ZCA: {
        memcpy(sv.mat, sig, (size_t)(d * d) * sizeof *sv.mat);
        int rc = ssl_linalg_syevd(sv.mat, sv.vals, d, w.sub);
        if (rc) return rc;
        if (!eig_rank_ok(sv.vals, d)) return SSL_E_NONFINITE;
        zca_matrix(w.m[1], w.m[2], sv.mat, sv.vals, d);
        right_mul(y, w.xc, w.m[1], n, d);
        return 0;
    }
    case SSL_WHITEN_PCA: {
        double *u = w.m[1], *l = w.m[2]; /* l uses the first d elements */
        memcpy(u, sig, (size_t)(d * d) * sizeof *u);
        int rc = ssl_linalg_syevd(u, l, d, w.sub);
        if (rc) return rc;
        if (!eig_rank_ok(l, d)) return SSL_E_NONFINITE;
        /* Decreasing order: column k of V is column d-1-k of U. */
        for (int64_t k = 0; k < d; k++) {
            sv.vals[k] = l[d - 1 - k];
            for (int64_t i = 0; i < d; i++) sv.mat[i * d + k] = u[i * d + d - 1 - k];
        }
        for (int64_t i = 0; i < d; i++)
            for (int64_t k = 0; k < d; k++) u[i * d + k] = sv.mat[i * d + k] / sqrt(sv.vals[k]);
        right_mul(y, w.xc, u, n, d);
        return 0;
    }
    case SSL_WHITEN_NONE: break;
    }
    return 0;
}

void ssl_linalg_whiten_backward(enum ssl_whiten_kind kind, double *dx, const double *dy,
                                const double *x, const double *saved, int64_t n, int64_t d,
                                bool unbiased, double eps, double *work)
{
    SSL_CHECK(n > 0 && d > 0 && eps >= 0.0 && eps < 1.0);
    SSL_CHECK(ssl_whiten_kind_name(kind) != NULL);
    if (!dx) return;
    if (kind == SSL_WHITEN_NONE) {
        for (int64_t i = 0; i < n * d; i++) dx[i] += dy[i];
        return;
    }
    struct wwork w = carve(work, n, d);
    struct wsaved_const sv = saved_view_const(saved, d);
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < d; j++) w.xc[r * d + j] = x[r * d + j] - sv.mean[j];
    double *g = w.a;      /* (n, d) dXc through the direct path Y(Xc) at fixed Sigma' */
    double *dsig = w.m[0]; /* (d, d) dL/dSigma' */
    memset(dsig, 0, (size_t)(d * d) * sizeof *dsig);

    switch (kind) {
    case SSL_WHITEN_BN: {
        /* y_rj = xc_rj / s_j, s_j = sqrt(Sigma'_jj): ds_j = -sum_r dy_rj y_rj / s_j,
         * dSigma'_jj = ds_j / (2 s_j). */
        for (int64_t j = 0; j < d; j++) {
            double acc = 0.0, s = sv.vals[j];
            for (int64_t r = 0; r < n; r++) {
                g[r * d + j] = dy[r * d + j] / s;
                acc += dy[r * d + j] * w.xc[r * d + j];
            }
            dsig[j * d + j] = -acc / (2.0 * s * s * s);
        }
        break;
    }
    case SSL_WHITEN_CHOLESKY: {
        /* Y = Xc L^{-T} = Xc W^T, W = L^{-1}.
         *   direct:  G = dY L^{-1};
         *   dW = dY^T Xc, dL = -W^T dW W^T = -(dY L^{-1})^T (Xc L^{-T}) = -G^T Y, lower part;
         *   dSigma' = sym(L^{-T} Phi(L^T dL) L^{-1}), Phi = lower triangle with the diagonal
         *   halved (Murray 2016, "Differentiation of the Cholesky decomposition",
         *   arXiv:1602.07527, eq. 10; PyTorch FunctionsManual.cpp cholesky_backward). */
        const double *L = sv.mat;
        double *yy = w.b, *dl = w.m[1];
        memcpy(g, dy, (size_t)(n * d) * sizeof *g);
        trsm(true, false, n, d, L, g);
        memcpy(yy, w.xc, (size_t)(n * d) * sizeof *yy);
        trsm(true, true, n, d, L, yy);
        dgemm(true, false, d, d, n, -1.0, g, yy, 0.0, dl);
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = i + 1; j < d; j++) dl[i * d + j] = 0.0;
        /* P = L^T dL (lower times lower-transposed: a full matrix) */
        dgemm(true, false, d, d, d, 1.0, L, dl, 0.0, dsig);
        for (int64_t i = 0; i < d; i++) {
            dsig[i * d + i] *= 0.5;
            for (int64_t j = i + 1; j < d; j++) dsig[i * d + j] = 0.0;
        }
        trsm(false, true, d, d, L, dsig); /* L^{-T} P */
        trsm(true, false, d, d, L, dsig); /* (L^{-T} P) L^{-1} */
        symmetrise(dsig, d);
        break;
    }
    case SSL_WHITEN_ZCA: {
        /* Y = Xc W, W = Sigma'^{-1/2} symmetric: G = dY W, dW = Xc^T dY, dSigma' by the
         * spectral backward with f = x^-1/2, f' = -x^-3/2 / 2. */
        const double *u = sv.mat, *l = sv.vals;
        double *wm = w.m[1], *dw = w.m[2];
        zca_matrix(wm, w.sub, u, l, d);
        right_mul(g, dy, wm, n, d);
        dgemm(true, false, d, d, n, 1.0, w.xc, dy, 0.0, dw);
        double *fl = w.vec, *dfl = w.vec + d;
        for (int64_t k = 0; k < d; k++) {
            fl[k] = 1.0 / sqrt(l[k]);
            dfl[k] = -0.5 * fl[k] / l[k];
        }
        ssl_linalg_spectral_backward(dsig, dw, u, l, fl, dfl, d, w.sub);
        break;
    }
    case SSL_WHITEN_PCA: {
        /* Y = Xc V diag(s^-1/2): with Gs = dY diag(s^-1/2),
         *   G = Gs V^T, dV = Xc^T Gs, ds_k = -(1/2) s_k^-1 (V^T dV)_kk,
         * then dSigma' by the eigendecomposition backward. */
        const double *v = sv.mat, *s = sv.vals;
        double *gs = w.b, *dv = w.m[1], *dl = w.m[2];
        for (int64_t r = 0; r < n; r++)
            for (int64_t k = 0; k < d; k++) gs[r * d + k] = dy[r * d + k] / sqrt(s[k]);
        dgemm(false, true, n, d, d, 1.0, gs, v, 0.0, g);
        dgemm(true, false, d, d, n, 1.0, w.xc, gs, 0.0, dv);
        for (int64_t k = 0; k < d; k++) {
            double acc = 0.0;
            for (int64_t i = 0; i < d; i++) acc += v[i * d + k] * dv[i * d + k];
            dl[k] = -0.5 * acc / s[k];
        }
        ssl_linalg_eigh_backward(dsig, dl, dv, v, s, d, w.sub);
        break;
    }
    case SSL_WHITEN_NONE: break;
    }

    /* Sigma' = (1 - eps) Sigma + eps I; the direct path's mean gradient is -colsum(G). */
    for (int64_t i = 0; i < d * d; i++) dsig[i] *= 1.0 - eps;
    double *dmean = w.m[1]; /* first d elements; the (d, d) block is free again */
    for (int64_t j = 0; j < d; j++) dmean[j] = 0.0;
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < d; j++) dmean[j] -= g[r * d + j];
    for (int64_t i = 0; i < n * d; i++) dx[i] += g[i];
    cov_backward_xc(dx, dsig, dmean, w.xc, n, d, unbiased, w.m[2]);
}
