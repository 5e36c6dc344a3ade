/* losses.h: SSL objectives on projector outputs, value and gradient, fp64 inside.
 *
 * Each loss takes the views' embeddings a, b (n, d), returns the loss and ACCUMULATES dL/da,
 * dL/db (either may be NULL). `work` is caller-provided fp64 workspace of the size the
 * matching *_work_elems gives, so nothing is allocated per step.
 * For now: VICReg and SimCLR exactly as ../shared/bench/torch_peer.py computes them (which
 * matches the official code: facebookresearch/vicreg main.py VICReg.forward; SimCLR's NT-Xent
 * with the self-similarity masked). The loss issue adds the rest and the distributed modes. */
#ifndef SSL_LOSSES_H
#define SSL_LOSSES_H

#include <stdint.h>

#include "../real.h"

struct ssl_vicreg_weights {
    double sim, std, cov; /* official defaults 25, 25, 1 */
};

int64_t ssl_vicreg_work_elems(int64_t n, int64_t d);
/* terms (optional, 3): invariance, variance (both views), covariance (both views), unweighted. */
double ssl_vicreg_loss(ssl_real *da, ssl_real *db, const ssl_real *a, const ssl_real *b, int64_t n,
                       int64_t d, const struct ssl_vicreg_weights *w, double *terms, double *work);

int64_t ssl_simclr_work_elems(int64_t n, int64_t d);
double ssl_simclr_loss(ssl_real *da, ssl_real *db, const ssl_real *a, const ssl_real *b, int64_t n,
                       int64_t d, double temperature, double *work);

#endif
