/* reduce.h: the gradient allreduce over the one contiguous gradient buffer (params->grads,
 * src/params.h), in buckets, so that it can overlap the backward pass.
 *
 * The buffer (n) is cut into buckets of bucket_bytes / sizeof(float) elements (the last one
 * shorter); bucket b covers [b * bucket_elems, min((b + 1) * bucket_elems, n)). Each bucket is
 * one MPI_Iallreduce(MPI_IN_PLACE, ..., MPI_FLOAT, MPI_SUM). The backward produces gradients
 * from the LAST parameters to the first, so buckets become ready from the end of the buffer:
 * ssl_grad_reduce_ready(r, e) starts every not yet started bucket lying entirely at or above
 * element e, and ssl_grad_reduce_finish starts the rest and waits for all of them.
 *
 * SUM, not average: every loss in ssltrain is written for the GLOBAL batch (its statistics are
 * summed over the ranks, its normalisations use the global row count, SyncBN uses the global
 * batch statistics), and each rank's backward produces the exact contribution of its own rows
 * to the gradient of that global loss. The gradient of the global loss is therefore the SUM of
 * the ranks' contributions, which is what one process computes on the global batch (and so
 * the update is the single-process update). Averaging would divide it by P (the 1/P error
 * the PyTorch recipes make with a non-differentiable all_reduce in the loss).
 *
 * Invariants:
 *   - init and free are COLLECTIVE over comm->world (they duplicate / free a communicator of
 *     the reducer's own, so that the buckets' non-blocking collectives are matched among
 *     themselves and never against the SyncBN / loss collectives the backward issues on
 *     comm->world between two `ready` calls);
 *   - ready and finish are COLLECTIVE in the sense that every rank must start every bucket:
 *     buckets are always started in the same order (last bucket first) whatever the arguments
 *     of `ready`, so ranks may call ready at different points or with different thresholds;
 *     every rank must call finish for each step;
 *   - while a bucket is in flight (between the `ready` that started it and finish) its
 *     elements must be neither read nor written; elements below the threshold passed to
 *     `ready` can still be accumulated into;
 *   - one step at a time: after finish the reducer can be used again for the next step (the
 *     request arrays are allocated once at init; nothing is allocated per step);
 *   - MPI errors go through the communicator's error handler (comm.h: rank message and a
 *     job-wide abort); the functions still return the MPI code (MPI_SUCCESS = 0). */
#ifndef SSL_MPI_REDUCE_H
#define SSL_MPI_REDUCE_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "comm.h"

/* 25 MiB, PyTorch DDP's default bucket_cap_mb. */
#define SSL_GRAD_REDUCE_DEFAULT_BUCKET_BYTES ((size_t)25 << 20)

struct ssl_grad_reduce {
    float *grads;         /* (n_elems) the buffer reduced in place; not owned */
    int64_t n_elems;
    int64_t bucket_elems; /* elements per bucket (<= INT_MAX) */
    int n_buckets;
    int n_unstarted;      /* buckets [0, n_unstarted) not yet started this step */
    MPI_Request *requests; /* (n_buckets) */
    MPI_Comm comm;        /* a duplicate of comm->world */
};

/* Collective. Prepares the bucketed reduction of grads (n). bucket_bytes 0 means
 * SSL_GRAD_REDUCE_DEFAULT_BUCKET_BYTES; a bucket holds at least one element and at most
 * INT_MAX. Returns MPI_SUCCESS, or an MPI error code (out of memory: MPI_ERR_NO_MEM; raised
 * through comm->world's error handler first). */
int ssl_grad_reduce_init(struct ssl_grad_reduce *r, float *grads, int64_t n, size_t bucket_bytes,
                         const struct ssl_comm *comm);
/* Collective (see the invariants). Starts every not yet started bucket whose first element is
 * at or above first_ready_elem, last bucket first, then lets MPI progress the started ones. */
int ssl_grad_reduce_ready(struct ssl_grad_reduce *r, int64_t first_ready_elem);
/* Collective. Starts the remaining buckets and waits for all; grads then holds the sum over
 * the ranks. Resets the reducer for the next step. */
int ssl_grad_reduce_finish(struct ssl_grad_reduce *r);
/* Collective (frees the duplicated communicator). No bucket may be in flight. */
void ssl_grad_reduce_free(struct ssl_grad_reduce *r);

#endif
