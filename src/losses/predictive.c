/* predictive.c: BYOL, SimSiam and the RDM spectral predictors (predictive.h has the formulas
 * and sources; docs/losses/predictive.md the deviations).
 *
 * Invariants: the targets t1, t2 never receive a gradient (stop-gradient); every mean is over
 * N = ssl_loss_global_rows rows, and the value is made global with ONE ssl_loss_sum of the
 * local per-direction sums, after all local gradients are accumulated (they do not depend on
 * the value). RDM's map W is a stop-gradient constant built from the global batch: the
 * gradient is linear, dp = dp' W. Everything inside is fp64. */
#include "predictive.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include <cblas.h>

#include "../check.h"
#include "../linalg.h"

/* ------------------------------------------------------------------------------------------
 * Row kernels on double rows
 * ------------------------------------------------------------------------------------------ */

/* cos(a, b) = a.b / (max(|a|, eps) max(|b|, eps)); ga (d) = dcos/da if not NULL (b is
 * stop-gradient). A clamped norm is a constant for the gradient. */
static double cos_row(double *ga, const double *a, const double *b, int64_t d, double eps)
{
    double aa = 0, bb = 0, ab = 0;
    for (int64_t k = 0; k < d; k++) {
        aa += a[k] * a[k];
        bb += b[k] * b[k];
        ab += a[k] * b[k];
    }
    double la = sqrt(aa), na = fmax(la, eps), nb = fmax(sqrt(bb), eps);
    double cs = ab / (na * nb);
    if (ga != NULL) {
        /* d/da (a.b / (|a| nb)) = b / (|a| nb) - cs a / |a|^2 */
        double sa = la > eps ? cs / aa : 0.0;
        for (int64_t k = 0; k < d; k++) ga[k] = b[k] / (na * nb) - sa * a[k];
    }
    return cs;
}

/* BYOL's reg(a, b) = ||a / na - b / nb||^2, n = sqrt(max(|.|^2, eps_sq)); ga = dreg/da. */
static double byol_row(double *ga, const double *a, const double *b, int64_t d, double eps_sq)
{
    double aa = 0, bb = 0;
    for (int64_t k = 0; k < d; k++) {
        aa += a[k] * a[k];
        bb += b[k] * b[k];
    }
    double na = sqrt(fmax(aa, eps_sq)), nb = sqrt(fmax(bb, eps_sq));
    double reg = 0, ag = 0;
    for (int64_t k = 0; k < d; k++) {
        double ah = a[k] / na, e = ah - b[k] / nb;
        reg += e * e;
        ag += ah * 2.0 * e; /* ahat . g, g = 2 (ahat - bhat) */
    }
    if (ga != NULL) {
        /* dahat/da = (I - ahat ahat^T) / |a| when unclamped, I / na when clamped */
        bool unclamped = aa > eps_sq;
        for (int64_t k = 0; k < d; k++) {
            double ah = a[k] / na, g = 2.0 * (ah - b[k] / nb);
            ga[k] = (unclamped ? g - ah * ag : g) / na;
        }
    }
    return reg;
}

static void row_to_double(double *dst, const ssl_real *src, int64_t d)
{
    for (int64_t k = 0; k < d; k++) dst[k] = (double)src[k];
}

static void row_add_grad(ssl_real *dst, const double *g, double scale, int64_t d)
{
    for (int64_t k = 0; k < d; k++) dst[k] += (ssl_real)(scale * g[k]);
}

/* ------------------------------------------------------------------------------------------
 * BYOL and SimSiam
 * ------------------------------------------------------------------------------------------ */

struct ssl_byol_opts ssl_byol_defaults(void)
{
    return (struct ssl_byol_opts){.eps_sq = 1e-12};
}

struct ssl_simsiam_opts ssl_simsiam_defaults(void)
{
    return (struct ssl_simsiam_opts){.eps = 1e-8};
}

int64_t ssl_byol_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                            const struct ssl_byol_opts *o)
{
    (void)c;
    (void)n;
    (void)o;
    return 3 * d;
}

