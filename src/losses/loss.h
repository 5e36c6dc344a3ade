/* loss.h: what every SSL loss shares: how it reaches the rest of the global batch, and the
 * keyed randomness inside a loss.
 *
 * A loss is written once, for the global batch, against three operations:
 *   - sum:     fp64 statistics (sum z, z^T z, z1^T z2, Sinkhorn marginals, ...) summed over the
 *              ranks, in place. Statistics losses compute local sums, call it once, compute
 *              the loss and its gradient with respect to the statistics (identical on every
 *              rank), then local gradients by the chain rule: exact, no 1/P factor.
 *   - gather:  instance losses (SimCLR negatives, instance Gram matrices) gather all ranks' rows;
 *   - scatter: the backward of gather: the gradient of all rows, summed over the ranks, and
 *              this rank's block returned.
 * In one process all three are identities, which is what a NULL comm (or NULL members) means.
 * The distributed issue fills struct ssl_loss_comm from mpi/ without touching any loss.
 *
 * Gradients are ACCUMULATED (+=) into the caller's buffers (STYLE.md 1); a NULL gradient
 * pointer means "not needed". Inputs are ssl_real (float in the program, double in the
 * gradient checks); all accumulation is fp64. Workspaces are caller-provided (each loss has a
 * *_work_elems), so nothing is allocated per step. */
#ifndef SSL_LOSS_H
#define SSL_LOSS_H

#include <stdint.h>

#include "../real.h"
#include "../rng.h"

struct ssl_loss_comm {
    int (*sum)(void *ctx, double *values, int64_t n_values);
    /* local (rows, cols) -> global (global_rows, cols), rank blocks in rank order; *offset:
     * this rank's first row in global */
    int (*gather)(void *ctx, const double *local, int64_t rows, int64_t cols, double *global,
                  int64_t *offset);
    /* global_grad (global_rows, cols) summed over ranks; this rank's block into local_grad */
    int (*scatter)(void *ctx, const double *global_grad, int64_t rows, int64_t cols,
                   double *local_grad);
    /* global rows for `rows` local rows (the sum over ranks) */
    int64_t (*global_rows)(void *ctx, int64_t rows);
    /* The eigen-decomposition of a symmetric (m, m) matrix s that is identical on every rank,
     * with ssl_linalg_syevd's contract (s becomes U, l ascending, same sign convention) and a
     * bitwise identical result on every rank; large m may be split over the ranks
     * (ScaLAPACK). Only for replicated matrices: per-rank matrices use ssl_linalg_syevd. */
    int (*eig)(void *ctx, double *s, double *l, int64_t m);
    /* W = (G + eps I)^power for a symmetric global (n, n) matrix G given by block rows: this
     * rank's (rows, n) block of G in, its (rows, n) block of W out (every rank the same rows).
     * Large n is never replicated on one rank (mpi/eig_gram.h). */
    int (*sym_power_rows)(void *ctx, double *w_rows, const double *g_rows, int64_t rows,
                          int64_t n, double eps, double power);
    void *ctx;
};

struct ssl_loss_ctx {
    const struct ssl_loss_comm *comm; /* NULL: one process */
    uint64_t seed;                    /* keys randomness inside losses with step and purpose */
    int64_t step;
};

/* The operations, with the one-process identities when comm (or the member) is NULL. */
int ssl_loss_sum(const struct ssl_loss_ctx *c, double *values, int64_t n_values);
int ssl_loss_gather(const struct ssl_loss_ctx *c, const double *local, int64_t rows, int64_t cols,
                    double *global, int64_t *offset);
int ssl_loss_scatter(const struct ssl_loss_ctx *c, const double *global_grad, int64_t rows,
                     int64_t cols, double *local_grad);
int64_t ssl_loss_global_rows(const struct ssl_loss_ctx *c, int64_t rows);
/* One process: ssl_linalg_syevd(s, l, m, work) (work: ssl_linalg_syevd_work_elems(m)). */
int ssl_loss_eig(const struct ssl_loss_ctx *c, double *s, double *l, int64_t m, double *work);
/* One process (rows == n): W from ssl_linalg_syevd on a copy, with
 * ssl_loss_sym_power_work_elems(n) doubles of work; SSL_E_NONFINITE when some
 * eigenvalue + eps is not positive for a negative power. */
int ssl_loss_sym_power_rows(const struct ssl_loss_ctx *c, double *w_rows, const double *g_rows,
                            int64_t rows, int64_t n, double eps, double power, double *work);
int64_t ssl_loss_sym_power_work_elems(int64_t n);

/* Purposes of randomness inside losses: the stream (seed, SSL_RNG_LOSS, step, purpose, k). */
enum ssl_loss_rng {
    SSL_LOSS_RNG_SUBBATCH = 1, /* W-MSE / CW-RGP sub-batch permutations; k = iteration */
    SSL_LOSS_RNG_GROUPS = 2,   /* CW-RGP / Shuffled-DBN feature permutations; k = sub-batch*16+view */
};
void ssl_loss_rng(struct ssl_rng *r, const struct ssl_loss_ctx *c, enum ssl_loss_rng purpose,
                  uint32_t k);
/* A uniform random permutation of [0, n) from r (Fisher-Yates). */
void ssl_loss_permutation(struct ssl_rng *r, int64_t *perm, int64_t n);

/* Copies n elements of ssl_real into double, and accumulates double into ssl_real (for the
 * losses' fp64 insides). */
void ssl_loss_to_double(double *dst, const ssl_real *src, int64_t n);
void ssl_loss_add_grad(ssl_real *dst, const double *src, int64_t n);

#endif
