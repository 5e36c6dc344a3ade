/* uniformity.c: W2 (Wasserstein uniformity), Wang & Isola's uniformity L_U and alignment A as
 * auxiliary losses, value and gradient, and the W2 paper's weight schedule (API and formulas in
 * uniformity.h; semantics and deviations in docs/losses/uniformity.md).
 *
 * Sources:
 *   W2:  statsle/WassersteinSSL code/BYOL/module.py Encoder.calc_wasserstein_loss (the same
 *        function in code/BarlowTwins and code/MoCov2 with a cov_eps on the diagonal), its
 *        weight in code/BYOL/model.py train_model;
 *   L_U, A: SsnL/align_uniform align_uniform/__init__.py uniform_loss, align_loss, and the
 *        two-view average of examples/stl10/main.py.
 *
 * Invariants: all arithmetic in double; nothing allocates (every buffer is carved from the
 * caller's `work`, LAPACK's too); gradients are accumulated into the caller's buffers only
 * after the value is known to be finite; every statistic that needs the global batch goes
 * through exactly one ssl_loss_sum per call (W2 covariance route, L_U, A) or one
 * ssl_loss_gather per view (W2 Gram route, L_U). Every loss returns 0 or an enum ssl_status
 * (or a comm operation's code) and sets *value to NAN first, so every early return leaves it
 * NAN. */
#include "uniformity.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "../check.h"
#include "../linalg.h"

/* torch F.normalize's eps: n(z) = z / max(||z||, eps). */
#define NORM_FLOOR 1e-12
/* The rounding floor of an eigenvalue of a (m, m) covariance of rows of mean squared norm s:
 * |lam| <= NULL_EIG_FACTOR * m * DBL_EPSILON * s counts as exactly 0 (uniformity.h). */
#define NULL_EIG_FACTOR 8.0
/* L_U's exponents -t (d - 2) lie in [-2t, 2t] since squared distances of rows of norm <= 1
 * lie in [0, 4]; t <= 300 keeps exp() finite and non-zero with a fixed shift, so the pair
 * sums of all ranks add up without a max-reduction. */
#define UNIF_T_MAX 300.0

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static bool finite_real(const ssl_real *z, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite((double)z[i])) return false;
    return true;
}

/* x (rows, d) = n(z); nrm (rows) = ||z_i||. */
static void normalise(double *x, double *nrm, const ssl_real *z, int64_t rows, int64_t d)
{
    for (int64_t i = 0; i < rows; i++) {
        double s = 0.0;
        for (int64_t k = 0; k < d; k++) s += (double)z[i * d + k] * (double)z[i * d + k];
        nrm[i] = sqrt(s);
        double den = fmax(nrm[i], NORM_FLOOR);
        for (int64_t k = 0; k < d; k++) x[i * d + k] = (double)z[i * d + k] / den;
    }
}

/* dz (rows, d) += dL/dz given dx (rows, d) = dL/dx, x = n(z): (I - x x^T) dx / ||z|| above the
 * floor, dx / floor below it (the max picks the constant). */
