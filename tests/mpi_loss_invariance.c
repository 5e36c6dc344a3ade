/* mpi_loss_invariance.c: P ranks compute exactly what one process computes on the global batch.
 *
 * Every rank builds the SAME global batch from a fixed seed (SEED, N = 12 rows, divisible by
 * 1..4, D = 8 features), takes its contiguous slice of N/P rows and runs each loss with the MPI
 * loss comm (mpi/loss_comm.c) on it; it also runs the loss in one process (NULL ctx) on the whole
 * batch. Checked per loss: the value equals the one-process value, and the rank's gradient block
 * equals the matching rows of the one-process gradient. BatchNorm (train mode, channel-major
 * 2d and row-major 1d) with the MPI SyncBN hook: y and dx of the slice, running statistics and
 * dgamma/dbeta summed over the ranks equal the one-process ones.
 *
 * The core is float (ssl_real = float) with fp64 insides, so the tolerance is a float one:
 * |v - v1| / max(|v1|, 1e-3) and max|g - g1| / max|g1| below TOL. Rank 0 prints one line per
 * check with the largest error over the ranks, then "mpi_loss_invariance np=P: N checks,
 * F failures"; every rank exits 1 if any check failed on any rank. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "comm.h"
#include "layers/layers.h"
#include "loss_comm.h"
#include "losses/contrastive.h"
#include "losses/loss.h"
#include "losses/predictive.h"
#include "losses/redundancy.h"
#include "losses/uniformity.h"
#include "losses/whitening.h"
#include "rng.h"

enum { N = 12, D = 8, QUEUE = 24, PROTOS = 6, CROPS = 3, BN_C = 3, BN_HW = 4 };
static const uint64_t SEED = 20240605;
static const double TOL = 1e-5;

struct run {
    const struct ssl_comm *comm;
    struct ssl_loss_ctx ctx; /* the MPI comm */
    int64_t n, row0;         /* local rows and this rank's first global row */
    int n_checks, n_failures;
};

/* The largest relative error of the `count` values got against want (norm-wise for arrays). */
static double rel_err_real(const ssl_real *got, const ssl_real *want, int64_t count)
{
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < count; i++) {
        double e = fabs((double)got[i] - (double)want[i]), w = fabs((double)want[i]);
        if (e > diff || isnan(e)) diff = isnan(e) ? (double)INFINITY : e;
        if (w > scale) scale = w;
    }
    return diff / (scale > 1e-12 ? scale : 1e-12);
}

static double rel_err_value(double got, double want)
{
    double e = fabs(got - want);
    if (isnan(e)) return (double)INFINITY;
    return e / (fabs(want) > 1e-3 ? fabs(want) : 1e-3);
}

/* Collective: the worst error over the ranks decides; rank 0 prints the line. */
static void report(struct run *r, const char *name, int rc, double err_value, double err_grad)
{
    double local[2] = {err_value, err_grad}, worst[2];
    int bad = rc != 0 || !(err_value <= TOL) || !(err_grad <= TOL), any = 0;
    MPI_Allreduce(local, worst, 2, MPI_DOUBLE, MPI_MAX, r->comm->world);
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, r->comm->world);
    r->n_checks++;
    if (any) r->n_failures++;
    if (r->comm->rank == 0)
        printf("  %-28s np=%d  value rel err %.2e  grad rel err %.2e  %s\n", name, r->comm->size,
               worst[0], worst[1], any ? "FAIL" : "ok");
}

/* ---- losses on up to four (n, D) inputs, two gradients ------------------------------------ */

typedef int (*loss_fn)(double *value, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4],
                       int64_t n, const void *extra, const struct ssl_loss_ctx *c, double *work);
typedef int64_t (*work_fn)(const struct ssl_loss_ctx *c, int64_t n, const void *extra);

static int simclr(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4], int64_t n,
                  const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    (void)extra;
    return ssl_simclr_nt_xent_loss(v, g1, g2, x[0], x[1], n, D, NULL, c, work);
}
static int64_t simclr_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    (void)extra;
    return ssl_simclr_nt_xent_work_elems(c, n, D, NULL);
}

