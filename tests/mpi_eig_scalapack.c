/* mpi_eig_scalapack.c: the replicated eigen-decomposition (mpi/eig_scalapack.h) agrees with the
 * one-rank LAPACK path (ssl_linalg_syevd) and is bitwise the same on every rank.
 *
 * Every rank builds the SAME matrices from a fixed seed (SEED, splitmix64 stream): A = Q diag(1..n)
 * Q^T with Q a random orthogonal matrix (modified Gram-Schmidt, twice, on uniform entries), so the
 * eigenvalues are 1..n, separated by 1, and the eigenvectors are unique up to sign. For n = 50,
 * 130, 257 (not multiples of the block size 64) and three modes
 *   lapack     ssl_eig_replicated with threshold n + 1 (every rank runs LAPACK),
 *   replicated ssl_eig_replicated with threshold 0 (ScaLAPACK when P > 1, LAPACK at P = 1),
 *   scalapack  ssl_eig_scalapack (ScaLAPACK always, a 1 x 1 grid at P = 1),
 * checked against ssl_linalg_syevd on the rank's own copy: eigenvalues to 1e-10 relative to the
 * largest, eigenvectors (same sign convention) to 1e-8 entrywise, the residual max|A U - U diag(l)|
 * to 1e-9 relative to the largest eigenvalue, and a checksum of the result bits equal on all
 * ranks (MPI_Allreduce MAX and MIN). Also: eigvecs = NULL gives the same eigenvalues (to 1e-10:
 * pdsyevd is not bitwise repeatable from call to call at P = 3), and a NaN
 * entry returns SSL_E_NONFINITE on every rank. Rank 0 prints one line per check and
 * "mpi_eig_scalapack np=P: N checks, F failures"; every rank exits 1 on any failure. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "check.h"
#include "comm.h"
#include "eig_scalapack.h"
#include "linalg.h"
#include "mpi_test_util.h"

static const uint64_t SEED = 20261123;
static const double TOL_VALS = 1e-10, TOL_VECS = 1e-8, TOL_RES = 1e-9;

struct run {
    const struct ssl_comm *comm;
    int n_checks, n_failures;
};

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

/* a (n, n) = Q diag(1..n) Q^T, Q orthogonal from the stream seeded with seed. */
static void make_matrix(double *a, int64_t n, uint64_t seed)
{
    double *q = malloc((size_t)(n * n) * sizeof *q); /* (n, n) row-major, columns orthonormal */
    SSL_CHECK(q);
    uint64_t state = seed;
    for (int64_t i = 0; i < n * n; i++) q[i] = uniform(&state);
    mpi_test_orthonormalize(q, n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++) s += q[i * n + k] * (double)(k + 1) * q[j * n + k];
            a[i * n + j] = a[j * n + i] = s;
        }
    free(q);
}

