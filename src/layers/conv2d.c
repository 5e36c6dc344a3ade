/* conv2d.c: 2-d convolution with any kernel, stride and zero padding, as torch.nn.Conv2d
 * (groups = 1, dilation = 1), over channel-major (c, n, h, w) activations.
 *
 * The batch is cut into chunks of samples; per chunk the input is unfolded (im2col) into
 * col (c_in*k_h*k_w, chunk*h_out*w_out) and one GEMM gives the chunk's columns of y. Because y
 * is channel-major, a chunk's output is a column block of y (row stride n*h_out*w_out), so no
 * transpose is ever needed. Backward recomputes the unfolding instead of storing it: it costs a
 * memory pass, storing it would cost k_h*k_w times the input per layer. A 1x1, stride-1,
 * unpadded convolution needs no unfolding at all. */
#include "layers.h"

#include <string.h>

#include "../check.h"
#include "../gemm.h"

/* Elements of one im2col chunk: large enough for efficient GEMMs, small enough to stay in
 * the last-level cache neighbourhood and to bound the scratch. */
enum { SSL_CONV_CHUNK_ELEMS = 1 << 21 };

bool ssl_conv2d_dims_init(struct ssl_conv2d_dims *d, int64_t n, int64_t c_in, int64_t h_in,
                          int64_t w_in, int64_t c_out, int64_t k, int64_t stride, int64_t pad)
{
    SSL_CHECK(n >= 1 && c_in >= 1 && c_out >= 1 && k >= 1 && stride >= 1 && pad >= 0);
    memset(d, 0, sizeof *d);
    d->n = n;
    d->c_in = c_in;
    d->h_in = h_in;
    d->w_in = w_in;
    d->c_out = c_out;
    d->k_h = d->k_w = k;
    d->stride = stride;
    d->pad = pad;
    if (h_in + 2 * pad < k || w_in + 2 * pad < k) return false;
    d->h_out = (h_in + 2 * pad - k) / stride + 1;
    d->w_out = (w_in + 2 * pad - k) / stride + 1;
    int64_t per_sample = c_in * k * k * d->h_out * d->w_out;
    d->chunk = SSL_CONV_CHUNK_ELEMS / per_sample;
    if (d->chunk < 1) d->chunk = 1;
    if (d->chunk > n) d->chunk = n;
    return true;
}

static bool conv_is_pointwise(const struct ssl_conv2d_dims *d)
{
    return d->k_h == 1 && d->k_w == 1 && d->stride == 1 && d->pad == 0;
}

int64_t ssl_conv2d_scratch_elems(const struct ssl_conv2d_dims *d)
{
    if (conv_is_pointwise(d)) return 0;
    return 2 * d->c_in * d->k_h * d->k_w * d->chunk * d->h_out * d->w_out;
}

/* Output columns [lo, hi) whose input column o*stride - pad + kj lies inside [0, w_in). */
static void valid_range(int64_t kj, const struct ssl_conv2d_dims *d, int64_t *lo, int64_t *hi)
{
    int64_t a = d->pad - kj; /* need o*stride >= a */
    *lo = a <= 0 ? 0 : (a + d->stride - 1) / d->stride;
    int64_t b = d->w_in - 1 + d->pad - kj; /* need o*stride <= b */
    *hi = b < 0 ? 0 : b / d->stride + 1;
    if (*hi > d->w_out) *hi = d->w_out;
    if (*lo > *hi) *lo = *hi;
}

/* col (c_in*k_h*k_w, nc*h_out*w_out) from samples [n0, n0+nc) of x. */
static void im2col(ssl_real *col, const ssl_real *x, int64_t n0, int64_t nc,
                   const struct ssl_conv2d_dims *d)
{
    int64_t hw_in = d->h_in * d->w_in, hw_out = d->h_out * d->w_out;
    for (int64_t ci = 0; ci < d->c_in; ci++)
        for (int64_t ki = 0; ki < d->k_h; ki++)
            for (int64_t kj = 0; kj < d->k_w; kj++) {
                int64_t lo, hi;
                valid_range(kj, d, &lo, &hi);
                ssl_real *row = col + ((ci * d->k_h + ki) * d->k_w + kj) * nc * hw_out;
                for (int64_t s = 0; s < nc; s++) {
                    const ssl_real *plane = x + (ci * d->n + n0 + s) * hw_in;
                    for (int64_t oh = 0; oh < d->h_out; oh++) {
                        ssl_real *out = row + (s * d->h_out + oh) * d->w_out;
                        int64_t ih = oh * d->stride - d->pad + ki;
                        if (ih < 0 || ih >= d->h_in) {
                            memset(out, 0, (size_t)d->w_out * sizeof *out);
                            continue;
                        }
                        const ssl_real *in = plane + ih * d->w_in - d->pad + kj;
                        for (int64_t o = 0; o < lo; o++) out[o] = 0;
                        /* rows are short (w_out): a plain loop beats a memcpy call */
                        if (d->stride == 1)
                            for (int64_t o = lo; o < hi; o++) out[o] = in[o];
                        else
                            for (int64_t o = lo; o < hi; o++) out[o] = in[o * d->stride];
                        for (int64_t o = hi; o < d->w_out; o++) out[o] = 0;
                    }
                }
            }
}

