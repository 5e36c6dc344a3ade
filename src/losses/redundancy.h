/* redundancy.h: redundancy-reduction losses on two views a, b (n, d) of the global batch:
 * Barlow Twins, VICReg, Zero-CL (feature-wise FCL and instance-wise ICL). docs/losses/redundancy.md
 * gives the formulas, defaults, sources and deviations.
 *
 * Every loss here follows the one API convention shared by all losses in src/losses/:
 *   int ssl_<name>_loss(double *value, double *terms, ssl_real *da, ssl_real *db,
 *                       const ssl_real *a, const ssl_real *b, int64_t n, int64_t d,
 *                       const struct ssl_<name>_opts *o, const struct ssl_loss_ctx *c,
 *                       double *work);
 *   - returns 0, or a non-zero status: the comm operation's own non-zero code
 *     (src/losses/loss.h), or SSL_E_NONFINITE (Zero-CL's eigendecomposition on non-finite
 *     data). On failure *value is NAN, terms and the gradients are unspecified;
 *   - the loss goes to *value and, if terms is non-NULL, its unweighted parts to terms;
 *   - ACCUMULATES dL/da, dL/db (+=) into da, db (either may be NULL);
 *   - o NULL: the official defaults (ssl_<name>_defaults(); Zero-CL: ssl_zerocl_defaults(
 *     SSL_ZEROCL_FCL));
 *   - takes the global batch through c (NULL: one process) and a caller-provided fp64 `work` of
 *     ssl_<name>_work_elems(c, n, d, o) doubles (o NULL: defaults); nothing is allocated;
 *   - is collective when c has a comm: every rank calls it with the same options.
 *
 * Statistics (means, variances, covariances, cross-correlations) are computed as local fp64
 * sums, summed over the ranks with ssl_loss_sum, and the gradient is the exact gradient of
 * the global-batch loss (no 1/P factor; LOSSES-SPEC intro). Barlow Twins and VICReg use two
 * sum calls: the column sums (means) first, then the CENTRED second moments, because one call
 * with raw moments would lose precision to cancellation when |mean| >> std. */
#ifndef SSL_REDUNDANCY_H
#define SSL_REDUNDANCY_H

#include <stdbool.h>
#include <stdint.h>

#include "../real.h"
#include "loss.h"

/* How second-order statistics are formed (Barlow Twins and VICReg):
 *   FEATURE   the (d, d) matrices (z^T z, z1^T z2) are summed with ssl_loss_sum;
 *   INSTANCE  the (N, N) Gram matrices z z^T of the global batch, which give the same
 *             Frobenius norms (||A^T B||_F^2 = <A A^T, B B^T>_F), d/N times cheaper when
 *             N < d. On several ranks both views are gathered (2 N d doubles instead of the
 *             2 d^2 FEATURE sums) and every rank computes the one-process loss on the global
 *             batch, keeping its own gradient rows;
 *   AUTO      INSTANCE if N < d, FEATURE otherwise. */
enum ssl_redundancy_path {
    SSL_REDUNDANCY_PATH_AUTO = 0,
    SSL_REDUNDANCY_PATH_FEATURE,
    SSL_REDUNDANCY_PATH_INSTANCE,
};

/* ------------------------------------------------------------------------------------------
 * Barlow Twins (facebookresearch/barlowtwins main.py, BarlowTwins.forward)
 *   y = BN(z) per feature with the (global) batch mean and BIASED variance, no affine:
 *       y = (z - mean) / sqrt(var + bn_eps)
 *   c = y1^T y2 / N                               (d, d), N = global rows
 *   L = sum_i (1 - c_ii)^2 + lambd * sum_{i != j} c_ij^2
 * terms (optional, 2): sum_i (1 - c_ii)^2, sum_{i != j} c_ij^2. Needs n >= 1.
 * ------------------------------------------------------------------------------------------ */
struct ssl_barlow_opts {
    double lambd;  /* 0.0051 (main.py --lambd) */
    double bn_eps; /* 1e-5 (nn.BatchNorm1d default) */
    enum ssl_redundancy_path path;
};

struct ssl_barlow_opts ssl_barlow_defaults(void);
int64_t ssl_barlow_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                              const struct ssl_barlow_opts *o);
int ssl_barlow_loss(double *value, double *terms, ssl_real *da, ssl_real *db, const ssl_real *a,
                    const ssl_real *b, int64_t n, int64_t d, const struct ssl_barlow_opts *o,
                    const struct ssl_loss_ctx *c, double *work);

/* ------------------------------------------------------------------------------------------
 * VICReg (facebookresearch/vicreg main_vicreg.py, VICReg.forward)
 *   inv  = mean over N*d of (a - b)^2
 *   zc   = z - mean(z) (global batch), var_j = sum_k zc_kj^2 / (N - 1)
 *   std(z) = mean_j relu(1 - sqrt(var_j + var_eps)) / 2
 *   cov(z) = sum_{i != j} C_ij^2 / d,  C = zc^T zc / (N - 1)
 *   L = sim * inv + std_coeff * (std(a) + std(b)) + cov_coeff * (cov(a) + cov(b))
 * terms (optional, 3): inv, std(a) + std(b), cov(a) + cov(b), unweighted. Needs global N >= 2.
 *
 * Names: the full-featured VICReg is ssl_vicreg_full_loss / ssl_vicreg_full_work_elems /
 * struct ssl_vicreg_opts, not ssl_vicreg_loss / ssl_vicreg_work_elems, because those two
 * names (and struct ssl_vicreg_weights) are taken by the benchmark's one-process entry points
 * in losses.h, which src/bench.c calls and which must keep their exact declarations. They are
 * thin wrappers around ssl_vicreg_full_loss (AUTO path, var_eps 1e-4, no comm).
 * ------------------------------------------------------------------------------------------ */
