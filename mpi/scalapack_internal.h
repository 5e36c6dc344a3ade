/* scalapack_internal.h: private to mpi/. The BLACS, PBLAS and ScaLAPACK prototypes (Debian
 * ships no C header, HPC.md 2.1) and the helpers shared by eig_scalapack.c and eig_gram.c:
 * the near-square grid choice, grid setup, the block-cyclic index map and pdsyevd with a
 * workspace that survives Debian's under-reported LWORK.
 *
 * Invariants: a grid is made from a system handle of comm->world (Csys2blacs_handle) and
 * released with Cblacs_gridexit, the handle with Cfree_blacs_system_handle; Cblacs_exit is
 * never called (it would finalize MPI). Several grids may share one system handle. */
#ifndef SSL_MPI_SCALAPACK_INTERNAL_H
#define SSL_MPI_SCALAPACK_INTERNAL_H

#include <stdint.h>

#include "comm.h"

/* BLACS: real C functions, no hidden string lengths. */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *context, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int context, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int context);
/* ScaLAPACK tools and drivers (Fortran ABI: everything by pointer). */
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc,
            const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *context, const int *lld,
               int *info);
void pdsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *ia,
              const int *ja, const int *desca, double *w, double *z, const int *iz,
              const int *jz, const int *descz, double *work, const int *lwork, int *iwork,
              const int *liwork, int *info);
/* PBLAS pdgemm_ is C code taking char pointers: no hidden lengths. */
void pdgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
             const double *alpha, const double *a, const int *ia, const int *ja,
             const int *desca, const double *b, const int *ib, const int *jb, const int *descb,
             const double *beta, double *c, const int *ic, const int *jc, const int *descc);
/* REDIST, C interface: 1-based ia/ja; context must span every process of both grids. */
void Cpdgemr2d(int m, int n, const double *a, int ia, int ja, const int *desca, double *b, int ib,
               int jb, const int *descb, int context);

struct ssl_blacs_grid {
    int context, nprow, npcol, myrow, mycol;
};

/* nprow x npcol = size with nprow the largest divisor of size not above sqrt(size)
 * (1x2, 1x3, 2x2, ...). */
void ssl_blacs_grid_shape(int size, int *nprow, int *npcol);

/* Collective over comm->world: a row-major ("Row") nprow x npcol grid on the system handle
 * `system`; aborts if this rank did not get a place in it. */
void ssl_blacs_grid_init(struct ssl_blacs_grid *grid, int system, int nprow, int npcol,
                         const struct ssl_comm *comm);

/* Global (0-based) index of local index il for block size nb, process coordinate p of np_dim,
 * source process 0. */
static inline int64_t ssl_blacs_local_to_global(int64_t il, int nb, int p, int np_dim)
{
    return (il / nb) * nb * np_dim + (int64_t)p * nb + il % nb;
}

/* Collective over comm->world (the grid of desc spans it): pdsyevd("V", "U") of the (n, n)
 * matrix aloc (destroyed) into eigvals (n, on every rank) and zloc, both with descriptor desc
 * (square blocks); mloc x nloc is this rank's local shape. The workspace is the maximum over
 * ranks of the lwork = -1 query, the documented minimum and PDORMTR's need (the query
 * under-reports on Debian's ScaLAPACK 2.2.1). Returns pdsyevd's info (this rank's). */
int ssl_scalapack_pdsyevd(double *aloc, double *eigvals, double *zloc, const int *desc, int n,
                          int mloc, int nloc, const struct ssl_comm *comm);

#endif
