/* mpi_test_util.c: helpers shared by the MPI test programs (mpi_test_util.h has the contracts). */
#include "mpi_test_util.h"

#include <math.h>

#include <mpi.h>

int g_rank, g_size, g_fails;

void mpi_test_init(int *argc, char ***argv)
{
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
}

int mpi_test_finish(const char *program, const char *mode)
{
    int total = 0;
    MPI_Allreduce(&g_fails, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0)
        printf("%s %s np=%d: %s (%d failures)\n", program, mode, g_size, total ? "FAILED" : "passed",
               total);
    MPI_Finalize();
    return total ? 1 : 0;
}

void mpi_test_orthonormalize(double *q, int64_t n)
{
    for (int pass = 0; pass < 2; pass++)
        for (int64_t k = 0; k < n; k++) {
            for (int64_t j = 0; j < k; j++) {
                double dot = 0;
                for (int64_t i = 0; i < n; i++) dot += q[i * n + j] * q[i * n + k];
                for (int64_t i = 0; i < n; i++) q[i * n + k] -= dot * q[i * n + j];
            }
            double norm = 0;
            for (int64_t i = 0; i < n; i++) norm += q[i * n + k] * q[i * n + k];
            norm = sqrt(norm);
            for (int64_t i = 0; i < n; i++) q[i * n + k] /= norm;
        }
}

double mpi_test_max_abs(const double *x, int64_t count)
{
    double m = 0;
    for (int64_t i = 0; i < count; i++) m = fmax(m, fabs(x[i]));
    return m;
}
