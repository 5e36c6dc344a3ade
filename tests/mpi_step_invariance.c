/* mpi_step_invariance.c: one training step's gradient at P ranks equals one process's on the
 * global batch, end to end: model (convnet backbone + projector) with SyncBN, VICReg over the
 * MPI loss comm, backward of both views, then the bucketed gradient allreduce (mpi/reduce.c).
 *
 * Every rank builds the SAME model from the same seed twice: the distributed one for N/P
 * samples per view with the MPI SyncBN hook (mpi/loss_comm.h), and a reference one for the
 * whole global batch of N = 12 images per view with no hooks (one process). Every rank draws
 * the same two views of N random images from a fixed seed (SEED) and the distributed model
 * takes its contiguous slice of N/P images. Checked, on every rank, against the reference: the
 * VICReg value, the summed gradient buffer (max|g - g1| / max|g1|), and the BatchNorm running
 * statistics and counters after the step. The step is run three times on the distributed
 * model (parameters and buffers re-initialised each time), with:
 *   - the default 25 MiB buckets (one bucket), finish only;
 *   - tiny 256-byte buckets (hundreds of buckets), finish only;
 *   - 4 KiB buckets started from inside the last backward by the net's grads_ready hook
 *     (the overlap the trainer uses);
 *   - 4 KiB buckets started progressively with ssl_grad_reduce_ready at thresholds that differ
 *     per rank (the issue order is the same anyway), with a blocking collective on the world
 *     communicator between two `ready` calls (as SyncBN's backward would issue), then finish.
 * Float core, fp64 loss: tolerance TOL relative. Rank 0 prints one line per check with the
 * worst error over the ranks and a summary; every rank exits 1 if any check failed anywhere. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "check.h"
#include "comm.h"
#include "loss_comm.h"
#include "losses/redundancy.h"
#include "models/model.h"
#include "reduce.h"
#include "rng.h"

enum { N = 12, C = 3, S = 8 };
static const uint64_t SEED = 20240917;
static const double TOL = 1e-4;

struct result {
    double loss;
    ssl_real *grads;   /* (n_params) */
    ssl_real *buffers; /* (n_buffers) */
    int64_t *counters; /* (n_counters) */
};

struct run {
    const struct ssl_comm *comm;
    int n_checks, n_failures;
};

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
static void report(struct run *r, const char *name, int rc, double err)
{
    double worst = 0;
    int bad = rc != 0 || !(err <= TOL), any = 0;
    MPI_Allreduce(&err, &worst, 1, MPI_DOUBLE, MPI_MAX, r->comm->world);
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, r->comm->world);
    r->n_checks++;
    if (any) r->n_failures++;
    if (r->comm->rank == 0)
        printf("  %-44s np=%d  rel err %.2e  %s\n", name, r->comm->size, worst,
               any ? "FAIL" : "ok");
}

static struct ssl_model_cfg model_cfg(void)
{
    struct ssl_model_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.backbone = SSL_BACKBONE_CONVNET;
    cfg.in_channels = C;
    cfg.image_size = S;
    cfg.projector.n_hidden = 1;
    cfg.projector.hidden[0] = 16;
    cfg.projector.out = 8;
    cfg.projector.hidden_bias = true;
    cfg.projector.last_bias = true;
    cfg.projector.last_bn = SSL_LAST_BN_NONE;
    cfg.bn_eps = 1e-5;
    cfg.bn_momentum = 0.1;
    return cfg;
}

/* The net's backward-progress hook, as the trainer will use it: buckets whose gradients are
 * final start reducing while the rest of the last backward runs. Errors abort the job through
 * the communicator's handler. */
static void start_ready_buckets(void *ctx, int64_t first_elem)
{
    (void)ssl_grad_reduce_ready(ctx, first_elem);
}

