/* eig_scalapack.h: the eigen-decomposition of a symmetric (n, n) matrix that every rank holds
 * identically (a replicated global statistic, e.g. an allreduced covariance), by LAPACK on every
 * rank below a size threshold and by ScaLAPACK pdsyevd on a BLACS grid above it.
 *
 * Invariants:
 *   - results follow ssl_linalg_syevd (src/linalg.h): eigenvalues ascending, eigenvectors as
 *     the COLUMNS of a row-major (n, n) U, each column's entry of largest magnitude (the first
 *     one on a tie) positive; both paths give the same vectors up to rounding, and every rank
 *     gets bitwise identical results;
 *   - the threshold will be the config key `linalg.scalapack_threshold` (wired by the trainer
 *     later; callers pass it explicitly for now);
 *   - buffers (the matrix copy, the local blocks, the pdsyevd workspaces found by one lwork = -1
 *     query) are allocated per call and freed before returning: an eigensolve is O(n^3), so the
 *     O(n^2) allocation does not matter, and nothing is kept between calls;
 *   - one BLACS context per call over comm->world (Csys2blacs_handle, Cblacs_gridinit, then
 *     Cblacs_gridexit and Cfree_blacs_system_handle); Cblacs_exit is never called (it would
 *     finalize MPI);
 *   - the (B x B) instance-Gram case, given as block rows and never replicated, with the
 *     whitening product by pdgemm, is mpi/eig_gram.h. */
#ifndef SSL_MPI_EIG_SCALAPACK_H
#define SSL_MPI_EIG_SCALAPACK_H

#include <stdint.h>

#include "comm.h"

/* Block size of the 2-D block-cyclic layout (HPC.md 2.5: 64 beat 32 and 128 for pdsyevd). */
#define SSL_EIG_BLOCK 64

/* Collective over comm->world; every rank passes the same a, n and threshold.
 * eigvals (n) ascending; eigvecs (n, n) row-major, column k = eigenvector k, or NULL for
 * eigenvalues only (the vectors are still computed); a (n, n) symmetric, identical on every
 * rank, not modified. n < threshold or comm->size == 1: every rank runs ssl_linalg_syevd on its
 * own copy (no communication). Otherwise ssl_eig_scalapack. Returns 0, or SSL_E_NONFINITE on a
 * non-finite entry or a solver failure (the same code on every rank). */
int ssl_eig_replicated(double *eigvals, double *eigvecs, const double *a, int64_t n,
                       int64_t threshold, const struct ssl_comm *comm);

/* Collective over comm->world: always the ScaLAPACK path, also on one rank (a 1 x 1 grid; for
 * tests and bench/eig). Grid nprow x npcol with nprow the largest divisor of P not above
 * sqrt(P) (1x2, 1x3, 2x2, ...); each rank copies its blocks out of a (no communication);
 * pdsyevd; the eigenvectors come back replicated by each rank writing its local blocks into a
 * zeroed (n, n) buffer and one MPI_Allreduce SUM (exact: every entry has exactly one nonzero
 * contributor); the eigenvalues are broadcast from rank 0 so that they are bitwise identical.
 * n must fit an int (ScaLAPACK's index type). */
int ssl_eig_scalapack(double *eigvals, double *eigvecs, const double *a, int64_t n,
                      const struct ssl_comm *comm);

#endif
