/* linear.c: y = x w^T + b over a batch of rows, as torch.nn.Linear. */
#include "layers.h"

#include "../gemm.h"

void ssl_linear_forward(ssl_real *y, const ssl_real *x, const ssl_real *w, const ssl_real *b,
                        int64_t n, int64_t in, int64_t out)
{
    if (b) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < out; j++) y[i * out + j] = b[j];
    }
    /* y (n, out) = x (n, in) * w^T (in, out) */
    ssl_gemm(false, true, n, out, in, 1, x, in, w, in, b ? 1 : 0, y, out);
}

void ssl_linear_backward(ssl_real *dx, ssl_real *dw, ssl_real *db, const ssl_real *dy,
                         const ssl_real *x, const ssl_real *w, int64_t n, int64_t in, int64_t out)
{
    /* dx (n, in) += dy (n, out) * w (out, in) */
    if (dx) ssl_gemm(false, false, n, in, out, 1, dy, out, w, in, 1, dx, in);
    /* dw (out, in) += dy^T (out, n) * x (n, in) */
    if (dw) ssl_gemm(true, false, out, in, n, 1, dy, out, x, in, 1, dw, in);
    if (db) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < out; j++) db[j] += dy[i * out + j];
    }
}