static void normalise_backward(ssl_real *dz, const double *dx, const double *x, const double *nrm,
                               int64_t rows, int64_t d)
{
    if (dz == NULL) return;
    for (int64_t i = 0; i < rows; i++) {
        const double *xi = x + i * d, *gi = dx + i * d;
        if (nrm[i] > NORM_FLOOR) {
            double dot = 0.0;
            for (int64_t k = 0; k < d; k++) dot += xi[k] * gi[k];
            for (int64_t k = 0; k < d; k++)
                dz[i * d + k] += (ssl_real)((gi[k] - xi[k] * dot) / nrm[i]);
        } else {
            for (int64_t k = 0; k < d; k++) dz[i * d + k] += (ssl_real)(gi[k] / NORM_FLOOR);
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * W2
 * ------------------------------------------------------------------------------------------ */

struct ssl_w2_opts ssl_w2_defaults(void)
{
    return (struct ssl_w2_opts){.cov_eps = 0.0, .route = SSL_W2_ROUTE_AUTO};
}

static enum ssl_w2_route w2_route(const struct ssl_w2_opts *o, int64_t m_rows, int64_t d)
{
    if (o->route != SSL_W2_ROUTE_AUTO) return o->route;
    return m_rows < d ? SSL_W2_ROUTE_GRAM : SSL_W2_ROUTE_COV;
}

/* Common part: x (rows, d), nrm (rows), dx (rows, d). */
static int64_t w2_common_elems(int64_t rows, int64_t d) { return 2 * rows * d + rows; }

/* stats (1 + d + 2 d^2), mu (d), u (d^2), l (d), g (d), dsig (d^2), sub. */
static int64_t w2_cov_elems(int64_t rows, int64_t d)
{
    int64_t sub = max64(max64(ssl_linalg_cov_work_elems(rows, d), ssl_linalg_syevd_work_elems(d)),
                        max64(ssl_linalg_eigsum_backward_work_elems(d),
                              ssl_linalg_cov_backward_work_elems(rows, d)));
    return (1 + d + 2 * d * d) + d + d * d + 2 * d + d * d + sub;
}

/* xg (m, d), mu (d), u (m^2), l (m), g (m), dg (m^2), v (m), wv (d), sub. */
static int64_t w2_gram_elems(int64_t m, int64_t d)
{
    int64_t sub = max64(ssl_linalg_syevd_work_elems(m), ssl_linalg_eigsum_backward_work_elems(m));
    return m * d + d + m * m + 2 * m + m * m + m + d + sub;
}

int64_t ssl_w2_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                          const struct ssl_w2_opts *o)
{
    SSL_CHECK(n >= 1 && d >= 1);
    struct ssl_w2_opts def = ssl_w2_defaults();
    if (o == NULL) o = &def;
    int64_t rows = 2 * n, m = 2 * ssl_loss_global_rows(c, n);
    int64_t route = w2_route(o, m, d) == SSL_W2_ROUTE_COV ? w2_cov_elems(rows, d)
                                                          : w2_gram_elems(m, d);
    return w2_common_elems(rows, d) + route;
}

/* Sum of sqrt(|l_k + eps|) over the eigenvalues l (m) of Sigma - eps I that are not within
 * rounding of 0 (|l_k| > tol); g (m) = d sqrt(|l + eps|) / dl there and 0 for the null ones;
 * *count = the number of non-null ones. */
static double eig_sqrt_sum(double *g, int64_t *count, const double *l, int64_t m, double eps,
                           double tol)
{
    double s = 0.0;
    *count = 0;
    for (int64_t k = 0; k < m; k++) {
        double v = l[k] + eps;
        if (fabs(l[k]) <= tol || v == 0.0) {
            g[k] = 0.0;
            continue;
        }
        double r = sqrt(fabs(v));
        s += r;
        g[k] = (v > 0.0 ? 0.5 : -0.5) / r;
        (*count)++;
    }
    return s;
}

/* What both routes end with: W2^2 from the moments and the eigenvalue sum (d eigenvalues of
 * Sigma, of which `count` non-null; the others contribute sqrt(eps)). */
static double w2_sq_of(double mu_sq, double tr0, double sqrt_sum, int64_t count, int64_t d,
                       double eps)
{
    double all = sqrt_sum + (double)(d - count) * sqrt(eps);
    return mu_sq + 1.0 + tr0 + (double)d * eps - 2.0 / sqrt((double)d) * all;
}

/* Covariance route. x (rows, d) this rank's normalised rows, m the global row count. The
 * statistics summed over the ranks, in one call: the row count, the column sums s, the
 * centred scatter C = Xc_r^T Xc_r about the LOCAL mean, and B = s_r s_r^T / rows; then
 * M Sigma0 = sum C + sum B - s s^T / M (Chan, Golub, LeVeque's pairwise update, all ranks at
 * once). In one process B - s s^T / M is exactly 0 (the same products divided by the same
 * count), so Sigma0 is the centred covariance with no cancellation. On success *w2_sq is set
 * and, when want, dx (rows, d) += dL/dx. */
static int w2_cov(double *w2_sq, double *dx, bool want, const double *x, int64_t rows, int64_t m,
                  int64_t d, double eps, const struct ssl_loss_ctx *c, double *work)
{
    int64_t n_stats = 1 + d + 2 * d * d;
    double *stats = work, *mu = stats + n_stats, *u = mu + d, *l = u + d * d, *g = l + d,
           *dsig = g + d, *sub = dsig + d * d;
    double *cnt = stats, *s = stats + 1, *cc = s + d, *bb = cc + d * d;
    cnt[0] = (double)rows;
    ssl_linalg_cov(cc, mu, x, rows, d, false, sub); /* mu: local mean, for now */
    for (int64_t j = 0; j < d; j++) {
        double a = 0.0;
        for (int64_t i = 0; i < rows; i++) a += x[i * d + j];
        s[j] = a;
    }
    for (int64_t i = 0; i < d * d; i++) cc[i] *= (double)rows;
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) bb[i * d + j] = (s[i] * s[j]) / (double)rows;
    int rc = ssl_loss_sum(c, stats, n_stats);
    if (rc) return rc;
    SSL_CHECKF(cnt[0] == (double)m, "w2: summed row count %g, expected %lld", cnt[0],
               (long long)m);
    double mm = (double)m, mu_sq = 0.0, tr0 = 0.0;
    for (int64_t j = 0; j < d; j++) {
        mu[j] = s[j] / mm;
        mu_sq += mu[j] * mu[j];
    }
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++)
            u[i * d + j] = (cc[i * d + j] + (bb[i * d + j] - (s[i] * s[j]) / mm)) / mm;
    for (int64_t j = 0; j < d; j++) tr0 += u[j * d + j];
    rc = ssl_loss_eig(c, u, l, d, sub); /* replicated: every rank holds the same Sigma0 */
    if (rc) return rc;
    double tol = NULL_EIG_FACTOR * (double)d * DBL_EPSILON * (tr0 + mu_sq);
    int64_t count;
    double ss = eig_sqrt_sum(g, &count, l, d, eps, tol);
    *w2_sq = w2_sq_of(mu_sq, tr0, ss, count, d, eps);
    if (!isfinite(*w2_sq)) return SSL_E_NONFINITE;
    if (!want || !(*w2_sq > 0.0)) return 0;

    /* dL/dW2^2 = a; dW2^2/dmu = 2 mu; dW2^2/dSigma0 = I - (2/sqrt d) U diag(g) U^T. The
     * global-batch chain rule dx_i = (2/M) Xc_i dSigma0 + dmu / M is ssl_linalg_cov_backward
     * on the local rows (normaliser 1/rows) with both upstream gradients scaled by rows / M;
     * the centring's term is 0 because the GLOBAL centred rows sum to zero. */
    double a = 0.5 / sqrt(*w2_sq), f = (double)rows / mm;
    memset(dsig, 0, (size_t)(d * d) * sizeof *dsig);
    ssl_linalg_eigsum_backward(dsig, -2.0 * a / sqrt((double)d), u, g, d, sub);
    for (int64_t j = 0; j < d; j++) dsig[j * d + j] += a;
    for (int64_t i = 0; i < d * d; i++) dsig[i] *= f;
    double *dmu = l; /* l is no longer needed */
    for (int64_t j = 0; j < d; j++) dmu[j] = 2.0 * a * mu[j] * f;
    ssl_linalg_cov_backward(dx, dsig, dmu, x, mu, rows, d, false, sub);
    return 0;
}

