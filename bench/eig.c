/* bench/eig.c: times the two paths of ssl_eig_replicated (mpi/eig_scalapack.h) at the rank count
 * it is launched with: every rank running LAPACK dsyevd on its replicated copy, and ScaLAPACK
 * pdsyevd on the near-square BLACS grid (including the local copy-out and the Allreduce that
 * replicates the eigenvectors; forced also at one rank, on a 1 x 1 grid). Best of 3 wall-clock
 * times (the slowest rank's, after a barrier) for n = 256, 512, 1024, 2048 (and 4096 with --big).
 * The matrix is a random symmetric one from a fixed splitmix64 seed, the same on every rank.
 * Use it to choose linalg.scalapack_threshold on the target machine (docs/DISTRIBUTED.md); pin
 * BLAS threads (OPENBLAS_NUM_THREADS=1 when ranks share a node) and do not oversubscribe.
 *
 * --gram times ssl_eig_power_rows (mpi/eig_gram.h) instead: W = (G + eps I)^(-1/2) of a matrix
 * held as block rows, the replicated path (allgather, LAPACK dsyevd and the rank's rows of
 * U F U^T on every rank) against the block-row path (Cpdgemr2d to the block-cyclic grid, pdsyevd,
 * pdgemm, Cpdgemr2d back; forced also at one rank). G is random symmetric with its diagonal
 * shifted by 2 sqrt(n), so it is positive definite; n must be divisible by the rank count.
 *
 *   mpirun -np 2 build/bench_eig [--big] [--gram] */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "check.h"
#include "comm.h"
#include "eig_gram.h"
#include "eig_scalapack.h"

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Best of 3 of the slowest rank's time for one path (0 = LAPACK, 1 = ScaLAPACK). */
static double time_path(int path, double *l, double *u, const double *a, int64_t n,
                        const struct ssl_comm *comm)
{
    double best = 1e300;
    for (int rep = 0; rep < 3; rep++) {
        MPI_Barrier(comm->world);
        double t0 = MPI_Wtime();
        int rc = path == 0 ? ssl_eig_replicated(l, u, a, n, INT64_MAX, comm)
                           : ssl_eig_scalapack(l, u, a, n, comm);
        SSL_CHECKF(rc == 0, "eigensolver failed (path %d, n %lld)", path, (long long)n);
        double t = MPI_Wtime() - t0, worst = 0;
        MPI_Allreduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, comm->world);
        if (worst < best) best = worst;
    }
    return best;
}

/* Entry (i, j) of the symmetric benchmark matrix: a hash of the unordered pair, so every rank
 * can build its own rows; uniform in [-0.5, 0.5), plus 2 sqrt(n) on the diagonal (above the
 * random part's spectral radius ~ sqrt(n / 3)). */
static double gram_entry(int64_t i, int64_t j, int64_t n)
{
    uint64_t state = 42 + (uint64_t)(i < j ? i * n + j : j * n + i);
    double x = (double)(splitmix64(&state) >> 11) * 0x1.0p-53 - 0.5;
    return i == j ? x + 2.0 * sqrt((double)n) : x;
}

/* Best of 3 of the slowest rank's time for one path of ssl_eig_power_rows (0 = replicated,
 * 1 = block rows through ScaLAPACK). */
static double time_gram_path(int path, double *w_rows, const double *g_rows, int64_t rows,
                             int64_t n, const struct ssl_comm *comm)
{
    double best = 1e300;
    for (int rep = 0; rep < 3; rep++) {
        MPI_Barrier(comm->world);
        double t0 = MPI_Wtime();
        int rc = path == 0
                     ? ssl_eig_power_rows(w_rows, g_rows, rows, n, 0.0, -0.5, INT64_MAX, comm)
                     : ssl_eig_power_rows_scalapack(w_rows, g_rows, rows, n, 0.0, -0.5, comm);
        SSL_CHECKF(rc == 0, "ssl_eig_power_rows failed (path %d, n %lld): %d", path,
                   (long long)n, rc);
        double t = MPI_Wtime() - t0, worst = 0;
        MPI_Allreduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, comm->world);
        if (worst < best) best = worst;
    }
    return best;
}

static void bench_gram(const int64_t *sizes, size_t n_sizes, const struct ssl_comm *comm)
{
    if (comm->rank == 0)
        printf("%6s  %12s  %12s  %8s  (W = G^-1/2 from block rows)\n", "n", "replicated",
               "block-rows", "ratio");
    for (size_t s = 0; s < n_sizes; s++) {
        const int64_t n = sizes[s], rows = n / comm->size;
        if (n % comm->size != 0) {
            if (comm->rank == 0)
                printf("%6lld  skipped: not divisible by %d ranks\n", (long long)n, comm->size);
            continue;
        }
        double *g_rows = malloc((size_t)(rows * n) * sizeof *g_rows);
        double *w_rows = malloc((size_t)(rows * n) * sizeof *w_rows);
        SSL_CHECK(g_rows && w_rows);
        const int64_t first = (int64_t)comm->rank * rows;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < n; j++) g_rows[i * n + j] = gram_entry(first + i, j, n);
        double t_rep = time_gram_path(0, w_rows, g_rows, rows, n, comm);
        double t_rows = time_gram_path(1, w_rows, g_rows, rows, n, comm);
        if (comm->rank == 0)
            printf("%6lld  %12.4f  %12.4f  %8.2f\n", (long long)n, t_rep, t_rows, t_rows / t_rep);
        fflush(stdout);
        free(w_rows);
        free(g_rows);
    }
}

int main(int argc, char **argv)
{
    struct ssl_comm comm;
    SSL_CHECK(ssl_comm_init(&comm, &argc, &argv) == 0);
    bool big = false, gram = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--big") == 0)
            big = true;
        else if (strcmp(argv[i], "--gram") == 0)
            gram = true;
        else
            SSL_CHECKF(false, "unknown option %s (use --big, --gram)", argv[i]);
    }
    const char *threads = getenv("OPENBLAS_NUM_THREADS");
    if (comm.rank == 0) {
        printf("bench_eig: np=%d OPENBLAS_NUM_THREADS=%s block=%d (seconds, best of 3)\n",
               comm.size, threads ? threads : "(unset)", SSL_EIG_BLOCK);
    }
    static const int64_t sizes[] = {256, 512, 1024, 2048, 4096};
    const size_t n_sizes = big ? 5 : 4;
    if (gram) {
        bench_gram(sizes, n_sizes, &comm);
        ssl_comm_finalize(&comm);
        return 0;
    }
    if (comm.rank == 0) printf("%6s  %12s  %12s  %8s\n", "n", "lapack", "scalapack", "ratio");
    for (size_t s = 0; s < n_sizes; s++) {
        const int64_t n = sizes[s];
        double *a = malloc((size_t)(n * n) * sizeof *a), *u = malloc((size_t)(n * n) * sizeof *u);
        double *l = malloc((size_t)n * sizeof *l);
        SSL_CHECK(a && u && l);
        uint64_t state = 42 + (uint64_t)n;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++)
                a[i * n + j] = a[j * n + i] =
                    (double)(splitmix64(&state) >> 11) * 0x1.0p-53 - 0.5;
        double t_lapack = time_path(0, l, u, a, n, &comm);
        double t_scalapack = time_path(1, l, u, a, n, &comm);
        if (comm.rank == 0)
            printf("%6lld  %12.4f  %12.4f  %8.2f\n", (long long)n, t_lapack, t_scalapack,
                   t_scalapack / t_lapack);
        fflush(stdout);
        free(l);
        free(u);
        free(a);
    }
    ssl_comm_finalize(&comm);
    return 0;
}