/* dx[samples n0..n0+nc) += the fold of dcol: the adjoint of im2col. */
static void col2im(ssl_real *dx, const ssl_real *dcol, int64_t n0, int64_t nc,
                   const struct ssl_conv2d_dims *d)
{
    int64_t hw_in = d->h_in * d->w_in, hw_out = d->h_out * d->w_out;
    for (int64_t ci = 0; ci < d->c_in; ci++)
        for (int64_t ki = 0; ki < d->k_h; ki++)
            for (int64_t kj = 0; kj < d->k_w; kj++) {
                int64_t lo, hi;
                valid_range(kj, d, &lo, &hi);
                const ssl_real *row = dcol + ((ci * d->k_h + ki) * d->k_w + kj) * nc * hw_out;
                for (int64_t s = 0; s < nc; s++) {
                    ssl_real *plane = dx + (ci * d->n + n0 + s) * hw_in;
                    for (int64_t oh = 0; oh < d->h_out; oh++) {
                        int64_t ih = oh * d->stride - d->pad + ki;
                        if (ih < 0 || ih >= d->h_in) continue;
                        const ssl_real *g = row + (s * d->h_out + oh) * d->w_out;
                        ssl_real *in = plane + ih * d->w_in - d->pad + kj;
                        if (d->stride == 1)
                            for (int64_t o = lo; o < hi; o++) in[o] += g[o];
                        else
                            for (int64_t o = lo; o < hi; o++) in[o * d->stride] += g[o];
                    }
                }
            }
}

void ssl_conv2d_forward(ssl_real *y, ssl_real *scratch, const ssl_real *x, const ssl_real *w,
                        const ssl_real *b, const struct ssl_conv2d_dims *d)
{
    int64_t kk = d->c_in * d->k_h * d->k_w, hw_out = d->h_out * d->w_out, ld_y = d->n * hw_out;
    for (int64_t n0 = 0; n0 < d->n; n0 += d->chunk) {
        int64_t nc = d->n - n0 < d->chunk ? d->n - n0 : d->chunk;
        const ssl_real *col = x + n0 * hw_out;
        int64_t ld_col = ld_y; /* pointwise: x itself, channel-major like y */
        if (!conv_is_pointwise(d)) {
            im2col(scratch, x, n0, nc, d);
            col = scratch;
            ld_col = nc * hw_out;
        }
        /* y[:, chunk] (c_out, nc*hw_out) = w (c_out, kk) col (kk, nc*hw_out) */
        ssl_gemm(false, false, d->c_out, nc * hw_out, kk, 1, w, kk, col, ld_col, 0,
                 y + n0 * hw_out, ld_y);
    }
    if (b)
        for (int64_t co = 0; co < d->c_out; co++)
            for (int64_t i = 0; i < ld_y; i++) y[co * ld_y + i] += b[co];
}

void ssl_conv2d_backward(ssl_real *dx, ssl_real *dw, ssl_real *db, ssl_real *scratch,
                         const ssl_real *dy, const ssl_real *x, const ssl_real *w,
                         const struct ssl_conv2d_dims *d)
{
    int64_t kk = d->c_in * d->k_h * d->k_w, hw_out = d->h_out * d->w_out, ld_y = d->n * hw_out;
    bool pointwise = conv_is_pointwise(d);
    for (int64_t n0 = 0; n0 < d->n; n0 += d->chunk) {
        int64_t nc = d->n - n0 < d->chunk ? d->n - n0 : d->chunk, cols = nc * hw_out;
        const ssl_real *dyc = dy + n0 * hw_out;
        if (pointwise) {
            if (dw) ssl_gemm(false, true, d->c_out, kk, cols, 1, dyc, ld_y, x + n0 * hw_out, ld_y, 1, dw, kk);
            if (dx) ssl_gemm(true, false, kk, cols, d->c_out, 1, w, kk, dyc, ld_y, 1, dx + n0 * hw_out, ld_y);
            continue;
        }
        ssl_real *col = scratch, *dcol = scratch + kk * cols;
        if (dw) {
            im2col(col, x, n0, nc, d);
            /* dw (c_out, kk) += dy[:, chunk] (c_out, cols) col^T (cols, kk) */
            ssl_gemm(false, true, d->c_out, kk, cols, 1, dyc, ld_y, col, cols, 1, dw, kk);
        }
        if (dx) {
            /* dcol (kk, cols) = w^T (kk, c_out) dy[:, chunk] (c_out, cols) */
            ssl_gemm(true, false, kk, cols, d->c_out, 1, w, kk, dyc, ld_y, 0, dcol, cols);
            col2im(dx, dcol, n0, nc, d);
        }
    }
    if (db)
        for (int64_t co = 0; co < d->c_out; co++) {
            double s = 0;
            for (int64_t i = 0; i < ld_y; i++) s += (double)dy[co * ld_y + i];
            db[co] += (ssl_real)s;
        }
}
