/* pointwise.c: the layers without parameters: relu, global average pool, flatten, residual
 * add, row L2 normalisation, and the NCHW -> CNHW input conversion. */
#include "layers.h"

#include <math.h>
#include <stddef.h>

void ssl_relu_forward(ssl_real *y, const ssl_real *x, int64_t n_elems)
{
    for (int64_t i = 0; i < n_elems; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

void ssl_relu_backward(ssl_real *dx, const ssl_real *dy, const ssl_real *y, int64_t n_elems)
{
    if (dx == NULL) return;
    /* unconditional loads let the compiler turn the select into a vector blend */
    for (int64_t i = 0; i < n_elems; i++) {
        ssl_real g = dy[i];
        dx[i] += y[i] > 0 ? g : 0;
    }
}

void ssl_avgpool_forward(ssl_real *y, const ssl_real *x, int64_t c, int64_t n, int64_t hw)
{
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t i = 0; i < n; i++) {
            const ssl_real *plane = x + (ch * n + i) * hw;
            double s = 0;
            for (int64_t k = 0; k < hw; k++) s += (double)plane[k];
            y[i * c + ch] = (ssl_real)(s / (double)hw);
        }
}

void ssl_avgpool_backward(ssl_real *dx, const ssl_real *dy, int64_t c, int64_t n, int64_t hw)
{
    if (dx == NULL) return;
    ssl_real scale = (ssl_real)(1.0 / (double)hw);
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t i = 0; i < n; i++) {
            ssl_real g = dy[i * c + ch] * scale;
            ssl_real *plane = dx + (ch * n + i) * hw;
            for (int64_t k = 0; k < hw; k++) plane[k] += g;
        }
}

void ssl_flatten_forward(ssl_real *y, const ssl_real *x, int64_t c, int64_t n, int64_t hw)
{
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < hw; k++) y[(i * c + ch) * hw + k] = x[(ch * n + i) * hw + k];
}

void ssl_flatten_backward(ssl_real *dx, const ssl_real *dy, int64_t c, int64_t n, int64_t hw)
{
    if (dx == NULL) return;
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < hw; k++) dx[(ch * n + i) * hw + k] += dy[(i * c + ch) * hw + k];
}

void ssl_add_forward(ssl_real *y, const ssl_real *a, const ssl_real *b, int64_t n_elems)
{
    for (int64_t i = 0; i < n_elems; i++) y[i] = a[i] + b[i];
}

void ssl_add_backward(ssl_real *da, ssl_real *db, const ssl_real *dy, int64_t n_elems)
{
    if (da)
        for (int64_t i = 0; i < n_elems; i++) da[i] += dy[i];
    if (db)
        for (int64_t i = 0; i < n_elems; i++) db[i] += dy[i];
}

void ssl_l2norm_forward(ssl_real *y, ssl_real *norms, const ssl_real *x, int64_t n, int64_t d,
                        double eps)
{
    for (int64_t i = 0; i < n; i++) {
        const ssl_real *row = x + i * d;
        double s = 0;
        for (int64_t k = 0; k < d; k++) s += (double)row[k] * (double)row[k];
        double norm = sqrt(s);
        norms[i] = (ssl_real)norm;
        double inv = 1.0 / (norm > eps ? norm : eps);
        for (int64_t k = 0; k < d; k++) y[i * d + k] = (ssl_real)((double)row[k] * inv);
    }
}

void ssl_l2norm_backward(ssl_real *dx, const ssl_real *dy, const ssl_real *y,
                         const ssl_real *norms, int64_t n, int64_t d, double eps)
{
    if (dx == NULL) return;
    for (int64_t i = 0; i < n; i++) {
        const ssl_real *gy = dy + i * d, *yi = y + i * d;
        double norm = (double)norms[i];
        if (norm <= eps) {
            /* y = x / eps: a plain scaling, no projection (torch's clamp_min has zero slope) */
            for (int64_t k = 0; k < d; k++) dx[i * d + k] += (ssl_real)((double)gy[k] / eps);
            continue;
        }
        double dot = 0;
        for (int64_t k = 0; k < d; k++) dot += (double)gy[k] * (double)yi[k];
        for (int64_t k = 0; k < d; k++)
            dx[i * d + k] += (ssl_real)(((double)gy[k] - (double)yi[k] * dot) / norm);
    }
}

void ssl_nchw_to_cnhw(ssl_real *y, const ssl_real *x, int64_t n, int64_t c, int64_t hw)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t k = 0; k < hw; k++) y[(ch * n + i) * hw + k] = x[(i * c + ch) * hw + k];
}