int64_t ssl_simsiam_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                               const struct ssl_simsiam_opts *o)
{
    (void)c;
    (void)n;
    (void)o;
    return 3 * d;
}

/* The status convention's ending: a finite value is stored with 0, anything else fails with
 * SSL_E_NONFINITE and *value = NAN. */
static int finish(double *value, double v)
{
    if (!isfinite(v)) {
        *value = NAN;
        return SSL_E_NONFINITE;
    }
    *value = v;
    return 0;
}

enum pair_kind { PAIR_BYOL, PAIR_COS };

/* sums[dir] = sum over local rows of the row kernel for the pairs (p1, t2) and (p2, t1);
 * dp += grad_scale * dkernel/dp. */
static void pair_sums(double sums[2], ssl_real *dp1, ssl_real *dp2, const ssl_real *p1,
                      const ssl_real *p2, const ssl_real *t1, const ssl_real *t2, int64_t n,
                      int64_t d, enum pair_kind kind, double eps, double grad_scale, double *work)
{
    double *a = work, *b = work + d, *g = work + 2 * d;
    for (int dir = 0; dir < 2; dir++) {
        const ssl_real *p = dir == 0 ? p1 : p2, *t = dir == 0 ? t2 : t1;
        ssl_real *dp = dir == 0 ? dp1 : dp2;
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            row_to_double(a, p + i * d, d);
            row_to_double(b, t + i * d, d);
            double *gi = dp != NULL ? g : NULL;
            s += kind == PAIR_BYOL ? byol_row(gi, a, b, d, eps) : cos_row(gi, a, b, d, eps);
            if (dp != NULL) row_add_grad(dp + i * d, g, grad_scale, d);
        }
        sums[dir] = s;
    }
}

/* deepmind-research byol/byol_experiment.py loss_fn: the per-example regression losses of both
 * directions are summed, then averaged over the batch (jnp.mean), and the gradients pmean'ed
 * over devices: the global-batch mean. */
int ssl_byol_loss(double *value, ssl_real *dp1, ssl_real *dp2, const ssl_real *p1,
                  const ssl_real *p2, const ssl_real *t1, const ssl_real *t2, int64_t n, int64_t d,
                  const struct ssl_byol_opts *o, const struct ssl_loss_ctx *c, double *work)
{
    SSL_CHECK(value != NULL && n >= 0 && d > 0);
    *value = NAN;
    struct ssl_byol_opts op = o ? *o : ssl_byol_defaults();
    int64_t ng = ssl_loss_global_rows(c, n);
    SSL_CHECK(ng > 0);
    double sums[2];
    pair_sums(sums, dp1, dp2, p1, p2, t1, t2, n, d, PAIR_BYOL, op.eps_sq, 1.0 / (double)ng, work);
    int rc = ssl_loss_sum(c, sums, 2);
    if (rc != 0) return rc;
    return finish(value, (sums[0] + sums[1]) / (double)ng);
}

/* facebookresearch/simsiam main_simsiam.py train(): loss = -(criterion(p1, z2).mean() +
 * criterion(p2, z1).mean()) * 0.5, DDP-averaged local means: the global-batch mean. */
int ssl_simsiam_loss(double *value, ssl_real *dp1, ssl_real *dp2, const ssl_real *p1,
                     const ssl_real *p2, const ssl_real *t1, const ssl_real *t2, int64_t n,
                     int64_t d, const struct ssl_simsiam_opts *o, const struct ssl_loss_ctx *c,
                     double *work)
{
    SSL_CHECK(value != NULL && n >= 0 && d > 0);
    *value = NAN;
    struct ssl_simsiam_opts op = o ? *o : ssl_simsiam_defaults();
    int64_t ng = ssl_loss_global_rows(c, n);
    SSL_CHECK(ng > 0);
    double sums[2];
    pair_sums(sums, dp1, dp2, p1, p2, t1, t2, n, d, PAIR_COS, op.eps, -0.5 / (double)ng, work);
    int rc = ssl_loss_sum(c, sums, 2);
    if (rc != 0) return rc;
    return finish(value, -0.5 * (sums[0] + sums[1]) / (double)ng);
}

