/* bench.c: the training-step benchmark. Inputs are synthetic N(0,1) images (drawn once, as the
 * PyTorch peer's torch.randn), the loss is bench.loss (the peer's VICReg or SimCLR), the
 * optimizer the config's. Untimed warm-up steps first, then bench.steps timed steps.
 *
 * The step is the distributed one: each rank holds data.batch / P images per view, BatchNorm
 * is synchronised (model.sync_bn), the loss runs over the MPI loss comm on the global batch,
 * and the gradient allreduce is started bucket by bucket from inside the last backward and
 * finished before the optimizer step. With one rank the collectives are trivial. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm.h"
#include "loss_comm.h"
#include "losses/contrastive.h"
#include "losses/redundancy.h"
#include "reduce.h"
#include "model_config.h"
#include "models/model.h"
#include "optim_config.h"
#include "rng.h"

struct bench {
    struct ssl_model model;
    struct ssl_optim optim;
    struct ssl_schedule schedule;
    ssl_real *x[2], *dz[2]; /* inputs (batch, c, h, w); loss gradients (batch, d) */
    double *loss_work;
    bool simclr;
    int64_t batch;
    uint64_t seed;
    struct ssl_loss_comm lc;
    struct ssl_mpi_loss_ctx lc_state;
    struct ssl_loss_ctx ctx;
    struct ssl_grad_reduce reduce;
    bool reduce_ready;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The PyTorch peer's SimCLR (torch_peer.py): temperature 0.2, the mean of both directions,
 * F.normalize's eps. */
static struct ssl_simclr_opts bench_simclr_opts(void)
{
    struct ssl_simclr_opts o = ssl_simclr_defaults();
    o.temperature = 0.2;
    o.average_directions = true;
    o.norm_eps = 1e-12;
    return o;
}

static enum ssl_status bench_setup(struct bench *b, const struct ssl_config *cfg, int64_t batch,
                                   const struct ssl_comm *comm, struct ssl_error *err)
{
    struct ssl_model_cfg mc;
    enum ssl_status rc = ssl_model_cfg_from_config(&mc, cfg, err);
    if (!rc) rc = ssl_model_build(&b->model, &mc, batch, 2, err);
    if (rc) return rc;
    ssl_model_init_params(&b->model, (uint64_t)ssl_config_int(cfg, "run.seed"));
    struct ssl_optim_cfg oc;
    ssl_optim_cfg_from_config(&oc, cfg);
    if (ssl_optim_init(&b->optim, &oc, &b->model.params) != 0)
        return ssl_error_set(err, SSL_E_OTHER, "out of memory for the optimizer state");
    ssl_schedule_from_config(&b->schedule, cfg,
                             ssl_config_int(cfg, "bench.warmup") + ssl_config_int(cfg, "bench.steps"));
    b->batch = batch;
    b->seed = (uint64_t)ssl_config_int(cfg, "run.seed");
    b->simclr = strcmp(ssl_config_str(cfg, "bench.loss"), "simclr") == 0;
    ssl_mpi_loss_comm_init(&b->lc, &b->lc_state, comm,
                           ssl_config_int(cfg, "linalg.scalapack_threshold"));
    b->ctx = (struct ssl_loss_ctx){.comm = &b->lc, .seed = b->seed, .step = 0};
    if (ssl_config_bool(cfg, "model.sync_bn")) ssl_mpi_bn_sync_init(&b->model.net.bn_sync, comm);
    if (ssl_grad_reduce_init(&b->reduce, b->model.params.grads, b->model.params.n_params,
                             SSL_GRAD_REDUCE_DEFAULT_BUCKET_BYTES, comm) != 0)
        return ssl_error_set(err, SSL_E_OTHER, "cannot set up the gradient allreduce");
    b->reduce_ready = true;
    int64_t d = b->model.projection_dim, in_elems = batch * mc.in_channels * mc.image_size * mc.image_size;
    struct ssl_simclr_opts so = bench_simclr_opts();
    int64_t work = b->simclr ? ssl_simclr_nt_xent_work_elems(&b->ctx, batch, d, &so)
                             : ssl_vicreg_full_work_elems(&b->ctx, batch, d, NULL);
    b->loss_work = malloc((size_t)work * sizeof(double));
    for (int v = 0; v < 2; v++) {
        b->x[v] = malloc((size_t)in_elems * sizeof(ssl_real));
        b->dz[v] = malloc((size_t)(batch * d) * sizeof(ssl_real));
        if (b->x[v] == NULL || b->dz[v] == NULL || b->loss_work == NULL)
            return ssl_error_set(err, SSL_E_OTHER, "out of memory for the benchmark inputs");
        /* keyed by global sample index: P ranks hold the slices of one global batch, so the
         * loss of the first step is the same at every P (a check the output shows) */
        int64_t image = in_elems / batch;
        for (int64_t i = 0; i < batch; i++) {
            struct ssl_rng rng;
            ssl_rng_init(&rng, b->seed, SSL_RNG_BENCH, (uint32_t)v,
                         (uint32_t)(comm->rank * batch + i), 0);
            for (int64_t k = 0; k < image; k++)
                b->x[v][i * image + k] = (ssl_real)ssl_rng_normal(&rng);
        }
    }
    return SSL_OK;
}