/* Gram route: the gathered rows xg (m, d) are centred with the global mean, G = Xc Xc^T / m
 * (m, m) has the non-zero eigenvalues of Sigma0. Every rank holds the same G and the same
 * dL/dG, so it forms only its own block of dL/dX: no scatter. */
static int w2_gram(double *w2_sq, double *dx, bool want, const double *x, int64_t rows,
                   int64_t m, int64_t d, double eps, const struct ssl_loss_ctx *c, double *work)
{
    double *xg = work, *mu = xg + m * d, *u = mu + d, *l = u + m * m, *g = l + m, *dg = g + m,
           *v = dg + m * m, *wv = v + m, *sub = wv + d;
    int64_t offset = 0;
    int rc = ssl_loss_gather(c, x, rows, d, xg, &offset);
    if (rc) return rc;
    SSL_CHECK(offset >= 0 && offset + rows <= m);
    double mm = (double)m, mu_sq = 0.0, tr0 = 0.0;
    for (int64_t j = 0; j < d; j++) {
        double a = 0.0;
        for (int64_t i = 0; i < m; i++) a += xg[i * d + j];
        mu[j] = a / mm;
        mu_sq += mu[j] * mu[j];
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < d; j++) xg[i * d + j] -= mu[j];
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, ssl_int(m), ssl_int(d), 1.0 / mm, xg,
                ssl_int(d), 0.0, u, ssl_int(m));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < i; j++) u[j * m + i] = u[i * m + j];
    for (int64_t i = 0; i < m; i++) tr0 += u[i * m + i];
    rc = ssl_loss_eig(c, u, l, m, sub); /* replicated: every rank holds the same G */
    if (rc) return rc;
    double tol = NULL_EIG_FACTOR * (double)m * DBL_EPSILON * (tr0 + mu_sq);
    int64_t count;
    double ss = eig_sqrt_sum(g, &count, l, m, eps, tol);
    SSL_CHECK(count <= d);
    *w2_sq = w2_sq_of(mu_sq, tr0, ss, count, d, eps);
    if (!isfinite(*w2_sq)) return SSL_E_NONFINITE;
    if (!want || !(*w2_sq > 0.0)) return 0;

    /* dL/dG = a (I - (2/sqrt d) U diag(g) U^T) (symmetric); dXc = (2/m) dG Xc; then the
     * centring's backward dX = dXc - 1 colsum(dXc)^T / m (0 in exact arithmetic: 1 spans G's
     * null space, which has g = 0) and the explicit mean term 2 a mu / m. */
    double a = 0.5 / sqrt(*w2_sq);
    memset(dg, 0, (size_t)(m * m) * sizeof *dg);
    ssl_linalg_eigsum_backward(dg, -2.0 * a / sqrt((double)d), u, g, m, sub);
    for (int64_t i = 0; i < m; i++) dg[i * m + i] += a;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ssl_int(rows), ssl_int(d), ssl_int(m),
                2.0 / mm, dg + offset * m, ssl_int(m), xg, ssl_int(d), 1.0, dx, ssl_int(d));
    for (int64_t j = 0; j < m; j++) {
        double t = 0.0;
        for (int64_t i = 0; i < m; i++) t += dg[i * m + j];
        v[j] = t;
    }
    cblas_dgemv(CblasRowMajor, CblasTrans, ssl_int(m), ssl_int(d), 2.0 / mm, xg, ssl_int(d), v, 1,
                0.0, wv, 1);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < d; j++) dx[i * d + j] += (2.0 * a * mu[j] - wv[j]) / mm;
    return 0;
}

