/* whiten.c: group ZCA whitening of rows (Shuffled-DBN, Hua et al. 2021), forward and backward.
 *
 * Per group of G permuted features (x (n, d) row-major, perm[j] = input column of permuted
 * column j):
 *   Xc = X - 1 mean^T,  S = Xc^T Xc / n + eps I = U diag(l) U^T,  W = U diag(l^-1/2) U^T,
 *   out = Xc W,  y[:, perm[j]] = out[:, j].
 * Backward, with dO = dL/dout:
 *   dW = Xc^T dO;  A = (dW + dW^T) / 2   (W is symmetric, so only dW's symmetric part counts)
 *   dS = U (K o (U^T A U)) U^T,  K_ij = (f(l_i) - f(l_j)) / (l_i - l_j), K_ii = f'(l_i), f = x^-1/2
 *      (Daleckii-Krein); with s = sqrt(l) both cases are K_ij = -1 / (s_i s_j (s_i + s_j)),
 *      which has no cancellation for close or equal eigenvalues;
 *   dXc = dO W + 2 Xc dS / n   (dS symmetric);  dX = dXc - 1 colmean(dXc)^T.
 * All linear algebra is fp64 whatever ssl_real is. Invariants: forward and backward allocate
 * nothing; saved holds, per group, U^T (G, G) row-major (rows are eigenvectors, which is how
 * column-major LAPACK leaves U), l (G) and mean (G); backward rebuilds Xc and W from them. */
#include "layers.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stddef.h>

#include "../check.h"

/* dsyevd's workspace sizes for jobz = 'V' (LAPACK documentation of DSYEVD). */
static int64_t syevd_lwork(int64_t g) { return 1 + 6 * g + 2 * g * g; }
static int64_t syevd_liwork(int64_t g) { return 3 + 5 * g; }

/* The integer workspace, in doubles, carved from the double scratch. */
static int64_t syevd_iwork_doubles(int64_t g)
{
    int64_t n_bytes = syevd_liwork(g) * (int64_t)sizeof(lapack_int);
    return (n_bytes + (int64_t)sizeof(double) - 1) / (int64_t)sizeof(double);
}

static int64_t group_saved_elems(int64_t g) { return g * g + 2 * g; }

int64_t ssl_whiten_saved_elems(int64_t n, int64_t d, int64_t group)
{
    (void)n;
    SSL_CHECK(group > 0 && d % group == 0);
    return d / group * group_saved_elems(group);
}

int64_t ssl_whiten_scratch_elems(int64_t n, int64_t d, int64_t group)
{
    (void)d;
    return 3 * n * group + 4 * group * group + syevd_lwork(group) + syevd_iwork_doubles(group);
}

/* Pointers into the scratch: three (n, G) blocks, four (G, G) blocks, dsyevd's workspaces. */
struct whiten_scratch {
    double *xc, *a, *b;  /* (n, G) each */
    double *m[4];        /* (G, G) each */
    double *work;        /* (lwork) */
    lapack_int *iwork;   /* (liwork) */
};

static struct whiten_scratch carve(double *scratch, int64_t n, int64_t g)
{
    struct whiten_scratch s;
    s.xc = scratch;
    s.a = s.xc + n * g;
    s.b = s.a + n * g;
    for (int k = 0; k < 4; k++) s.m[k] = s.b + n * g + k * g * g;
    s.work = s.m[3] + g * g;
    /* Alignment holds: a double slot is at least as aligned as a lapack_int. */
    s.iwork = (lapack_int *)(void *)(s.work + syevd_lwork(g));
    return s;
}

/* out (n, G) = columns perm[c0 .. c0+G) of src (n, d), in fp64. */
static void gather(double *out, const ssl_real *src, const int64_t *perm, int64_t c0, int64_t n,
                   int64_t d, int64_t g)
{
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < g; j++) {
            int64_t c = perm ? perm[c0 + j] : c0 + j;
            SSL_ASSERT(c >= 0 && c < d);
            out[r * g + j] = (double)src[r * d + c];
        }
}

/* Column means of v (n, G) into mean (G); subtracts them from v. */
static void centre(double *v, double *mean, int64_t n, int64_t g)
{
    for (int64_t j = 0; j < g; j++) mean[j] = 0.0;
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < g; j++) mean[j] += v[r * g + j];
    for (int64_t j = 0; j < g; j++) mean[j] /= (double)n;
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < g; j++) v[r * g + j] -= mean[j];
}

/* C (m, k) = alpha op(A) op(B) + beta C, all row-major with leading dimension = width. */
static void dgemm(bool ta, bool tb, int64_t m, int64_t k, int64_t inner, double alpha,
                  const double *A, const double *B, double beta, double *C)
{
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                ssl_int(m), ssl_int(k), ssl_int(inner), alpha, A, ssl_int(ta ? m : inner), B,
                ssl_int(tb ? inner : k), beta, C, ssl_int(k));
}

/* w (G, G) = U diag(l^-1/2) U^T from ut = U^T; tmp (G, G) is clobbered. */
static void build_w(double *w, double *tmp, const double *ut, const double *l, int64_t g)
{
    for (int64_t k = 0; k < g; k++) {
        double s = 1.0 / sqrt(l[k]);
        for (int64_t i = 0; i < g; i++) tmp[k * g + i] = s * ut[k * g + i];
    }
    dgemm(true, false, g, g, g, 1.0, ut, tmp, 0.0, w);
}

/* Eigendecomposition of S (in ut on entry, symmetric) into ut = U^T and l, ascending.
 * Column-major so that LAPACKE does not transpose into a buffer of its own. A group whose
 * smallest eigenvalue is not above the rounding level of the largest (G u l_max, the usual
 * numerical-rank tolerance) is singular: its computed l_min may come out as +1e-17 instead of
 * 0, and l^-1/2 of that is noise. */
