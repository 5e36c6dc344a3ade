/* loss_comm.c: struct ssl_loss_comm and struct ssl_bn_sync over MPI (see loss_comm.h).
 * The loss operations' ctx is the caller's struct ssl_mpi_loss_ctx, SyncBN's the
 * const struct ssl_comm *; the operations only read them. */
#include "loss_comm.h"

#include "eig_gram.h"
#include "eig_scalapack.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct ssl_comm *comm_of(void *ctx)
{
    return ((const struct ssl_mpi_loss_ctx *)ctx)->comm;
}

/* A failure found here (not by MPI) goes through the communicator's error handler too. */
static int raise_error(const struct ssl_comm *comm, int code)
{
    MPI_Comm_call_errhandler(comm->world, code);
    return code;
}

static int fits_int(int64_t n)
{
    return n >= 0 && n <= INT_MAX;
}

/* Collective. In-place global sum of n_values doubles, chunked to fit MPI's int count. */
static int sum_doubles(const struct ssl_comm *comm, double *values, int64_t n_values)
{
    if (n_values < 0) return raise_error(comm, MPI_ERR_COUNT);
    for (int64_t done = 0; done < n_values;) {
        int64_t left = n_values - done;
        int count = left > INT_MAX ? INT_MAX : (int)left;
        int rc = MPI_Allreduce(MPI_IN_PLACE, values + done, count, MPI_DOUBLE, MPI_SUM,
                               comm->world);
        if (rc != MPI_SUCCESS) return rc;
        done += count;
    }
    return MPI_SUCCESS;
}

static int mpi_sum(void *ctx, double *values, int64_t n_values)
{
    return sum_doubles(comm_of(ctx), values, n_values);
}

static int bn_sum(void *ctx, double *values, int64_t n_values)
{
    return sum_doubles((const struct ssl_comm *)ctx, values, n_values);
}

/* Collective. Every rank's row count into rows_of (size entries) and the element counts and
 * displacements (in doubles) into counts/displs; *offset = this rank's first global row. */
static int row_layout(const struct ssl_comm *comm, int64_t rows, int64_t cols, int64_t *rows_of,
                      int *counts, int *displs, int64_t *offset)
{
    int rc = MPI_Allgather(&rows, 1, MPI_INT64_T, rows_of, 1, MPI_INT64_T, comm->world);
    if (rc != MPI_SUCCESS) return rc;
    int64_t at = 0;
    for (int r = 0; r < comm->size; r++) {
        if (r == comm->rank) *offset = at;
        int64_t n_elems = rows_of[r] * cols;
        if (rows_of[r] < 0 || (cols > 0 && rows_of[r] > INT64_MAX / cols) || !fits_int(n_elems) ||
            !fits_int(at * cols))
            return raise_error(comm, MPI_ERR_COUNT);
        counts[r] = (int)n_elems;
        displs[r] = (int)(at * cols);
        at += rows_of[r];
    }
    /* the total element count must fit too (Open MPI sums the counts as int) */
    if (!fits_int(at * cols)) return raise_error(comm, MPI_ERR_COUNT);
    return MPI_SUCCESS;
}

/* Scratch for row_layout: size int64 + 2 size ints in one allocation. */
static void *layout_alloc(const struct ssl_comm *comm, int64_t **rows_of, int **counts,
                          int **displs)
{
    size_t p = (size_t)comm->size;
    char *buf = malloc(p * (sizeof **rows_of + 2 * sizeof **counts));
    if (buf == NULL) return NULL;
    *rows_of = (int64_t *)(void *)buf;
    *counts = (int *)(void *)(buf + p * sizeof **rows_of);
    *displs = *counts + p;
    return buf;
}

/* Collective. local (rows, cols) -> global (global_rows, cols), rank blocks in rank order. */
static int mpi_gather(void *ctx, const double *local, int64_t rows, int64_t cols, double *global,
                      int64_t *offset)
{
    const struct ssl_comm *comm = comm_of(ctx);
    if (rows < 0 || cols < 0) return raise_error(comm, MPI_ERR_COUNT);
    int64_t *rows_of;
    int *counts, *displs;
    void *buf = layout_alloc(comm, &rows_of, &counts, &displs);
    if (buf == NULL) return raise_error(comm, MPI_ERR_NO_MEM);
    int64_t off = 0;
    int rc = row_layout(comm, rows, cols, rows_of, counts, displs, &off);
    if (rc == MPI_SUCCESS) {
        double *mine = global + off * cols; /* (rows, cols) */
        if (mine != local && rows * cols > 0)
            memmove(mine, local, (size_t)(rows * cols) * sizeof *mine);
        rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, global, counts, displs,
                            MPI_DOUBLE, comm->world);
    }
    free(buf);
    *offset = off;
    return rc;
}