/* Forward of both views of x1, x2 (n, C, S, S), VICReg through ctx, backward of both views;
 * params.grads holds this process's contribution. With `overlap`, buckets are started from
 * inside the last view's backward. Returns 0 or the first non-zero code. */
static int step(struct ssl_model *m, const ssl_real *x1, const ssl_real *x2, int64_t n,
                const struct ssl_loss_ctx *ctx, double *loss, struct ssl_grad_reduce *overlap)
{
    int64_t d = m->projection_dim;
    ssl_model_init_params(m, SEED);
    ssl_model_zero_grads(m);
    int rc = ssl_model_forward(m, 0, x1, true);
    if (rc == 0) rc = ssl_model_forward(m, 1, x2, true);
    if (rc) return rc;
    ssl_real *dz = calloc((size_t)(2 * n * d), sizeof *dz); /* (2, n, d) */
    double *work = malloc((size_t)ssl_vicreg_full_work_elems(ctx, n, d, NULL) * sizeof *work);
    SSL_CHECK(dz != NULL && work != NULL);
    rc = ssl_vicreg_full_loss(loss, NULL, dz, dz + n * d, ssl_model_projection(m, 0),
                              ssl_model_projection(m, 1), n, d, NULL, ctx, work);
    if (rc == 0) rc = ssl_model_backward(m, 0, dz, NULL);
    if (overlap) { /* only the last backward: both views add into the same gradients */
        m->net.grads_ready = start_ready_buckets;
        m->net.grads_ready_ctx = overlap;
    }
    if (rc == 0) rc = ssl_model_backward(m, 1, dz + n * d, NULL);
    m->net.grads_ready = NULL;
    free(work);
    free(dz);
    return rc;
}

enum mode { MODE_FINISH, MODE_PROGRESSIVE, MODE_OVERLAP };

/* The distributed step with the given buckets, then the checks against the reference. */
static void check_step(struct run *r, struct ssl_model *m, const ssl_real *x1,
                       const ssl_real *x2, int64_t n, const struct ssl_loss_ctx *ctx,
                       size_t bucket_bytes, enum mode mode, const struct result *ref,
                       const char *label)
{
    const struct ssl_comm *comm = r->comm;
    struct ssl_params *p = &m->params;
    struct ssl_grad_reduce red;
    int rc = ssl_grad_reduce_init(&red, p->grads, p->n_params, bucket_bytes, comm);
    double loss = NAN;
    if (rc == 0) rc = step(m, x1, x2, n, ctx, &loss, mode == MODE_OVERLAP ? &red : NULL);
    int n_buckets = red.n_buckets;
    if (rc == 0 && mode == MODE_PROGRESSIVE) {
        /* thresholds differ per rank: the buckets are issued in one order regardless */
        int64_t np = p->n_params, k = comm->rank + 1, q = comm->size + 1;
        rc = ssl_grad_reduce_ready(&red, np - np * k / (2 * q));
        double probe = 1, sum = 0;
        if (rc == 0) rc = MPI_Allreduce(&probe, &sum, 1, MPI_DOUBLE, MPI_SUM, comm->world);
        if (rc == 0 && sum != comm->size) rc = -1;
        if (rc == 0) rc = ssl_grad_reduce_ready(&red, np / 2);
        if (rc == 0) rc = ssl_grad_reduce_ready(&red, np / 4);
    }
    if (rc == 0) rc = ssl_grad_reduce_finish(&red);
    ssl_grad_reduce_free(&red);

    char name[128];
    snprintf(name, sizeof name, "%s (%d buckets) loss", label, n_buckets);
    report(r, name, rc, rel_err_value(loss, ref->loss));
    snprintf(name, sizeof name, "%s (%d buckets) grads", label, n_buckets);
    report(r, name, rc, rel_err_real(p->grads, ref->grads, p->n_params));
    snprintf(name, sizeof name, "%s (%d buckets) bn running stats", label, n_buckets);
    int bad_count = memcmp(p->counters, ref->counters,
                           (size_t)p->n_counters * sizeof *p->counters) != 0;
    report(r, name, rc || bad_count, rel_err_real(p->buffers, ref->buffers, p->n_buffers));
}

