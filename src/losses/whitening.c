/* whitening.c: W-MSE, CW-RGP, Shuffled-DBN and the whitening-MSE comparison (whitening.h).
 *
 * Sources (LOSSES-SPEC sections 2-4):
 *   W-MSE        htdt/self-supervised methods/w_mse.py, methods/whitening.py (Whitening2d),
 *                methods/norm_mse.py;
 *   CW-RGP       winci-ai/CW-RGP base/methods/cwrgp.py, base/methods/whitening.py
 *                (Whitening2d, Whitening2dZCA), base/methods/losses.py;
 *   comparison   winci-ai/CW-RGP base/methods/{wmse,pca,bn,plain}.py (same loop);
 *   Shuffled-DBN PatrickHua/FeatureDecorrelationSSL models/utils/shuffled_group_whitening.py,
 *                models/covnorm.py (loss_fn 'l22').
 * Invariants: every loop over rows and groups runs in a fixed order, so the value and
 * gradient are bitwise reproducible; all randomness comes from ssl_loss_rng, so the same
 * (seed, step) draws the same sub-batches and groups. The linear algebra is src/linalg.h:
 * batch-axis whitening is ssl_linalg_whiten_forward/backward per group; channel-axis ZCA (whose
 * per-group Gram matrix is NOT re-centred per group, so the linalg transform, which centres,
 * does not apply) is built from ssl_linalg_syevd and ssl_linalg_spectral_backward. */
#include "whitening.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "../rng.h"

_Static_assert(sizeof(int64_t) == sizeof(double), "permutations are carved from double work");

/* ---- options ---------------------------------------------------------------------------- */

struct ssl_whitening_opts ssl_wmse_defaults(void)
{
    return (struct ssl_whitening_opts){.kind = SSL_WHITEN_CHOLESKY, .axis = SSL_WLOSS_AXIS_BATCH,
                                   .fn = SSL_WLOSS_FN_NORM_MSE, .w_size = 128, .w_iter = 1,
                                   .n_groups = 1, .rand_group = false, .shuffle_rows = true,
                                   .unbiased = true, .eps = 0.0};
}

struct ssl_whitening_opts ssl_cwrgp_defaults(void)
{
    return (struct ssl_whitening_opts){.kind = SSL_WHITEN_ZCA, .axis = SSL_WLOSS_AXIS_CHANNEL,
                                   .fn = SSL_WLOSS_FN_NORM_MSE, .w_size = 128, .w_iter = 1,
                                   .n_groups = 1, .rand_group = true, .shuffle_rows = true,
                                   .unbiased = true, .eps = 0.0};
}

struct ssl_whitening_opts ssl_sdbn_defaults(void)
{
    return (struct ssl_whitening_opts){.kind = SSL_WHITEN_ZCA, .axis = SSL_WLOSS_AXIS_BATCH,
                                   .fn = SSL_WLOSS_FN_L22, .w_size = 0, .w_iter = 1,
                                   .n_groups = 16, .rand_group = true, .shuffle_rows = false,
                                   .unbiased = false, .eps = 0.0};
}

struct ssl_whitening_opts ssl_whitening_compare_defaults(enum ssl_whiten_kind kind)
{
    struct ssl_whitening_opts o = ssl_wmse_defaults();
    o.kind = kind;
    o.unbiased = kind != SSL_WHITEN_BN;
    /* CW-RGP cfg.py: rand_group on by default (--no_rg), applied by wmse.py, pca.py, cwrgp.py
     * even with one group, where it reorders the features Cholesky sees and scatters PCA's
     * components over the output columns; bn.py and plain.py draw none (no effect there). */
    o.rand_group = kind != SSL_WHITEN_BN && kind != SSL_WHITEN_NONE;
    return o;
}

/* Resolved shapes. */
struct shape {
    int64_t m;      /* rows per sub-batch */
    int64_t n_sub;  /* sub-batches */
    int64_t groups; /* feature groups */
    int64_t dg;     /* features per group */
    int64_t saved;  /* doubles of saved state per (sub-batch, view, group) */
};

