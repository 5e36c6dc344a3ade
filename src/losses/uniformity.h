/* uniformity.h: the uniformity terms used as auxiliary losses on top of any SSL method, value
 * and gradient, fp64 inside (LOSSES-SPEC 1b, 1c; docs/losses/uniformity.md):
 *   - W2: the closed-form 2-Wasserstein distance between N(mu, Sigma) of the L2-normalised
 *     embeddings of both views and N(0, I/D) (Fang, Li, Sun, Wang, "Rethinking the uniformity
 *     metric in self-supervised learning", ICLR 2024; statsle/WassersteinSSL
 *     code/{BYOL,BarlowTwins,MoCov2}/module.py Encoder.calc_wasserstein_loss);
 *   - L_U: Wang & Isola's uniformity, log mean_{i<j} exp(-t ||x_i - x_j||^2) on normalised
 *     rows, averaged over the two views as in SsnL/align_uniform examples/stl10/main.py;
 *   - A: Wang & Isola's alignment, mean_i ||x_i - y_i||^alpha on normalised rows
 *     (SsnL/align_uniform align_uniform/__init__.py align_loss);
 *   - the linear-decay weight schedule of the W2 paper's training loop.
 *
 * Every loss follows the one loss convention (ssl_<name>_opts, ssl_<name>_defaults(),
 * ssl_<name>_work_elems(c, n, d, o), int ssl_<name>_loss(value, [extra outputs], gradients,
 * inputs, n, d, o, c, work)). It takes the raw embeddings z1, z2 (n, d) of this rank,
 * normalises the rows itself with n(z) = z / max(||z||_2, 1e-12) (torch's F.normalize, which
 * every official caller applies first), stores the value in *value and ACCUMULATES (+=)
 * dL/dz1, dL/dz2 (either may be NULL). o == NULL means the defaults. The global batch is
 * reached through ctx (src/losses/loss.h; NULL ctx or NULL comm = one process):
 *   - W2, covariance route: local fp64 sums (row count, sum x, centred scatter, between-rank
 *     term) in ONE ssl_loss_sum, then value and dL/d(mean, Sigma) (identical on every rank),
 *     then the local gradient by the chain rule;
 *   - W2, Gram route and L_U: ssl_loss_gather of the normalised rows; L_U sums its local
 *     pair terms in ONE ssl_loss_sum and returns the gradient of all rows through
 *     ssl_loss_scatter; W2's Gram route has the full global gradient on every rank and keeps
 *     its own block;
 *   - A: one ssl_loss_sum of the local sum, normalised by ssl_loss_global_rows.
 * `work` is caller-provided fp64 workspace of the size the matching *_work_elems gives (it
 * depends on the global row count and, for W2, on the route, so the same ctx and opts must be
 * passed to both). Nothing allocates.
 *
 * Errors: every loss returns 0 on success, otherwise a non-zero enum ssl_status (src/check.h):
 * SSL_E_NONFINITE for a non-finite input, a non-finite value or an eigensolver failure;
 * SSL_E_USAGE for options out of range or that do not fit the shapes (W2 cov_eps < 0 or an
 * unknown route, L_U t outside (0, 300] or fewer than 2 global rows, alignment alpha <= 0);
 * a failing comm operation's own non-zero code. On failure *value (and *w2_sq) is NAN and the
 * gradients are unspecified (in this implementation they are untouched except after a failed
 * scatter in L_U's backward, which may leave dz1 accumulated). Shapes must satisfy n >= 1,
 * d >= 1 and value, z1, z2, work non-NULL (SSL_CHECK: programming errors). */
#ifndef SSL_LOSSES_UNIFORMITY_H
#define SSL_LOSSES_UNIFORMITY_H

#include <stdint.h>

#include "../real.h"
#include "loss.h"

/* ------------------------------------------------------------------------------------------
 * W2 (LOSSES-SPEC 1b)
 * ------------------------------------------------------------------------------------------ */

/* Which symmetric matrix the eigenvalues come from. Sigma (d, d) and the centred Gram matrix
 * G = Xc Xc^T / M (M, M) of the M = 2 * global rows share their non-zero spectrum. */
enum ssl_w2_route {
    SSL_W2_ROUTE_AUTO = 0, /* GRAM when M < d, else COV (the smaller eigenproblem) */
    SSL_W2_ROUTE_COV,      /* Sigma from summed statistics: no gather */
    SSL_W2_ROUTE_GRAM,     /* G from the gathered rows */
};