static void fill_normal(ssl_real *x, int64_t count, struct ssl_rng *g)
{
    for (int64_t i = 0; i < count; i++) x[i] = (ssl_real)ssl_rng_normal(g);
}

int main(int argc, char **argv)
{
    struct ssl_comm comm;
    if (ssl_comm_init(&comm, &argc, &argv) != 0) return 1;
    if (N % comm.size != 0) {
        if (comm.rank == 0) fprintf(stderr, "mpi_step_invariance: np must divide %d\n", N);
        ssl_comm_finalize(&comm);
        return 1;
    }
    struct run r = {.comm = &comm};
    int64_t n = N / comm.size, row0 = comm.rank * n, image = (int64_t)C * S * S;

    /* the same global batch on every rank: two views (N, C, S, S) */
    static ssl_real x1[N * C * S * S], x2[N * C * S * S];
    struct ssl_rng g;
    ssl_rng_init(&g, SEED, SSL_RNG_TEST, 0, 0, 0);
    fill_normal(x1, N * image, &g);
    fill_normal(x2, N * image, &g);

    struct ssl_model_cfg cfg = model_cfg();
    struct ssl_error err;
    struct ssl_model ref_model, model;
    if (ssl_model_build(&ref_model, &cfg, N, 2, &err) != SSL_OK ||
        ssl_model_build(&model, &cfg, n, 2, &err) != SSL_OK)
        ssl_comm_abort(&comm, 1, err.msg);
    ssl_mpi_bn_sync_init(&model.net.bn_sync, &comm);
    struct ssl_loss_comm lc;
    struct ssl_mpi_loss_ctx lctx;
    ssl_mpi_loss_comm_init(&lc, &lctx, &comm, 512);
    struct ssl_loss_ctx ctx = {.comm = &lc, .seed = SEED, .step = 0};
    if (comm.rank == 0)
        printf("mpi_step_invariance np=%d: seed %llu, N = %d images %dx%dx%d, convnet + "
               "projector [16] -> 8, SyncBN, VICReg, %lld parameters\n",
               comm.size, (unsigned long long)SEED, N, C, S, S, (long long)model.params.n_params);

    /* the reference: one process on the whole batch (no hooks) */
    struct result ref;
    int ref_rc = step(&ref_model, x1, x2, N, NULL, &ref.loss, NULL);
    if (ref_rc != 0) ssl_comm_abort(&comm, 1, "reference step failed");
    ref.grads = ref_model.params.grads;
    ref.buffers = ref_model.params.buffers;
    ref.counters = ref_model.params.counters;

    const ssl_real *s1 = x1 + row0 * image, *s2 = x2 + row0 * image;
    check_step(&r, &model, s1, s2, n, &ctx, 0, MODE_FINISH, &ref, "25 MiB buckets, finish");
    check_step(&r, &model, s1, s2, n, &ctx, 256, MODE_FINISH, &ref, "256 B buckets, finish");
    check_step(&r, &model, s1, s2, n, &ctx, 4096, MODE_PROGRESSIVE, &ref,
               "4 KiB buckets, progressive ready");
    check_step(&r, &model, s1, s2, n, &ctx, 4096, MODE_OVERLAP, &ref,
               "4 KiB buckets, overlapped with the last backward");

    int failures = 0;
    MPI_Allreduce(&r.n_failures, &failures, 1, MPI_INT, MPI_MAX, comm.world);
    if (comm.rank == 0)
        printf("mpi_step_invariance np=%d: %d checks, %d failures\n", comm.size, r.n_checks,
               failures);
    ssl_model_free(&model);
    ssl_model_free(&ref_model);
    ssl_comm_finalize(&comm);
    return failures ? 1 : 0;
}
