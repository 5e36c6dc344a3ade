/* contrastive.c: SimCLR NT-Xent, MoCo v2 InfoNCE with a queue, SwAV swapped prediction with
 * Sinkhorn-Knopp codes (declarations and conventions in contrastive.h; formulas, defaults and
 * deviations in docs/losses/contrastive.md).
 *
 * Invariants: every loss is the mean over the GLOBAL batch (ssl_loss_global_rows); statistics
 * and per-rank loss sums go through ssl_loss_sum, all rows through ssl_loss_gather and their
 * gradient back through ssl_loss_scatter, so in one process (NULL ctx or comm) these are plain
 * single-process computations. Gradients accumulate (+=). Everything inside is double.
 *
 * The row normalisation is u = x / max(||x||, eps): F.normalize (eps 1e-12) for MoCo and SwAV,
 * tf.math.l2_normalize (1e-12 on the squared norm, so eps 1e-6) for SimCLR; its backward is
 * dx = (du - u (u.du)) / ||x|| when ||x|| > eps, and du / eps otherwise.
 *
 * Status (contrastive.h): the losses return 0 with the value in *value, or a non-zero
 * enum ssl_status with *value = NAN (the `fail` helper below). */
#include "contrastive.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include "../check.h"
#include "losses.h"

#define NORM_EPS 1e-12

/* u (rows, d) = x / max(||x||, eps), norm (rows) = that divisor. */
static void normalize_rows(double *u, double *norm, const ssl_real *x, int64_t rows, int64_t d,
                           double eps)
{
    for (int64_t i = 0; i < rows; i++) {
        double s = 0.0;
        for (int64_t k = 0; k < d; k++) s += (double)x[i * d + k] * (double)x[i * d + k];
        double nr = fmax(sqrt(s), eps);
        if (norm != NULL) norm[i] = nr;
        for (int64_t k = 0; k < d; k++) u[i * d + k] = (double)x[i * d + k] / nr;
    }
}

/* dx (rows, d) += backward of u = x / max(||x||, eps) for du. */
static void normalize_rows_backward(ssl_real *dx, const double *du, const double *u,
                                    const double *norm, int64_t rows, int64_t d, double eps)
{
    if (dx == NULL) return;
    for (int64_t i = 0; i < rows; i++) {
        const double *ui = u + i * d, *dui = du + i * d;
        /* below the clamp the divisor is the constant eps: no projection */
        double dot = 0.0;
        if (norm[i] > eps)
            for (int64_t k = 0; k < d; k++) dot += ui[k] * dui[k];
        for (int64_t k = 0; k < d; k++)
            dx[i * d + k] += (ssl_real)((dui[k] - ui[k] * dot) / norm[i]);
    }
}

/* *value = NAN, returns rc (non-zero). */
static int fail(double *value, int rc)
{
    *value = NAN;
    return rc;
}

/* *value = loss when finite (returns 0), else NAN and SSL_E_NONFINITE. */
static int finish(double *value, double loss)
{
    if (!isfinite(loss)) return fail(value, SSL_E_NONFINITE);
    *value = loss;
    return SSL_OK;
}

/* logsumexp of x (m) over the entries with skip != j (skip < 0: none). */
static double logsumexp(const double *x, int64_t m, int64_t skip)
{
    double mx = -INFINITY, z = 0.0;
    for (int64_t j = 0; j < m; j++)
        if (j != skip && x[j] > mx) mx = x[j];
    for (int64_t j = 0; j < m; j++)
        if (j != skip) z += exp(x[j] - mx);
    return mx + log(z);
}

/* ------------------------------------------------------------------------------------------
 * SimCLR (google-research/simclr tf2/objective.py add_contrastive_loss)
 * ------------------------------------------------------------------------------------------ */

struct ssl_simclr_opts ssl_simclr_defaults(void)
{
    return (struct ssl_simclr_opts){
        .temperature = 0.1, .average_directions = false, .norm_eps = 1e-6};
}

int64_t ssl_simclr_nt_xent_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d,
                                      const struct ssl_simclr_opts *o)
{
    (void)o;
    int64_t ng = ssl_loss_global_rows(ctx, n);
    return 4 * n * d + 2 * n + 4 * ng * d + 4 * n * ng;
}

