/* linalg.h: fp64 dense linear algebra for the whitening losses (W-MSE, CW-RGP, group ZCA):
 * covariance, symmetric eigendecomposition, spectral-function and eigenvector backward, and
 * whitening transforms (Cholesky, ZCA, PCA, per-feature standardisation, identity), each with
 * its backward.
 *
 * Conventions, for every function here:
 *   - Everything is double and row-major, whatever ssl_real is (the core is built as f32 and
 *     f64 from the same sources; this API does not depend on the flavour).
 *   - Nothing allocates: each routine takes a caller-provided `work` of at least
 *     `*_work_elems(...)` doubles (integer workspaces for LAPACK are carved from it too).
 *   - Backward functions ACCUMULATE (+=) into their gradient outputs (STYLE.md 1); a NULL
 *     gradient output is skipped.
 *   - Eigenvectors are returned as a row-major (m, m) matrix U whose COLUMN k is the unit
 *     eigenvector of eigenvalue l[k]; eigenvalues are ascending (LAPACK dsyevd's order) except
 *     in PCA's saved state, which is documented there.
 *   - Functions that can fail on data (a non-finite value, a singular covariance) return
 *     SSL_E_NONFINITE (check.h) and never abort; 0 means success. */
#ifndef SSL_LINALG_H
#define SSL_LINALG_H

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------------------
 * Covariance
 * ------------------------------------------------------------------------------------------ */

/* Normaliser of a covariance of n rows: 1 / (n - 1) if unbiased, 1 / n otherwise. */
double ssl_linalg_cov_scale(int64_t n, bool unbiased);

int64_t ssl_linalg_cov_work_elems(int64_t n, int64_t d);

/* mean (d) = column means of x (n, d); sigma (d, d) = c Xc^T Xc with Xc = x - 1 mean^T and
 * c = ssl_linalg_cov_scale(n, unbiased) (dsyrk, then mirrored: sigma is exactly symmetric).
 * Needs n >= 2 if unbiased, n >= 1 otherwise. */
void ssl_linalg_cov(double *sigma, double *mean, const double *x, int64_t n, int64_t d,
                    bool unbiased, double *work);

int64_t ssl_linalg_cov_backward_work_elems(int64_t n, int64_t d);

/* dx (n, d) += dL/dx given dsigma (d, d) = dL/dsigma (any matrix: only its symmetric part
 * acts, since sigma is symmetric) and dmean (d) = dL/dmean (either may be NULL):
 *   dx = c Xc (dsigma + dsigma^T) + 1 dmean^T / n.
 * The centring's own term, -1 colmean(c Xc (dsigma + dsigma^T))^T, vanishes because the
 * columns of Xc sum to zero. mean (d) is the forward's. */
void ssl_linalg_cov_backward(double *dx, const double *dsigma, const double *dmean,
                             const double *x, const double *mean, int64_t n, int64_t d,
                             bool unbiased, double *work);

/* ------------------------------------------------------------------------------------------
 * Symmetric eigendecomposition and its backward
 * ------------------------------------------------------------------------------------------ */

int64_t ssl_linalg_syevd_work_elems(int64_t m);

/* s (m, m) symmetric on entry (all m^2 entries are checked to be finite; LAPACK reads one
 * triangle) is overwritten by U (column k = eigenvector k); l (m) gets the eigenvalues in
 * ascending order. Sign convention: each eigenvector's entry of largest magnitude (the first
 * one on a tie) is made positive, so the result is a deterministic, locally smooth function
 * of s away from repeated eigenvalues. Returns SSL_E_NONFINITE on non-finite input or if
 * dsyevd fails to converge. */
int ssl_linalg_syevd(double *s, double *l, int64_t m, double *work);

