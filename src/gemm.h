/* gemm.h: the one matrix-multiply entry point of the core, over OpenBLAS.
 * Row-major C = alpha * op(A) * op(B) + beta * C with op(A) (m, k), op(B) (k, n), C (m, n).
 * Leading dimensions are row strides in elements. Counts are checked to fit BLAS's int. */
#ifndef SSL_GEMM_H
#define SSL_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "real.h"

void ssl_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, ssl_real alpha,
              const ssl_real *a, int64_t lda, const ssl_real *b, int64_t ldb, ssl_real beta,
              ssl_real *c, int64_t ldc);

/* Threads the BLAS uses; set once at start from the config, logged by the caller. */
void ssl_gemm_set_threads(int n_threads);
int ssl_gemm_threads(void);
/* "OpenBLAS 0.3.21 ..." as the library reports itself. */
const char *ssl_gemm_library(void);
/* The kernel set OpenBLAS chose for this CPU ("Cooperlake", "Haswell", ...): logged, because
 * OPENBLAS_CORETYPE in the environment can force a slower one (see docs/PERFORMANCE.md). */
const char *ssl_gemm_kernels(void);

#endif