/* extra: const struct ssl_vicreg_opts * (the path) or NULL */
static int vicreg(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4], int64_t n,
                  const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    return ssl_vicreg_full_loss(v, NULL, g1, g2, x[0], x[1], n, D, extra, c, work);
}
static int64_t vicreg_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    return ssl_vicreg_full_work_elems(c, n, D, extra);
}

/* extra: const struct ssl_barlow_opts * (the path) or NULL */
static int barlow(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4], int64_t n,
                  const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    return ssl_barlow_loss(v, NULL, g1, g2, x[0], x[1], n, D, extra, c, work);
}
static int64_t barlow_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    return ssl_barlow_work_elems(c, n, D, extra);
}

/* extra: const struct ssl_w2_opts * (the route) */
static int w2(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4], int64_t n,
              const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    return ssl_w2_loss(v, NULL, g1, g2, x[0], x[1], n, D, extra, c, work);
}
static int64_t w2_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    return ssl_w2_work_elems(c, n, D, extra);
}

static int uniformity(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4],
                      int64_t n, const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    (void)extra;
    return ssl_uniformity_loss(v, g1, g2, x[0], x[1], n, D, NULL, c, work);
}
static int64_t uniformity_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    (void)extra;
    return ssl_uniformity_work_elems(c, n, D, NULL);
}

static int alignment(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4],
                     int64_t n, const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    (void)extra;
    return ssl_alignment_loss(v, g1, g2, x[0], x[1], n, D, NULL, c, work);
}
static int64_t alignment_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    (void)extra;
    return ssl_alignment_work_elems(c, n, D, NULL);
}

/* x: p1, p2 (online predictions), t1, t2 (stop-gradient targets) */
static int byol(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4], int64_t n,
                const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    (void)extra;
    return ssl_byol_loss(v, g1, g2, x[0], x[1], x[2], x[3], n, D, NULL, c, work);
}
static int64_t byol_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    (void)extra;
    return ssl_byol_work_elems(c, n, D, NULL);
}

static int simsiam(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4], int64_t n,
                   const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    (void)extra;
    return ssl_simsiam_loss(v, g1, g2, x[0], x[1], x[2], x[3], n, D, NULL, c, work);
}
static int64_t simsiam_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    (void)extra;
    return ssl_simsiam_work_elems(c, n, D, NULL);
}

/* x: q1, q2, k1, k2; extra: the queue (QUEUE, D) doubles, the same on every rank */
static int moco(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4], int64_t n,
                const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    return ssl_moco_sym_loss(v, g1, g2, x[0], x[1], x[2], x[3], extra, n, D, QUEUE, NULL, c,
                             work);
}
static int64_t moco_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    (void)extra;
    return ssl_moco_sym_work_elems(c, n, D, QUEUE, NULL);
}

/* x: p1, p2, t1, t2 (RDM on its SimSiam base) */
static int rdm(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4], int64_t n,
               const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    (void)extra;
    return ssl_rdm_loss(v, g1, g2, x[0], x[1], x[2], x[3], n, D, NULL, c, work);
}
static int64_t rdm_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    (void)extra;
    return ssl_rdm_work_elems(c, n, D, NULL);
}

/* extra: const struct ssl_zerocl_opts * (the mode; global statistics) */
static int zerocl(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4], int64_t n,
                  const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    return ssl_zerocl_loss(v, NULL, g1, g2, x[0], x[1], n, D, extra, c, work);
}
static int64_t zerocl_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    return ssl_zerocl_work_elems(c, n, D, extra);
}

/* extra: const struct ssl_whitening_opts * (global mode); two views x[0], x[1] */
static int whitening(double *v, ssl_real *g1, ssl_real *g2, const ssl_real *const x[4],
                     int64_t n, const void *extra, const struct ssl_loss_ctx *c, double *work)
{
    ssl_real *const dz[2] = {g1, g2};
    const ssl_real *const z[2] = {x[0], x[1]};
    struct ssl_loss_ctx keyed = {.comm = c ? c->comm : NULL, .seed = SEED, .step = 3};
    return ssl_whitening_loss(v, dz, z, 2, n, D, extra, &keyed, work, NULL);
}
static int64_t whitening_work(const struct ssl_loss_ctx *c, int64_t n, const void *extra)
{
    return ssl_whitening_work_elems(c, n, D, extra, 2);
}