static struct shape resolve(const struct ssl_whitening_opts *o, int64_t n, int64_t d)
{
    struct shape s = {0};
    s.m = o->w_size > 0 ? o->w_size : n;
    s.n_sub = s.m > 0 ? n / s.m : 0;
    s.groups = o->n_groups > 0 ? o->n_groups : (s.m > 0 ? (2 * d + s.m - 1) / s.m : 0);
    if (o->kind == SSL_WHITEN_NONE) s.groups = 1; /* nothing is whitened: groups do not matter */
    s.dg = s.groups > 0 ? d / s.groups : 0;
    s.saved = o->axis == SSL_WLOSS_AXIS_CHANNEL ? s.m * s.m + s.m
                                                : ssl_linalg_whiten_saved_elems(s.dg);
    return s;
}

enum ssl_status ssl_whitening_validate(const struct ssl_whitening_opts *o, int64_t n_views,
                                       int64_t n, int64_t d, struct ssl_error *err)
{
    struct ssl_whitening_opts dflt = ssl_wmse_defaults();
    if (o == NULL) o = &dflt;
    if (ssl_whiten_kind_name(o->kind) == NULL)
        return ssl_error_set(err, SSL_E_USAGE, "whitening loss: invalid whitening kind %d",
                             (int)o->kind);
    if (o->axis != SSL_WLOSS_AXIS_BATCH && o->axis != SSL_WLOSS_AXIS_CHANNEL)
        return ssl_error_set(err, SSL_E_USAGE, "whitening loss: invalid axis %d", (int)o->axis);
    if (o->fn != SSL_WLOSS_FN_NORM_MSE && o->fn != SSL_WLOSS_FN_MSE && o->fn != SSL_WLOSS_FN_L22)
        return ssl_error_set(err, SSL_E_USAGE, "whitening loss: invalid comparison %d",
                             (int)o->fn);
    if (n_views < 2 || n_views > 16)
        return ssl_error_set(err, SSL_E_USAGE,
                             "whitening loss: %lld views (2 to 16 supported)", (long long)n_views);
    if (n < 1 || d < 1)
        return ssl_error_set(err, SSL_E_USAGE, "whitening loss: empty batch (%lld, %lld)",
                             (long long)n, (long long)d);
    if (o->w_size < 0 || (o->w_size > 0 && n % o->w_size != 0))
        return ssl_error_set(err, SSL_E_USAGE,
                             "whitening loss: w_size %lld does not divide the batch of %lld rows",
                             (long long)o->w_size, (long long)n);
    if (o->w_iter < 1)
        return ssl_error_set(err, SSL_E_USAGE, "whitening loss: w_iter %lld < 1",
                             (long long)o->w_iter);
    if (!(o->eps >= 0.0 && o->eps < 1.0))
        return ssl_error_set(err, SSL_E_USAGE, "whitening loss: eps %g outside [0, 1)", o->eps);
    struct shape s = resolve(o, n, d);
    if (o->n_groups < 0 || s.groups < 1 || d % s.groups != 0)
        return ssl_error_set(err, SSL_E_USAGE,
                             "whitening loss: %lld groups do not divide %lld features",
                             (long long)s.groups, (long long)d);
    if (o->kind == SSL_WHITEN_NONE) return SSL_OK;
    if (o->axis == SSL_WLOSS_AXIS_CHANNEL) {
        if (o->kind != SSL_WHITEN_ZCA)
            return ssl_error_set(err, SSL_E_USAGE,
                                 "whitening loss: channel whitening supports zca only, not %s",
                                 ssl_whiten_kind_name(o->kind));
        /* the rows of a group span at most min(m, d_g) dimensions, d - 1 for one group (the
         * rows are centred over the features) */
        int64_t rank = s.groups == 1 ? s.dg - 1 : s.dg;
        if (o->eps == 0.0 && rank < s.m)
            return ssl_error_set(err, SSL_E_USAGE,
                                 "whitening loss: channel whitening of %lld rows needs more than "
                                 "%lld features per group (has %lld)",
                                 (long long)s.m, (long long)(s.groups == 1 ? s.m : s.m - 1),
                                 (long long)s.dg);
        if (s.dg - (o->unbiased ? 1 : 0) < 1)
            return ssl_error_set(err, SSL_E_USAGE, "whitening loss: group of %lld features",
                                 (long long)s.dg);
    } else {
        if (s.m < (o->unbiased ? 2 : 1))
            return ssl_error_set(err, SSL_E_USAGE, "whitening loss: sub-batch of %lld rows",
                                 (long long)s.m);
        if (o->kind != SSL_WHITEN_BN && o->eps == 0.0 && s.m - 1 < s.dg)
            return ssl_error_set(err, SSL_E_USAGE,
                                 "whitening loss: %s whitening of %lld features needs sub-batches "
                                 "of more than %lld rows (w_size %lld)",
                                 ssl_whiten_kind_name(o->kind), (long long)s.dg, (long long)s.dg,
                                 (long long)s.m);
    }
    return SSL_OK;
}