/* Relative threshold under which two eigenvalues count as equal in the spectral backward:
 * |l_i - l_j| <= SSL_LINALG_EIG_TIE * max(|l_i|, |l_j|). Why cbrt(u) ~ 6.1e-6: the divided
 * difference (f(l_i) - f(l_j)) / (l_i - l_j) loses ~ u |l| / |l_i - l_j| of its relative
 * accuracy to cancellation, while the mean derivative (f'(l_i) + f'(l_j)) / 2 errs by
 * ~ (|l_i - l_j| / |l|)^2 (the midpoint rule's truncation for smooth f); the two are equal at
 * a relative gap of u^(1/3), where both are ~ u^(2/3) ~ 4e-11. */
#define SSL_LINALG_EIG_TIE 6.0554544523933395e-06

int64_t ssl_linalg_spectral_backward_work_elems(int64_t m);

/* Backward of a spectral (matrix) function F = U diag(f(l)) U^T of S = U diag(l) U^T
 * (Daleckii-Krein; Magnus & Neudecker, "Matrix Differential Calculus", 3rd ed., ch. 8;
 * Ionescu, Vantzos, Sminchisescu, "Matrix backpropagation for deep networks with structured
 * layers", ICCV 2015):
 *   ds (m, m) += U (K o (U^T sym(df) U)) U^T,  sym(A) = (A + A^T) / 2,
 *   K_ij = (f(l_i) - f(l_j)) / (l_i - l_j)   if |l_i - l_j| > SSL_LINALG_EIG_TIE max(|l_i|,|l_j|),
 *   K_ij = (f'(l_i) + f'(l_j)) / 2           otherwise (K_ii = f'(l_i)).
 * df (m, m) = dL/dF; u (m, m) and l (m) from ssl_linalg_syevd; fl (m) = f(l), dfl (m) = f'(l).
 * The result is symmetric. */
void ssl_linalg_spectral_backward(double *ds, const double *df, const double *u,
                                  const double *l, const double *fl, const double *dfl,
                                  int64_t m, double *work);

int64_t ssl_linalg_eigsum_backward_work_elems(int64_t m);

/* Backward of a sum of functions of the eigenvalues, L = sum_k g(l_k) (e.g. log det with
 * g = log, the nuclear norm of a PSD matrix with g = identity):
 *   ds (m, m) += dout * U diag(g'(l)) U^T,
 * with dout = dL/d(sum) and dg (m) = g'(l). Exact for repeated eigenvalues too (no K). */
void ssl_linalg_eigsum_backward(double *ds, double dout, const double *u, const double *dg,
                                int64_t m, double *work);

int64_t ssl_linalg_eigh_backward_work_elems(int64_t m);

/* Backward of the eigendecomposition itself, for losses that use U and l directly (PCA):
 * given dl (m) = dL/dl and du (m, m) = dL/dU (either may be NULL),
 *   ds (m, m) += sym(U (diag(dl) + E o (U^T du)) U^T),  E_ij = 1 / (l_j - l_i) (i != j), E_ii = 0
 * (Ionescu et al. 2015, eq. for the symmetric eigendecomposition; PyTorch
 * torch/csrc/autograd/FunctionsManual.cpp linalg_eig_backward, hermitian case). Only valid
 * for distinct eigenvalues: E blows up as l_i -> l_j, where U itself is not differentiable;
 * a pair closer than SSL_LINALG_EIG_TIE relatively gets E_ij = 0 (the eigenvector rotation
 * within the nearly repeated pair is treated as undetermined) rather than an infinity. */
void ssl_linalg_eigh_backward(double *ds, const double *dl, const double *du, const double *u,
                              const double *l, int64_t m, double *work);

