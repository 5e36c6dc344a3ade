/* eig_scalapack.c: the replicated eigen-decomposition of eig_scalapack.h: LAPACK on every rank
 * below the threshold, ScaLAPACK pdsyevd on a near-square BLACS grid above it.
 *
 * Invariants: all ranks take the same branch (n, threshold and comm->size are the same on every
 * rank) and return the same code; the eigenvectors are replicated by an exact Allreduce SUM and
 * the eigenvalues by a broadcast from rank 0, so every rank holds bitwise the same result; the
 * sign convention is the one of ssl_linalg_syevd, applied after the replication. */
#include "eig_scalapack.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "linalg.h"
#include "scalapack_internal.h"

static bool all_finite(const double *x, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

/* ssl_linalg_syevd's rule: each column's entry of largest magnitude (first on a tie) made
 * positive. u (n, n) row-major, columns = vectors. */
static void fix_signs(double *u, int64_t n)
{
    for (int64_t k = 0; k < n; k++) {
        int64_t arg = 0;
        for (int64_t i = 1; i < n; i++)
            if (fabs(u[i * n + k]) > fabs(u[arg * n + k])) arg = i;
        if (u[arg * n + k] < 0.0)
            for (int64_t i = 0; i < n; i++) u[i * n + k] = -u[i * n + k];
    }
}

/* Collective: every rank learns whether any rank failed. */
static bool any_rank(bool bad, const struct ssl_comm *comm)
{
    int local = bad, any = 0;
    MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, comm->world);
    return any != 0;
}

static int eig_lapack(double *eigvals, double *eigvecs, const double *a, int64_t n)
{
    int64_t nn = n * n;
    double *u = eigvecs ? eigvecs : malloc((size_t)nn * sizeof *u);
    double *work = malloc((size_t)ssl_linalg_syevd_work_elems(n) * sizeof *work);
    SSL_CHECKF(u && work, "out of memory for a %lld x %lld eigenproblem", (long long)n,
               (long long)n);
    memcpy(u, a, (size_t)nn * sizeof *u);
    int rc = ssl_linalg_syevd(u, eigvals, n, work);
    free(work);
    if (u != eigvecs) free(u);
    return rc;
}

int ssl_eig_scalapack(double *eigvals, double *eigvecs, const double *a, int64_t n,
                      const struct ssl_comm *comm)
{
    SSL_CHECK(n > 0);
    const int n_int = ssl_int(n), nb = SSL_EIG_BLOCK, izero = 0;
    /* The same answer on every rank: the input is identical. */
    if (!all_finite(a, n * n)) return SSL_E_NONFINITE;

    int nprow, npcol;
    ssl_blacs_grid_shape(comm->size, &nprow, &npcol);
    const int system = Csys2blacs_handle(comm->world);
    struct ssl_blacs_grid grid;
    ssl_blacs_grid_init(&grid, system, nprow, npcol, comm);
    const int context = grid.context, myrow = grid.myrow, mycol = grid.mycol;

    const int mloc = numroc_(&n_int, &nb, &myrow, &izero, &nprow);
    const int nloc = numroc_(&n_int, &nb, &mycol, &izero, &npcol);
    const int lld = mloc > 1 ? mloc : 1;
    int desc[9], info = 0;
    descinit_(desc, &n_int, &n_int, &nb, &nb, &izero, &izero, &context, &lld, &info);
    SSL_CHECKF(info == 0, "descinit: info %d", info);

    const size_t loc_elems = (size_t)lld * (size_t)(nloc > 1 ? nloc : 1);
    double *aloc = malloc(loc_elems * sizeof *aloc), *zloc = malloc(loc_elems * sizeof *zloc);
    SSL_CHECKF(aloc && zloc, "out of memory for the local blocks (%zu doubles)", loc_elems);
    /* a is symmetric, so row-major and column-major read the same; aloc is column-major. */
    for (int64_t jl = 0; jl < nloc; jl++) {
        const int64_t jg = ssl_blacs_local_to_global(jl, nb, mycol, npcol);
        for (int64_t il = 0; il < mloc; il++)
            aloc[jl * lld + il] = a[ssl_blacs_local_to_global(il, nb, myrow, nprow) * n + jg];
    }

    const int info_solve = ssl_scalapack_pdsyevd(aloc, eigvals, zloc, desc, n_int, mloc,
                                                 nloc, comm);
    free(aloc);

    int rc = 0;
    if (any_rank(info_solve != 0 || !all_finite(eigvals, n), comm)) rc = SSL_E_NONFINITE;
    if (rc == 0) {
        /* pdsyevd returns W on every process; rank 0's copy makes them bitwise equal. */
        MPI_Bcast(eigvals, n_int, MPI_DOUBLE, 0, comm->world);
        const int64_t nn = n * n;
        double *u = eigvecs ? eigvecs : malloc((size_t)nn * sizeof *u);
        SSL_CHECKF(u, "out of memory for the eigenvectors (%lld doubles)", (long long)nn);
        memset(u, 0, (size_t)nn * sizeof *u);
        for (int64_t jl = 0; jl < nloc; jl++) {
            const int64_t jg = ssl_blacs_local_to_global(jl, nb, mycol, npcol);
            for (int64_t il = 0; il < mloc; il++)
                u[ssl_blacs_local_to_global(il, nb, myrow, nprow) * n + jg] = zloc[jl * lld + il];
        }
        /* Exact: each entry is owned by one rank, the others add zeros. */
        for (int64_t off = 0; off < nn; off += INT_MAX) {
            const int64_t count = nn - off < INT_MAX ? nn - off : INT_MAX;
            MPI_Allreduce(MPI_IN_PLACE, u + off, (int)count, MPI_DOUBLE, MPI_SUM, comm->world);
        }
        fix_signs(u, n);
        if (u != eigvecs) free(u);
    }
    free(zloc);
    Cblacs_gridexit(context);
    Cfree_blacs_system_handle(system);
    return rc;
}

