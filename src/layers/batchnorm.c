/* batchnorm.c: BatchNorm over channel-major images (2d) or feature rows (1d), as
 * torch.nn.BatchNorm{1,2}d: biased variance normalises, unbiased variance enters running_var.
 *
 * Every pass reduces to two per-channel sums (fp64) and one per-channel affine map:
 *   forward   sums  A = sum(x - K), B = sum((x - K)^2)   with K = running_mean, identical on
 *             every rank, so the shifted sums stay well conditioned and can be added over ranks;
 *             apply y = a x + b.
 *   backward  sums  A = sum(dy), B = sum(dy (x - mean)); apply dx += a dy + p x + q.
 * The sums (plus the element count) go through the sync hook: SyncBN is just that hook. */
#include "layers.h"

#include <math.h>
#include <string.h>

#include "../check.h"

/* Sums over one contiguous channel. Eight partial sums in a fixed order: the result is
 * deterministic and the compiler can vectorise it (a single accumulator is a serial chain). */
static void contiguous_sums(double *A, double *B, const ssl_real *u, double su, const ssl_real *v,
                            double sv, int64_t m)
{
    double a[8] = {0}, b[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= m; i += 8)
        for (int k = 0; k < 8; k++) {
            double du = (double)u[i + k] - su;
            a[k] += du;
            b[k] += du * ((double)v[i + k] - sv);
        }
    for (; i < m; i++) {
        double du = (double)u[i] - su;
        a[0] += du;
        b[0] += du * ((double)v[i] - sv);
    }
    *A = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    *B = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
}

/* A[c] = sum(u - ku[c]); B[c] = sum((u - ku[c]) (v - kv[c])); ku NULL means 0. */
static void bn_sums(double *A, double *B, const ssl_real *u, const double *ku, const ssl_real *v,
                    const double *kv, const struct ssl_bn_dims *d)
{
    int64_t c = d->c, m = d->m;
    if (d->layout == SSL_BN_CHANNEL_MAJOR) {
        for (int64_t ch = 0; ch < c; ch++)
            contiguous_sums(&A[ch], &B[ch], u + ch * m, ku ? ku[ch] : 0.0, v + ch * m, kv[ch], m);
        return;
    }
    memset(A, 0, (size_t)c * sizeof *A);
    memset(B, 0, (size_t)c * sizeof *B);
    for (int64_t i = 0; i < m; i++) {
        const ssl_real *ur = u + i * c, *vr = v + i * c;
        for (int64_t ch = 0; ch < c; ch++) {
            double du = (double)ur[ch] - (ku ? ku[ch] : 0.0);
            A[ch] += du;
            B[ch] += du * ((double)vr[ch] - kv[ch]);
        }
    }
}

/* out = cu[c] u + c0[c] (forward: out is never read, it may hold anything). */
static void bn_apply(ssl_real *out, const ssl_real *u, const ssl_real *cu, const ssl_real *c0,
                     const struct ssl_bn_dims *d)
{
    int64_t c = d->c, m = d->m;
    if (d->layout == SSL_BN_CHANNEL_MAJOR) {
        for (int64_t ch = 0; ch < c; ch++) {
            ssl_real *o = out + ch * m, a = cu[ch], b = c0[ch];
            const ssl_real *uc = u + ch * m;
            for (int64_t i = 0; i < m; i++) o[i] = a * uc[i] + b;
        }
        return;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t ch = 0; ch < c; ch++) out[i * c + ch] = cu[ch] * u[i * c + ch] + c0[ch];
}

/* out += cu[c] u + cv[c] v + c0[c] (backward: accumulates into dx). */
static void bn_apply_add(ssl_real *out, const ssl_real *u, const ssl_real *cu, const ssl_real *v,
                         const ssl_real *cv, const ssl_real *c0, const struct ssl_bn_dims *d)
{
    int64_t c = d->c, m = d->m;
    if (d->layout == SSL_BN_CHANNEL_MAJOR) {
        for (int64_t ch = 0; ch < c; ch++) {
            ssl_real *o = out + ch * m, a = cu[ch], p = cv[ch], b = c0[ch];
            const ssl_real *uc = u + ch * m, *vc = v + ch * m;
            for (int64_t i = 0; i < m; i++) o[i] += a * uc[i] + p * vc[i] + b;
        }
        return;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t ch = 0; ch < c; ch++)
            out[i * c + ch] += cu[ch] * u[i * c + ch] + cv[ch] * v[i * c + ch] + c0[ch];
}

int64_t ssl_batchnorm_scratch_elems(int64_t c) { return 5 * c + 1; }