/* ---- workspace ---------------------------------------------------------------------------- */

/* Pointers into the work buffer. */
struct wl {
    double *x, *y, *dy, *dx; /* (V, n, d) each */
    double *saved;           /* (n_sub, V, groups, saved) */
    int64_t *rperm;          /* (n) */
    int64_t *gperm;          /* (d) */
    double *xs;              /* (m, d) sub-batch rows, then their gradient */
    double *vec;             /* (2 m) f(l), f'(l) of the channel backward */
    double *xg, *yg, *dyg, *dxg; /* (m, dg) one group (batch axis) */
    double *mat[3];          /* (m, m) (channel axis) */
    double *sub;             /* linalg workspace */
};

static int64_t sub_elems(const struct ssl_whitening_opts *o, const struct shape *s)
{
    if (o->axis == SSL_WLOSS_AXIS_CHANNEL) {
        int64_t a = ssl_linalg_syevd_work_elems(s->m), b = ssl_linalg_spectral_backward_work_elems(s->m);
        return a > b ? a : b;
    }
    return ssl_linalg_whiten_work_elems(s->m, s->dg);
}

/* The rows the loss whitens: this rank's, or the global batch's (several ranks, global mode). */
static int64_t whitened_rows(const struct ssl_loss_ctx *c, const struct ssl_whitening_opts *o,
                             int64_t n)
{
    return o->per_rank ? n : ssl_loss_global_rows(c, n);
}

int64_t ssl_whitening_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                                 const struct ssl_whitening_opts *o, int64_t n_views)
{
    struct ssl_whitening_opts dflt = ssl_wmse_defaults();
    if (o == NULL) o = &dflt;
    int64_t N = whitened_rows(c, o, n);
    if (ssl_whitening_validate(o, n_views, N, d, NULL) != SSL_OK) return 0;
    struct shape s = resolve(o, N, d);
    int64_t gather = N != n ? n * d : 0; /* one view's local rows in fp64, for the gather */
    return 4 * n_views * N * d + s.n_sub * n_views * s.groups * s.saved + N + d + s.m * d +
           2 * s.m + 4 * s.m * s.dg + 3 * s.m * s.m + sub_elems(o, &s) + gather;
}

static struct wl carve(double *w, int64_t V, int64_t n, int64_t d, const struct shape *s)
{
    struct wl p;
    p.x = w, w += V * n * d;
    p.y = w, w += V * n * d;
    p.dy = w, w += V * n * d;
    p.dx = w, w += V * n * d;
    p.saved = w, w += s->n_sub * V * s->groups * s->saved;
    /* A double slot holds an int64_t with the same size and alignment. */
    p.rperm = (int64_t *)(void *)w, w += n;
    p.gperm = (int64_t *)(void *)w, w += d;
    p.xs = w, w += s->m * d;
    p.vec = w, w += 2 * s->m;
    p.xg = w, w += s->m * s->dg;
    p.yg = w, w += s->m * s->dg;
    p.dyg = w, w += s->m * s->dg;
    p.dxg = w, w += s->m * s->dg;
    for (int k = 0; k < 3; k++) p.mat[k] = w, w += s->m * s->m;
    p.sub = w;
    return p;
}