/* One direction's anchors u (n, d) at global rows off..off+n-1: logits [u Up^T, u Us^T] / T
 * (Up: the other view, positives at the anchor's own global row; Us: its own view, the
 * anchor's own row excluded, the official LARGE_NUM mask). Returns sum_i CE; overwrites
 * spos, sself (n, ng) with w * dCE/dlogits. */
static double simclr_direction(double *spos, double *sself, int64_t n, int64_t ng, int64_t off,
                               double w)
{
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double *p = spos + i * ng, *s = sself + i * ng;
        int64_t g = off + i;
        double lp = logsumexp(p, ng, -1), ls = logsumexp(s, ng, g);
        double mx = fmax(lp, ls), lse = mx + log(exp(lp - mx) + exp(ls - mx));
        total += lse - p[g];
        for (int64_t j = 0; j < ng; j++) {
            p[j] = w * exp(p[j] - lse);
            s[j] = j == g ? 0.0 : w * exp(s[j] - lse);
        }
        p[g] -= w;
    }
    return total;
}

int ssl_simclr_nt_xent_loss(double *value, ssl_real *da, ssl_real *db, const ssl_real *a,
                            const ssl_real *b, int64_t n, int64_t d,
                            const struct ssl_simclr_opts *o, const struct ssl_loss_ctx *ctx,
                            double *work)
{
    const struct ssl_simclr_opts dflt = ssl_simclr_defaults(), *opt = o != NULL ? o : &dflt;
    int rc;
    int64_t ng = ssl_loss_global_rows(ctx, n), off1 = 0, off2 = 0;
    double t = opt->temperature, scale = opt->average_directions ? 0.5 : 1.0;
    double *u1 = work, *u2 = u1 + n * d, *du1 = u2 + n * d, *du2 = du1 + n * d;
    double *nrm1 = du2 + n * d, *nrm2 = nrm1 + n;
    double *U1 = nrm2 + n, *U2 = U1 + ng * d, *dU1 = U2 + ng * d, *dU2 = dU1 + ng * d;
    double *sab = dU2 + ng * d, *saa = sab + n * ng, *sba = saa + n * ng, *sbb = sba + n * ng;
    normalize_rows(u1, nrm1, a, n, d, opt->norm_eps);
    normalize_rows(u2, nrm2, b, n, d, opt->norm_eps);
    if ((rc = ssl_loss_gather(ctx, u1, n, d, U1, &off1)) != 0) return fail(value, rc);
    if ((rc = ssl_loss_gather(ctx, u2, n, d, U2, &off2)) != 0) return fail(value, rc);
    SSL_CHECK(off1 == off2);
    int in = ssl_int(n), ing = ssl_int(ng), id = ssl_int(d);
    const double it = 1.0 / t;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, ing, id, it, u1, id, U2, id, 0.0, sab,
                ing);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, ing, id, it, u1, id, U1, id, 0.0, saa,
                ing);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, ing, id, it, u2, id, U1, id, 0.0, sba,
                ing);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, ing, id, it, u2, id, U2, id, 0.0, sbb,
                ing);
    double w = scale / (double)ng;
    double sum =
        simclr_direction(sab, saa, n, ng, off1, w) + simclr_direction(sba, sbb, n, ng, off1, w);
    if ((rc = ssl_loss_sum(ctx, &sum, 1)) != 0) return fail(value, rc);
    double loss = scale * sum / (double)ng;
    if (!isfinite(loss)) return fail(value, SSL_E_NONFINITE);
    if (da == NULL && db == NULL) return finish(value, loss);
    /* logits gradients G (n, ng) -> anchors: du = (G_pos Up + G_self Us) / T;
     * keys: dUp += G_pos^T u / T, dUs += G_self^T u / T */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in, id, ing, it, sab, ing, U2, id, 0.0,
                du1, id);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in, id, ing, it, saa, ing, U1, id, 1.0,
                du1, id);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in, id, ing, it, sba, ing, U1, id, 0.0,
                du2, id);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in, id, ing, it, sbb, ing, U2, id, 1.0,
                du2, id);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ing, id, in, it, sab, ing, u1, id, 0.0,
                dU2, id);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ing, id, in, it, sbb, ing, u2, id, 1.0,
                dU2, id);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ing, id, in, it, saa, ing, u1, id, 0.0,
                dU1, id);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ing, id, in, it, sba, ing, u2, id, 1.0,
                dU1, id);
    for (int64_t e = 0; e < n * d; e++) {
        dU1[off1 * d + e] += du1[e];
        dU2[off1 * d + e] += du2[e];
    }
    if ((rc = ssl_loss_scatter(ctx, dU1, n, d, du1)) != 0) return fail(value, rc);
    if ((rc = ssl_loss_scatter(ctx, dU2, n, d, du2)) != 0) return fail(value, rc);
    normalize_rows_backward(da, du1, u1, nrm1, n, d, opt->norm_eps);
    normalize_rows_backward(db, du2, u2, nrm2, n, d, opt->norm_eps);
    return finish(value, loss);
}

