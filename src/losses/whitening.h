/* whitening.h: the whitening losses, value and gradient, fp64 inside: W-MSE, CW-RGP,
 * Shuffled-DBN, and the generic "whitening MSE" of the whitening-loss comparison (Weng et al.,
 * "An Investigation into Whitening Loss for Self-supervised Learning", NeurIPS 2022, Figure 2).
 *
 * All four are one computation with different options (docs/losses/whitening.md):
 *   for it in 0 .. w_iter-1:
 *     rows are permuted (purpose SSL_LOSS_RNG_SUBBATCH, k = it) and cut into sub-batches of
 *     w_size rows; every view is whitened separately on every sub-batch, features shuffled
 *     into n_groups groups (purpose SSL_LOSS_RNG_GROUPS, k = (it * n_sub + s) * 16 + view);
 *     the whitened views Z_v (n, d) are compared pairwise with fn;
 *   L = sum_it sum_{v < w} fn(Z_v, Z_w) / (w_iter * V (V - 1) / 2).
 * Gradients flow through the whitening (mean, covariance and its factorisation; no
 * stop-gradient), as in the official codes.
 *
 * Views: z[v] (n, d) for v < n_views (2 <= n_views <= 16), row i of every view is the same
 * image. dz (n_views pointers, the array itself or any entry may be NULL): gradients
 * ACCUMULATED (+=). work: ssl_whitening_work_elems doubles (integer permutations are carved
 * from it too), caller-provided.
 *
 * Distributed modes (docs/losses/whitening.md, "Distributed semantics"); in one process they
 * are the same:
 *   - global (per_rank = false, the default): the loss on the global batch exactly as one
 *     process computes it. Every rank gathers all rows (ssl_loss_gather), draws the same keyed
 *     permutations of the N global rows, computes the whole loss and keeps its own rows of the
 *     gradient. The options are checked against N (w_size must divide the global batch).
 *   - per rank (per_rank = true): the official codes, each process whitening sub-batches of
 *     its own rows; c->comm is not used (the trainer sums the per-rank gradients, so the loss
 *     of the step is the sum of the per-rank values).
 * c supplies the seed and step of the randomness (NULL: seed 0, step 0).
 *
 * API: the common loss convention (value, gradient outputs, inputs, sizes, options, ctx, work)
 * with two departures, both because the options are validated against the shapes:
 *   - ssl_whitening_loss takes one more argument, LAST: an error record (struct ssl_error,
 *     src/check.h; may be NULL), which says which option does not fit which shape;
 *   - ssl_whitening_work_elems(c, n, d, o, n_views): the common (c, n, d, o) with the extra
 *     size n_views after o (the loss itself takes n_views before n, as the views are its
 *     leading dimension: z[v] is view v).
 * o NULL means ssl_wmse_defaults() (W-MSE, the first of these losses); there is no single
 * official default for the family, so each method keeps its defaults function below.
 *
 * Returns 0, SSL_E_USAGE for options that do not fit the shapes (err says which), or
 * SSL_E_NONFINITE when a sub-batch covariance is singular or an input or the value is not
 * finite (err says where). On failure *value is NAN and the gradients are unspecified. */
#ifndef SSL_LOSSES_WHITENING_H
#define SSL_LOSSES_WHITENING_H

#include <stdbool.h>
#include <stdint.h>

#include "../check.h"
#include "../linalg.h"
#include "../real.h"
#include "loss.h"

/* Which way a sub-batch x (m, d) is whitened (the official Whitening2d's `axis`). */
enum ssl_wloss_axis {
    /* axis=1: centre every feature over the sub-batch, Sigma_g = Xg^T Xg / (m - minus)
     * (d_g, d_g) per feature group; any ssl_whiten_kind (src/linalg.h). W-MSE, SDBN. */
    SSL_WLOSS_AXIS_BATCH = 1,
    /* axis=0: centre every sample over ALL its d features, then per group the instance Gram
     * matrix S_g = Xg Xg^T / (d_g - minus) (m, m), Z_g = S_g'^{-1/2} Xg (ZCA only). CW-RGP. */
    SSL_WLOSS_AXIS_CHANNEL = 0,
};