/* ------------------------------------------------------------------------------------------
 * RDM
 * ------------------------------------------------------------------------------------------ */

struct ssl_rdm_opts ssl_rdm_defaults(void)
{
    return (struct ssl_rdm_opts){.base = SSL_RDM_BASE_SIMSIAM, .pred_type = SSL_RDM_PRED_POLY,
                                 .location = SSL_RDM_LOC_ONLINE, .sigma = 1.0, .eps = 1e-8};
}

static const char *const pred_names[] = {"poly", "log", "log_1", "log_2"};
static const char *const loc_names[] = {"online", "target"};
static const char *const base_names[] = {"simsiam", "byol"};

const char *ssl_rdm_pred_name(enum ssl_rdm_pred p)
{
    return (unsigned)p < 4u ? pred_names[p] : NULL;
}

const char *ssl_rdm_location_name(enum ssl_rdm_location l)
{
    return (unsigned)l < 2u ? loc_names[l] : NULL;
}

const char *ssl_rdm_base_name(enum ssl_rdm_base b)
{
    return (unsigned)b < 2u ? base_names[b] : NULL;
}

static int parse_name(const char *s, const char *const *names, int count, int *out)
{
    for (int i = 0; s != NULL && i < count; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

int ssl_rdm_pred_parse(const char *s, enum ssl_rdm_pred *out)
{
    int v;
    if (parse_name(s, pred_names, 4, &v) != 0) return -1;
    *out = (enum ssl_rdm_pred)v;
    return 0;
}

int ssl_rdm_location_parse(const char *s, enum ssl_rdm_location *out)
{
    int v;
    if (parse_name(s, loc_names, 2, &v) != 0) return -1;
    *out = (enum ssl_rdm_location)v;
    return 0;
}

int ssl_rdm_base_parse(const char *s, enum ssl_rdm_base *out)
{
    int v;
    if (parse_name(s, base_names, 2, &v) != 0) return -1;
    *out = (enum ssl_rdm_base)v;
    return 0;
}

/* The function of the singular values the map applies: f of pred_type (online), s^sigma
 * (target). rdmsimsiam.py computes log(s + 1) and log(s^2 + 1); log1p is the same function,
 * more accurately. */
static double rdm_h(const struct ssl_rdm_opts *o, double s)
{
    if (o->location == SSL_RDM_LOC_TARGET) return pow(s, o->sigma);
    switch (o->pred_type) {
    case SSL_RDM_PRED_POLY: return pow(s, o->sigma);
    case SSL_RDM_PRED_LOG: return log(s);
    case SSL_RDM_PRED_LOG_1: return log1p(s);
    case SSL_RDM_PRED_LOG_2: return log1p(s * s);
    }
    return NAN;
}

/* Work layout for n local rows, ng global rows, d columns; m = min(ng, d), gram = ng < d. */
struct rdm_work {
    bool gram;
    int64_t m;
    double *x, *o; /* (n, d): the map's source and the other input, in double */
    double *y, *g; /* (n, d): the mapped input, dL/d(mapped) */
    double *xg;    /* (ng, d) gathered source (gram only) */
    double *s, *w, *tmp; /* (m, m): moment matrix -> eigenvectors, the map, a temporary */
    double *l, *wk;      /* (m): eigenvalues, weights */
    double *a, *b;       /* (n, ng) (gram only) */
    double *eig;         /* syevd workspace */
};

static struct rdm_work rdm_carve(double *work, int64_t n, int64_t ng, int64_t d)
{
    struct rdm_work w;
    w.gram = ng < d;
    w.m = w.gram ? ng : d;
    int64_t m = w.m;
    double *p = work;
    w.x = p, p += n * d;
    w.o = p, p += n * d;
    w.y = p, p += n * d;
    w.g = p, p += n * d;
    w.xg = p, p += w.gram ? ng * d : 0;
    w.s = p, p += m * m;
    w.w = p, p += m * m;
    w.tmp = p, p += m * m;
    w.l = p, p += m;
    w.wk = p, p += m;
    w.a = p, p += w.gram ? n * ng : 0;
    w.b = p, p += w.gram ? n * ng : 0;
    w.eig = p;
    return w;
}

int64_t ssl_rdm_work_elems(const struct ssl_loss_ctx *c, int64_t n, int64_t d,
                           const struct ssl_rdm_opts *o)
{
    (void)o;
    int64_t n_global = ssl_loss_global_rows(c, n);
    bool gram = n_global < d;
    int64_t m = gram ? n_global : d;
    return 4 * n * d + (gram ? n_global * d + 2 * n * n_global : 0) + 3 * m * m + 2 * m +
           ssl_linalg_syevd_work_elems(m);
}

/* Builds the map of the global batch whose local rows are w->x (n, d): w->w = W (d, d) on the
 * covariance route, H (ng, ng) with W = Xg^T H Xg on the Gram route. Returns 0, the comm
 * operation's non-zero code, or SSL_E_NONFINITE (failed eigensolver, non-finite input,
 * ill-defined map). */
static int rdm_build(struct rdm_work *w, int64_t n, int64_t ng, int64_t d,
                     const struct ssl_rdm_opts *o, const struct ssl_loss_ctx *ctx)
{
    int64_t m = w->m;
    if (!w->gram) {
        /* X^T X summed over the ranks */
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, ssl_int(d), ssl_int(n), 1.0, w->x,
                    ssl_int(d), 0.0, w->s, ssl_int(d));
    } else {
        int64_t offset = 0;
        int rc = ssl_loss_gather(ctx, w->x, n, d, w->xg, &offset);
        if (rc != 0) return rc;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, ssl_int(ng), ssl_int(d), 1.0, w->xg,
                    ssl_int(d), 0.0, w->s, ssl_int(ng));
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < i; j++) w->s[i * m + j] = w->s[j * m + i];
    if (!w->gram) {
        int rc = ssl_loss_sum(ctx, w->s, m * m);
        if (rc != 0) return rc;
    }
    /* replicated on every rank: ScaLAPACK above the threshold */
    if (ssl_loss_eig(ctx, w->s, w->l, m, w->eig) != 0) return SSL_E_NONFINITE;
    double tol = (double)m * DBL_EPSILON * fmax(w->l[m - 1], 0.0);
    double h0 = rdm_h(o, 0.0);
    for (int64_t k = 0; k < m; k++) {
        double lk = w->l[k], wk;
        if (!(lk > tol)) {
            /* a zero singular value */
            if (h0 == 0.0) wk = 0.0;
            else if (!w->gram && isfinite(h0)) wk = h0;
            else return SSL_E_NONFINITE;
        } else {
            wk = rdm_h(o, sqrt(lk));
            if (w->gram) wk /= lk; /* V = X^T U diag(1/s) */
        }
        if (!isfinite(wk)) return SSL_E_NONFINITE;
        w->wk[k] = wk;
    }
    /* w = U diag(wk) U^T */
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < m; k++) w->tmp[i * m + k] = w->s[i * m + k] * w->wk[k];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ssl_int(m), ssl_int(m), ssl_int(m), 1.0,
                w->tmp, ssl_int(m), w->s, ssl_int(m), 0.0, w->w, ssl_int(m));
    return 0;
}

