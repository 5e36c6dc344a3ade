/* loss.c: the one-process identities of the loss operations, and keyed randomness. */
#include "loss.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include "../check.h"
#include "../linalg.h"

int ssl_loss_sum(const struct ssl_loss_ctx *c, double *values, int64_t n_values)
{
    if (c == NULL || c->comm == NULL || c->comm->sum == NULL) return 0;
    return c->comm->sum(c->comm->ctx, values, n_values);
}

int ssl_loss_gather(const struct ssl_loss_ctx *c, const double *local, int64_t rows, int64_t cols,
                    double *global, int64_t *offset)
{
    if (c == NULL || c->comm == NULL || c->comm->gather == NULL) {
        if (global != local) memmove(global, local, (size_t)(rows * cols) * sizeof *global);
        *offset = 0;
        return 0;
    }
    return c->comm->gather(c->comm->ctx, local, rows, cols, global, offset);
}

int ssl_loss_scatter(const struct ssl_loss_ctx *c, const double *global_grad, int64_t rows,
                     int64_t cols, double *local_grad)
{
    if (c == NULL || c->comm == NULL || c->comm->scatter == NULL) {
        if (local_grad != global_grad)
            memmove(local_grad, global_grad, (size_t)(rows * cols) * sizeof *local_grad);
        return 0;
    }
    return c->comm->scatter(c->comm->ctx, global_grad, rows, cols, local_grad);
}

int64_t ssl_loss_global_rows(const struct ssl_loss_ctx *c, int64_t rows)
{
    if (c == NULL || c->comm == NULL || c->comm->global_rows == NULL) return rows;
    return c->comm->global_rows(c->comm->ctx, rows);
}

int ssl_loss_eig(const struct ssl_loss_ctx *c, double *s, double *l, int64_t m, double *work)
{
    if (c == NULL || c->comm == NULL || c->comm->eig == NULL) return ssl_linalg_syevd(s, l, m, work);
    return c->comm->eig(c->comm->ctx, s, l, m);
}

int64_t ssl_loss_sym_power_work_elems(int64_t n)
{
    return 2 * n * n + n + ssl_linalg_syevd_work_elems(n);
}

int ssl_loss_sym_power_rows(const struct ssl_loss_ctx *c, double *w_rows, const double *g_rows,
                            int64_t rows, int64_t n, double eps, double power, double *work)
{
    if (c != NULL && c->comm != NULL && c->comm->sym_power_rows != NULL)
        return c->comm->sym_power_rows(c->comm->ctx, w_rows, g_rows, rows, n, eps, power);
    SSL_CHECKF(rows == n, "sym_power_rows: %lld of %lld rows without a comm", (long long)rows,
               (long long)n);
    double *u = work, *uf = u + n * n, *l = uf + n * n;
    memcpy(u, g_rows, (size_t)(n * n) * sizeof *u);
    int rc = ssl_linalg_syevd(u, l, n, l + n);
    if (rc != 0) return rc;
    for (int64_t k = 0; k < n; k++)
        if (!(l[k] + eps > 0.0) && power < 0.0) return SSL_E_NONFINITE;
    /* W = U diag(f) U^T as (U diag(f)) U^T */
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < n; k++) uf[i * n + k] = u[i * n + k] * pow(l[k] + eps, power);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ssl_int(n), ssl_int(n), ssl_int(n), 1.0,
                uf, ssl_int(n), u, ssl_int(n), 0.0, w_rows, ssl_int(n));
    return 0;
}

void ssl_loss_rng(struct ssl_rng *r, const struct ssl_loss_ctx *c, enum ssl_loss_rng purpose,
                  uint32_t k)
{
    ssl_rng_init(r, c ? c->seed : 0, SSL_RNG_LOSS, (uint32_t)(c ? c->step : 0), (uint32_t)purpose, k);
}

void ssl_loss_permutation(struct ssl_rng *r, int64_t *perm, int64_t n)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ssl_rng_below(r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void ssl_loss_to_double(double *dst, const ssl_real *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = (double)src[i];
}

void ssl_loss_add_grad(ssl_real *dst, const double *src, int64_t n)
{
    if (dst == NULL) return;
    for (int64_t i = 0; i < n; i++) dst[i] += (ssl_real)src[i];
}
