/* layers.h: every layer as a forward/backward pair over explicit shapes.
 *
 * Layouts. Image activations are channel-major (c, n, h, w) ("CNHW"): one channel of the whole
 * batch is contiguous, so a convolution over the batch is one GEMM per chunk and BatchNorm
 * statistics are contiguous sums. Row activations are (n, f) row-major. Weights keep PyTorch's
 * layouts: conv (c_out, c_in, k_h, k_w), linear (out, in). The models convert the NCHW input
 * once (ssl_nchw_to_cnhw).
 *
 * Contract (STYLE.md 1): forward writes its outputs; backward ACCUMULATES (+=) into every
 * gradient it is given (dx, dw, db, ...); a NULL gradient pointer means "not needed" and is
 * skipped. Gradients are plain dL/dx. */
#ifndef SSL_LAYERS_H
#define SSL_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "../real.h"

/* ---- linear: y (n, out) = x (n, in) w^T (in, out) + b (out) ---- */
void ssl_linear_forward(ssl_real *y, const ssl_real *x, const ssl_real *w, const ssl_real *b,
                        int64_t n, int64_t in, int64_t out);
void ssl_linear_backward(ssl_real *dx, ssl_real *dw, ssl_real *db, const ssl_real *dy,
                         const ssl_real *x, const ssl_real *w, int64_t n, int64_t in, int64_t out);

/* ---- conv2d: any kernel, stride and zero padding; im2col over chunks of the batch ---- */
struct ssl_conv2d_dims {
    int64_t n, c_in, h_in, w_in;
    int64_t c_out, k_h, k_w, stride, pad;
    int64_t h_out, w_out;
    int64_t chunk; /* samples per im2col chunk, bounds the scratch */
};
/* Fills the output size and the chunk size; returns false for an empty output. */
bool ssl_conv2d_dims_init(struct ssl_conv2d_dims *d, int64_t n, int64_t c_in, int64_t h_in,
                          int64_t w_in, int64_t c_out, int64_t k, int64_t stride, int64_t pad);
/* Scratch elements forward and backward need (backward: column and column-gradient chunks). */
int64_t ssl_conv2d_scratch_elems(const struct ssl_conv2d_dims *d);
/* y (c_out, n, h_out, w_out); x (c_in, n, h_in, w_in); w (c_out, c_in, k_h, k_w); b (c_out) or NULL */
void ssl_conv2d_forward(ssl_real *y, ssl_real *scratch, const ssl_real *x, const ssl_real *w,
                        const ssl_real *b, const struct ssl_conv2d_dims *d);
void ssl_conv2d_backward(ssl_real *dx, ssl_real *dw, ssl_real *db, ssl_real *scratch,
                         const ssl_real *dy, const ssl_real *x, const ssl_real *w,
                         const struct ssl_conv2d_dims *d);

/* ---- batchnorm (1d on rows, 2d on CNHW images) ----
 * The batch statistics go through `sync` so mpi/ can sum them over ranks (SyncBN): it is
 * called with fp64 partial sums (length given) and must replace them by their global sums;
 * a NULL sync (or NULL sync->sum) keeps the local batch. */
struct ssl_bn_sync {
    int (*sum)(void *ctx, double *values, int64_t n_values);
    void *ctx;
};
enum ssl_bn_layout {
    SSL_BN_CHANNEL_MAJOR, /* (c, m): CNHW images, m = n*h*w */
    SSL_BN_ROW_MAJOR,     /* (m, c): rows of features */
};
struct ssl_bn_dims {
    int64_t c, m; /* channels; local elements per channel */
    enum ssl_bn_layout layout;
    double eps, momentum; /* PyTorch defaults 1e-5, 0.1 */
};
/* saved (2, c) fp64: the mean and 1/sqrt(var + eps) used, for backward.
 * gamma/beta NULL: affine=False. running_* and n_batches are updated in train mode
 * (unbiased variance into running_var, as PyTorch). scratch: ssl_batchnorm_scratch_elems(c)
 * doubles. */
int64_t ssl_batchnorm_scratch_elems(int64_t c);
int ssl_batchnorm_forward(ssl_real *y, double *saved, ssl_real *running_mean,
                          ssl_real *running_var, int64_t *n_batches, const ssl_real *x,
                          const ssl_real *gamma, const ssl_real *beta,
                          const struct ssl_bn_dims *d, bool train, const struct ssl_bn_sync *sync,
                          double *scratch);