int ssl_eig_replicated(double *eigvals, double *eigvecs, const double *a, int64_t n,
                       int64_t threshold, const struct ssl_comm *comm)
{
    SSL_CHECK(n > 0);
    if (n < threshold || comm->size == 1) return eig_lapack(eigvals, eigvecs, a, n);
    return ssl_eig_scalapack(eigvals, eigvecs, a, n, comm);
}

/* The helpers of scalapack_internal.h, shared with eig_gram.c. */

void ssl_blacs_grid_shape(int size, int *nprow, int *npcol)
{
    int rows = (int)sqrt((double)size);
    while (rows > 1 && size % rows) rows--;
    if (rows < 1) rows = 1;
    *nprow = rows;
    *npcol = size / rows;
}

void ssl_blacs_grid_init(struct ssl_blacs_grid *grid, int system, int nprow, int npcol,
                         const struct ssl_comm *comm)
{
    int context = system, gr, gc, myrow, mycol;
    Cblacs_gridinit(&context, "Row", nprow, npcol);
    Cblacs_gridinfo(context, &gr, &gc, &myrow, &mycol);
    SSL_CHECKF(gr == nprow && gc == npcol && myrow >= 0 && mycol >= 0,
               "BLACS grid %dx%d: rank %d got (%d, %d) in a %dx%d grid", nprow, npcol,
               comm->rank, myrow, mycol, gr, gc);
    *grid = (struct ssl_blacs_grid){context, nprow, npcol, myrow, mycol};
}

int ssl_scalapack_pdsyevd(double *aloc, double *eigvals, double *zloc, const int *desc, int n,
                          int mloc, int nloc, const struct ssl_comm *comm)
{
    const int nb = desc[5], ione = 1;
    int info = 0;
    /* Workspace query (lwork = liwork = -1), then the solve. */
    double work_query = 0;
    int iwork_query = 0, lwork = -1, liwork = -1;
    pdsyevd_("V", "U", &n, aloc, &ione, &ione, desc, eigvals, zloc, &ione, &ione, desc,
             &work_query, &lwork, &iwork_query, &liwork, &info);
    SSL_CHECKF(info == 0 && work_query >= 0, "pdsyevd workspace query: info %d", info);
    /* The query under-reports for small n (n = 50 and 130 on 1x2, 1x3 and 2x2 grids: PDORMTR
     * then rejects LWORK, prints "parameter number 16 had an illegal value" and leaves wrong
     * vectors with info = 0). So take the largest of the ranks' answers and of the documented
     * minimum (PDSYEVD: max(1 + 6n + 2 NP NQ, TRILWMIN) + 2n, TRILWMIN = 3n + max(NB (NP + 1),
     * 3 NB)), plus PDORMTR's own need (max(NB (NB - 1) / 2, (NQ + MP) NB) + NB^2, bounded with
     * n for NQ and MP). */
    const double np_d = mloc, nq_d = nloc, n_d = (double)n, nb_d = nb;
    const double trilwmin = 3 * n_d + fmax(nb_d * (np_d + 1), 3 * nb_d);
    double need[2] = {fmax(work_query, fmax(1 + 6 * n_d + 2 * np_d * nq_d, trilwmin) + 2 * n_d)
                          + fmax(nb_d * (nb_d - 1) / 2, 2 * n_d * nb_d) + nb_d * nb_d,
                      (double)iwork_query};
    MPI_Allreduce(MPI_IN_PLACE, need, 2, MPI_DOUBLE, MPI_MAX, comm->world);
    SSL_CHECKF(need[0] < (double)INT_MAX && need[1] < (double)INT_MAX,
               "pdsyevd workspace (%g, %g) does not fit an int", need[0], need[1]);
    lwork = (int)need[0] + 1;
    liwork = need[1] > 1 ? (int)need[1] : 1;
    double *work = malloc((size_t)lwork * sizeof *work);
    int *iwork = malloc((size_t)liwork * sizeof *iwork);
    SSL_CHECKF(work && iwork, "out of memory for pdsyevd's workspace (%d + %d)", lwork, liwork);
    pdsyevd_("V", "U", &n, aloc, &ione, &ione, desc, eigvals, zloc, &ione, &ione, desc, work,
             &lwork, iwork, &liwork, &info);
    free(iwork);
    free(work);
    return info;
}