/* ---- randomness ----------------------------------------------------------------------------- */

static void row_perm(int64_t *perm, int64_t n, const struct ssl_whitening_opts *o,
                     const struct ssl_loss_ctx *ctx, int64_t it)
{
    if (!o->shuffle_rows) {
        for (int64_t i = 0; i < n; i++) perm[i] = i;
        return;
    }
    struct ssl_rng r;
    ssl_loss_rng(&r, ctx, SSL_LOSS_RNG_SUBBATCH, (uint32_t)it);
    ssl_loss_permutation(&r, perm, n);
}

/* The feature permutation of sub-batch sb (counted over all iterations) and view v. */
static void group_perm(int64_t *perm, int64_t d, const struct ssl_whitening_opts *o,
                       const struct ssl_loss_ctx *ctx, int64_t sb, int64_t v)
{
    if (!o->rand_group) {
        for (int64_t i = 0; i < d; i++) perm[i] = i;
        return;
    }
    struct ssl_rng r;
    ssl_loss_rng(&r, ctx, SSL_LOSS_RNG_GROUPS, (uint32_t)(sb * 16 + v));
    ssl_loss_permutation(&r, perm, d);
}

/* ---- channel-axis ZCA (CW-RGP's Whitening2dZCA, axis = 0) -------------------------------------
 * xs (m, d): the sub-batch rows, already centred over the features. Per group g with columns
 * cols = gperm[g dg ..]: Xg (m, dg), S = Xg Xg^T / (dg - minus), S' = (1 - eps) S + eps I =
 * U diag(l) U^T, Yg = U diag(l^-1/2) U^T Xg. saved per group: U (m, m) | l (m). */

static int chan_forward(double *yg, double *saved, const double *xg, int64_t m, int64_t dg,
                        const struct ssl_whitening_opts *o, struct wl *p)
{
    double c = 1.0 / (double)(dg - (o->unbiased ? 1 : 0));
    double *u = saved, *l = saved + m * m, *w = p->mat[0];
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j <= i; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < dg; k++) acc += xg[i * dg + k] * xg[j * dg + k];
            double v = (1.0 - o->eps) * c * acc + (i == j ? o->eps : 0.0);
            u[i * m + j] = v;
            u[j * m + i] = v;
        }
    if (ssl_linalg_syevd(u, l, m, p->sub) != 0) return SSL_E_NONFINITE;
    if (!(l[0] > (double)m * DBL_EPSILON * l[m - 1])) return SSL_E_NONFINITE;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < m; k++) acc += u[i * m + k] * u[j * m + k] / sqrt(l[k]);
            w[i * m + j] = acc;
        }
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < dg; k++) {
            double acc = 0.0;
            for (int64_t j = 0; j < m; j++) acc += w[i * m + j] * xg[j * dg + k];
            yg[i * dg + k] = acc;
        }
    return 0;
}

/* dxg (m, dg) = dL/dXg from dyg, through W and S (the centring is the caller's). */
static void chan_backward(double *dxg, const double *dyg, const double *xg, const double *saved,
                          int64_t m, int64_t dg, const struct ssl_whitening_opts *o, struct wl *p)
{
    double c = 1.0 / (double)(dg - (o->unbiased ? 1 : 0));
    const double *u = saved, *l = saved + m * m;
    double *w = p->mat[0], *dw = p->mat[1], *ds = p->mat[2];
    double *fl = p->vec, *dfl = p->vec + m;
    for (int64_t k = 0; k < m; k++) {
        fl[k] = 1.0 / sqrt(l[k]);
        dfl[k] = -0.5 * fl[k] / l[k];
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < m; j++) {
            double acc = 0.0, acc2 = 0.0;
            for (int64_t k = 0; k < m; k++) acc += u[i * m + k] * u[j * m + k] * fl[k];
            for (int64_t k = 0; k < dg; k++) acc2 += dyg[i * dg + k] * xg[j * dg + k];
            w[i * m + j] = acc;
            dw[i * m + j] = acc2; /* dL/dW = dY Xg^T */
            ds[i * m + j] = 0.0;
        }
    ssl_linalg_spectral_backward(ds, dw, u, l, fl, dfl, m, p->sub);
    /* dL/dS = (1 - eps) dL/dS' (symmetric); S = c Xg Xg^T: dXg = c (dS + dS^T) Xg = 2 c dS Xg */
    double s2 = 2.0 * c * (1.0 - o->eps);
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < dg; k++) {
            double acc = 0.0, acc2 = 0.0;
            for (int64_t j = 0; j < m; j++) {
                acc += w[i * m + j] * dyg[j * dg + k];
                acc2 += ds[i * m + j] * xg[j * dg + k];
            }
            dxg[i * dg + k] = acc + s2 * acc2;
        }
}

