/* contrastive.h: the contrastive family on projector outputs, value and gradient, fp64 inside.
 *
 *   - SimCLR NT-Xent (google-research/simclr objective.py / tf2/objective.py
 *     add_contrastive_loss): negatives from the whole global batch (ssl_loss_gather).
 *   - MoCo v2 InfoNCE against a queue of keys (facebookresearch/moco moco/builder.py), one- and
 *     two-directional, and the queue update (enqueue the gathered keys at a ring pointer).
 *   - SwAV swapped prediction with Sinkhorn-Knopp codes over prototypes, multi-crop
 *     (facebookresearch/swav main_swav.py train, distributed_sinkhorn).
 *
 * The one loss API shared by every family (src/losses/loss.h):
 *   struct ssl_<name>_opts; ssl_<name>_defaults(void);
 *   ssl_<name>_work_elems(ctx, n, d, <extra sizes>, opts);
 *   int ssl_<name>_loss(double *value, <optional extra outputs>, <gradients>, <inputs>,
 *                       n, d, <extra sizes>, opts, ctx, work).
 * Inputs are (rows, d) row-major ssl_real; gradients are ACCUMULATED (+=) into the caller's
 * buffers and a NULL gradient means "not needed"; optional extra outputs (codes) may be NULL;
 * `opts` NULL means the defaults; `ctx` NULL means one process; `work` is a caller-provided
 * double workspace of the size the matching *_work_elems gives (nothing is allocated).
 * Every loss is the value on the GLOBAL batch (a mean over the global rows,
 * ssl_loss_global_rows), identical on every rank, and the gradients are those of that global
 * value with respect to this rank's rows: exact, no 1/P factor. Functions that take a ctx with
 * a comm are collective over its ranks.
 *
 * Status: every loss returns 0 on success with L in *value. On failure it returns a non-zero
 * enum ssl_status (src/check.h): SSL_E_NONFINITE when L is not finite, SSL_E_USAGE when the
 * options do not fit the shapes, or the comm operation's own non-zero code; then *value is NAN
 * and the gradients are unspecified (untouched or partly accumulated). L is a global value, so
 * a non-finite L stops every rank at the same point (no collective is left unmatched).
 *
 * docs/losses/contrastive.md has the formulas, defaults, sources and deviations. */
#ifndef SSL_LOSSES_CONTRASTIVE_H
#define SSL_LOSSES_CONTRASTIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "../check.h"
#include "../real.h"
#include "../rng.h"
#include "loss.h"

/* ------------------------------------------------------------------------------------------
 * SimCLR NT-Xent
 *
 * Naming: `ssl_simclr_loss` and `ssl_simclr_work_elems` are TAKEN by src/losses/losses.h (the
 * benchmark's fixed-form wrapper, double return, unchanged). The full-featured loss of this
 * API is therefore `ssl_simclr_nt_xent_loss` / `ssl_simclr_nt_xent_work_elems`; its options
 * keep the family name: struct ssl_simclr_opts, ssl_simclr_defaults().
 * ------------------------------------------------------------------------------------------ */

struct ssl_simclr_opts {
    double temperature;      /* official default 0.1 (tf2/run.py); the CIFAR-10 recipe uses 0.5 */
    bool average_directions; /* false (official): L = CE(view-1 anchors) + CE(view-2 anchors);
                              * true: their mean (PyTorch ports, torch_peer.py) */
    double norm_eps;         /* rows are x / max(||x||, norm_eps): official 1e-6
                              * (tf.math.l2_normalize's 1e-12 is on the squared norm);
                              * F.normalize (PyTorch ports) 1e-12 */
};

/* {0.1, false, 1e-6}: google-research/simclr. */
struct ssl_simclr_opts ssl_simclr_defaults(void);

/* o may be NULL (the size does not depend on it). */
int64_t ssl_simclr_nt_xent_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d,
                                      const struct ssl_simclr_opts *o);
/* a, b: this rank's view-1 and view-2 rows (n, d), row i of a and of b the same sample;
 * da, db (n, d) accumulate. Collective (2 gathers, 1 sum, and 2 scatters unless da and db are
 * both NULL: pass the same NULL-ness on every rank). */
int ssl_simclr_nt_xent_loss(double *value, ssl_real *da, ssl_real *db, const ssl_real *a,
                            const ssl_real *b, int64_t n, int64_t d,
                            const struct ssl_simclr_opts *o, const struct ssl_loss_ctx *ctx,
                            double *work);

/* ssl_simclr_work_elems / ssl_simclr_loss (losses.h, used by the benchmark) are the one-process
 * ssl_simclr_nt_xent_loss with average_directions = true and norm_eps = 1e-12, as torch_peer.py
 * computes it (they return the value, NAN on failure). */

/* ------------------------------------------------------------------------------------------
 * MoCo v2 InfoNCE with a queue
 * ------------------------------------------------------------------------------------------ */

struct ssl_moco_opts {
    double temperature; /* moco default 0.07; MoCo v2 (--moco-t) 0.2 */
};

/* {0.2}: MoCo v2 (main_moco.py --moco-t 0.2 with --mlp --aug-plus --cos). */
struct ssl_moco_opts ssl_moco_defaults(void);

/* Both directions reuse the one workspace: ssl_moco_sym_work_elems is the same size. ctx and o
 * may be NULL (the size depends on neither). */
int64_t ssl_moco_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d,
                            int64_t queue_len, const struct ssl_moco_opts *o);
int64_t ssl_moco_sym_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d,
                                int64_t queue_len, const struct ssl_moco_opts *o);
