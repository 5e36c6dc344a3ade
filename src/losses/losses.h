/* losses.h: the benchmark's two losses, exactly as ../shared/bench/torch_peer.py computes them,
 * so `ssltrain bench` and bench/torch_step.py time the same step: VICReg (25/25/1) and
 * SimCLR NT-Xent at temperature 0.2 with the two directions averaged (the peer's choice; the
 * official code sums them). One process, no options: thin wrappers over the full losses of
 * redundancy.h (ssl_vicreg_full_loss) and contrastive.h (ssl_simclr_nt_xent_loss), which is why
 * those carry longer names. They return the loss and ACCUMULATE dL/da, dL/db (either may be
 * NULL) with caller-provided fp64 workspace. Every other loss: docs/LOSSES.md. */
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