/* ---- whitening of one (sub-batch, view) ------------------------------------------------------ */

/* Gathers the sub-batch rows of view x (n, d) into p->xs (m, d), centred over the features
 * for the channel axis. */
static void gather_rows(struct wl *p, const double *x, const int64_t *rows, int64_t m, int64_t d,
                        const struct ssl_whitening_opts *o)
{
    for (int64_t r = 0; r < m; r++) {
        const double *src = x + rows[r] * d;
        double *dst = p->xs + r * d;
        memcpy(dst, src, (size_t)d * sizeof *dst);
        if (o->axis == SSL_WLOSS_AXIS_CHANNEL && o->kind != SSL_WHITEN_NONE) {
            double mean = 0.0;
            for (int64_t k = 0; k < d; k++) mean += dst[k];
            mean /= (double)d;
            for (int64_t k = 0; k < d; k++) dst[k] -= mean;
        }
    }
}

static int whiten_forward(double *y, double *saved, const double *x, const int64_t *rows,
                          int64_t d, const struct ssl_whitening_opts *o, const struct shape *s,
                          struct wl *p)
{
    int64_t m = s->m, dg = s->dg;
    gather_rows(p, x, rows, m, d, o);
    for (int64_t g = 0; g < s->groups; g++) {
        const int64_t *cols = p->gperm + g * dg;
        for (int64_t r = 0; r < m; r++)
            for (int64_t k = 0; k < dg; k++) p->xg[r * dg + k] = p->xs[r * d + cols[k]];
        double *sv = saved + g * s->saved;
        int rc = o->axis == SSL_WLOSS_AXIS_CHANNEL && o->kind != SSL_WHITEN_NONE
                     ? chan_forward(p->yg, sv, p->xg, m, dg, o, p)
                     : ssl_linalg_whiten_forward(o->kind, p->yg, sv, p->xg, m, dg, o->unbiased,
                                                 o->eps, p->sub);
        if (rc != 0) return SSL_E_NONFINITE;
        for (int64_t r = 0; r < m; r++)
            for (int64_t k = 0; k < dg; k++) y[rows[r] * d + cols[k]] = p->yg[r * dg + k];
    }
    return 0;
}