int ssl_batchnorm_backward(ssl_real *dx, ssl_real *dgamma, ssl_real *dbeta, const ssl_real *dy,
                           const ssl_real *x, const double *saved, const ssl_real *gamma,
                           const struct ssl_bn_dims *d, bool train,
                           const struct ssl_bn_sync *sync, double *scratch);

/* ---- relu: backward reads the output y (y > 0 exactly where x > 0) ---- */
void ssl_relu_forward(ssl_real *y, const ssl_real *x, int64_t n_elems);
void ssl_relu_backward(ssl_real *dx, const ssl_real *dy, const ssl_real *y, int64_t n_elems);

/* ---- global average pool: x (c, n, hw) CNHW -> y (n, c) rows ---- */
void ssl_avgpool_forward(ssl_real *y, const ssl_real *x, int64_t c, int64_t n, int64_t hw);
void ssl_avgpool_backward(ssl_real *dx, const ssl_real *dy, int64_t c, int64_t n, int64_t hw);

/* ---- flatten: x (c, n, hw) CNHW -> y (n, c*hw) in PyTorch's (c, h, w) order ---- */
void ssl_flatten_forward(ssl_real *y, const ssl_real *x, int64_t c, int64_t n, int64_t hw);
void ssl_flatten_backward(ssl_real *dx, const ssl_real *dy, int64_t c, int64_t n, int64_t hw);

/* ---- residual add: y = a + b ---- */
void ssl_add_forward(ssl_real *y, const ssl_real *a, const ssl_real *b, int64_t n_elems);
void ssl_add_backward(ssl_real *da, ssl_real *db, const ssl_real *dy, int64_t n_elems);

/* ---- row L2 normalisation: y = x / max(||x||, eps), as torch.nn.functional.normalize ----
 * norms (n) saved for backward. */
void ssl_l2norm_forward(ssl_real *y, ssl_real *norms, const ssl_real *x, int64_t n, int64_t d,
                        double eps);
void ssl_l2norm_backward(ssl_real *dx, const ssl_real *dy, const ssl_real *y,
                         const ssl_real *norms, int64_t n, int64_t d, double eps);

/* ---- group ZCA whitening of rows (Shuffled-DBN's last projector layer; Hua et al. 2021,
 * PatrickHua/FeatureDecorrelationSSL models/utils/shuffled_group_whitening.py) ----
 * x (n, d): features are permuted by perm (d) (NULL: identity), split into d/group groups of
 * `group` consecutive permuted features; each group is centred over the batch and multiplied
 * by S^{-1/2}, S = Xg^T Xg / n + eps I (biased, as the official code; eps 0 there), from a
 * symmetric eigendecomposition in fp64; the result is un-permuted into y (n, d).
 * saved: ssl_whiten_saved_elems doubles (per group: eigenvectors, eigenvalues, mean) for
 * backward, which differentiates through the eigendecomposition. scratch:
 * ssl_whiten_scratch_elems doubles. Returns 0, or SSL_E_NONFINITE when a group's covariance
 * is numerically singular (smallest eigenvalue <= group * DBL_EPSILON * largest, after eps: a
 * rank-deficient group comes out as +1e-17, not <= 0) or the solver fails. */
int64_t ssl_whiten_saved_elems(int64_t n, int64_t d, int64_t group);
int64_t ssl_whiten_scratch_elems(int64_t n, int64_t d, int64_t group);
int ssl_whiten_forward(ssl_real *y, double *saved, const ssl_real *x, const int64_t *perm,
                       int64_t n, int64_t d, int64_t group, double eps, double *scratch);
int ssl_whiten_backward(ssl_real *dx, const ssl_real *dy, const ssl_real *x, const double *saved,
                        const int64_t *perm, int64_t n, int64_t d, int64_t group, double eps,
                        double *scratch);

/* ---- layout: NCHW input images -> CNHW (no backward: inputs need no gradient) ---- */
void ssl_nchw_to_cnhw(ssl_real *y, const ssl_real *x, int64_t n, int64_t c, int64_t hw);

#endif