int ssl_w2_loss(double *value, double *w2_sq, ssl_real *dz1, ssl_real *dz2, const ssl_real *z1,
                const ssl_real *z2, int64_t n, int64_t d, const struct ssl_w2_opts *o,
                const struct ssl_loss_ctx *c, double *work)
{
    SSL_CHECK(value != NULL && n >= 1 && d >= 1 && z1 != NULL && z2 != NULL && work != NULL);
    *value = NAN;
    if (w2_sq) *w2_sq = NAN;
    struct ssl_w2_opts def = ssl_w2_defaults();
    if (o == NULL) o = &def;
    if (!(o->cov_eps >= 0.0 && isfinite(o->cov_eps))) return SSL_E_USAGE;
    int64_t rows = 2 * n, m = 2 * ssl_loss_global_rows(c, n);
    SSL_CHECK(m >= rows);
    enum ssl_w2_route route = w2_route(o, m, d);
    if (route != SSL_W2_ROUTE_COV && route != SSL_W2_ROUTE_GRAM) return SSL_E_USAGE;
    if (!finite_real(z1, n * d) || !finite_real(z2, n * d)) return SSL_E_NONFINITE;

    double *x = work, *nrm = x + rows * d, *dx = nrm + rows, *rest = dx + rows * d;
    normalise(x, nrm, z1, n, d);
    normalise(x + n * d, nrm + n, z2, n, d);
    bool want = dz1 != NULL || dz2 != NULL;
    if (want) memset(dx, 0, (size_t)(rows * d) * sizeof *dx);
    double sq = NAN;
    int rc = route == SSL_W2_ROUTE_COV
                 ? w2_cov(&sq, dx, want, x, rows, m, d, o->cov_eps, c, rest)
                 : w2_gram(&sq, dx, want, x, rows, m, d, o->cov_eps, c, rest);
    if (rc) return rc;
    if (w2_sq) *w2_sq = sq;
    if (want) {
        normalise_backward(dz1, dx, x, nrm, n, d);
        normalise_backward(dz2, dx + n * d, x + n * d, nrm + n, n, d);
    }
    *value = sqrt(fmax(sq, 0.0));
    return 0;
}

double ssl_uniformity_weight(double lambd_max, double lambd_min, int64_t epoch, int64_t epochs)
{
    SSL_CHECK(epochs >= 1);
    /* The official order of operations: lambd_weight = (max - min) / epochs, then
     * lambd = max - lambd_weight * epoch. */
    double step = (lambd_max - lambd_min) / (double)epochs;
    return lambd_max - step * (double)epoch;
}

/* ------------------------------------------------------------------------------------------
 * Wang & Isola uniformity
 * ------------------------------------------------------------------------------------------ */

