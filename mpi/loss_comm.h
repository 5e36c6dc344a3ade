/* loss_comm.h: the MPI implementations of the operations the losses (struct ssl_loss_comm,
 * src/losses/loss.h) and BatchNorm (struct ssl_bn_sync, src/layers/layers.h) are written
 * against, over the run's communicator (struct ssl_comm, mpi/comm.h).
 *
 * Invariants:
 *   - every operation is COLLECTIVE over comm->world: all ranks call it, in the same order, with
 *     the same n_values / cols (rows may differ per rank);
 *   - the filled structs keep a pointer to comm (ctx), which must outlive them;
 *   - every MPI error (and a count that does not fit an MPI int) goes through comm->world's
 *     error handler, which prints the rank and aborts the job; the operations still return the
 *     MPI code (MPI_SUCCESS = 0 on success) so a caller with a non-fatal handler sees it;
 *   - summation order is MPI's (deterministic for a fixed rank count and placement, not
 *     bitwise equal across rank counts); everything is fp64 (MPI_DOUBLE). */
#ifndef SSL_MPI_LOSS_COMM_H
#define SSL_MPI_LOSS_COMM_H

#include "../src/layers/layers.h"
#include "../src/losses/loss.h"
#include "comm.h"

/* Not collective (no communication): fills lc with
 *   sum:         MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM), in chunks of at
 *                most INT_MAX doubles;
 *   gather:      MPI_Allgather of the ranks' row counts, then MPI_Allgatherv of the (rows, cols)
 *                blocks into (global_rows, cols) in rank order; *offset = sum of the row counts
 *                of the lower ranks. `local` may alias `global` (the block is moved into place
 *                and MPI_IN_PLACE used);
 *   scatter:     the backward of gather: MPI_Allgather of the row counts, then
 *                MPI_Reduce_scatter (MPI_SUM) of the (global_rows, cols) gradient, so this
 *                rank's (rows, cols) block of the sum over ranks lands in local_grad (which
 *                must not overlap global_grad);
 *   global_rows: MPI_Allreduce (MPI_SUM) of rows as int64;
 *   eig:         ssl_eig_replicated (mpi/eig_scalapack.h) with eig_threshold: LAPACK on every
 *                rank below it, ScaLAPACK pdsyevd at or above it;
 *   sym_power_rows: ssl_eig_power_rows (mpi/eig_gram.h) with eig_threshold.
 * gather and scatter allocate O(P) ints of counts per call, eig one m x m copy (freed before
 * returning). ctx is caller-owned storage for the operations' state; it and comm must outlive
 * lc. eig_threshold: the config key linalg.scalapack_threshold. */
struct ssl_mpi_loss_ctx {
    const struct ssl_comm *comm;
    int64_t eig_threshold;
};
void ssl_mpi_loss_comm_init(struct ssl_loss_comm *lc, struct ssl_mpi_loss_ctx *ctx,
                            const struct ssl_comm *comm, int64_t eig_threshold);

/* Not collective: fills s for SyncBN: its sum is the same MPI_Allreduce of the fp64 partial
 * sums (collective over comm->world on every forward and train-mode backward). */
void ssl_mpi_bn_sync_init(struct ssl_bn_sync *s, const struct ssl_comm *comm);

#endif