/* The k-th per-channel coefficient array, carved from scratch after the 2c+1 sums. */
static ssl_real *bn_coeffs(double *scratch, int64_t c, int k)
{
    return (ssl_real *)(void *)(scratch + 2 * c + 1) + k * c;
}

/* Replaces the 2c+1 local sums in s by their sums over the ranks the hook spans. */
static int bn_sync(double *s, int64_t c, const struct ssl_bn_sync *sync)
{
    if (sync == NULL || sync->sum == NULL) return 0;
    return sync->sum(sync->ctx, s, 2 * c + 1);
}

int ssl_batchnorm_forward(ssl_real *y, double *saved, ssl_real *running_mean,
                          ssl_real *running_var, int64_t *n_batches, const ssl_real *x,
                          const ssl_real *gamma, const ssl_real *beta,
                          const struct ssl_bn_dims *d, bool train, const struct ssl_bn_sync *sync,
                          double *scratch)
{
    int64_t c = d->c;
    double *mean = saved, *invstd = saved + c;
    ssl_real *a = bn_coeffs(scratch, c, 0), *b = bn_coeffs(scratch, c, 1);
    if (train) {
        double *A = scratch, *B = scratch + c, *shift = invstd; /* invstd is free until set */
        for (int64_t ch = 0; ch < c; ch++) shift[ch] = (double)running_mean[ch];
        bn_sums(A, B, x, shift, x, shift, d);
        scratch[2 * c] = (double)d->m;
        int rc = bn_sync(scratch, c, sync);
        if (rc) return rc;
        double count = scratch[2 * c];
        SSL_CHECKF(count >= 1, "batchnorm over an empty batch");
        for (int64_t ch = 0; ch < c; ch++) {
            double dm = A[ch] / count, var = B[ch] / count - dm * dm;
            if (var < 0) var = 0;
            mean[ch] = shift[ch] + dm;
            invstd[ch] = 1.0 / sqrt(var + d->eps);
            double unbiased = count > 1 ? var * count / (count - 1) : var;
            running_mean[ch] = (ssl_real)((1 - d->momentum) * (double)running_mean[ch] + d->momentum * mean[ch]);
            running_var[ch] = (ssl_real)((1 - d->momentum) * (double)running_var[ch] + d->momentum * unbiased);
        }
        if (n_batches) (*n_batches)++;
    } else {
        for (int64_t ch = 0; ch < c; ch++) {
            mean[ch] = (double)running_mean[ch];
            invstd[ch] = 1.0 / sqrt((double)running_var[ch] + d->eps);
        }
    }
    for (int64_t ch = 0; ch < c; ch++) {
        double g = gamma ? (double)gamma[ch] : 1.0, bb = beta ? (double)beta[ch] : 0.0;
        a[ch] = (ssl_real)(g * invstd[ch]);
        b[ch] = (ssl_real)(bb - mean[ch] * g * invstd[ch]);
    }
    bn_apply(y, x, a, b, d);
    return 0;
}

int ssl_batchnorm_backward(ssl_real *dx, ssl_real *dgamma, ssl_real *dbeta, const ssl_real *dy,
                           const ssl_real *x, const double *saved, const ssl_real *gamma,
                           const struct ssl_bn_dims *d, bool train,
                           const struct ssl_bn_sync *sync, double *scratch)
{
    int64_t c = d->c;
    const double *mean = saved, *invstd = saved + c;
    double *A = scratch, *B = scratch + c;
    bn_sums(A, B, dy, NULL, x, mean, d);
    /* parameter gradients take the local sums: the gradient allreduce adds the ranks */
    for (int64_t ch = 0; ch < c; ch++) {
        if (dgamma) dgamma[ch] += (ssl_real)(B[ch] * invstd[ch]);
        if (dbeta) dbeta[ch] += (ssl_real)A[ch];
    }
    if (dx == NULL) return 0;
    ssl_real *a = bn_coeffs(scratch, c, 0), *p = bn_coeffs(scratch, c, 1);
    ssl_real *q = bn_coeffs(scratch, c, 2);
    double count = (double)d->m;
    if (train) {
        scratch[2 * c] = count;
        int rc = bn_sync(scratch, c, sync);
        if (rc) return rc;
        count = scratch[2 * c];
    }
    for (int64_t ch = 0; ch < c; ch++) {
        double g = gamma ? (double)gamma[ch] : 1.0, ach = g * invstd[ch];
        double pch = train ? -ach * invstd[ch] * invstd[ch] * B[ch] / count : 0.0;
        double qch = train ? -ach * A[ch] / count - mean[ch] * pch : 0.0;
        a[ch] = (ssl_real)ach;
        p[ch] = (ssl_real)pch;
        q[ch] = (ssl_real)qch;
    }
    bn_apply_add(dx, dy, a, x, p, q, d);
    return 0;
}