/* y (n, d) = x (n, d) W, W symmetric. */
static void rdm_apply(struct rdm_work *w, double *y, const double *x, int64_t n, int64_t ng,
                      int64_t d)
{
    if (!w->gram) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ssl_int(n), ssl_int(d), ssl_int(d),
                    1.0, x, ssl_int(d), w->w, ssl_int(d), 0.0, y, ssl_int(d));
        return;
    }
    /* x Xg^T H Xg */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ssl_int(n), ssl_int(ng), ssl_int(d), 1.0,
                x, ssl_int(d), w->xg, ssl_int(d), 0.0, w->a, ssl_int(ng));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ssl_int(n), ssl_int(ng), ssl_int(ng),
                1.0, w->a, ssl_int(ng), w->w, ssl_int(ng), 0.0, w->b, ssl_int(ng));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ssl_int(n), ssl_int(d), ssl_int(ng),
                1.0, w->b, ssl_int(ng), w->xg, ssl_int(d), 0.0, y, ssl_int(d));
}

/* One direction, loss(p, z) of rdmsimsiam.py: *sumcos = local sum of cos(p'_i, z'_i);
 * dp += grad_scale * dsumcos/dp with the map frozen. Returns 0 or rdm_build's status. */
static int rdm_direction(double *sumcos, ssl_real *dp, const ssl_real *p, const ssl_real *t,
                         int64_t n, int64_t ng, int64_t d, const struct ssl_rdm_opts *o,
                         double grad_scale, const struct ssl_loss_ctx *ctx, double *work)
{
    struct rdm_work w = rdm_carve(work, n, ng, d);
    bool online = o->location == SSL_RDM_LOC_ONLINE;
    /* w.x: the map's source (p online, z target); w.o: the other input */
    ssl_loss_to_double(w.x, online ? p : t, n * d);
    ssl_loss_to_double(w.o, online ? t : p, n * d);
    int rc = rdm_build(&w, n, ng, d, o, ctx);
    if (rc != 0) return rc;
    rdm_apply(&w, w.y, w.x, n, ng, d);
    /* online: cos(p W, z); target: cos(p, z W) */
    const double *pa = online ? w.y : w.o, *zb = online ? w.o : w.y;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += cos_row(dp != NULL ? w.g + i * d : NULL, pa + i * d, zb + i * d, d, o->eps);
    *sumcos = s;
    if (dp == NULL) return 0;
    const double *gp = w.g;
    if (online) {
        rdm_apply(&w, w.x, w.g, n, ng, d); /* dp = dp' W; w.x is free now */
        gp = w.x;
    }
    for (int64_t i = 0; i < n * d; i++) dp[i] += (ssl_real)(grad_scale * gp[i]);
    return 0;
}