/* ------------------------------------------------------------------------------------------
 * Whitening transforms of a batch x (n, d), centred inside
 * ------------------------------------------------------------------------------------------
 * For every kind but NONE:
 *   mean = colmean(x), Xc = x - 1 mean^T, Sigma = c Xc^T Xc (c = 1/(n-1) if unbiased, 1/n else),
 *   Sigma' = (1 - eps) Sigma + eps I      (W-MSE's shrinkage, LOSSES-SPEC 3; htdt/self-supervised
 *                                          methods/whitening.py Whitening2d),
 * and the output satisfies Y^T Y c = I (CHOLESKY, ZCA, PCA) or diag(Y^T Y c) = 1 (BN) for
 * eps = 0. W-MSE is CHOLESKY with unbiased = true, eps = w_eps (default 0).
 *
 *   CHOLESKY  L = chol(Sigma') (lower), Y = Xc L^{-T}            (W-MSE)
 *   ZCA       Sigma' = U diag(l) U^T, Y = Xc U diag(l^-1/2) U^T   (Shuffled-DBN, CW-RGP's axis=1)
 *   PCA       Y = Xc V diag(s^-1/2): V, s = eigenvectors and eigenvalues of Sigma' in
 *             DECREASING order of eigenvalue, each eigenvector's sign fixed so that its
 *             largest-magnitude entry is positive (ssl_linalg_syevd's convention). PCA
 *             whitening is defined only up to the sign and order of the eigenvectors, so the
 *             whitened coordinates of a view can flip sign or swap between batches and
 *             between the two views; Weng et al., "An Investigation into Whitening Loss for
 *             Self-supervised Learning" (NeurIPS 2022), show that this stochastic axis
 *             swapping makes PCA whitening fail to prevent collapse / train, unlike ZCA and
 *             Cholesky. It is here for that ablation, and its gradient is unbounded at
 *             repeated eigenvalues (ssl_linalg_eigh_backward).
 *   BN        Y_ij = Xc_ij / sqrt(Sigma'_jj)  (per-feature standardisation only)
 *   NONE      Y = x (no centring)
 *
 * Saved state, ssl_linalg_whiten_saved_elems(d) = 2d + d^2 doubles, laid out as
 *   mean (d) | vals (d) | mat (d, d):
 *   CHOLESKY  vals unused (zero), mat = L (lower, strict upper triangle zero);
 *   ZCA       vals = l ascending, mat = U (column k = eigenvector of l[k]);
 *   PCA       vals = s descending, mat = V (column k = eigenvector of s[k], signs as above);
 *   BN        vals = sqrt(Sigma'_jj), mat unused (zero);
 *   NONE      nothing written.
 * A covariance that is singular to working precision fails with SSL_E_NONFINITE: eigenvalue
 * l_min <= d u l_max (ZCA, PCA; the usual numerical-rank tolerance, as in
 * src/layers/whiten.c), a Cholesky pivot L_jj^2 <= d u max_k Sigma'_kk, or a zero variance
 * (BN). Non-finite input fails the same way. */
enum ssl_whiten_kind {
    SSL_WHITEN_NONE = 0,
    SSL_WHITEN_BN,
    SSL_WHITEN_CHOLESKY,
    SSL_WHITEN_ZCA,
    SSL_WHITEN_PCA,
};

/* "none", "bn", "cholesky", "zca", "pca"; NULL for an invalid kind. */
const char *ssl_whiten_kind_name(enum ssl_whiten_kind kind);

int64_t ssl_linalg_whiten_saved_elems(int64_t d);
/* Enough for both the forward and the backward of any kind. */
int64_t ssl_linalg_whiten_work_elems(int64_t n, int64_t d);

/* y (n, d) = whiten(x (n, d)); saved as above. Needs n >= 2 (unbiased) or n >= 1, and
 * 0 <= eps < 1. Returns 0 or SSL_E_NONFINITE (y and saved are then unspecified). */
int ssl_linalg_whiten_forward(enum ssl_whiten_kind kind, double *y, double *saved,
                              const double *x, int64_t n, int64_t d, bool unbiased, double eps,
                              double *work);

/* dx (n, d) += dL/dx given dy (n, d) = dL/dy, the forward's x and saved state, and the same
 * n, d, unbiased, eps. Gradients flow through the mean, the covariance and its
 * factorisation (no stop-gradient), as in the official codes. */
void ssl_linalg_whiten_backward(enum ssl_whiten_kind kind, double *dx, const double *dy,
                                const double *x, const double *saved, int64_t n, int64_t d,
                                bool unbiased, double eps, double *work);

#endif