/* losses.h: the benchmark's SimCLR, as torch_peer.py (mean of the two directions). */
int64_t ssl_simclr_work_elems(int64_t n, int64_t d)
{
    return ssl_simclr_nt_xent_work_elems(NULL, n, d, NULL);
}

double ssl_simclr_loss(ssl_real *da, ssl_real *db, const ssl_real *a, const ssl_real *b, int64_t n,
                       int64_t d, double temperature, double *work)
{
    struct ssl_simclr_opts o = {
        .temperature = temperature, .average_directions = true, .norm_eps = NORM_EPS};
    double value;
    (void)ssl_simclr_nt_xent_loss(&value, da, db, a, b, n, d, &o, NULL, work);
    return value; /* NAN on failure */
}

/* ------------------------------------------------------------------------------------------
 * MoCo v2 (facebookresearch/moco moco/builder.py MoCo.forward, _dequeue_and_enqueue)
 * ------------------------------------------------------------------------------------------ */

struct ssl_moco_opts ssl_moco_defaults(void)
{
    return (struct ssl_moco_opts){.temperature = 0.2};
}

int64_t ssl_moco_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d,
                            int64_t queue_len, const struct ssl_moco_opts *o)
{
    (void)ctx;
    (void)o;
    return 3 * n * d + 2 * n + n * queue_len;
}

int64_t ssl_moco_sym_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d,
                                int64_t queue_len, const struct ssl_moco_opts *o)
{
    return ssl_moco_work_elems(ctx, n, d, queue_len, o);
}

int ssl_moco_loss(double *value, ssl_real *dq, const ssl_real *q, const ssl_real *k,
                  const double *queue, int64_t n, int64_t d, int64_t queue_len,
                  const struct ssl_moco_opts *o, const struct ssl_loss_ctx *ctx, double *work)
{
    const struct ssl_moco_opts dflt = ssl_moco_defaults(), *opt = o != NULL ? o : &dflt;
    int rc;
    int64_t ng = ssl_loss_global_rows(ctx, n), K = queue_len;
    double *uq = work, *uk = uq + n * d, *du = uk + n * d, *nrm = du + n * d, *lpos = nrm + n;
    double *lneg = lpos + n; /* (n, K) */
    double it = 1.0 / opt->temperature;
    normalize_rows(uq, nrm, q, n, d, NORM_EPS);
    normalize_rows(uk, NULL, k, n, d, NORM_EPS);
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t c = 0; c < d; c++) s += uq[i * d + c] * uk[i * d + c];
        lpos[i] = s * it;
    }
    if (K > 0)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ssl_int(n), ssl_int(K), ssl_int(d), it,
                    uq, ssl_int(d), queue, ssl_int(d), 0.0, lneg, ssl_int(K));
    double sum = 0.0, w = 1.0 / (double)ng;
    for (int64_t i = 0; i < n; i++) {
        double *row = lneg + i * K, mx = lpos[i], z;
        for (int64_t j = 0; j < K; j++) mx = fmax(mx, row[j]);
        z = exp(lpos[i] - mx);
        for (int64_t j = 0; j < K; j++) z += exp(row[j] - mx);
        double lse = mx + log(z);
        sum += lse - lpos[i];
        /* dCE/dlogits: softmax - onehot(0), times the 1/N_global of the mean */
        lpos[i] = w * (exp(lpos[i] - lse) - 1.0);
        for (int64_t j = 0; j < K; j++) row[j] = w * exp(row[j] - lse);
    }
    if ((rc = ssl_loss_sum(ctx, &sum, 1)) != 0) return fail(value, rc);
    double loss = sum / (double)ng;
    if (!isfinite(loss)) return fail(value, SSL_E_NONFINITE);
    if (dq == NULL) return finish(value, loss);
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < d; c++) du[i * d + c] = lpos[i] * it * uk[i * d + c];
    if (K > 0)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ssl_int(n), ssl_int(d), ssl_int(K),
                    it, lneg, ssl_int(K), queue, ssl_int(d), 1.0, du, ssl_int(d));
    normalize_rows_backward(dq, du, uq, nrm, n, d, NORM_EPS);
    return finish(value, loss);
}