/* FNV-1a over the bytes of the values. */
static uint64_t checksum(const double *x, int64_t count, uint64_t h)
{
    const unsigned char *p = (const unsigned char *)x;
    for (size_t i = 0; i < (size_t)count * sizeof *x; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

/* Collective: the worst errors over the ranks decide; rank 0 prints the line. */
static void report(struct run *r, const char *name, int64_t n, int rc, double err_vals,
                   double err_vecs, double err_res, uint64_t sum)
{
    double local[3] = {err_vals, err_vecs, err_res}, worst[3];
    uint64_t sum_max = 0, sum_min = 0;
    MPI_Allreduce(local, worst, 3, MPI_DOUBLE, MPI_MAX, r->comm->world);
    MPI_Allreduce(&sum, &sum_max, 1, MPI_UINT64_T, MPI_MAX, r->comm->world);
    MPI_Allreduce(&sum, &sum_min, 1, MPI_UINT64_T, MPI_MIN, r->comm->world);
    int bad = rc != 0 || !(err_vals <= TOL_VALS) || !(err_vecs <= TOL_VECS) ||
              !(err_res <= TOL_RES), any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, r->comm->world);
    bool same = sum_max == sum_min;
    r->n_checks++;
    if (any || !same) r->n_failures++;
    if (r->comm->rank == 0)
        printf("  %-10s n=%-4lld np=%d  vals %.2e  vecs %.2e  resid %.2e  ranks %s  %s\n", name,
               (long long)n, r->comm->size, worst[0], worst[1], worst[2],
               same ? "bitwise-equal" : "DIFFER", any || !same ? "FAIL" : "ok");
}

static void check_n(struct run *r, int64_t n)
{
    const int64_t nn = n * n;
    double *a = malloc((size_t)nn * sizeof *a), *ref_u = malloc((size_t)nn * sizeof *ref_u);
    double *ref_l = malloc((size_t)n * sizeof *ref_l), *u = malloc((size_t)nn * sizeof *u);
    double *l = malloc((size_t)n * sizeof *l), *l2 = malloc((size_t)n * sizeof *l2);
    double *work = malloc((size_t)ssl_linalg_syevd_work_elems(n) * sizeof *work);
    SSL_CHECK(a && ref_u && ref_l && u && l && l2 && work);
    make_matrix(a, n, SEED + (uint64_t)n);
    memcpy(ref_u, a, (size_t)nn * sizeof *a);
    SSL_CHECK(ssl_linalg_syevd(ref_u, ref_l, n, work) == 0);
    const double scale = mpi_test_max_abs(ref_l, n);

    static const char *const names[3] = {"lapack", "replicated", "scalapack"};
    for (int mode = 0; mode < 3; mode++) {
        memset(u, 0, (size_t)nn * sizeof *u);
        int rc = mode == 0   ? ssl_eig_replicated(l, u, a, n, n + 1, r->comm)
                 : mode == 1 ? ssl_eig_replicated(l, u, a, n, 0, r->comm)
                             : ssl_eig_scalapack(l, u, a, n, r->comm);
        double err_vals = 0, err_vecs = 0, err_res = 0;
        for (int64_t k = 0; k < n; k++) err_vals = fmax(err_vals, fabs(l[k] - ref_l[k]) / scale);
        for (int64_t i = 0; i < nn; i++) err_vecs = fmax(err_vecs, fabs(u[i] - ref_u[i]));
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < n; k++) {
                double s = 0;
                for (int64_t j = 0; j < n; j++) s += a[i * n + j] * u[j * n + k];
                err_res = fmax(err_res, fabs(s - u[i * n + k] * l[k]) / scale);
            }
        if (isnan(err_vals) || isnan(err_vecs) || isnan(err_res)) err_vals = (double)INFINITY;
        report(r, names[mode], n, rc, err_vals, err_vecs, err_res,
               checksum(u, nn, checksum(l, n, 0xCBF29CE484222325ull)));

        /* Eigenvalues only: the same values to TOL_VALS. Not bitwise: two identical pdsyevd
         * calls on a 1x3 grid (P = 3, oversubscribed) gave eigenvalues differing in the last
         * bits; within one call every rank still holds the same bits (rank 0's broadcast). */
        int rc2 = mode == 0   ? ssl_eig_replicated(l2, NULL, a, n, n + 1, r->comm)
                  : mode == 1 ? ssl_eig_replicated(l2, NULL, a, n, 0, r->comm)
                              : ssl_eig_scalapack(l2, NULL, a, n, r->comm);
        double diff = 0;
        for (int64_t k = 0; k < n; k++) diff = fmax(diff, fabs(l2[k] - l[k]) / scale);
        if (isnan(diff)) diff = (double)INFINITY;
        char name[32];
        snprintf(name, sizeof name, "%s/novec", names[mode]);
        report(r, name, n, rc2, diff, 0, 0, checksum(l2, n, 0xCBF29CE484222325ull));
    }

    /* A NaN entry: SSL_E_NONFINITE on every rank, on both paths. */
    a[n + 1] = (double)NAN;
    int rc_l = ssl_eig_replicated(l, u, a, n, n + 1, r->comm);
    int rc_s = ssl_eig_replicated(l, u, a, n, 0, r->comm);
    bool ok = rc_l == SSL_E_NONFINITE && rc_s == SSL_E_NONFINITE;
    report(r, "nan-input", n, ok ? 0 : 1, 0, 0, 0, 0);

    free(work);
    free(l2);
    free(l);
    free(u);
    free(ref_l);
    free(ref_u);
    free(a);
}

int main(int argc, char **argv)
{
    struct ssl_comm comm;
    SSL_CHECK(ssl_comm_init(&comm, &argc, &argv) == 0);
    struct run r = {.comm = &comm};
    if (comm.rank == 0)
        printf("mpi_eig_scalapack np=%d seed=%llu block=%d\n", comm.size,
               (unsigned long long)SEED, SSL_EIG_BLOCK);
    static const int64_t sizes[] = {50, 130, 257};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) check_n(&r, sizes[i]);
    if (comm.rank == 0)
        printf("mpi_eig_scalapack np=%d: %d checks, %d failures\n", comm.size, r.n_checks,
               r.n_failures);
    int failed = r.n_failures != 0;
    ssl_comm_finalize(&comm);
    return failed ? 1 : 0;
}