static int eigen(double *ut, double *l, const struct whiten_scratch *s, int64_t g)
{
    lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', ssl_int(g), ut, ssl_int(g),
                                          l, s->work, ssl_int(syevd_lwork(g)), s->iwork,
                                          ssl_int(syevd_liwork(g)));
    if (info != 0 || !isfinite(l[0]) || !isfinite(l[g - 1])) return SSL_E_NONFINITE;
    if (!(l[0] > (double)g * DBL_EPSILON * l[g - 1])) return SSL_E_NONFINITE;
    return 0;
}

/* Whitens one group: saved (U^T, l, mean) and y's columns perm[c0 .. c0+G). */
static int forward_group(ssl_real *y, double *sv, const ssl_real *x, const int64_t *perm,
                         int64_t c0, int64_t n, int64_t d, int64_t g, double eps,
                         const struct whiten_scratch *s)
{
    double *ut = sv, *l = sv + g * g, *mean = l + g;
    gather(s->xc, x, perm, c0, n, d, g);
    centre(s->xc, mean, n, g);
    dgemm(true, false, g, g, n, 1.0 / (double)n, s->xc, s->xc, 0.0, ut);
    for (int64_t i = 0; i < g; i++) ut[i * g + i] += eps;
    int rc = eigen(ut, l, s, g);
    if (rc) return rc;
    build_w(s->m[0], s->m[1], ut, l, g);
    dgemm(false, false, n, g, g, 1.0, s->xc, s->m[0], 0.0, s->a);
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < g; j++) {
            int64_t c = perm ? perm[c0 + j] : c0 + j;
            y[r * d + c] = (ssl_real)s->a[r * g + j];
        }
    return 0;
}

int ssl_whiten_forward(ssl_real *y, double *saved, const ssl_real *x, const int64_t *perm,
                       int64_t n, int64_t d, int64_t group, double eps, double *scratch)
{
    SSL_CHECK(n > 0 && group > 0 && d % group == 0);
    struct whiten_scratch s = carve(scratch, n, group);
    for (int64_t c0 = 0; c0 < d; c0 += group) {
        double *sv = saved + c0 / group * group_saved_elems(group);
        int rc = forward_group(y, sv, x, perm, c0, n, d, group, eps, &s);
        if (rc) return rc;
    }
    return 0;
}

/* ds (G, G) = U (K o (U^T A U)) U^T with A = sym(dw); dw is clobbered, tmp too. */
static void eigen_backward(double *ds, double *dw, double *tmp, const double *ut,
                           const double *l, int64_t g)
{
    for (int64_t i = 0; i < g; i++)
        for (int64_t j = 0; j < i; j++) {
            double a = 0.5 * (dw[i * g + j] + dw[j * g + i]);
            dw[i * g + j] = dw[j * g + i] = a;
        }
    dgemm(false, false, g, g, g, 1.0, ut, dw, 0.0, tmp); /* U^T A */
    dgemm(false, true, g, g, g, 1.0, tmp, ut, 0.0, ds);  /* U^T A U */
    for (int64_t i = 0; i < g; i++)
        for (int64_t j = 0; j < g; j++) {
            double si = sqrt(l[i]), sj = sqrt(l[j]);
            ds[i * g + j] *= -1.0 / (si * sj * (si + sj));
        }
    dgemm(false, false, g, g, g, 1.0, ds, ut, 0.0, tmp); /* M U^T */
    dgemm(true, false, g, g, g, 1.0, ut, tmp, 0.0, ds);  /* U M U^T */
}

/* dx's columns perm[c0 .. c0+G) += dX of one group. */
static void backward_group(ssl_real *dx, const ssl_real *dy, const ssl_real *x,
                           const double *sv, const int64_t *perm, int64_t c0, int64_t n,
                           int64_t d, int64_t g, const struct whiten_scratch *s)
{
    const double *ut = sv, *l = sv + g * g, *mean = l + g;
    gather(s->xc, x, perm, c0, n, d, g);
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < g; j++) s->xc[r * g + j] -= mean[j];
    gather(s->a, dy, perm, c0, n, d, g);
    build_w(s->m[0], s->m[1], ut, l, g);
    dgemm(false, false, n, g, g, 1.0, s->a, s->m[0], 0.0, s->b);      /* dO W */
    dgemm(true, false, g, g, n, 1.0, s->xc, s->a, 0.0, s->m[1]);      /* dW = Xc^T dO */
    eigen_backward(s->m[2], s->m[1], s->m[3], ut, l, g);
    dgemm(false, false, n, g, g, 2.0 / (double)n, s->xc, s->m[2], 1.0, s->b);
    centre(s->b, s->m[0], n, g); /* the mean's own gradient: dX = dXc - colmean(dXc) */
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < g; j++) {
            int64_t c = perm ? perm[c0 + j] : c0 + j;
            dx[r * d + c] = (ssl_real)((double)dx[r * d + c] + s->b[r * g + j]);
        }
}

int ssl_whiten_backward(ssl_real *dx, const ssl_real *dy, const ssl_real *x, const double *saved,
                        const int64_t *perm, int64_t n, int64_t d, int64_t group, double eps,
                        double *scratch)
{
    (void)eps; /* already inside the saved eigenvalues */
    SSL_CHECK(n > 0 && group > 0 && d % group == 0);
    if (!dx) return 0;
    struct whiten_scratch s = carve(scratch, n, group);
    for (int64_t c0 = 0; c0 < d; c0 += group) {
        const double *sv = saved + c0 / group * group_saved_elems(group);
        backward_group(dx, dy, x, sv, perm, c0, n, d, group, &s);
    }
    return 0;
}