int ssl_moco_sym_loss(double *value, ssl_real *dq1, ssl_real *dq2, const ssl_real *q1,
                      const ssl_real *q2, const ssl_real *k1, const ssl_real *k2,
                      const double *queue, int64_t n, int64_t d, int64_t queue_len,
                      const struct ssl_moco_opts *o, const struct ssl_loss_ctx *ctx, double *work)
{
    double l12, l21;
    int rc = ssl_moco_loss(&l12, dq1, q1, k2, queue, n, d, queue_len, o, ctx, work);
    if (rc != 0) return fail(value, rc);
    if ((rc = ssl_moco_loss(&l21, dq2, q2, k1, queue, n, d, queue_len, o, ctx, work)) != 0)
        return fail(value, rc);
    return finish(value, l12 + l21);
}

void ssl_moco_queue_init(double *queue, int64_t queue_len, int64_t d, struct ssl_rng *r)
{
    for (int64_t i = 0; i < queue_len; i++) {
        double s = 0.0;
        for (int64_t c = 0; c < d; c++) {
            queue[i * d + c] = ssl_rng_normal(r);
            s += queue[i * d + c] * queue[i * d + c];
        }
        double nr = fmax(sqrt(s), NORM_EPS);
        for (int64_t c = 0; c < d; c++) queue[i * d + c] /= nr;
    }
}

int64_t ssl_moco_enqueue_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d)
{
    return 2 * n * d + ssl_loss_global_rows(ctx, 2 * n) * d;
}

int ssl_moco_enqueue(double *queue, int64_t *ptr, const ssl_real *k1, const ssl_real *k2,
                     int64_t n, int64_t d, int64_t queue_len, const struct ssl_loss_ctx *ctx,
                     double *work, struct ssl_error *err)
{
    int64_t rows = k2 != NULL ? 2 * n : n, grows = ssl_loss_global_rows(ctx, rows), off = 0;
    if (grows <= 0 || queue_len % grows != 0)
        return ssl_error_set(err, SSL_E_USAGE,
                             "moco: the queue size %lld is not a multiple of the keys per step "
                             "%lld (global batch%s)",
                             (long long)queue_len, (long long)grows, k2 != NULL ? " x 2" : "");
    if (*ptr < 0 || *ptr >= queue_len || *ptr % grows != 0)
        return ssl_error_set(err, SSL_E_USAGE, "moco: queue pointer %lld out of step with %lld",
                             (long long)*ptr, (long long)grows);
    double *local = work, *global = work + 2 * n * d;
    normalize_rows(local, NULL, k1, n, d, NORM_EPS);
    if (k2 != NULL) normalize_rows(local + n * d, NULL, k2, n, d, NORM_EPS);
    int rc = ssl_loss_gather(ctx, local, rows, d, global, &off);
    if (rc != 0) {
        (void)ssl_error_set(err, (enum ssl_status)rc, "moco: gathering the keys failed (%d)", rc);
        return rc; /* the comm's own code */
    }
    memcpy(queue + *ptr * d, global, (size_t)(grows * d) * sizeof *queue);
    *ptr = (*ptr + grows) % queue_len;
    return SSL_OK;
}

/* ------------------------------------------------------------------------------------------
 * SwAV (facebookresearch/swav main_swav.py train, distributed_sinkhorn; src/resnet50.py)
 * ------------------------------------------------------------------------------------------ */

struct ssl_swav_opts ssl_swav_defaults(void)
{
    return (struct ssl_swav_opts){
        .temperature = 0.1, .epsilon = 0.05, .sinkhorn_iterations = 3, .n_assign = 2};
}

