/* predictive.h: the predictive (non-contrastive, stop-gradient) losses: BYOL, SimSiam and the
 * RDM spectral predictors (LOSSES-SPEC.md sections 10, 11 and 5; docs/losses/predictive.md).
 *
 * Inputs, all (n, d) row-major, this rank's rows of the global batch:
 *   p1, p2  online outputs (predictor outputs; for RDM the projector outputs themselves),
 *           differentiated;
 *   t1, t2  target outputs (momentum projector for BYOL, the detached projector output for
 *           SimSiam). They are STOP-GRADIENT: no gradient is produced for them, as in the
 *           official codes (`.detach()`, `jax.lax.stop_gradient`). For SimSiam and RDM-SimSiam
 *           pass t1 = p1 and t2 = p2 (the same buffers are fine).
 * Pairing, every loss here: view 1's online output against view 2's target and vice versa,
 * (p1, t2) and (p2, t1).
 *
 * Every loss is a per-sample mean over the GLOBAL batch: the normaliser is
 * N = ssl_loss_global_rows(c, n), the local gradients are the global loss's gradient with
 * respect to this rank's rows (so P ranks' gradients are exactly the global gradient, no 1/P),
 * and the returned value is the global value on every rank (one ssl_loss_sum of the local
 * sums). RDM also builds its spectral map from the global batch (LOSSES-SPEC 5: the official
 * code gathers p and z first): N >= d sums the (d, d) second-moment matrix with ssl_loss_sum,
 * N < d gathers the rows with ssl_loss_gather for the (N, N) Gram matrix. c NULL = one process.
 *
 * API (docs/losses/predictive.md; one convention for every loss family):
 *   struct ssl_<name>_opts ssl_<name>_defaults(void);            official defaults
 *   int64_t ssl_<name>_work_elems(c, n, d, o);                   fp64 workspace elements
 *   int ssl_<name>_loss(double *value, dp1, dp2, p1, p2, t1, t2, n, d, o, c, work);
 * o NULL = defaults; c NULL = one process. *value is the loss of the global batch, the same on
 * every rank. Gradients are ACCUMULATED (+=) into dp1, dp2; NULL = not needed. `work` is
 * caller-provided fp64 workspace of *_work_elems doubles; nothing is allocated.
 * Returns 0 on success, else a non-zero status and then *value is NAN and the gradients are
 * UNSPECIFIED (possibly partly accumulated):
 *   the comm operation's own non-zero code when ssl_loss_sum / ssl_loss_gather fails;
 *   SSL_E_NONFINITE (src/check.h) for a non-finite value, or for RDM a failed eigensolver or
 *     an ill-defined or non-finite map (see ssl_rdm_loss);
 *   SSL_E_USAGE for RDM options out of range (an invalid base, pred_type or location). */
#ifndef SSL_LOSSES_PREDICTIVE_H
#define SSL_LOSSES_PREDICTIVE_H

#include <stdint.h>

#include "../real.h"
#include "loss.h"

/* ------------------------------------------------------------------------------------------
 * BYOL, google-deepmind/deepmind-research byol/byol_experiment.py loss_fn and
 * byol/utils/helpers.py regression_loss / l2_normalize:
 *   l2n(x) = x / sqrt(max(||x||^2, eps_sq)),  reg(x, y) = ||l2n(x) - l2n(y)||^2
 *   L = (1/N) sum_i [ reg(p1_i, t2_i) + reg(p2_i, t1_i) ]       (symmetrised SUM, in [0, 8])
 * reg = 2 - 2 cos whenever both norms exceed sqrt(eps_sq); below it the literal formula is
 * kept (the clamped norm is a constant for the gradient, as jnp.maximum's is).
 * ------------------------------------------------------------------------------------------ */
struct ssl_byol_opts {
    double eps_sq; /* on the SQUARED norm; official 1e-12 */
};
/* {.eps_sq = 1e-12} */
struct ssl_byol_opts ssl_byol_defaults(void);

/* 3 d */
int64_t ssl_byol_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                            const struct ssl_byol_opts *o);
int ssl_byol_loss(double *value, ssl_real *dp1, ssl_real *dp2, const ssl_real *p1,
                  const ssl_real *p2, const ssl_real *t1, const ssl_real *t2, int64_t n, int64_t d,
                  const struct ssl_byol_opts *o, const struct ssl_loss_ctx *c, double *work);

/* ------------------------------------------------------------------------------------------
 * SimSiam, facebookresearch/simsiam main_simsiam.py (criterion = nn.CosineSimilarity(dim=1))
 * and simsiam/builder.py (returns z.detach()):
 *   cos(x, y) = x.y / (max(||x||, eps) max(||y||, eps))        (torch's cosine_similarity)
 *   L = -( mean_i cos(p1_i, t2_i) + mean_i cos(p2_i, t1_i) ) * 0.5          (in [-1, 1])
 * ------------------------------------------------------------------------------------------ */
struct ssl_simsiam_opts {
    double eps; /* nn.CosineSimilarity's default 1e-8 */
};
/* {.eps = 1e-8} */
struct ssl_simsiam_opts ssl_simsiam_defaults(void);