/* dx (n, d) += dL/dx at the sub-batch rows, given dy (n, d). */
static void whiten_backward(double *dx, const double *dy, const double *saved, const double *x,
                            const int64_t *rows, int64_t d, const struct ssl_whitening_opts *o,
                            const struct shape *s, struct wl *p)
{
    int64_t m = s->m, dg = s->dg;
    bool chan = o->axis == SSL_WLOSS_AXIS_CHANNEL && o->kind != SSL_WHITEN_NONE;
    gather_rows(p, x, rows, m, d, o);
    for (int64_t g = 0; g < s->groups; g++) {
        const int64_t *cols = p->gperm + g * dg;
        for (int64_t r = 0; r < m; r++)
            for (int64_t k = 0; k < dg; k++) {
                p->xg[r * dg + k] = p->xs[r * d + cols[k]];
                p->dyg[r * dg + k] = dy[rows[r] * d + cols[k]];
                p->dxg[r * dg + k] = 0.0;
            }
        const double *sv = saved + g * s->saved;
        if (chan)
            chan_backward(p->dxg, p->dyg, p->xg, sv, m, dg, o, p);
        else
            ssl_linalg_whiten_backward(o->kind, p->dxg, p->dyg, p->xg, sv, m, dg, o->unbiased,
                                       o->eps, p->sub);
        /* the group's columns are disjoint from the others: store its gradient in xs's slots
         * (the inputs of this group are no longer needed) */
        for (int64_t r = 0; r < m; r++)
            for (int64_t k = 0; k < dg; k++) p->xs[r * d + cols[k]] = p->dxg[r * dg + k];
    }
    /* p->xs now holds dL/dxs (m, d); the channel centring xs = x - rowmean(x) backward */
    for (int64_t r = 0; r < m; r++) {
        double *gr = p->xs + r * d, mean = 0.0;
        if (chan) {
            for (int64_t k = 0; k < d; k++) mean += gr[k];
            mean /= (double)d;
        }
        double *dst = dx + rows[r] * d;
        for (int64_t k = 0; k < d; k++) dst[k] += gr[k] - mean;
    }
}

/* ---- comparison of two whitened views ---------------------------------------------------------
 * Returns fn(a, b) for a, b (n, d); da, db += scale * dfn (when need). */
static double compare(double *da, double *db, const double *a, const double *b, int64_t n,
                      int64_t d, enum ssl_wloss_fn fn, double scale, bool need)
{
    double total = 0.0;
    if (fn == SSL_WLOSS_FN_NORM_MSE) {
        /* norm_mse_loss: x0 = F.normalize(x0), x1 = F.normalize(x1),
         * 2 - 2 (x0 * x1).sum(-1).mean(); F.normalize divides by max(||x||, 1e-12). */
        const double eps = 1e-12;
        for (int64_t i = 0; i < n; i++) {
            const double *ai = a + i * d, *bi = b + i * d;
            double na = 0.0, nb = 0.0, ab = 0.0;
            for (int64_t k = 0; k < d; k++) {
                na += ai[k] * ai[k];
                nb += bi[k] * bi[k];
                ab += ai[k] * bi[k];
            }
            na = sqrt(na), nb = sqrt(nb);
            double ra = na > eps ? na : eps, rb = nb > eps ? nb : eps;
            double cosv = ab / (ra * rb);
            total += cosv;
            if (!need) continue;
            double g = -2.0 * scale / (double)n; /* dL/dcos_i */
            /* d cos / d a = b / (ra rb) - [na > eps] cos a / na^2 (the clamp has zero slope) */
            double ca = na > eps ? cosv / (na * na) : 0.0, cb = nb > eps ? cosv / (nb * nb) : 0.0;
            for (int64_t k = 0; k < d; k++) {
                da[i * d + k] += g * (bi[k] / (ra * rb) - ca * ai[k]);
                db[i * d + k] += g * (ai[k] / (ra * rb) - cb * bi[k]);
            }
        }
        return 2.0 - 2.0 * total / (double)n;
    }
    double c = fn == SSL_WLOSS_FN_MSE ? 1.0 / ((double)n * (double)d) : 1.0 / (double)n;
    for (int64_t i = 0; i < n * d; i++) {
        double e = a[i] - b[i];
        total += e * e;
        if (need) {
            da[i] += 2.0 * c * scale * e;
            db[i] -= 2.0 * c * scale * e;
        }
    }
    return c * total;
}

/* ---- the loss ---------------------------------------------------------------------------------- */

/* The loss on the n rows already in p->x (V, n, d): *total (unscaled by 1 / scale), and with
 * need p->dx (V, n, d) = dL/dx for the views whose dz[v] is not NULL. */
