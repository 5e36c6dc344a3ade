/* redundancy.c: redundancy-reduction losses. VICReg (Bardes et al. 2022), as
 * facebookresearch/vicreg main.py VICReg.forward computes it:
 *   inv = mean((a - b)^2)
 *   var(z) = mean_j relu(1 - sqrt(var_j(z) + 1e-4)) / 2        (unbiased variance)
 *   cov(z) = sum_{i != j} C_ij^2 / d,  C = zc^T zc / (n - 1)
 *   L = sim*inv + std*(var(a) + var(b)) + cov*(cov(a) + cov(b))
 * The (d x d) covariance is never formed: ||C||_F^2 = ||K||_F^2/(n-1)^2 with the (n x n) Gram
 * matrix K = zc zc^T, which shares its non-zero spectrum, and d||C||_F^2/dzc = 4 K zc/(n-1)^2.
 * For n < d (the usual large-projector case) that is d/n times less work, and fp64 stays cheap.
 * K zc has zero column sums, so no centring projection is needed in the gradient. */
#include "losses.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include "../check.h"

int64_t ssl_vicreg_work_elems(int64_t n, int64_t d) { return 2 * n * d + n * n + d; }

/* Variance and covariance terms of one view; adds their weighted gradients into dz. */
static void vicreg_view(ssl_real *dz, const ssl_real *z, int64_t n, int64_t d,
                        const struct ssl_vicreg_weights *w, double *var_term, double *cov_term,
                        double *work)
{
    double *zc = work, *kz = work + n * d, *K = work + 2 * n * d, *var = K + n * n;
    for (int64_t j = 0; j < d; j++) var[j] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) var[j] += (double)z[i * d + j];
    for (int64_t j = 0; j < d; j++) var[j] /= (double)n; /* the mean, for now */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) zc[i * d + j] = (double)z[i * d + j] - var[j];
    for (int64_t j = 0; j < d; j++) var[j] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) var[j] += zc[i * d + j] * zc[i * d + j];
    double nm1 = (double)(n - 1), hinge = 0, diag2 = 0;
    for (int64_t j = 0; j < d; j++) {
        var[j] /= nm1;
        double sd = sqrt(var[j] + 1e-4);
        if (sd < 1) hinge += 1 - sd;
        diag2 += var[j] * var[j];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ssl_int(n), ssl_int(n), ssl_int(d), 1.0,
                zc, ssl_int(d), zc, ssl_int(d), 0.0, K, ssl_int(n));
    double frob = 0;
    for (int64_t i = 0; i < n * n; i++) frob += K[i] * K[i];
    *var_term = hinge / (2.0 * (double)d);
    *cov_term = (frob / (nm1 * nm1) - diag2) / (double)d;
    if (dz == NULL) return;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ssl_int(n), ssl_int(d), ssl_int(n), 1.0,
                K, ssl_int(n), zc, ssl_int(d), 0.0, kz, ssl_int(d));
    double ck = w->cov * 4.0 / (nm1 * nm1 * (double)d), cd = w->cov * 4.0 / (nm1 * (double)d);
    for (int64_t j = 0; j < d; j++) {
        double sd = sqrt(var[j] + 1e-4);
        /* d var_term / d zc_ij = -[sd < 1] zc_ij / (2 d (n-1) sd) */
        double gv = sd < 1 ? -w->std / (2.0 * (double)d * nm1 * sd) : 0.0;
        var[j] = gv - cd * var[j]; /* per-column factor on zc */
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            dz[i * d + j] += (ssl_real)(ck * kz[i * d + j] + var[j] * zc[i * d + j]);
}

double ssl_vicreg_loss(ssl_real *da, ssl_real *db, const ssl_real *a, const ssl_real *b, int64_t n,
                       int64_t d, const struct ssl_vicreg_weights *w, double *terms, double *work)
{
    SSL_CHECK(n >= 2 && d >= 1);
    double inv = 0, scale = 2.0 * w->sim / (double)(n * d);
    for (int64_t i = 0; i < n * d; i++) {
        double diff = (double)a[i] - (double)b[i];
        inv += diff * diff;
        if (da) da[i] += (ssl_real)(scale * diff);
        if (db) db[i] -= (ssl_real)(scale * diff);
    }
    inv /= (double)(n * d);
    double va, ca, vb, cb;
    vicreg_view(da, a, n, d, w, &va, &ca, work);
    vicreg_view(db, b, n, d, w, &vb, &cb, work);
    if (terms) {
        terms[0] = inv;
        terms[1] = va + vb;
        terms[2] = ca + cb;
    }
    return w->sim * inv + w->std * (va + vb) + w->cov * (ca + cb);
}