int ssl_swav_sinkhorn(double *scores, int64_t n, int64_t K, double epsilon, int iterations,
                      const struct ssl_loss_ctx *ctx, double *work_k)
{
    /* scores is the transpose of the official Q (K x B): row i = sample, column k = prototype */
    double *Q = scores, total = 0.0, B = (double)ssl_loss_global_rows(ctx, n);
    int rc;
    for (int64_t e = 0; e < n * K; e++) {
        Q[e] = exp(Q[e] / epsilon); /* no max-subtraction, as the official code */
        total += Q[e];
    }
    if ((rc = ssl_loss_sum(ctx, &total, 1)) != 0) return rc;
    for (int64_t e = 0; e < n * K; e++) Q[e] /= total;
    for (int it = 0; it < iterations; it++) {
        /* each prototype's total weight must be 1/K (global sums) */
        for (int64_t k = 0; k < K; k++) work_k[k] = 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < K; k++) work_k[k] += Q[i * K + k];
        if ((rc = ssl_loss_sum(ctx, work_k, K)) != 0) return rc;
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < K; k++) {
                Q[i * K + k] /= work_k[k];
                Q[i * K + k] /= (double)K;
            }
        /* each sample's total weight must be 1/B (local) */
        for (int64_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++) s += Q[i * K + k];
            for (int64_t k = 0; k < K; k++) {
                Q[i * K + k] /= s;
                Q[i * K + k] /= B;
            }
        }
    }
    for (int64_t e = 0; e < n * K; e++) Q[e] *= B;
    return 0;
}

void ssl_swav_normalize_prototypes(ssl_real *c, int64_t K, int64_t d)
{
    for (int64_t i = 0; i < K; i++) {
        double s = 0.0;
        for (int64_t k = 0; k < d; k++) s += (double)c[i * d + k] * (double)c[i * d + k];
        double nr = fmax(sqrt(s), NORM_EPS);
        for (int64_t k = 0; k < d; k++) c[i * d + k] = (ssl_real)((double)c[i * d + k] / nr);
    }
}

int64_t ssl_swav_work_elems(const struct ssl_loss_ctx *ctx, int64_t n, int64_t d, int64_t K,
                            int64_t n_crops, const struct ssl_swav_opts *o)
{
    (void)ctx;
    const struct ssl_swav_opts dflt = ssl_swav_defaults(), *opt = o != NULL ? o : &dflt;
    int64_t n_assign = opt->n_assign, rows = n_crops * n;
    return 2 * rows * d + rows + 2 * K * d + 2 * rows * K + n_assign * n * K + K;
}

struct swav_work {
    double *u, *nrm, *cd, *s, *G, *du, *dcd, *codes, *work_k;
};

static struct swav_work swav_carve(double *work, int64_t n_crops, int64_t n, int64_t d, int64_t K,
                                   int n_assign)
{
    int64_t rows = n_crops * n;
    struct swav_work w;
    w.u = work;
    w.nrm = w.u + rows * d;
    w.cd = w.nrm + rows;
    w.s = w.cd + K * d;
    w.G = w.s + rows * K;
    w.du = w.G + rows * K;
    w.dcd = w.du + rows * d;
    w.codes = w.dcd + K * d;
    w.work_k = w.codes + (int64_t)n_assign * n * K;
    return w;
}

/* u = n(z), cd = c, s = u c^T (rows, K). */
static void swav_scores(const struct swav_work *w, const ssl_real *z, const ssl_real *c,
                        int64_t rows, int64_t d, int64_t K)
{
    normalize_rows(w->u, w->nrm, z, rows, d, NORM_EPS);
    ssl_loss_to_double(w->cd, c, K * d);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ssl_int(rows), ssl_int(K), ssl_int(d), 1.0,
                w->u, ssl_int(d), w->cd, ssl_int(d), 0.0, w->s, ssl_int(K));
}

