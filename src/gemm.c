/* gemm.c: ssl_gemm over cblas_[sd]gemm; the thread setting is OpenBLAS's own state. */
#include "gemm.h"

#include <cblas.h>

#include "check.h"

/* OpenBLAS entry points not in the cblas.h standard set. */
void openblas_set_num_threads(int n_threads);
int openblas_get_num_threads(void);
char *openblas_get_config(void);
char *openblas_get_corename(void);

void ssl_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, ssl_real alpha,
              const ssl_real *a, int64_t lda, const ssl_real *b, int64_t ldb, ssl_real beta,
              ssl_real *c, int64_t ldc)
{
    if (m == 0 || n == 0) return;
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
#ifdef SSL_F64
    cblas_dgemm(CblasRowMajor, ta, tb, ssl_int(m), ssl_int(n), ssl_int(k), alpha, a, ssl_int(lda),
                b, ssl_int(ldb), beta, c, ssl_int(ldc));
#else
    cblas_sgemm(CblasRowMajor, ta, tb, ssl_int(m), ssl_int(n), ssl_int(k), alpha, a, ssl_int(lda),
                b, ssl_int(ldb), beta, c, ssl_int(ldc));
#endif
}

void ssl_gemm_set_threads(int n_threads)
{
    SSL_CHECK(n_threads >= 1);
    openblas_set_num_threads(n_threads);
}

int ssl_gemm_threads(void) { return openblas_get_num_threads(); }

const char *ssl_gemm_library(void) { return openblas_get_config(); }

const char *ssl_gemm_kernels(void) { return openblas_get_corename(); }