/* One loss: one process on the global batch x (N, D) x4, then the MPI comm on this rank's rows. */
static void check_loss(struct run *r, const char *name, loss_fn f, work_fn wf, const void *extra,
                       ssl_real *const x[4])
{
    int64_t n = r->n, off = r->row0 * D;
    double *w1 = malloc((size_t)wf(NULL, N, extra) * sizeof *w1);
    double *wp = malloc((size_t)wf(&r->ctx, n, extra) * sizeof *wp);
    ssl_real *g1 = calloc(2 * N * D, sizeof *g1), *gp = calloc(2 * n * D, sizeof *gp);
    const ssl_real *const whole[4] = {x[0], x[1], x[2], x[3]};
    const ssl_real *const mine[4] = {x[0] + off, x[1] + off, x[2] + off, x[3] + off};
    double v1 = NAN, vp = NAN;
    int rc = f(&v1, g1, g1 + N * D, whole, N, extra, NULL, w1);
    rc |= f(&vp, gp, gp + n * D, mine, n, extra, &r->ctx, wp);
    double eg = rel_err_real(gp, g1 + off, n * D);
    double eg2 = rel_err_real(gp + n * D, g1 + N * D + off, n * D);
    report(r, name, rc, rel_err_value(vp, v1), eg > eg2 ? eg : eg2);
    free(w1);
    free(wp);
    free(g1);
    free(gp);
}

/* SwAV: z holds CROPS crops of the global batch, crop v's rows at z + v*N*D; the rank holds the
 * same crops of its rows. dz per crop block; dc summed over the ranks (the trainer's gradient
 * allreduce) equals the one-process dc. */
static void check_swav(struct run *r, const ssl_real *z, const ssl_real *protos)
{
    int64_t n = r->n;
    struct ssl_swav_opts o = ssl_swav_defaults();
    double *w1 = malloc((size_t)ssl_swav_work_elems(NULL, N, D, PROTOS, CROPS, &o) * sizeof *w1);
    double *wp =
        malloc((size_t)ssl_swav_work_elems(&r->ctx, n, D, PROTOS, CROPS, &o) * sizeof *wp);
    ssl_real *zl = malloc(CROPS * n * D * sizeof *zl);         /* (CROPS*n, D) */
    ssl_real *dz1 = calloc(CROPS * N * D, sizeof *dz1);        /* (CROPS*N, D) */
    ssl_real *dzp = calloc(CROPS * n * D, sizeof *dzp);        /* (CROPS*n, D) */
    ssl_real dc1[PROTOS * D] = {0}, dcp[PROTOS * D] = {0}, dcs[PROTOS * D];
    for (int v = 0; v < CROPS; v++)
        memcpy(zl + v * n * D, z + (v * N + r->row0) * D, (size_t)(n * D) * sizeof *zl);
    double v1 = NAN, vp = NAN;
    int rc = ssl_swav_loss(&v1, NULL, dz1, dc1, z, protos, N, D, PROTOS, CROPS, &o, NULL, w1);
    rc |= ssl_swav_loss(&vp, NULL, dzp, dcp, zl, protos, n, D, PROTOS, CROPS, &o, &r->ctx, wp);
    MPI_Allreduce(dcp, dcs, PROTOS * D, MPI_FLOAT, MPI_SUM, r->comm->world);
    double eg = rel_err_real(dcs, dc1, PROTOS * D);
    for (int v = 0; v < CROPS; v++) {
        double e = rel_err_real(dzp + v * n * D, dz1 + (v * N + r->row0) * D, n * D);
        if (e > eg) eg = e;
    }
    report(r, "swav (dz, sum dc)", rc, rel_err_value(vp, v1), eg);
    free(w1);
    free(wp);
    free(zl);
    free(dz1);
    free(dzp);
}

/* ---- BatchNorm with the MPI SyncBN hook -------------------------------------------------- */

/* Global x, dy in `layout` over m_all = N * hw elements per channel; the rank holds the same
 * channels over its N/P samples: channel-major (c, m) -> each channel's slice of m/P elements;
 * row-major (m, c) -> its contiguous rows. */