/* The swapped prediction given the scores in w and the codes (n_assign, n, K). */
static int swav_predict(double *value, const struct swav_work *w, ssl_real *dz, ssl_real *dc,
                        const double *codes, int64_t n, int64_t d, int64_t K, int64_t n_crops,
                        const struct ssl_swav_opts *opt, const struct ssl_loss_ctx *ctx)
{
    int64_t rows = n_crops * n, ng = ssl_loss_global_rows(ctx, n);
    int A = opt->n_assign, rc;
    double it = 1.0 / opt->temperature, sum = 0.0;
    double coef = 1.0 / ((double)(n_crops - 1) * (double)A * (double)ng);
    memset(w->G, 0, (size_t)(rows * K) * sizeof *w->G);
    for (int64_t v = 0; v < n_crops; v++)
        for (int64_t i = 0; i < n; i++) {
            const double *srow = w->s + (v * n + i) * K;
            double *g = w->G + (v * n + i) * K, mx = -INFINITY, z = 0.0;
            for (int64_t k = 0; k < K; k++) mx = fmax(mx, srow[k] * it);
            for (int64_t k = 0; k < K; k++) z += exp(srow[k] * it - mx);
            double lse = mx + log(z);
            for (int a = 0; a < A; a++) {
                if (a == v) continue;
                const double *q = codes + ((int64_t)a * n + i) * K;
                double term = 0.0, qsum = 0.0;
                for (int64_t k = 0; k < K; k++) {
                    term -= q[k] * (srow[k] * it - lse);
                    qsum += q[k];
                }
                sum += term / (double)(n_crops - 1);
                /* d/ds of -sum q logsoftmax(s/T) = (softmax(s/T) sum q - q) / T */
                for (int64_t k = 0; k < K; k++)
                    g[k] += coef * it * (exp(srow[k] * it - lse) * qsum - q[k]);
            }
        }
    if ((rc = ssl_loss_sum(ctx, &sum, 1)) != 0) return fail(value, rc);
    double loss = sum / ((double)A * (double)ng);
    if (!isfinite(loss)) return fail(value, SSL_E_NONFINITE);
    if (dz != NULL) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ssl_int(rows), ssl_int(d),
                    ssl_int(K), 1.0, w->G, ssl_int(K), w->cd, ssl_int(d), 0.0, w->du, ssl_int(d));
        normalize_rows_backward(dz, w->du, w->u, w->nrm, rows, d, NORM_EPS);
    }
    if (dc != NULL) {
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ssl_int(K), ssl_int(d), ssl_int(rows),
                    1.0, w->G, ssl_int(K), w->u, ssl_int(d), 0.0, w->dcd, ssl_int(d));
        ssl_loss_add_grad(dc, w->dcd, K * d);
    }
    return finish(value, loss);
}

/* The crops must fit the options: at least 2 crops, 1 .. n_crops assignment crops. */
static bool swav_fits(int64_t n_crops, const struct ssl_swav_opts *opt)
{
    return n_crops >= 2 && opt->n_assign >= 1 && opt->n_assign <= n_crops;
}

int ssl_swav_codes_loss(double *value, ssl_real *dz, ssl_real *dc, const ssl_real *z,
                        const ssl_real *c, const double *codes, int64_t n, int64_t d, int64_t K,
                        int64_t n_crops, const struct ssl_swav_opts *o,
                        const struct ssl_loss_ctx *ctx, double *work)
{
    const struct ssl_swav_opts dflt = ssl_swav_defaults(), *opt = o != NULL ? o : &dflt;
    if (!swav_fits(n_crops, opt)) return fail(value, SSL_E_USAGE);
    struct swav_work w = swav_carve(work, n_crops, n, d, K, opt->n_assign);
    swav_scores(&w, z, c, n_crops * n, d, K);
    return swav_predict(value, &w, dz, dc, codes, n, d, K, n_crops, opt, ctx);
}

int ssl_swav_loss(double *value, double *codes_out, ssl_real *dz, ssl_real *dc, const ssl_real *z,
                  const ssl_real *c, int64_t n, int64_t d, int64_t K, int64_t n_crops,
                  const struct ssl_swav_opts *o, const struct ssl_loss_ctx *ctx, double *work)
{
    const struct ssl_swav_opts dflt = ssl_swav_defaults(), *opt = o != NULL ? o : &dflt;
    if (!swav_fits(n_crops, opt)) return fail(value, SSL_E_USAGE);
    struct swav_work w = swav_carve(work, n_crops, n, d, K, opt->n_assign);
    swav_scores(&w, z, c, n_crops * n, d, K);
    /* codes from the detached scores of the large crops (no gradient through them) */
    int64_t nk = (int64_t)opt->n_assign * n * K;
    memcpy(w.codes, w.s, (size_t)nk * sizeof *w.codes);
    for (int a = 0; a < opt->n_assign; a++) {
        int rc = ssl_swav_sinkhorn(w.codes + (int64_t)a * n * K, n, K, opt->epsilon,
                                   opt->sinkhorn_iterations, ctx, w.work_k);
        if (rc != 0) return fail(value, rc);
    }
    if (codes_out != NULL) memcpy(codes_out, w.codes, (size_t)nk * sizeof *codes_out);
    return swav_predict(value, &w, dz, dc, w.codes, n, d, K, n_crops, opt, ctx);
}
