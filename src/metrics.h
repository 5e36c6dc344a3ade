/* metrics.h: collapse metrics of an embedding batch z (n, d) row-major (LOSSES-SPEC 1a, 1c, 14).
 *
 * All of it is monitoring, not training: no gradients. Every sum is accumulated in double
 * whatever ssl_real is, and every eigenvalue comes from LAPACKE_dsyevd_work on the smaller of
 * the (d, d) matrix X^T X and the (n, n) Gram matrix X X^T (they share their non-zero
 * spectrum), so the cost is O(n d min(n, d) + min(n, d)^3). Singular values of X are
 * sqrt(max(eigenvalue, 0)). Functions that take `work` use a caller-provided fp64 workspace
 * of at least ssl_metrics_work_elems(n, d) doubles and allocate nothing (LAPACK's workspace
 * is carved from it too); the inputs are never modified.
 *
 * Normalisation, where a definition asks for it, is torch's F.normalize:
 * n(x) = x / max(||x||_2, 1e-12). Which metrics normalise is said at each function.
 *
 * Accuracy note: the eigenvalues of X^T X carry an absolute error of about
 * max(n,d) * DBL_EPSILON * sigma_max^2, so singular values below ~1e-8 sqrt(max(n,d))
 * sigma_max are noise; ssl_metrics_compute sets them to 0 (so an exactly low-rank Z has
 * exactly zero trailing singular values, as an SVD would give to rounding). That floor is
 * always below every tolerance used here (the smallest is FLT_EPSILON * max(n, d) *
 * sigma_max), and the inputs of the f32 core carry float rounding anyway. */
#ifndef SSL_METRICS_H
#define SSL_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "real.h"

/* The metrics of one view, as logged (LOSSES-SPEC 14). z is the raw embedding; "Z_c" is z
 * minus its column mean. */
struct ssl_metrics {
    double w2;                 /* ssl_metric_w2 on n(z) */
    double uniformity;         /* ssl_metric_uniformity on n(z), t = 2 */
    double rank;               /* #(sigma(Z_c) > sigma_max(Z_c) * max(n, d) * FLT_EPSILON) */
    double rank_raw;           /* the same on the uncentred z */
    double rank_tol01;         /* #(sigma(z) > 0.1), uncentred (Hua et al. covnorm.py) */
    double stable_rank;        /* ||Z_c||_F^2 / ||Z_c||_2^2 = tr(Sigma) / lambda_max(Sigma) */
    double stable_rank_sv;     /* sum sigma(Z_c) / sigma_max(Z_c) */
    double effective_rank;     /* Roy & Vetterli on sigma(z), uncentred */
    double effective_rank_cov; /* Roy & Vetterli on the eigenvalues of the biased covariance */
    double rankme;             /* Garrido et al. 2023 on sigma(z), uncentred, eps = 1e-7 */
    double z_std_mean;         /* mean over columns of the unbiased std of n(z) (SimSiam) */
};

/* Doubles of workspace that every function below taking `work` needs for an (n, d) input. */
int64_t ssl_metrics_work_elems(int64_t n, int64_t d);

/* All of struct ssl_metrics for one view. n >= 2, d >= 1. A metric that is undefined for the
 * input (a zero matrix has no sigma_max to divide by) is 0, see each function. Returns 0, or
 * SSL_E_NONFINITE when z holds a non-finite value or LAPACK fails (out is then all NAN). */
int ssl_metrics_compute(struct ssl_metrics *out, const ssl_real *z /* (n, d) */, int64_t n,
                        int64_t d, double *work);

/* Spectrum of z into eig_desc (min(n, d) values, descending, each clamped at 0):
 *   centred = true:  the eigenvalues of the biased covariance Sigma = Z_c^T Z_c / n, i.e.
 *                    sigma_k(Z_c)^2 / n;
 *   centred = false: the squared singular values sigma_k(z)^2 of the raw z (no 1/n).
 * The remaining max(n, d) - min(n, d) eigenvalues of the (d, d) matrix are exactly 0 and are
 * not written. Returns 0 or SSL_E_NONFINITE (non-finite input, or LAPACK failure). */
int ssl_metric_spectrum(double *eig_desc /* (min(n, d)) */, const ssl_real *z /* (n, d) */,
                        int64_t n, int64_t d, bool centred, double *work);

/* Wasserstein uniformity metric (Fang et al., ICLR 2024; statsle/WassersteinSSL
 * code/BYOL/metric.py calc_wasserstein_distance). Unlike the Python function, this one
 * normalises the rows itself (every WassersteinSSL caller passes z_norm, so the value is the
 * same as theirs on raw z): with x = n(z), mu = mean x, Sigma = biased covariance (1/n),
 *   W2 = sqrt(max(0, ||mu||^2 + 1 + tr(Sigma) - (2/sqrt(d)) sum_{k=1..d} sqrt(|lam_k| + 1e-8)))
 * where the sum runs over all d eigenvalues of Sigma (the d - n zero ones of a wide batch
 * add sqrt(1e-8) each, as they do in numpy). NAN on non-finite input or LAPACK failure. */
double ssl_metric_w2(const ssl_real *z /* (n, d) */, int64_t n, int64_t d, double *work);
/* The argument of that final sqrt, unclamped: for tests and diagnostics. With the 1e-8 it
 * is slightly negative (about -d * 1e-8) when the moments of n(z) are exactly (0, I/d). */
double ssl_metric_w2_sq(const ssl_real *z /* (n, d) */, int64_t n, int64_t d, double *work);

/* Wang & Isola uniformity (SsnL/align_uniform align_uniform/__init__.py uniform_loss) on
 * n(z): log( mean_{i<j} exp(-t ||x_i - x_j||^2) ) over the n(n-1)/2 unordered pairs, as
 * torch.pdist; evaluated as a log-sum-exp, so large t does not underflow to log 0. Distances
 * are direct differences (as pdist), so duplicated rows give exactly 0. O(n^2 d), no
 * workspace. NAN when n < 2. */
double ssl_metric_uniformity(const ssl_real *z /* (n, d) */, int64_t n, int64_t d, double t);

/* Wang & Isola alignment (same file, align_loss) on normalised rows:
 * mean_i ||n(z1_i) - n(z2_i)||_2^alpha. */
double ssl_metric_alignment(const ssl_real *z1 /* (n, d) */, const ssl_real *z2 /* (n, d) */,
                            int64_t n, int64_t d, double alpha);

/* Roy & Vetterli (EUSIPCO 2007) effective rank of non-negative values s (count m):
 * p_k = s_k / sum s, exp(-sum p_k log p_k) with 0 log 0 = 0, no eps. 0 when sum s = 0. */
double ssl_metric_effective_rank(const double *s, int64_t m);

/* RankMe (Garrido, Balestriero, Najman, LeCun, ICML 2023, eq. 1) of singular values s:
 * p_k = s_k / ||s||_1 + 1e-7 (eps added to every p_k, as in the paper), exp(-sum p_k log p_k).
 * 0 when sum s = 0. */
double ssl_metric_rankme(const double *s, int64_t m);

#endif