static int whitening_rows(double *total, struct wl *p, ssl_real *const *dz, int64_t V, int64_t n,
                          int64_t d, const struct ssl_whitening_opts *o, const struct shape *s,
                          const struct ssl_loss_ctx *c, bool need, double scale,
                          struct ssl_error *err)
{
    int64_t nd = n * d;
    if (need) memset(p->dx, 0, (size_t)(V * nd) * sizeof *p->dx);
    *total = 0.0;
    for (int64_t it = 0; it < o->w_iter; it++) {
        row_perm(p->rperm, n, o, c, it);
        for (int64_t sb = 0; sb < s->n_sub; sb++)
            for (int64_t v = 0; v < V; v++) {
                group_perm(p->gperm, d, o, c, it * s->n_sub + sb, v);
                double *sv = p->saved + (sb * V + v) * s->groups * s->saved;
                if (whiten_forward(p->y + v * nd, sv, p->x + v * nd, p->rperm + sb * s->m, d, o,
                                   s, p) != 0)
                    return ssl_error_set(err, SSL_E_NONFINITE,
                                         "whitening loss: singular or non-finite %s whitening "
                                         "(iteration %lld, sub-batch %lld, view %lld)",
                                         ssl_whiten_kind_name(o->kind), (long long)it,
                                         (long long)sb, (long long)v);
            }
        if (need) memset(p->dy, 0, (size_t)(V * nd) * sizeof *p->dy);
        for (int64_t i = 0; i < V; i++)
            for (int64_t j = i + 1; j < V; j++)
                *total += compare(p->dy + i * nd, p->dy + j * nd, p->y + i * nd, p->y + j * nd,
                                  n, d, o->fn, scale, need);
        if (!need) continue;
        for (int64_t sb = 0; sb < s->n_sub; sb++)
            for (int64_t v = 0; v < V; v++) {
                if (dz[v] == NULL) continue;
                group_perm(p->gperm, d, o, c, it * s->n_sub + sb, v);
                const double *sv = p->saved + (sb * V + v) * s->groups * s->saved;
                whiten_backward(p->dx + v * nd, p->dy + v * nd, sv, p->x + v * nd,
                                p->rperm + sb * s->m, d, o, s, p);
            }
    }
    return 0;
}

int ssl_whitening_loss(double *value, ssl_real *const *dz, const ssl_real *const *z,
                       int64_t n_views, int64_t n, int64_t d, const struct ssl_whitening_opts *o,
                       const struct ssl_loss_ctx *c, double *work, struct ssl_error *err)
{
    struct ssl_whitening_opts dflt = ssl_wmse_defaults();
    if (o == NULL) o = &dflt;
    *value = NAN; /* until it is known: every failure returns before it is set */
    int64_t N = whitened_rows(c, o, n), V = n_views, off = 0;
    enum ssl_status st = ssl_whitening_validate(o, n_views, N, d, err);
    if (st != SSL_OK) return st;
    struct shape s = resolve(o, N, d);
    struct wl p = carve(work, n_views, N, d, &s);
    /* Global mode on several ranks: every rank gathers the whole batch and computes the
     * one-process loss on it (identical everywhere, the permutations being keyed), then keeps
     * its own rows of the gradient: no scatter is needed. */
    double *local = work + ssl_whitening_work_elems(c, n, d, o, n_views) - n * d;
    for (int64_t v = 0; v < V; v++) {
        if (N == n) {
            ssl_loss_to_double(p.x + v * N * d, z[v], n * d);
            continue;
        }
        ssl_loss_to_double(local, z[v], n * d);
        int rc = ssl_loss_gather(c, local, n, d, p.x + v * N * d, &off);
        if (rc != 0) return rc;
    }
    bool need = false;
    for (int64_t v = 0; v < V; v++) need = need || (dz != NULL && dz[v] != NULL);
    double pairs = (double)(V * (V - 1) / 2), scale = 1.0 / ((double)o->w_iter * pairs), total;
    int rc = whitening_rows(&total, &p, dz, V, N, d, o, &s, c, need, scale, err);
    if (rc != 0) return rc;
    double L = total * scale;
    if (!isfinite(L))
        return ssl_error_set(err, SSL_E_NONFINITE, "whitening loss: non-finite value");
    *value = L;
    if (need)
        for (int64_t v = 0; v < V; v++)
            if (dz[v] != NULL) ssl_loss_add_grad(dz[v], p.dx + v * N * d + off * d, n * d);
    return 0;
}
