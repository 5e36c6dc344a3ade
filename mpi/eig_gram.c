/* eig_gram.c: W = (G + eps I)^power of a symmetric matrix held as block rows (eig_gram.h):
 * replicated LAPACK below the threshold, a block-cyclic ScaLAPACK solve above it.
 *
 * Invariants: every rank takes the same branch (rows, n, threshold, eps and power are checked
 * to agree) and returns the same code; both paths read only the upper triangle of G (entries
 * (i, j) with i <= j: ssl_linalg_syevd's column-major 'L' and pdsyevd's 'U' on the
 * redistributed matrix are that triangle), so a G that is symmetric only to rounding gives
 * the same W on both paths; on the ScaLAPACK path the largest arrays a rank holds are its
 * (rows, n) block rows and its n^2 / P share of three block-cyclic matrices. */
#include "eig_gram.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "check.h"
#include "eig_scalapack.h"
#include "linalg.h"
#include "scalapack_internal.h"

static bool all_finite(const double *x, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

/* Collective: every rank learns whether any rank failed. */
static bool any_rank(bool bad, const struct ssl_comm *comm)
{
    int local = bad, any = 0;
    MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, comm->world);
    return any != 0;
}

static uint64_t bits_of(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* Collective: SSL_E_USAGE on every rank unless all ranks pass the same arguments and the sizes
 * are valid. Unequal arguments would make ranks take different branches and hang, or scale
 * the same columns differently. One Allreduce MAX over the values and their complements gives
 * the maximum and the minimum at once. */
static int check_args(int64_t rows, int64_t n, int64_t threshold, double eps, double power,
                      const struct ssl_comm *comm)
{
    enum { K = 5 };
    uint64_t v[2 * K] = {(uint64_t)rows, (uint64_t)n, (uint64_t)threshold, bits_of(eps),
                         bits_of(power)};
    for (int i = 0; i < K; i++) v[K + i] = ~v[i];
    MPI_Allreduce(MPI_IN_PLACE, v, 2 * K, MPI_UINT64_T, MPI_MAX, comm->world);
    for (int i = 0; i < K; i++)
        if (v[i] != ~v[K + i]) return SSL_E_USAGE;
    /* Equal everywhere from here on, so every rank reaches the same verdict. */
    if (rows < 1 || rows > INT_MAX || n != rows * comm->size || n > INT_MAX) return SSL_E_USAGE;
    return 0;
}

/* f (n) = (l + eps)^power in place. Decided only from l, so ranks holding the same l agree. */
static int apply_power(double *l, int64_t n, double eps, double power)
{
    for (int64_t k = 0; k < n; k++) {
        const double base = l[k] + eps;
        /* A negative power of a non-positive base is a singular or indefinite whitening. */
        if (power < 0 && !(base > 0)) return SSL_E_NONFINITE;
        l[k] = pow(base, power);
        if (!isfinite(l[k])) return SSL_E_NONFINITE;
    }
    return 0;
}

/* ---- replicated path -------------------------------------------------------------------- */

/* u (n, n) = the whole matrix, assembled from every rank's (rows, n) block rows. One row is one
 * MPI element, so the counts stay small whatever n^2 is. */
static void allgather_rows(double *u, const double *g_rows, int64_t rows, int64_t n,
                           const struct ssl_comm *comm)
{
    MPI_Datatype row;
    MPI_Type_contiguous(ssl_int(n), MPI_DOUBLE, &row);
    MPI_Type_commit(&row);
    MPI_Allgather(g_rows, ssl_int(rows), row, u, ssl_int(rows), row, comm->world);
    MPI_Type_free(&row);
}

static int power_replicated(double *w_rows, const double *g_rows, int64_t rows, int64_t n,
                            double eps, double power, const struct ssl_comm *comm)
{
    double *u = malloc((size_t)(n * n) * sizeof *u); /* (n, n): G, then U */
    double *f = malloc((size_t)n * sizeof *f);       /* (n): lambda, then f(lambda) */
    double *uf = malloc((size_t)(rows * n) * sizeof *uf); /* (rows, n): my rows of U F */
    double *work = malloc((size_t)ssl_linalg_syevd_work_elems(n) * sizeof *work);
    SSL_CHECKF(u && f && uf && work, "out of memory for a replicated %lld x %lld eigenproblem",
               (long long)n, (long long)n);
    allgather_rows(u, g_rows, rows, n, comm);
    int rc = ssl_linalg_syevd(u, f, n, work);
    if (rc == 0) rc = apply_power(f, n, eps, power);
    /* Every rank solved the same matrix; agreeing anyway keeps the return code collective. */
    if (any_rank(rc != 0, comm)) rc = SSL_E_NONFINITE;
    if (rc == 0) {
        const double *u_mine = u + (int64_t)comm->rank * rows * n; /* (rows, n) */
        for (int64_t i = 0; i < rows; i++)
            for (int64_t k = 0; k < n; k++) uf[i * n + k] = u_mine[i * n + k] * f[k];
        const int n_int = ssl_int(n);
        /* w_rows = (U F)[mine] U^T */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ssl_int(rows), n_int, n_int, 1.0,
                    uf, n_int, u, n_int, 0.0, w_rows, n_int);
    }
    free(work);
    free(uf);
    free(f);
    free(u);
    return rc;
}

