/* mpi_test_util.h: what the MPI test programs share (tests/mpi_test_util.c).
 *
 * For the programs that check with CHECK (test_checkpoint_mpi, test_embeddings_mpi): the rank,
 * the size and this rank's failure count as globals set by mpi_test_init, a CHECK that names the
 * rank and counts a failure instead of stopping, and mpi_test_finish, which sums the failures
 * over the ranks. For the eigen tests (mpi_eig_gram, mpi_eig_scalapack): random orthogonal
 * matrices and the largest magnitude of an array. */
#ifndef SSL_TESTS_MPI_TEST_UTIL_H
#define SSL_TESTS_MPI_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>

extern int g_rank, g_size, g_fails;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "[rank %d/%d] %s:%d: check failed: %s\n", g_rank, g_size,      \
                    __FILE__, __LINE__, #cond);                                            \
            ++g_fails;                                                                     \
        }                                                                                  \
    } while (0)

/* MPI_Init, then g_rank and g_size of MPI_COMM_WORLD. */
void mpi_test_init(int *argc, char ***argv);
/* Collective: sums g_fails over the ranks; rank 0 prints "<program> <mode> np=P: passed|FAILED
 * (F failures)"; MPI_Finalize. Returns the exit code: 1 if any rank failed, else 0. */
int mpi_test_finish(const char *program, const char *mode);

/* The columns of q (n, n), row-major, made orthonormal in place: modified Gram-Schmidt, twice. */
void mpi_test_orthonormalize(double *q, int64_t n);
/* max |x[i]| over count values (0 when count is 0). */
double mpi_test_max_abs(const double *x, int64_t count);

#endif
