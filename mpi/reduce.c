/* reduce.c: bucketed, overlappable gradient allreduce (see reduce.h). */
#include "reduce.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A failure found here (not by MPI) goes through the communicator's error handler too. */
static int raise_error(MPI_Comm comm, int code)
{
    MPI_Comm_call_errhandler(comm, code);
    return code;
}

int ssl_grad_reduce_init(struct ssl_grad_reduce *r, float *grads, int64_t n, size_t bucket_bytes,
                         const struct ssl_comm *comm)
{
    memset(r, 0, sizeof *r);
    r->comm = MPI_COMM_NULL;
    if (n < 0 || (n > 0 && grads == NULL)) return raise_error(comm->world, MPI_ERR_ARG);
    if (bucket_bytes == 0) bucket_bytes = SSL_GRAD_REDUCE_DEFAULT_BUCKET_BYTES;
    size_t elems = bucket_bytes / sizeof(float);
    if (elems < 1) elems = 1;
    if (elems > INT_MAX) elems = INT_MAX;
    int64_t n_buckets = n == 0 ? 0 : (n - 1) / (int64_t)elems + 1;
    if (n_buckets > INT_MAX) return raise_error(comm->world, MPI_ERR_COUNT);
    r->grads = grads;
    r->n_elems = n;
    r->bucket_elems = (int64_t)elems;
    r->n_buckets = (int)n_buckets;
    r->n_unstarted = r->n_buckets;
    int rc = MPI_Comm_dup(comm->world, &r->comm);
    if (rc != MPI_SUCCESS) return rc;
    r->requests = malloc((size_t)(r->n_buckets > 0 ? r->n_buckets : 1) * sizeof *r->requests);
    if (r->requests == NULL) return raise_error(comm->world, MPI_ERR_NO_MEM);
    for (int b = 0; b < r->n_buckets; b++) r->requests[b] = MPI_REQUEST_NULL;
    return MPI_SUCCESS;
}

/* Starts bucket n_unstarted - 1. */
static int start_last(struct ssl_grad_reduce *r)
{
    int b = --r->n_unstarted;
    int64_t first = (int64_t)b * r->bucket_elems;
    int64_t count = r->n_elems - first < r->bucket_elems ? r->n_elems - first : r->bucket_elems;
    return MPI_Iallreduce(MPI_IN_PLACE, r->grads + first, (int)count, MPI_FLOAT, MPI_SUM, r->comm,
                          &r->requests[b]);
}

int ssl_grad_reduce_ready(struct ssl_grad_reduce *r, int64_t first_ready_elem)
{
    while (r->n_unstarted > 0 &&
           (int64_t)(r->n_unstarted - 1) * r->bucket_elems >= first_ready_elem) {
        int rc = start_last(r);
        if (rc != MPI_SUCCESS) return rc;
    }
    int n_started = r->n_buckets - r->n_unstarted;
    if (n_started == 0) return MPI_SUCCESS;
    /* libnbc progresses only inside MPI calls: nudge the buckets in flight */
    int done = 0;
    return MPI_Testall(n_started, r->requests + r->n_unstarted, &done, MPI_STATUSES_IGNORE);
}

int ssl_grad_reduce_finish(struct ssl_grad_reduce *r)
{
    while (r->n_unstarted > 0) {
        int rc = start_last(r);
        if (rc != MPI_SUCCESS) return rc;
    }
    int rc = r->n_buckets > 0 ? MPI_Waitall(r->n_buckets, r->requests, MPI_STATUSES_IGNORE)
                              : MPI_SUCCESS;
    r->n_unstarted = r->n_buckets;
    return rc;
}

void ssl_grad_reduce_free(struct ssl_grad_reduce *r)
{
    free(r->requests);
    r->requests = NULL;
    if (r->comm != MPI_COMM_NULL) MPI_Comm_free(&r->comm);
    r->comm = MPI_COMM_NULL;
}