/* Collective. global_grad (global_rows, cols) summed over the ranks; this rank's block out. */
static int mpi_scatter(void *ctx, const double *global_grad, int64_t rows, int64_t cols,
                       double *local_grad)
{
    const struct ssl_comm *comm = comm_of(ctx);
    if (rows < 0 || cols < 0) return raise_error(comm, MPI_ERR_COUNT);
    int64_t *rows_of;
    int *counts, *displs;
    void *buf = layout_alloc(comm, &rows_of, &counts, &displs);
    if (buf == NULL) return raise_error(comm, MPI_ERR_NO_MEM);
    int64_t off = 0;
    int rc = row_layout(comm, rows, cols, rows_of, counts, displs, &off);
    if (rc == MPI_SUCCESS) {
        int64_t total = 0;
        for (int r = 0; r < comm->size; r++) total += (int64_t)counts[r];
        uintptr_t g0 = (uintptr_t)global_grad, g1 = g0 + (uintptr_t)total * sizeof(double);
        uintptr_t l0 = (uintptr_t)local_grad, l1 = l0 + (uintptr_t)(rows * cols) * sizeof(double);
        if (rows * cols > 0 && total > 0 && l0 < g1 && g0 < l1)
            rc = raise_error(comm, MPI_ERR_BUFFER);
        else
            rc = MPI_Reduce_scatter(global_grad, local_grad, counts, MPI_DOUBLE, MPI_SUM,
                                    comm->world);
    }
    free(buf);
    return rc;
}

/* Collective. The global row count. */
static int64_t mpi_global_rows(void *ctx, int64_t rows)
{
    const struct ssl_comm *comm = comm_of(ctx);
    int64_t total = rows;
    MPI_Allreduce(&rows, &total, 1, MPI_INT64_T, MPI_SUM, comm->world);
    return total;
}

/* Collective. The replicated eigenproblem: ssl_linalg_syevd's contract in place. */
static int mpi_eig(void *ctx, double *s, double *l, int64_t m)
{
    const struct ssl_mpi_loss_ctx *c = ctx;
    double *a = malloc((size_t)(m * m) * sizeof *a);
    int bad = a == NULL, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, c->comm->world);
    if (any) {
        free(a);
        return raise_error(c->comm, MPI_ERR_NO_MEM);
    }
    memcpy(a, s, (size_t)(m * m) * sizeof *a);
    int rc = ssl_eig_replicated(l, s, a, m, c->eig_threshold, c->comm);
    free(a);
    return rc;
}

/* Collective. Block rows of (G + eps I)^power (mpi/eig_gram.h). */
static int mpi_sym_power_rows(void *ctx, double *w_rows, const double *g_rows, int64_t rows,
                              int64_t n, double eps, double power)
{
    const struct ssl_mpi_loss_ctx *c = ctx;
    return ssl_eig_power_rows(w_rows, g_rows, rows, n, eps, power, c->eig_threshold, c->comm);
}

void ssl_mpi_loss_comm_init(struct ssl_loss_comm *lc, struct ssl_mpi_loss_ctx *ctx,
                            const struct ssl_comm *comm, int64_t eig_threshold)
{
    ctx->comm = comm;
    ctx->eig_threshold = eig_threshold;
    lc->sum = mpi_sum;
    lc->gather = mpi_gather;
    lc->scatter = mpi_scatter;
    lc->global_rows = mpi_global_rows;
    lc->eig = mpi_eig;
    lc->sym_power_rows = mpi_sym_power_rows;
    lc->ctx = ctx;
}

void ssl_mpi_bn_sync_init(struct ssl_bn_sync *s, const struct ssl_comm *comm)
{
    s->sum = bn_sum;
    s->ctx = (void *)(uintptr_t)comm; /* read only; the hook's ctx is not const */
}
