/* contrastive.h: the contrastive family on projector outputs, value and gradient, fp64 inside.
 *
 *   - SimCLR NT-Xent (google-research/simclr objective.py / tf2/objective.py
 *     add_contrastive_loss): negatives from the whole global batch (ssl_loss_gather).
 *   - MoCo v2 InfoNCE against a queue of keys (facebookresearch/moco moco/builder.py), one- and
 *     two-directional, and the queue update (enqueue the gathered keys at a ring pointer).
 *   - SwAV swapped prediction with Sinkhorn-Knopp codes over prototypes, multi-crop
 *     (facebookresearch/swav main_swav.py train, distributed_sinkhorn).
 *
 * Conventions (src/losses/loss.h): inputs are (rows, d) row-major ssl_real; gradients are
 * ACCUMULATED (+=) into the caller's buffers and a NULL gradient means "not needed"; `work` is a
 * caller-provided double workspace of the size the matching *_work_elems gives (nothing is
 * allocated); `ctx` may be NULL (one process). Every loss is the value on the GLOBAL batch (a
 * mean over the global rows, ssl_loss_global_rows), identical on every rank, and the gradients
 * are those of that global value with respect to this rank's rows: exact, no 1/P factor.
 * Functions that take a ctx with a comm are collective over its ranks.
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
struct ssl_simclr_opts ssl_simclr_default_opts(void);

int64_t ssl_simclr_ctx_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d);
/* a, b: this rank's view-1 and view-2 rows (n, d), row i of a and of b the same sample;
 * da, db (n, d) accumulate. Collective (2 gathers, 1 sum, and 2 scatters unless da and db are
 * both NULL: pass the same NULL-ness on every rank). Returns L, or NAN after a failed comm
 * operation. */
double ssl_simclr_loss_ctx(const struct ssl_loss_ctx *ctx, ssl_real *da, ssl_real *db,
                           const ssl_real *a, const ssl_real *b, int64_t n, int64_t d,
                           const struct ssl_simclr_opts *opt, double *work);

/* ssl_simclr_work_elems / ssl_simclr_loss (losses.h, used by the benchmark) are the one-process
 * calls with average_directions = true and norm_eps = 1e-12, as torch_peer.py computes it. */

/* ------------------------------------------------------------------------------------------
 * MoCo v2 InfoNCE with a queue
 * ------------------------------------------------------------------------------------------ */

struct ssl_moco_opts {
    double temperature; /* moco default 0.07; MoCo v2 (--moco-t) 0.2 */
};

/* {0.2}: MoCo v2 (main_moco.py --moco-t 0.2 with --mlp --aug-plus --cos). */
struct ssl_moco_opts ssl_moco_default_opts(void);

int64_t ssl_moco_work_elems(int64_t n, int64_t d, int64_t queue_len);
/* One direction: q the query projections (n, d) (online branch, differentiated), k the key
 * projections (n, d) (target branch: no gradient), queue (queue_len, d) rows of stored,
 * already normalised keys (no gradient). Both q and k are L2-normalised here, as the official
 * builder does. L = mean over the global batch of CE([q.k, q queue^T] / T, 0). dq (n, d)
 * accumulates. Collective (sum). Returns L, or NAN after a failed comm operation. */
double ssl_moco_loss(const struct ssl_loss_ctx *ctx, ssl_real *dq, const ssl_real *q,
                     const ssl_real *k, const double *queue, int64_t queue_len, int64_t n,
                     int64_t d, const struct ssl_moco_opts *opt, double *work);
/* Two directions (WassersteinSSL MoCov2, the MoCo CIFAR demo with symmetric=True):
 * L = L(q1, k2) + L(q2, k1), both against the same queue (SUM, as those codes). */
double ssl_moco_loss_sym(const struct ssl_loss_ctx *ctx, ssl_real *dq1, ssl_real *dq2,
                         const ssl_real *q1, const ssl_real *q2, const ssl_real *k1,
                         const ssl_real *k2, const double *queue, int64_t queue_len, int64_t n,
                         int64_t d, const struct ssl_moco_opts *opt, double *work);