/* ---- ScaLAPACK path --------------------------------------------------------------------- */

/* The two layouts of one call: the block rows on a P x 1 grid (block rows x n, rank r is
 * process row r) and the 2-D block-cyclic layout of pdsyevd and pdgemm. */
struct layouts {
    int system;
    struct ssl_blacs_grid strip, grid;
    int desc_strip[9], desc[9];
    int mloc, nloc, lld;   /* this rank's block-cyclic local shape, column-major */
    size_t loc_elems;      /* lld * max(nloc, 1) */
};

static void layouts_open(struct layouts *lay, int64_t rows, int64_t n,
                         const struct ssl_comm *comm)
{
    const int n_int = ssl_int(n), rows_int = ssl_int(rows), nb = SSL_EIG_BLOCK, izero = 0;
    lay->system = Csys2blacs_handle(comm->world);
    ssl_blacs_grid_init(&lay->strip, lay->system, comm->size, 1, comm);
    SSL_CHECKF(lay->strip.myrow == comm->rank, "BLACS P x 1 grid: rank %d is process row %d",
               comm->rank, lay->strip.myrow);
    int nprow, npcol;
    ssl_blacs_grid_shape(comm->size, &nprow, &npcol);
    ssl_blacs_grid_init(&lay->grid, lay->system, nprow, npcol, comm);

    int info = 0;
    descinit_(lay->desc_strip, &n_int, &n_int, &rows_int, &n_int, &izero, &izero,
              &lay->strip.context, &rows_int, &info);
    SSL_CHECKF(info == 0, "descinit (block rows): info %d", info);
    lay->mloc = numroc_(&n_int, &nb, &lay->grid.myrow, &izero, &nprow);
    lay->nloc = numroc_(&n_int, &nb, &lay->grid.mycol, &izero, &npcol);
    lay->lld = lay->mloc > 1 ? lay->mloc : 1;
    descinit_(lay->desc, &n_int, &n_int, &nb, &nb, &izero, &izero, &lay->grid.context,
              &lay->lld, &info);
    SSL_CHECKF(info == 0, "descinit (block-cyclic): info %d", info);
    lay->loc_elems = (size_t)lay->lld * (size_t)(lay->nloc > 1 ? lay->nloc : 1);
}

static void layouts_close(struct layouts *lay)
{
    Cblacs_gridexit(lay->grid.context);
    Cblacs_gridexit(lay->strip.context);
    Cfree_blacs_system_handle(lay->system);
}

/* dst (cols, rows) row-major = src (rows, cols) row-major transposed: the switch between the
 * caller's row-major block rows and ScaLAPACK's column-major local array. */
static void transpose(double *dst, const double *src, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}

/* ufloc = zloc with global column j scaled by f[j]: U F, locally, no communication. */
static void scale_columns(double *ufloc, const double *zloc, const double *f,
                          const struct layouts *lay)
{
    for (int64_t jl = 0; jl < lay->nloc; jl++) {
        const double fj = f[ssl_blacs_local_to_global(jl, SSL_EIG_BLOCK, lay->grid.mycol,
                                                      lay->grid.npcol)];
        for (int64_t il = 0; il < lay->mloc; il++)
            ufloc[jl * lay->lld + il] = zloc[jl * lay->lld + il] * fj;
    }
}

/* f (n) = f(lambda) of the block-cyclic matrix aloc (destroyed); zloc = U. Collective. */
static int solve_power(double *f, double *aloc, double *zloc, int64_t n, double eps,
                       double power, const struct layouts *lay, const struct ssl_comm *comm)
{
    const int n_int = ssl_int(n);
    const int info = ssl_scalapack_pdsyevd(aloc, f, zloc, lay->desc, n_int, lay->mloc,
                                           lay->nloc, comm);
    if (any_rank(info != 0 || !all_finite(f, n), comm)) return SSL_E_NONFINITE;
    /* pdsyevd returns lambda on every process; rank 0's copy makes f, and so the verdict,
     * bitwise the same everywhere. */
    MPI_Bcast(f, n_int, MPI_DOUBLE, 0, comm->world);
    return apply_power(f, n, eps, power);
}

