/* eig_gram.h: matrix functions W = (G + eps I)^power of a symmetric GLOBAL matrix held as block
 * rows, e.g. the (B, B) instance Gram matrix of a global batch when each rank holds the rows of
 * its own samples (Zero-CL's instance whitening, power = -0.5).
 *
 * Invariants:
 *   - input and output are block rows: rank r holds rows [r rows, (r + 1) rows) as a row-major
 *     (rows, n) array, n = rows * comm->size, the same rows on every rank;
 *   - below the threshold (or on one rank) the matrix is replicated and every rank runs LAPACK;
 *     above it no rank ever holds an n x n array: the block rows are redistributed to a
 *     2-D block-cyclic grid (Cpdgemr2d), solved there (pdsyevd, pdgemm) and redistributed back;
 *   - W = U diag(f(lambda)) U^T does not depend on the choice of eigenvectors inside an
 *     eigenspace, so both paths agree to rounding also with repeated eigenvalues;
 *   - every rank returns the same code (all checks are agreed on collectively);
 *   - buffers and BLACS contexts are made and released per call (an O(n^3) solve dwarfs the
 *     allocation); Cblacs_exit is never called. */
#ifndef SSL_MPI_EIG_GRAM_H
#define SSL_MPI_EIG_GRAM_H

#include <stdint.h>

#include "comm.h"

/* Collective over comm->world. G is a symmetric (n, n) matrix held as block rows: this rank holds
 * rows [rank*rows, (rank+1)*rows) as a (rows, n) row-major array g_rows; every rank has the same
 * `rows` and n = rows * comm->size. Computes W = U diag(f(lambda)) U^T, f(l) = (l + eps)^power
 * (ZCA: power = -0.5), with G = U diag(lambda) U^T, and returns THIS rank's block rows of W in
 * w_rows (rows, n) row-major.
 *  - n < threshold or one rank: the block rows are allgathered, every rank runs ssl_linalg_syevd
 *    (src/linalg.h, LAPACK dsyevd) on the replicated matrix and forms its own rows of W;
 *  - otherwise: the block rows are redistributed (Cpdgemr2d, from a P x 1 grid with block size
 *    rows x n to a 2-D block-cyclic grid as square as possible, block SSL_EIG_BLOCK = 64, as in
 *    eig_scalapack.c), pdsyevd solves, the eigenvector columns are scaled locally by f(lambda),
 *    W = (U F) U^T by pdgemm, and W is redistributed back to block rows with Cpdgemr2d. Nothing
 *    n x n is ever held by one rank.
 * rows, n, threshold, eps and power must be the same on every rank (checked).
 * Returns 0, SSL_E_NONFINITE (a non-finite entry of G on any rank, a solver failure, lambda + eps
 * <= 0 for a negative power, or a non-finite f(lambda), e.g. a negative base with a fractional
 * power; decided identically on every rank), or SSL_E_USAGE for bad sizes (rows < 1,
 * n != rows * comm->size, n beyond an int, arguments that differ between ranks, and on the
 * ScaLAPACK path a rank's (rows, n) block or block-cyclic share of 2^31 elements or more, which
 * ScaLAPACK's int indices cannot address); w_rows is then unspecified. */
int ssl_eig_power_rows(double *w_rows, const double *g_rows, int64_t rows, int64_t n, double eps,
                       double power, int64_t threshold, const struct ssl_comm *comm);

/* Collective over comm->world: always the ScaLAPACK path, also on one rank (a 1 x 1 grid); for
 * tests and bench/eig. Same contract as ssl_eig_power_rows. */
int ssl_eig_power_rows_scalapack(double *w_rows, const double *g_rows, int64_t rows, int64_t n,
                                 double eps, double power, const struct ssl_comm *comm);

#endif