struct ssl_uniformity_opts ssl_uniformity_defaults(void)
{
    return (struct ssl_uniformity_opts){.t = 2.0};
}

/* Per view: x (n, d), nrm (n), xg (m, d), e (n, m); shared: gg (m, d), dxl (n, d). */
int64_t ssl_uniformity_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                                  const struct ssl_uniformity_opts *o)
{
    (void)o; /* the size does not depend on t */
    SSL_CHECK(n >= 1 && d >= 1);
    int64_t m = ssl_loss_global_rows(c, n);
    return 2 * (n * d + n + m * d + n * m) + m * d + n * d;
}

int ssl_uniformity_loss(double *value, ssl_real *dz1, ssl_real *dz2, const ssl_real *z1,
                        const ssl_real *z2, int64_t n, int64_t d,
                        const struct ssl_uniformity_opts *o, const struct ssl_loss_ctx *c,
                        double *work)
{
    SSL_CHECK(value != NULL && n >= 1 && d >= 1 && z1 != NULL && z2 != NULL && work != NULL);
    *value = NAN;
    struct ssl_uniformity_opts def = ssl_uniformity_defaults();
    if (o == NULL) o = &def;
    if (!(o->t > 0.0 && o->t <= UNIF_T_MAX)) return SSL_E_USAGE; /* (0, UNIF_T_MAX] */
    int64_t m = ssl_loss_global_rows(c, n);
    if (m < 2) return SSL_E_USAGE; /* needs a pair in the global batch */
    if (!finite_real(z1, n * d) || !finite_real(z2, n * d)) return SSL_E_NONFINITE;
    const ssl_real *z[2] = {z1, z2};
    ssl_real *dz[2] = {dz1, dz2};
    double *x[2], *nrm[2], *xg[2], *e[2];
    double *p = work;
    for (int v = 0; v < 2; v++) {
        x[v] = p;
        nrm[v] = x[v] + n * d;
        xg[v] = nrm[v] + n;
        e[v] = xg[v] + m * d;
        p = e[v] + n * m;
    }
    double *gg = p, *dxl = gg + m * d;
    const double t = o->t, shift = 2.0 * t;

    /* Ordered pairs (i local, j global, j != i): the mean over them equals the mean over the
     * unordered pairs, and each rank sums its own rows' pairs. e_ij = exp(-t (d_ij - 2)). */
    int64_t offset[2] = {0, 0};
    double s[2];
    for (int v = 0; v < 2; v++) {
        normalise(x[v], nrm[v], z[v], n, d);
        int rc = ssl_loss_gather(c, x[v], n, d, xg[v], &offset[v]);
        if (rc) return rc;
        SSL_CHECK(offset[v] >= 0 && offset[v] + n <= m);
        double acc = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const double *xi = xg[v] + (offset[v] + i) * d;
            for (int64_t j = 0; j < m; j++) {
                double ev = 0.0;
                if (j != offset[v] + i) {
                    const double *xj = xg[v] + j * d;
                    double dist = 0.0;
                    for (int64_t k = 0; k < d; k++) {
                        double df = xi[k] - xj[k];
                        dist += df * df;
                    }
                    ev = exp(shift - t * dist);
                }
                e[v][i * m + j] = ev;
                acc += ev;
            }
        }
        s[v] = acc;
    }
    int rc = ssl_loss_sum(c, s, 2);
    if (rc) return rc;
    double log_pairs = log((double)m * (double)(m - 1));
    double u[2];
    for (int v = 0; v < 2; v++) u[v] = log(s[v]) - shift - log_pairs;
    double val = 0.5 * (u[0] + u[1]);
    if (!isfinite(val)) return SSL_E_NONFINITE;

    for (int v = 0; v < 2; v++) {
        if (dz[v] == NULL) continue;
        /* d(U/2)/dd_ij = -t e_ij / (2 S) per ordered pair and dd_ij/dx_i = 2 (x_i - x_j), so
         * with F = -(t / S) E (n, m) (F_i,gi = 0) the pair terms f_ij (x_i - x_j) give
         *   gg[gi] += (sum_j f_ij) x_gi - (F Xg)_i,   gg[j] += (sum_i f_ij) x_j - (F^T Xl)_j
         * with Xl = this rank's block of Xg: two GEMMs instead of a pair loop. */
        double *f = e[v];
        const double *xl = xg[v] + offset[v] * d;
        for (int64_t i = 0; i < n * m; i++) f[i] *= -t / s[v];
        memset(gg, 0, (size_t)(m * d) * sizeof *gg);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ssl_int(n), ssl_int(d), ssl_int(m),
                    -1.0, f, ssl_int(m), xg[v], ssl_int(d), 0.0, gg + offset[v] * d, ssl_int(d));
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ssl_int(m), ssl_int(d), ssl_int(n),
                    -1.0, f, ssl_int(m), xl, ssl_int(d), 1.0, gg, ssl_int(d));
        for (int64_t i = 0; i < n; i++) {
            double rs = 0.0;
            for (int64_t j = 0; j < m; j++) rs += f[i * m + j];
            for (int64_t k = 0; k < d; k++) gg[(offset[v] + i) * d + k] += rs * xl[i * d + k];
        }
        for (int64_t j = 0; j < m; j++) {
            double cs = 0.0;
            for (int64_t i = 0; i < n; i++) cs += f[i * m + j];
            for (int64_t k = 0; k < d; k++) gg[j * d + k] += cs * xg[v][j * d + k];
        }
        rc = ssl_loss_scatter(c, gg, n, d, dxl);
        if (rc) return rc;
        normalise_backward(dz[v], dxl, x[v], nrm[v], n, d);
    }
    *value = val;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Wang & Isola alignment
 * ------------------------------------------------------------------------------------------ */