static void bn_slice(ssl_real *dst, const ssl_real *src, const struct run *r, int64_t hw,
                     enum ssl_bn_layout layout)
{
    int64_t m_all = N * hw, m = r->n * hw, first = r->row0 * hw;
    if (layout == SSL_BN_CHANNEL_MAJOR)
        for (int64_t ch = 0; ch < BN_C; ch++)
            memcpy(dst + ch * m, src + ch * m_all + first, (size_t)m * sizeof *dst);
    else
        memcpy(dst, src + first * BN_C, (size_t)(m * BN_C) * sizeof *dst);
}

static void check_bn(struct run *r, const char *name, enum ssl_bn_layout layout, int64_t hw,
                     const ssl_real *x, const ssl_real *dy)
{
    int64_t m_all = N * hw, m = r->n * hw, c = BN_C;
    struct ssl_bn_sync sync;
    ssl_mpi_bn_sync_init(&sync, r->comm);
    struct ssl_bn_dims d1 = {.c = c, .m = m_all, .layout = layout, .eps = 1e-5, .momentum = 0.1};
    struct ssl_bn_dims dp = d1;
    dp.m = m;
    ssl_real gamma[BN_C] = {1.25f, 0.5f, -0.75f}, beta[BN_C] = {0.1f, -0.2f, 0.3f};
    ssl_real rm1[BN_C] = {0.05f, -0.1f, 0.2f}, rv1[BN_C] = {0.9f, 1.1f, 1.3f};
    ssl_real rmp[BN_C], rvp[BN_C];
    memcpy(rmp, rm1, sizeof rm1);
    memcpy(rvp, rv1, sizeof rv1);
    int64_t nb1 = 0, nbp = 0;
    double saved1[2 * BN_C], savedp[2 * BN_C];
    double *scratch = malloc((size_t)ssl_batchnorm_scratch_elems(c) * sizeof *scratch);
    ssl_real *y1 = malloc((size_t)(c * m_all) * sizeof *y1), *dx1 = calloc((size_t)(c * m_all), sizeof *dx1);
    ssl_real *xl = malloc((size_t)(c * m) * sizeof *xl), *dyl = malloc((size_t)(c * m) * sizeof *dyl);
    ssl_real *yp = malloc((size_t)(c * m) * sizeof *yp), *dxp = calloc((size_t)(c * m), sizeof *dxp);
    ssl_real *y1l = malloc((size_t)(c * m) * sizeof *y1l), *dx1l = malloc((size_t)(c * m) * sizeof *dx1l);
    ssl_real dg1[BN_C] = {0}, db1[BN_C] = {0}, dgp[BN_C] = {0}, dbp[BN_C] = {0};
    ssl_real dgs[BN_C], dbs[BN_C];
    bn_slice(xl, x, r, hw, layout);
    bn_slice(dyl, dy, r, hw, layout);

    int rc = ssl_batchnorm_forward(y1, saved1, rm1, rv1, &nb1, x, gamma, beta, &d1, true, NULL,
                                   scratch);
    rc |= ssl_batchnorm_backward(dx1, dg1, db1, dy, x, saved1, gamma, &d1, true, NULL, scratch);
    rc |= ssl_batchnorm_forward(yp, savedp, rmp, rvp, &nbp, xl, gamma, beta, &dp, true, &sync,
                                scratch);
    rc |= ssl_batchnorm_backward(dxp, dgp, dbp, dyl, xl, savedp, gamma, &dp, true, &sync,
                                 scratch);
    MPI_Allreduce(dgp, dgs, BN_C, MPI_FLOAT, MPI_SUM, r->comm->world);
    MPI_Allreduce(dbp, dbs, BN_C, MPI_FLOAT, MPI_SUM, r->comm->world);
    bn_slice(y1l, y1, r, hw, layout);
    bn_slice(dx1l, dx1, r, hw, layout);

    char line[64];
    snprintf(line, sizeof line, "%s y", name);
    report(r, line, rc, 0, rel_err_real(yp, y1l, c * m));
    snprintf(line, sizeof line, "%s running stats", name);
    double e = rel_err_real(rmp, rm1, c), ev = rel_err_real(rvp, rv1, c);
    report(r, line, nb1 != nbp, 0, e > ev ? e : ev);
    snprintf(line, sizeof line, "%s dx", name);
    report(r, line, 0, 0, rel_err_real(dxp, dx1l, c * m));
    snprintf(line, sizeof line, "%s sum dgamma, dbeta", name);
    e = rel_err_real(dgs, dg1, c);
    ev = rel_err_real(dbs, db1, c);
    report(r, line, 0, 0, e > ev ? e : ev);
    free(scratch);
    free(y1);
    free(dx1);
    free(xl);
    free(dyl);
    free(yp);
    free(dxp);
    free(y1l);
    free(dx1l);
}