struct ssl_vicreg_opts {
    double sim;     /* 25 (--sim-coeff) */
    double std;     /* 25 (--std-coeff) */
    double cov;     /* 1 (--cov-coeff) */
    double var_eps; /* 1e-4 (inside the sqrt of the std) */
    enum ssl_redundancy_path path;
};

struct ssl_vicreg_opts ssl_vicreg_defaults(void);
int64_t ssl_vicreg_full_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                                   const struct ssl_vicreg_opts *o);
int ssl_vicreg_full_loss(double *value, double *terms, ssl_real *da, ssl_real *db,
                         const ssl_real *a, const ssl_real *b, int64_t n, int64_t d,
                         const struct ssl_vicreg_opts *o, const struct ssl_loss_ctx *c,
                         double *work);

/* ------------------------------------------------------------------------------------------
 * Zero-CL (Sherrylone/Zero-CL ImageNet-100/main.py: fea_loss, ins_loss, standardization,
 * WhitenTran.zca_forward)
 *   std(x) along a dimension = (x - mean) / (std_unbiased + std_eps)
 *   zca(x) (rows, m) = x W^T, W = U diag(1 / sqrt(s + zca_eps)) U^T, U s U^T = x^T x / rows,
 *          W a CONSTANT (detached: no gradient flows through it), no re-centring
 *   FCL: s = std(z) per feature (over the n rows), t = zca(s) (m = d),
 *        c_ii = sum_k t1_ki t2_ki / N                     (i < d)
 *   ICL: s = std(z) per row (over the d features), t^T = zca(s^T) (m = n),
 *        c_ii = sum_k t1_ik t2_ik / d                      (i < n)
 *   L = sum_i (c_ii - 1)^2
 * Two distributed modes (docs/losses/redundancy.md, "Zero-CL"); in one process they are the same:
 *  - global (the default, per_rank = false): exactly one process on the global batch of
 *    N = global_rows rows. FCL: column means, stds and s^T s / N summed over the ranks, W
 *    replicated (c->comm->eig, ScaLAPACK above the threshold). ICL: rows standardised locally,
 *    s gathered, this rank's block rows of the (N, N) instance Gram s s^T / d formed and
 *    W = (G + zca_eps I)^-1/2 obtained as block rows (c->comm->sym_power_rows: never
 *    replicated above the threshold), t = W_rows s_all, c_ii / d for i < N, the gradient of
 *    s_all (W_rows^T dt) returned through ssl_loss_scatter.
 *  - per rank (per_rank = true, the official code): standardisation and whitening over this
 *    rank's rows, c's diagonal summed over the ranks (the official all_reduce); ICL then adds
 *    up instance i of every rank and divides by d P, which needs the same n on every rank.
 * terms: unused (may be NULL). Needs n >= 2 (FCL) or d >= 2 (ICL), and N >= 2 (global FCL).
 * ------------------------------------------------------------------------------------------ */
enum ssl_zerocl_mode {
    SSL_ZEROCL_FCL = 0, /* --mode fea (the official default) */
    SSL_ZEROCL_ICL,     /* --mode ins */
};

struct ssl_zerocl_opts {
    enum ssl_zerocl_mode mode;
    double std_eps; /* 1e-4, added to the std (standardization) */
    double zca_eps; /* 0.01 (WhitenTran eps) */
    /* NULL (default): W is computed from the batch. Otherwise (2, m, m), W of view a then of
     * view b (m = d for FCL, n for ICL; global ICL on several ranks: N, each rank using its
     * block rows), used as given: the stop-gradient constant made explicit, for tests that
     * finite-difference the detached function, or to reuse a whitening. */
    const double *whiten;
    bool per_rank; /* the official per-process statistics (above); false: the global batch */
};

struct ssl_zerocl_opts ssl_zerocl_defaults(enum ssl_zerocl_mode mode);
int64_t ssl_zerocl_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                              const struct ssl_zerocl_opts *o);
/* terms: Zero-CL has no separate parts; the argument is kept for the common shape and is not
 * written (may be NULL). */
int ssl_zerocl_loss(double *value, double *terms, ssl_real *da, ssl_real *db, const ssl_real *a,
                    const ssl_real *b, int64_t n, int64_t d, const struct ssl_zerocl_opts *o,
                    const struct ssl_loss_ctx *c, double *work);
/* w (2, m, m) = the whitening matrices the loss computes for views a and b (o->whiten is
 * ignored; o NULL: ssl_zerocl_defaults(SSL_ZEROCL_FCL)); work as for the loss. Returns 0 or
 * SSL_E_NONFINITE (w is then unspecified). */
int ssl_zerocl_whitening(double *w, const ssl_real *a, const ssl_real *b, int64_t n, int64_t d,
                         const struct ssl_zerocl_opts *o, double *work);

#endif