/* One direction: q the query projections (n, d) (online branch, differentiated), k the key
 * projections (n, d) (target branch: no gradient), queue (queue_len, d) rows of stored,
 * already normalised keys (no gradient). Both q and k are L2-normalised here, as the official
 * builder does. L = mean over the global batch of CE([q.k, q queue^T] / T, 0). dq (n, d)
 * accumulates. Collective (1 sum). */
int ssl_moco_loss(double *value, ssl_real *dq, const ssl_real *q, const ssl_real *k,
                  const double *queue, int64_t n, int64_t d, int64_t queue_len,
                  const struct ssl_moco_opts *o, const struct ssl_loss_ctx *ctx, double *work);
/* Two directions (WassersteinSSL MoCov2, the MoCo CIFAR demo with symmetric=True):
 * L = L(q1, k2) + L(q2, k1), both against the same queue (SUM, as those codes). Collective
 * (2 sums). */
int ssl_moco_sym_loss(double *value, ssl_real *dq1, ssl_real *dq2, const ssl_real *q1,
                      const ssl_real *q2, const ssl_real *k1, const ssl_real *k2,
                      const double *queue, int64_t n, int64_t d, int64_t queue_len,
                      const struct ssl_moco_opts *o, const struct ssl_loss_ctx *ctx,
                      double *work);

/* The official initial queue: queue_len random normal keys, each normalised (stored as rows). */
void ssl_moco_queue_init(double *queue, int64_t queue_len, int64_t d, struct ssl_rng *r);

int64_t ssl_moco_enqueue_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d);
/* After the loss: normalises this rank's keys k1 (n, d) and, if k2 is not NULL, k2 (n, d)
 * (local rows [k1; k2], as the symmetric demo's cat([k1, k2])), gathers them over the ranks
 * and writes the gathered block at rows [*ptr, *ptr + rows) of queue (queue_len, d); then
 * *ptr = (*ptr + rows) % queue_len. rows (the gathered count) must divide queue_len (the
 * official assert K % batch_size == 0) and *ptr must be in step: otherwise nothing is written
 * and SSL_E_USAGE is returned; a failed gather returns the comm's own code. Either way a
 * message goes to err (may be NULL). Returns 0 on success. Collective (1 gather). */
int ssl_moco_enqueue(double *queue, int64_t *ptr, const ssl_real *k1, const ssl_real *k2,
                     int64_t n, int64_t d, int64_t queue_len, const struct ssl_loss_ctx *ctx,
                     double *work, struct ssl_error *err);

/* ------------------------------------------------------------------------------------------
 * SwAV
 * ------------------------------------------------------------------------------------------ */

struct ssl_swav_opts {
    double temperature;      /* 0.1 */
    double epsilon;          /* 0.05 */
    int sinkhorn_iterations; /* 3 */
    int n_assign;            /* crops_for_assign = {0, .., n_assign - 1}: the large crops, 2 */
};

/* {0.1, 0.05, 3, 2}: main_swav.py defaults (nmb_prototypes 3000, feat_dim 128 are shapes). */
struct ssl_swav_opts ssl_swav_defaults(void);

/* Sinkhorn-Knopp (distributed_sinkhorn) in place: scores (n, K) of this rank's rows become the
 * codes (each row sums to 1). The total and the per-prototype sums are global
 * (ssl_loss_sum, 1 + iterations calls); B = ssl_loss_global_rows(n). work_k: K doubles.
 * Collective (sum). Returns 0, or the comm's error. */
int ssl_swav_sinkhorn(double *scores, int64_t n, int64_t K, double epsilon, int iterations,
                      const struct ssl_loss_ctx *ctx, double *work_k);

/* In place on the prototypes (K, d): each row L2-normalised (F.normalize, eps 1e-12). The
 * official code does this with no gradient before every step; the trainer calls it too. */
void ssl_swav_normalize_prototypes(ssl_real *c, int64_t K, int64_t d);

/* For both ssl_swav_loss and ssl_swav_codes_loss. ctx may be NULL; o NULL = defaults (the size
 * depends on o->n_assign). */
int64_t ssl_swav_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d, int64_t K,
                            int64_t n_crops, const struct ssl_swav_opts *o);
/* z: the projections of all crops (n_crops * n, d), crop v's rows at z + v*n*d (the official
 * concatenation); crops 0 .. n_assign-1 are the large crops that give codes. c: prototypes
 * (K, d), used as given (normalise them with ssl_swav_normalize_prototypes first, as the
 * official code). Scores s = n(z) c^T; codes from Sinkhorn on the detached scores;
 * L = (1/n_assign) sum_a (1/(n_crops-1)) sum_{v != a} mean_i -sum_k q_a[i,k] logsoftmax(s_v[i]/T)_k
 * over the global batch. dz (n_crops*n, d) and dc (K, d) accumulate (dc: this rank's share;
 * the trainer's allreduce of parameter gradients sums it). codes_out (n_assign, n, K) may be
 * NULL. n_crops >= 2 and 1 <= n_assign <= n_crops, else SSL_E_USAGE. Collective (sum). */
int ssl_swav_loss(double *value, double *codes_out, ssl_real *dz, ssl_real *dc, const ssl_real *z,
                  const ssl_real *c, int64_t n, int64_t d, int64_t K, int64_t n_crops,
                  const struct ssl_swav_opts *o, const struct ssl_loss_ctx *ctx, double *work);
/* The same with the codes given (n_assign, n, K), e.g. computed with a queue, or held fixed
 * (this is the stop-gradient made explicit; the gradient checks use it). Collective (sum). */
int ssl_swav_codes_loss(double *value, ssl_real *dz, ssl_real *dc, const ssl_real *z,
                        const ssl_real *c, const double *codes, int64_t n, int64_t d, int64_t K,
                        int64_t n_crops, const struct ssl_swav_opts *o,
                        const struct ssl_loss_ctx *ctx, double *work);

#endif