/* The official initial queue: queue_len random normal keys, each normalised (stored as rows). */
void ssl_moco_queue_init(double *queue, int64_t queue_len, int64_t d, struct ssl_rng *r);

int64_t ssl_moco_enqueue_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d);
/* After the loss: normalises this rank's keys k1 (n, d) and, if k2 is not NULL, k2 (n, d)
 * (local rows [k1; k2], as the symmetric demo's cat([k1, k2])), gathers them over the ranks
 * and writes the gathered block at rows [*ptr, *ptr + rows) of queue (queue_len, d); then
 * *ptr = (*ptr + rows) % queue_len. rows (the gathered count) must divide queue_len (the
 * official assert K % batch_size == 0): otherwise nothing is written and SSL_E_USAGE is
 * returned with a message in err. Collective (gather). */
int ssl_moco_enqueue(const struct ssl_loss_ctx *ctx, double *queue, int64_t queue_len, int64_t *ptr,
                     const ssl_real *k1, const ssl_real *k2, int64_t n, int64_t d, double *work,
                     struct ssl_error *err);

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
struct ssl_swav_opts ssl_swav_default_opts(void);

/* Sinkhorn-Knopp (distributed_sinkhorn) in place: scores (n, K) of this rank's rows become the
 * codes (each row sums to 1). The total and the per-prototype sums are global
 * (ssl_loss_sum, 1 + iterations calls); B = ssl_loss_global_rows(n). Collective (sum).
 * Returns 0, or the comm's error. */
int ssl_swav_sinkhorn(const struct ssl_loss_ctx *ctx, double *scores, int64_t n, int64_t K,
                      double epsilon, int iterations, double *work_k);

/* In place on the prototypes (K, d): each row L2-normalised (F.normalize, eps 1e-12). The
 * official code does this with no gradient before every step; the trainer calls it too. */
void ssl_swav_normalize_prototypes(ssl_real *c, int64_t K, int64_t d);

int64_t ssl_swav_work_elems(int n_crops, int64_t n, int64_t d, int64_t K, int n_assign);
/* z: the projections of all crops (n_crops * n, d), crop v's rows at z + v*n*d (the official
 * concatenation); crops 0 .. n_assign-1 are the large crops that give codes. c: prototypes
 * (K, d), used as given (normalise them with ssl_swav_normalize_prototypes first, as the
 * official code). Scores s = n(z) c^T; codes from Sinkhorn on the detached scores;
 * L = (1/n_assign) sum_a (1/(n_crops-1)) sum_{v != a} mean_i -sum_k q_a[i,k] logsoftmax(s_v[i]/T)_k
 * over the global batch. dz (n_crops*n, d) and dc (K, d) accumulate (dc: this rank's share;
 * the trainer's allreduce of parameter gradients sums it). codes_out (n_assign, n, K) may be
 * NULL. Collective (sum). Returns L, or NAN after a failed comm operation. */
double ssl_swav_loss(const struct ssl_loss_ctx *ctx, ssl_real *dz, ssl_real *dc, const ssl_real *z,
                     const ssl_real *c, int n_crops, int64_t n, int64_t d, int64_t K,
                     const struct ssl_swav_opts *opt, double *codes_out, double *work);
/* The same with the codes given (n_assign, n, K), e.g. computed with a queue, or held fixed
 * (this is the stop-gradient made explicit; the gradient checks use it). Collective (sum). */
double ssl_swav_loss_codes(const struct ssl_loss_ctx *ctx, ssl_real *dz, ssl_real *dc,
                           const ssl_real *z, const ssl_real *c, int n_crops, int64_t n, int64_t d,
                           int64_t K, const struct ssl_swav_opts *opt, const double *codes,
                           double *work);

#endif