/* 3 d */
int64_t ssl_simsiam_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                               const struct ssl_simsiam_opts *o);
int ssl_simsiam_loss(double *value, ssl_real *dp1, ssl_real *dp2, const ssl_real *p1,
                     const ssl_real *p2, const ssl_real *t1, const ssl_real *t2, int64_t n,
                     int64_t d, const struct ssl_simsiam_opts *o, const struct ssl_loss_ctx *c,
                     double *work);

/* ------------------------------------------------------------------------------------------
 * RDM predictors (Zhuo et al., ICLR 2023), PKU-ML/Rank-Differential-Mechanism
 * solo/methods/rdmsimsiam.py and rdmbyol.py `loss(p, z)`, with X = the global batch of the
 * map's source and X = U diag(s) V^T its thin SVD (k = min(N, d) singular values):
 *   online:  W = V diag(f(s)) V^T from X = p (no gradient through W), p' = p W, loss = base(p', z)
 *            f = poly s^sigma | log log(s) | log_1 log(1+s) | log_2 log(1+s^2)
 *   target:  W = V diag(s^sigma) V^T from X = z, z' = z W = U diag(s^(1+sigma)) V^T,
 *            loss = base(p, z')  (pred_type ignored)
 *   base SIMSIAM: -mean_i cos(p_i, z_i);  L = loss(p1, t2)/2 + loss(p2, t1)/2   (RDM-SimSiam)
 *   base BYOL:  2 - 2 mean_i cos(p_i, z_i);  L = loss(p1, t2) + loss(p2, t1)    (RDM-BYOL)
 * with cos as SimSiam's (eps 1e-8, F.cosine_similarity in solo's simsiam/byol loss funcs).
 * The gradient reaches p only linearly, dp = dp' W (W symmetric, stop-gradient).
 * s and V come from the eigendecomposition (ssl_linalg_syevd) of the smaller of X^T X (d, d)
 * and X X^T (N, N); in the second case W = X^T U diag(f(s)/s^2) U^T X is applied without
 * being formed. An eigenvalue l <= m u l_max (m the matrix size, u the unit roundoff) counts
 * as a zero singular value: its term is dropped when f(0) = 0 (poly with sigma > 0, log_1,
 * log_2: the exact limit); with f(0) non-finite (log, poly with sigma < 0) or through the Gram
 * route the map is ill-defined there (the official code gives inf/NaN or rounding noise) and
 * the loss fails with SSL_E_NONFINITE; the (d, d) route with f(0) = 1 (sigma = 0) is exact.
 * ------------------------------------------------------------------------------------------ */
enum ssl_rdm_base { SSL_RDM_BASE_SIMSIAM = 0, SSL_RDM_BASE_BYOL };
enum ssl_rdm_pred { SSL_RDM_PRED_POLY = 0, SSL_RDM_PRED_LOG, SSL_RDM_PRED_LOG_1, SSL_RDM_PRED_LOG_2 };
enum ssl_rdm_location { SSL_RDM_LOC_ONLINE = 0, SSL_RDM_LOC_TARGET };

struct ssl_rdm_opts {
    enum ssl_rdm_base base;         /* SIMSIAM (rdmsimsiam.py); BYOL for rdmbyol.py */
    enum ssl_rdm_pred pred_type;    /* official default POLY */
    enum ssl_rdm_location location; /* official default ONLINE */
    double sigma;                   /* official default 1 */
    double eps;                     /* cosine eps, 1e-8 */
};
/* {.base = SIMSIAM, .pred_type = POLY, .location = ONLINE, .sigma = 1, .eps = 1e-8} */
struct ssl_rdm_opts ssl_rdm_defaults(void);

/* Names as the official command line spells them ("poly", "log", "log_1", "log_2"; "online",
 * "target"; "simsiam", "byol"); NULL for an invalid value. The parsers return 0, or -1 for an
 * unknown name (*out untouched). */
const char *ssl_rdm_pred_name(enum ssl_rdm_pred p);
const char *ssl_rdm_location_name(enum ssl_rdm_location l);
const char *ssl_rdm_base_name(enum ssl_rdm_base b);
int ssl_rdm_pred_parse(const char *s, enum ssl_rdm_pred *out);
int ssl_rdm_location_parse(const char *s, enum ssl_rdm_location *out);
int ssl_rdm_base_parse(const char *s, enum ssl_rdm_base *out);

/* Depends on N = ssl_loss_global_rows(c, n) (the map's route and buffers depend on it), so c
 * must be the ctx later passed to ssl_rdm_loss; o is not used (NULL is fine). */
int64_t ssl_rdm_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                           const struct ssl_rdm_opts *o);
int ssl_rdm_loss(double *value, ssl_real *dp1, ssl_real *dp2, const ssl_real *p1,
                 const ssl_real *p2, const ssl_real *t1, const ssl_real *t2, int64_t n, int64_t d,
                 const struct ssl_rdm_opts *o, const struct ssl_loss_ctx *c, double *work);

#endif
