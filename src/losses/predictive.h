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
 * N = ssl_loss_global_rows(ctx, n), the local gradients are the global loss's gradient with
 * respect to this rank's rows (so P ranks' gradients are exactly the global gradient, no 1/P),
 * and the returned value is the global value on every rank (one ssl_loss_sum of the local
 * sums). RDM also builds its spectral map from the global batch (LOSSES-SPEC 5: the official
 * code gathers p and z first): N >= d sums the (d, d) second-moment matrix with ssl_loss_sum,
 * N < d gathers the rows with ssl_loss_gather for the (N, N) Gram matrix. ctx NULL = one process.
 *
 * Gradients are ACCUMULATED (+=) into dp1, dp2; NULL = not needed. `work` is caller-provided
 * fp64 workspace of *_work_elems doubles; nothing is allocated. A failure (a comm operation
 * failing, or an ill-defined or non-finite RDM map, see ssl_rdm_loss) returns NAN, the
 * gradients are then unspecified, and the trainer's non-finite check reports it
 * (SSL_E_NONFINITE). */
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
#define SSL_BYOL_OPTS_DEFAULT ((struct ssl_byol_opts){.eps_sq = 1e-12})

int64_t ssl_byol_work_elems(int64_t n, int64_t d);
/* opts NULL = defaults. */
double ssl_byol_loss(ssl_real *dp1, ssl_real *dp2, const ssl_real *p1, const ssl_real *p2,
                     const ssl_real *t1, const ssl_real *t2, int64_t n, int64_t d,
                     const struct ssl_byol_opts *opts, const struct ssl_loss_ctx *ctx,
                     double *work);

/* ------------------------------------------------------------------------------------------
 * SimSiam, facebookresearch/simsiam main_simsiam.py (criterion = nn.CosineSimilarity(dim=1))
 * and simsiam/builder.py (returns z.detach()):
 *   cos(x, y) = x.y / (max(||x||, eps) max(||y||, eps))        (torch's cosine_similarity)
 *   L = -( mean_i cos(p1_i, t2_i) + mean_i cos(p2_i, t1_i) ) * 0.5          (in [-1, 1])
 * ------------------------------------------------------------------------------------------ */
struct ssl_simsiam_opts {
    double eps; /* nn.CosineSimilarity's default 1e-8 */
};
#define SSL_SIMSIAM_OPTS_DEFAULT ((struct ssl_simsiam_opts){.eps = 1e-8})

int64_t ssl_simsiam_work_elems(int64_t n, int64_t d);
double ssl_simsiam_loss(ssl_real *dp1, ssl_real *dp2, const ssl_real *p1, const ssl_real *p2,
                        const ssl_real *t1, const ssl_real *t2, int64_t n, int64_t d,
                        const struct ssl_simsiam_opts *opts, const struct ssl_loss_ctx *ctx,
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
 * the loss returns NAN; the (d, d) route with f(0) = 1 (sigma = 0) is exact.
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
#define SSL_RDM_OPTS_DEFAULT                                                                  \
    ((struct ssl_rdm_opts){.base = SSL_RDM_BASE_SIMSIAM, .pred_type = SSL_RDM_PRED_POLY,     \
                           .location = SSL_RDM_LOC_ONLINE, .sigma = 1.0, .eps = 1e-8})

/* Names as the official command line spells them ("poly", "log", "log_1", "log_2"; "online",
 * "target"; "simsiam", "byol"); NULL for an invalid value. The parsers return 0, or -1 for an
 * unknown name (*out untouched). */
const char *ssl_rdm_pred_name(enum ssl_rdm_pred p);
const char *ssl_rdm_location_name(enum ssl_rdm_location l);
const char *ssl_rdm_base_name(enum ssl_rdm_base b);
int ssl_rdm_pred_parse(const char *s, enum ssl_rdm_pred *out);
int ssl_rdm_location_parse(const char *s, enum ssl_rdm_location *out);
int ssl_rdm_base_parse(const char *s, enum ssl_rdm_base *out);

/* n_global = ssl_loss_global_rows(ctx, n) (the map's route and buffers depend on it). */
int64_t ssl_rdm_work_elems(int64_t n, int64_t n_global, int64_t d);
double ssl_rdm_loss(ssl_real *dp1, ssl_real *dp2, const ssl_real *p1, const ssl_real *p2,
                    const ssl_real *t1, const ssl_real *t2, int64_t n, int64_t d,
                    const struct ssl_rdm_opts *opts, const struct ssl_loss_ctx *ctx,
                    double *work);

#endif