static void fill_normal(ssl_real *x, int64_t count, struct ssl_rng *g, double mean, double sd)
{
    for (int64_t i = 0; i < count; i++) x[i] = (ssl_real)(mean + sd * ssl_rng_normal(g));
}

/* The losses that decompose a global matrix (W2's covariance or Gram, Zero-CL's whitening),
 * with the loss comm of r (its eig threshold decides LAPACK or ScaLAPACK). */
static void check_eig_losses(struct run *r, const char *suffix, ssl_real *const x[4])
{
    struct ssl_w2_opts w2_cov = ssl_w2_defaults(), w2_gram = ssl_w2_defaults();
    w2_cov.route = SSL_W2_ROUTE_COV;
    w2_gram.route = SSL_W2_ROUTE_GRAM;
    struct ssl_zerocl_opts fcl = ssl_zerocl_defaults(SSL_ZEROCL_FCL);
    struct ssl_zerocl_opts icl = ssl_zerocl_defaults(SSL_ZEROCL_ICL);
    char name[64];
    snprintf(name, sizeof name, "w2 (cov route)%s", suffix);
    check_loss(r, name, w2, w2_work, &w2_cov, x);
    snprintf(name, sizeof name, "w2 (gram route)%s", suffix);
    check_loss(r, name, w2, w2_work, &w2_gram, x);
    snprintf(name, sizeof name, "zero-cl fcl%s", suffix);
    check_loss(r, name, zerocl, zerocl_work, &fcl, x);
    snprintf(name, sizeof name, "zero-cl icl%s", suffix);
    check_loss(r, name, zerocl, zerocl_work, &icl, x);
}

/* The whitening losses in their global mode, with options that fit N = 12 rows of D = 8. */
static void check_whitening(struct run *r, ssl_real *const x[4])
{
    struct ssl_whitening_opts wmse = ssl_wmse_defaults(), cwrgp = ssl_cwrgp_defaults();
    struct ssl_whitening_opts sdbn = ssl_sdbn_defaults();
    struct ssl_whitening_opts zca = ssl_whitening_compare_defaults(SSL_WHITEN_ZCA);
    wmse.w_size = 12, wmse.w_iter = 2;
    cwrgp.w_size = 6; /* channel axis: 6 rows need more than 6 features per group */
    sdbn.n_groups = 2;
    zca.w_size = 12, zca.n_groups = 2;
    check_loss(r, "w-mse (w_size 12, 2 iters)", whitening, whitening_work, &wmse, x);
    check_loss(r, "cw-rgp (w_size 6)", whitening, whitening_work, &cwrgp, x);
    check_loss(r, "shuffled-dbn (2 groups)", whitening, whitening_work, &sdbn, x);
    check_loss(r, "zca whitening-mse", whitening, whitening_work, &zca, x);
}