/* ScaLAPACK indexes local arrays with int: the block rows and the largest block-cyclic share
 * (process (0, 0)'s) must stay below 2^31 elements. Decided from n and P alone, so every rank
 * agrees. */
static bool fits_scalapack(int64_t rows, int64_t n, int size)
{
    int nprow, npcol;
    ssl_blacs_grid_shape(size, &nprow, &npcol);
    const int64_t nb = SSL_EIG_BLOCK, blocks = (n + nb - 1) / nb;
    const int64_t mloc_max = (blocks + nprow - 1) / nprow * nb;
    const int64_t nloc_max = (blocks + npcol - 1) / npcol * nb;
    return rows * n <= INT_MAX && mloc_max * nloc_max <= INT_MAX;
}

static int power_scalapack(double *w_rows, const double *g_rows, int64_t rows, int64_t n,
                           double eps, double power, const struct ssl_comm *comm)
{
    if (!fits_scalapack(rows, n, comm->size)) return SSL_E_USAGE;
    struct layouts lay;
    layouts_open(&lay, rows, n, comm);
    const int n_int = ssl_int(n);
    double *strip = malloc((size_t)(rows * n) * sizeof *strip); /* (rows, n) column-major */
    double *aloc = malloc(lay.loc_elems * sizeof *aloc);        /* G, then U F */
    double *zloc = malloc(lay.loc_elems * sizeof *zloc);        /* U */
    double *wloc = malloc(lay.loc_elems * sizeof *wloc);        /* W */
    double *f = malloc((size_t)n * sizeof *f);                  /* (n) */
    SSL_CHECKF(strip && aloc && zloc && wloc && f,
               "out of memory for a distributed %lld x %lld eigenproblem", (long long)n,
               (long long)n);

    transpose(strip, g_rows, rows, n);
    Cpdgemr2d(n_int, n_int, strip, 1, 1, lay.desc_strip, aloc, 1, 1, lay.desc,
              lay.grid.context);
    const int rc = solve_power(f, aloc, zloc, n, eps, power, &lay, comm);
    if (rc == 0) {
        scale_columns(aloc, zloc, f, &lay);
        const int ione = 1;
        const double one = 1.0, zero = 0.0;
        pdgemm_("N", "T", &n_int, &n_int, &n_int, &one, aloc, &ione, &ione, lay.desc, zloc,
                &ione, &ione, lay.desc, &zero, wloc, &ione, &ione, lay.desc);
        Cpdgemr2d(n_int, n_int, wloc, 1, 1, lay.desc, strip, 1, 1, lay.desc_strip,
                  lay.grid.context);
        transpose(w_rows, strip, n, rows);
    }
    free(f);
    free(wloc);
    free(zloc);
    free(aloc);
    free(strip);
    layouts_close(&lay);
    return rc;
}

/* ---- entry points ----------------------------------------------------------------------- */

/* Collective: the argument and finiteness checks both paths share. */
static int check_input(const double *g_rows, int64_t rows, int64_t n, int64_t threshold,
                       double eps, double power, const struct ssl_comm *comm)
{
    const int rc = check_args(rows, n, threshold, eps, power, comm);
    if (rc != 0) return rc;
    /* A NaN in one rank's rows must stop every rank before any collective solve. */
    if (any_rank(!all_finite(g_rows, rows * n), comm)) return SSL_E_NONFINITE;
    return 0;
}

int ssl_eig_power_rows(double *w_rows, const double *g_rows, int64_t rows, int64_t n, double eps,
                       double power, int64_t threshold, const struct ssl_comm *comm)
{
    const int rc = check_input(g_rows, rows, n, threshold, eps, power, comm);
    if (rc != 0) return rc;
    if (n < threshold || comm->size == 1)
        return power_replicated(w_rows, g_rows, rows, n, eps, power, comm);
    return power_scalapack(w_rows, g_rows, rows, n, eps, power, comm);
}

int ssl_eig_power_rows_scalapack(double *w_rows, const double *g_rows, int64_t rows, int64_t n,
                                 double eps, double power, const struct ssl_comm *comm)
{
    const int rc = check_input(g_rows, rows, n, 0, eps, power, comm);
    if (rc != 0) return rc;
    return power_scalapack(w_rows, g_rows, rows, n, eps, power, comm);
}
