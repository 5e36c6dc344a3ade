/* bench/eig.c: times the two paths of ssl_eig_replicated (mpi/eig_scalapack.h) at the rank count
 * it is launched with: every rank running LAPACK dsyevd on its replicated copy, and ScaLAPACK
 * pdsyevd on the near-square BLACS grid (including the local copy-out and the Allreduce that
 * replicates the eigenvectors; forced also at one rank, on a 1 x 1 grid). Best of 3 wall-clock
 * times (the slowest rank's, after a barrier) for n = 256, 512, 1024, 2048 (and 4096 with --big).
 * The matrix is a random symmetric one from a fixed splitmix64 seed, the same on every rank.
 * Use it to choose linalg.scalapack_threshold on the target machine (docs/DISTRIBUTED.md); pin
 * BLAS threads (OPENBLAS_NUM_THREADS=1 when ranks share a node) and do not oversubscribe.
 *
 *   mpirun -np 2 build/bench_eig [--big] */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "check.h"
#include "comm.h"
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

int main(int argc, char **argv)
{
    struct ssl_comm comm;
    SSL_CHECK(ssl_comm_init(&comm, &argc, &argv) == 0);
    bool big = argc > 1 && strcmp(argv[1], "--big") == 0;
    const char *threads = getenv("OPENBLAS_NUM_THREADS");
    if (comm.rank == 0) {
        printf("bench_eig: np=%d OPENBLAS_NUM_THREADS=%s block=%d (seconds, best of 3)\n",
               comm.size, threads ? threads : "(unset)", SSL_EIG_BLOCK);
        printf("%6s  %12s  %12s  %8s\n", "n", "lapack", "scalapack", "ratio");
    }
    static const int64_t sizes[] = {256, 512, 1024, 2048, 4096};
    const size_t n_sizes = big ? 5 : 4;
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