static void bench_free(struct bench *b)
{
    for (int v = 0; v < 2; v++) {
        free(b->x[v]);
        free(b->dz[v]);
    }
    free(b->loss_work);
    if (b->reduce_ready) ssl_grad_reduce_free(&b->reduce);
    ssl_optim_free(&b->optim);
    ssl_model_free(&b->model);
}

/* The net's backward-progress hook: finished buckets start reducing during the last backward. */
static void start_ready_buckets(void *ctx, int64_t first_elem)
{
    (void)ssl_grad_reduce_ready(ctx, first_elem); /* MPI errors abort through the handler */
}

/* One full step; returns the loss (the same on every rank). */
static double bench_step(struct bench *b)
{
    struct ssl_model *m = &b->model;
    int64_t n = b->batch, d = m->projection_dim;
    ssl_model_zero_grads(m);
    ssl_model_set_step(m, b->seed, b->optim.n_steps);
    for (int v = 0; v < 2; v++) SSL_CHECK(ssl_model_forward(m, v, b->x[v], true) == 0);
    memset(b->dz[0], 0, (size_t)(n * d) * sizeof(ssl_real));
    memset(b->dz[1], 0, (size_t)(n * d) * sizeof(ssl_real));
    const ssl_real *z0 = ssl_model_projection(m, 0), *z1 = ssl_model_projection(m, 1);
    struct ssl_simclr_opts so = bench_simclr_opts();
    double loss = NAN;
    b->ctx.step = b->optim.n_steps;
    int rc = b->simclr ? ssl_simclr_nt_xent_loss(&loss, b->dz[0], b->dz[1], z0, z1, n, d, &so,
                                                 &b->ctx, b->loss_work)
                       : ssl_vicreg_full_loss(&loss, NULL, b->dz[0], b->dz[1], z0, z1, n, d, NULL,
                                              &b->ctx, b->loss_work);
    SSL_CHECK(rc == 0);
    SSL_CHECK(ssl_model_backward(m, 0, b->dz[0], NULL) == 0);
    m->net.grads_ready = start_ready_buckets;
    m->net.grads_ready_ctx = &b->reduce;
    SSL_CHECK(ssl_model_backward(m, 1, b->dz[1], NULL) == 0);
    m->net.grads_ready = NULL;
    SSL_CHECK(ssl_grad_reduce_finish(&b->reduce) == 0);
    double lr[SSL_GROUP_COUNT];
    ssl_schedule_group_lrs(&b->schedule, b->optim.n_steps, lr);
    ssl_optim_step(&b->optim, &m->params, lr);
    return loss;
}

enum ssl_status ssl_bench_run(const struct ssl_config *cfg, const struct ssl_comm *comm,
                              const struct ssl_logger *lg, double *images_per_s,
                              struct ssl_error *err)
{
    int64_t global = ssl_config_int(cfg, "data.batch");
    if (global % comm->size != 0)
        return ssl_error_set(err, SSL_E_USAGE, "data.batch=%lld is not divisible by the %d ranks",
                             (long long)global, comm->size);
    if (ssl_config_int(cfg, "run.threads") > 0) ssl_gemm_set_threads((int)ssl_config_int(cfg, "run.threads"));
    struct bench b;
    memset(&b, 0, sizeof b);
    enum ssl_status rc = bench_setup(&b, cfg, global / comm->size, comm, err);
    if (rc) {
        bench_free(&b);
        return rc;
    }
    double mib = (double)(2 * ssl_net_view_bytes(&b.model.net) + ssl_net_work_bytes(&b.model.net)) / 1048576.0;
    ssl_log(lg, SSL_LOG_INFO,
            "bench: %s, %lld parameters, activations+workspace %.1f MiB per rank, %d BLAS threads (%s kernels)",
            ssl_config_str(cfg, "model.backbone"), (long long)b.model.params.n_params, mib,
            ssl_gemm_threads(), ssl_gemm_kernels());
    double loss = 0, first_loss = NAN;
    for (int64_t s = 0; s < ssl_config_int(cfg, "bench.warmup"); s++) {
        loss = bench_step(&b);
        if (s == 0) first_loss = loss;
    }
    int64_t steps = ssl_config_int(cfg, "bench.steps");
    MPI_Barrier(comm->world);
    double t0 = now_s();
    for (int64_t s = 0; s < steps; s++) loss = bench_step(&b);
    double step_s = (now_s() - t0) / (double)steps, slowest = step_s;
    MPI_Allreduce(&step_s, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm->world); /* the job's pace */
    step_s = slowest;
    ssl_log(lg, SSL_LOG_INFO,
            "ssltrain bench: model=%s loss=%s batch=%lld proj=%lld ranks=%d threads=%d sync_bn=%s first_loss=%.9g last_loss=%.6g step_s=%.4f images_per_s=%.1f",
            ssl_config_str(cfg, "model.backbone"), ssl_config_str(cfg, "bench.loss"), (long long)global,
            (long long)b.model.projection_dim, comm->size, ssl_gemm_threads(),
            ssl_config_bool(cfg, "model.sync_bn") ? "on" : "off", first_loss, loss, step_s,
            (double)global / step_s);
    *images_per_s = (double)global / step_s;
    bench_free(&b);
    return SSL_OK;
}