int main(int argc, char **argv)
{
    struct ssl_comm comm;
    if (ssl_comm_init(&comm, &argc, &argv) != 0) return 1;
    /* the default threshold keeps these small matrices on LAPACK; threshold 1 sends every
     * global eigenproblem through ScaLAPACK (at P > 1) */
    struct ssl_loss_comm lc, lc_scalapack;
    struct ssl_mpi_loss_ctx lctx, lctx_scalapack;
    ssl_mpi_loss_comm_init(&lc, &lctx, &comm, 512);
    ssl_mpi_loss_comm_init(&lc_scalapack, &lctx_scalapack, &comm, 1);
    struct run r = {.comm = &comm, .ctx = {.comm = &lc, .seed = SEED, .step = 0}};
    if (N % comm.size != 0) {
        if (comm.rank == 0) fprintf(stderr, "mpi_loss_invariance: np must divide %d\n", N);
        ssl_comm_finalize(&comm);
        return 1;
    }
    r.n = N / comm.size;
    r.row0 = comm.rank * r.n;
    if (comm.rank == 0) printf("mpi_loss_invariance np=%d: seed %llu, N = %d, D = %d\n",
                               comm.size, (unsigned long long)SEED, N, D);

    /* the same global batch on every rank */
    struct ssl_rng g;
    ssl_rng_init(&g, SEED, SSL_RNG_TEST, 0, 0, 0);
    static ssl_real xa[N * D], xb[N * D], xc[N * D], xe[N * D]; /* (N, D) each */
    fill_normal(xa, N * D, &g, 0.3, 1.0);
    fill_normal(xb, N * D, &g, -0.2, 0.8);
    fill_normal(xc, N * D, &g, 0.1, 1.2);
    fill_normal(xe, N * D, &g, 0.0, 0.9);
    ssl_real *const x[4] = {xa, xb, xc, xe};
    double queue[QUEUE * D]; /* (QUEUE, D) */
    ssl_moco_queue_init(queue, QUEUE, D, &g);
    static ssl_real zs[CROPS * N * D]; /* (CROPS*N, D) */
    ssl_real protos[PROTOS * D];       /* (PROTOS, D) */
    fill_normal(zs, CROPS * N * D, &g, 0.0, 1.0);
    fill_normal(protos, PROTOS * D, &g, 0.0, 1.0);
    ssl_swav_normalize_prototypes(protos, PROTOS, D);
    static ssl_real bx[BN_C * N * BN_HW], bdy[BN_C * N * BN_HW]; /* (c, N*hw) or (N*hw, c) */
    fill_normal(bx, BN_C * N * BN_HW, &g, 0.5, 2.0);
    fill_normal(bdy, BN_C * N * BN_HW, &g, 0.0, 1.0);

    check_loss(&r, "simclr nt-xent", simclr, simclr_work, NULL, x);
    check_loss(&r, "vicreg", vicreg, vicreg_work, NULL, x);
    check_loss(&r, "barlow twins", barlow, barlow_work, NULL, x);
    /* the INSTANCE path (AUTO takes it when N < d): gathered rows, N x N Gram matrices */
    struct ssl_vicreg_opts vi = ssl_vicreg_defaults();
    struct ssl_barlow_opts bi = ssl_barlow_defaults();
    vi.path = SSL_REDUNDANCY_PATH_INSTANCE;
    bi.path = SSL_REDUNDANCY_PATH_INSTANCE;
    check_loss(&r, "vicreg (instance, gathered)", vicreg, vicreg_work, &vi, x);
    check_loss(&r, "barlow (instance, gathered)", barlow, barlow_work, &bi, x);
    check_eig_losses(&r, "", x);
    struct run rs = r;
    rs.ctx.comm = &lc_scalapack;
    check_eig_losses(&rs, ", scalapack", x);
    r.n_checks = rs.n_checks, r.n_failures = rs.n_failures;
    check_whitening(&r, x);
    check_loss(&r, "uniformity", uniformity, uniformity_work, NULL, x);
    check_loss(&r, "alignment", alignment, alignment_work, NULL, x);
    check_loss(&r, "byol", byol, byol_work, NULL, x);
    check_loss(&r, "simsiam", simsiam, simsiam_work, NULL, x);
    check_loss(&r, "rdm (simsiam base)", rdm, rdm_work, NULL, x);
    check_loss(&r, "moco sym (fixed queue)", moco, moco_work, queue, x);
    check_swav(&r, zs, protos);
    check_bn(&r, "bn2d channel-major", SSL_BN_CHANNEL_MAJOR, BN_HW, bx, bdy);
    check_bn(&r, "bn1d row-major", SSL_BN_ROW_MAJOR, 1, bx, bdy);

    int failures = 0;
    MPI_Allreduce(&r.n_failures, &failures, 1, MPI_INT, MPI_MAX, comm.world);
    if (comm.rank == 0)
        printf("mpi_loss_invariance np=%d: %d checks, %d failures\n", comm.size, r.n_checks,
               failures);
    ssl_comm_finalize(&comm);
    return failures ? 1 : 0;
}