struct ssl_w2_opts {
    double cov_eps;          /* added to Sigma's diagonal; default 0 (BYOL+W2). The official
                              * runs: BYOL 0, BarlowTwins 1e-12, MoCov2 1e-4 */
    enum ssl_w2_route route; /* default SSL_W2_ROUTE_AUTO */
};

struct ssl_w2_opts ssl_w2_defaults(void);

/* o == NULL: the defaults. */
int64_t ssl_w2_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                          const struct ssl_w2_opts *o);

/* With x = cat(n(z1), n(z2)) over the global batch (M = 2 N rows), mu = mean x,
 * Sigma = (x - mu)^T (x - mu) / M + cov_eps I (biased), lam = eigenvalues of Sigma:
 *   W2^2 = ||mu||^2 + 1 + tr(Sigma) - (2 / sqrt(d)) sum_{k=1..d} sqrt(|lam_k|),
 *   L    = sqrt(max(W2^2, 0)),
 * gradient through the mean, the covariance and the eigenvalues (no detach). Eigenvalues of
 * Sigma - cov_eps I within rounding of 0 (|lam| <= 8 m DBL_EPSILON (tr(Sigma - cov_eps I) +
 * ||mu||^2),
 * m the size of the eigenproblem) are taken as exactly 0: they add sqrt(cov_eps) to the sum
 * and nothing to the gradient (their exact derivative is 0 for cov_eps > 0; for cov_eps = 0
 * it is the minimum-norm subgradient of the kink of sqrt at 0). At W2^2 <= 0 the gradient
 * is 0 (the minimum). *value = L; `w2_sq` (optional, may be NULL) receives W2^2 unclamped. */
int ssl_w2_loss(double *value, double *w2_sq, ssl_real *dz1 /* (n, d) */,
                ssl_real *dz2 /* (n, d) */, const ssl_real *z1 /* (n, d) */,
                const ssl_real *z2 /* (n, d) */, int64_t n, int64_t d,
                const struct ssl_w2_opts *o, const struct ssl_loss_ctx *c, double *work);

/* The weight of the W2 term at `epoch` (1-based, as the official loop `for epoch in
 * range(1, epochs + 1)`; code/BYOL/model.py train_model):
 *   lambda = lambd_max - (lambd_max - lambd_min) * epoch / epochs,
 * so the first epoch already has one decrement and the last one has lambd_min. Official
 * runs: BYOL 0.2 -> 0.2, BarlowTwins 30 -> 0, MoCov2 1 -> 1. Needs epochs >= 1. */
double ssl_uniformity_weight(double lambd_max, double lambd_min, int64_t epoch, int64_t epochs);

/* ------------------------------------------------------------------------------------------
 * Wang & Isola uniformity and alignment (LOSSES-SPEC 1c)
 * ------------------------------------------------------------------------------------------ */

struct ssl_uniformity_opts {
    double t; /* default 2; 0 < t <= 300 (exponents are shifted by a constant 2t) */
};
struct ssl_uniformity_opts ssl_uniformity_defaults(void);

int64_t ssl_uniformity_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                                  const struct ssl_uniformity_opts *o);

/* (U(n(z1)) + U(n(z2))) / 2 with U(x) = log( mean_{i<j} exp(-t ||x_i - x_j||^2) ) over the
 * N(N-1)/2 unordered pairs of the global batch of one view (torch.pdist; self-pairs
 * excluded; distances from direct differences, so duplicated rows give exactly 0). Needs
 * N >= 2 global rows (SSL_E_USAGE otherwise). */
int ssl_uniformity_loss(double *value, ssl_real *dz1 /* (n, d) */, ssl_real *dz2 /* (n, d) */,
                        const ssl_real *z1 /* (n, d) */, const ssl_real *z2 /* (n, d) */,
                        int64_t n, int64_t d, const struct ssl_uniformity_opts *o,
                        const struct ssl_loss_ctx *c, double *work);

struct ssl_alignment_opts {
    double alpha; /* default 2; alpha > 0. At a zero difference the gradient is 0 (torch's
                   * subgradient of the norm at 0) */
};
struct ssl_alignment_opts ssl_alignment_defaults(void);

int64_t ssl_alignment_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                                 const struct ssl_alignment_opts *o);

/* A = mean_i ||n(z1_i) - n(z2_i)||_2^alpha over the N global rows. */
int ssl_alignment_loss(double *value, ssl_real *dz1 /* (n, d) */, ssl_real *dz2 /* (n, d) */,
                       const ssl_real *z1 /* (n, d) */, const ssl_real *z2 /* (n, d) */,
                       int64_t n, int64_t d, const struct ssl_alignment_opts *o,
                       const struct ssl_loss_ctx *c, double *work);

#endif