struct ssl_alignment_opts ssl_alignment_defaults(void)
{
    return (struct ssl_alignment_opts){.alpha = 2.0};
}

/* x1, x2, dx (n, d) each; nrm1, nrm2 (n). */
int64_t ssl_alignment_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                                 const struct ssl_alignment_opts *o)
{
    (void)c; /* local rows only */
    (void)o;
    SSL_CHECK(n >= 1 && d >= 1);
    return 3 * n * d + 2 * n;
}

int ssl_alignment_loss(double *value, ssl_real *dz1, ssl_real *dz2, const ssl_real *z1,
                       const ssl_real *z2, int64_t n, int64_t d,
                       const struct ssl_alignment_opts *o, const struct ssl_loss_ctx *c,
                       double *work)
{
    SSL_CHECK(value != NULL && n >= 1 && d >= 1 && z1 != NULL && z2 != NULL && work != NULL);
    *value = NAN;
    struct ssl_alignment_opts def = ssl_alignment_defaults();
    if (o == NULL) o = &def;
    if (!(o->alpha > 0.0 && isfinite(o->alpha))) return SSL_E_USAGE;
    if (!finite_real(z1, n * d) || !finite_real(z2, n * d)) return SSL_E_NONFINITE;
    double *x1 = work, *x2 = x1 + n * d, *dx = x2 + n * d, *nrm1 = dx + n * d, *nrm2 = nrm1 + n;
    normalise(x1, nrm1, z1, n, d);
    normalise(x2, nrm2, z2, n, d);
    const double alpha = o->alpha;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double sq = 0.0;
        for (int64_t k = 0; k < d; k++) {
            double df = x1[i * d + k] - x2[i * d + k];
            sq += df * df;
        }
        sum += alpha == 2.0 ? sq : pow(sqrt(sq), alpha);
    }
    int rc = ssl_loss_sum(c, &sum, 1);
    if (rc) return rc;
    double big_n = (double)ssl_loss_global_rows(c, n);
    double val = sum / big_n;
    if (!isfinite(val)) return SSL_E_NONFINITE;
    *value = val;
    if (dz1 == NULL && dz2 == NULL) return 0;

    /* d/dx1_i ||x1_i - x2_i||^alpha = alpha ||diff||^(alpha - 2) diff; 0 at diff = 0. */
    for (int64_t i = 0; i < n; i++) {
        double sq = 0.0;
        for (int64_t k = 0; k < d; k++) {
            double df = x1[i * d + k] - x2[i * d + k];
            sq += df * df;
        }
        double f = sq > 0.0 ? (alpha == 2.0 ? 2.0 : alpha * pow(sqrt(sq), alpha - 2.0)) / big_n
                            : 0.0;
        for (int64_t k = 0; k < d; k++) dx[i * d + k] = f * (x1[i * d + k] - x2[i * d + k]);
    }
    normalise_backward(dz1, dx, x1, nrm1, n, d);
    for (int64_t i = 0; i < n * d; i++) dx[i] = -dx[i];
    normalise_backward(dz2, dx, x2, nrm2, n, d);
    return 0;
}