/* How two whitened views are compared. */
enum ssl_wloss_fn {
    SSL_WLOSS_FN_NORM_MSE = 0, /* 2 - 2 mean_i cos(a_i, b_i) (norm_mse_loss, F.normalize eps 1e-12) */
    SSL_WLOSS_FN_MSE,          /* mean over n*d of (a - b)^2 (F.mse_loss; --no_norm) */
    SSL_WLOSS_FN_L22,          /* mean over n of ||a_i - b_i||^2 (Shuffled-DBN 'l22') */
};

struct ssl_whitening_opts {
    enum ssl_whiten_kind kind; /* transform; NONE = no whitening (inputs used as they are) */
    enum ssl_wloss_axis axis;
    enum ssl_wloss_fn fn;
    int64_t w_size;   /* rows per sub-batch, must divide n; 0 = the whole batch */
    int64_t w_iter;   /* >= 1 repetitions with fresh sub-batches */
    int64_t n_groups; /* feature groups, must divide d; 0 = ceil(2 d / w_size) (Shuffled-DBN) */
    bool rand_group;  /* fresh random feature permutation per (sub-batch, view), drawn even
                       * for one group as the official code does (it matters for cholesky
                       * and pca, which are not permutation-equivariant) */
    bool shuffle_rows; /* random sub-batch membership; false = consecutive rows */
    bool unbiased;    /* normaliser (count - 1) (official `minus = 1`) or count */
    double eps;       /* shrinkage Sigma' = (1 - eps) Sigma + eps I, 0 <= eps < 1 */
    /* false (the default): the global batch, as one process would whiten it (below); true:
     * each rank's rows separately, as the official codes do per GPU */
    bool per_rank;
};

/* Official defaults (docs/losses/whitening.md lists the sources). */
/* W-MSE (htdt/self-supervised cfg.py): cholesky, batch axis, norm_mse, w_size 128, w_iter 1,
 * 1 group, rows shuffled, unbiased, eps 0. */
struct ssl_whitening_opts ssl_wmse_defaults(void);
/* CW-RGP (winci-ai/CW-RGP base/cfg.py): zca, channel axis, norm_mse, w_size 128, w_iter 1,
 * 1 group (the paper's scripts: 4 groups, w_size 64), random groups, rows shuffled,
 * minus 1 (unbiased), eps 0. */
struct ssl_whitening_opts ssl_cwrgp_defaults(void);
/* Shuffled-DBN (PatrickHua/FeatureDecorrelationSSL): group zca, batch axis, l22, the whole
 * batch, 16 groups (configs/.../covnorm.yaml), shuffled groups, biased (1/n), eps 0. With
 * kind = SSL_WHITEN_NONE the loss takes outputs already whitened by the model's SDBN layer
 * (src/layers/whiten.c) and is the plain l22. */
struct ssl_whitening_opts ssl_sdbn_defaults(void);
/* The whitening-loss comparison (winci-ai/CW-RGP base/methods/{wmse,cwrgp,pca,bn,plain}.py
 * with axis=1): the given kind, batch axis, norm_mse, w_size 128, w_iter 1, 1 group, random
 * feature order (cfg.py's rand_group; off for bn and none, whose files draw none), rows
 * shuffled, unbiased except for bn (BatchNorm1d's biased variance), eps 0. kind = NONE is the
 * plain norm_mse of the embeddings. */
struct ssl_whitening_opts ssl_whitening_compare_defaults(enum ssl_whiten_kind kind);

/* Checks the options against the shapes (n: the rows whitened, the global batch in the global
 * mode); SSL_OK or SSL_E_USAGE with a message in err (may be NULL). o NULL: ssl_wmse_defaults(). */
enum ssl_status ssl_whitening_validate(const struct ssl_whitening_opts *o, int64_t n_views,
                                       int64_t n, int64_t d, struct ssl_error *err);

/* Workspace in doubles for valid options (0 if they are not valid); o NULL: W-MSE defaults.
 * c is not used (the size does not depend on it); it is there for the common shape. n_views
 * is the extra size, after o. */
int64_t ssl_whitening_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                                 const struct ssl_whitening_opts *o, int64_t n_views);

/* The loss (above) into *value; dz[v] (n, d) += dL/dz[v]. c NULL: seed 0, step 0. */
int ssl_whitening_loss(double *value, ssl_real *const *dz, const ssl_real *const *z,
                       int64_t n_views, int64_t n, int64_t d, const struct ssl_whitening_opts *o,
                       const struct ssl_loss_ctx *c, double *work, struct ssl_error *err);

#endif