int ssl_rdm_loss(double *value, ssl_real *dp1, ssl_real *dp2, const ssl_real *p1,
                 const ssl_real *p2, const ssl_real *t1, const ssl_real *t2, int64_t n, int64_t d,
                 const struct ssl_rdm_opts *o, const struct ssl_loss_ctx *c, double *work)
{
    SSL_CHECK(value != NULL && n >= 0 && d > 0);
    *value = NAN;
    struct ssl_rdm_opts op = o ? *o : ssl_rdm_defaults();
    if (!((unsigned)op.base < 2u && (unsigned)op.pred_type < 4u && (unsigned)op.location < 2u))
        return SSL_E_USAGE;
    int64_t ng = ssl_loss_global_rows(c, n);
    SSL_CHECK(ng > 0);
    bool byol = op.base == SSL_RDM_BASE_BYOL;
    /* SimSiam: L = -(S1 + S2) / (2N); BYOL: L = 4 - 2 (S1 + S2) / N */
    double gscale = byol ? -2.0 / (double)ng : -0.5 / (double)ng;
    double sums[2];
    int rc = rdm_direction(&sums[0], dp1, p1, t2, n, ng, d, &op, gscale, c, work);
    if (rc == 0) rc = rdm_direction(&sums[1], dp2, p2, t1, n, ng, d, &op, gscale, c, work);
    if (rc == 0) rc = ssl_loss_sum(c, sums, 2);
    if (rc != 0) return rc;
    double mc = (sums[0] + sums[1]) / (double)ng;
    return finish(value, byol ? 4.0 - 2.0 * mc : -0.5 * mc);
}
