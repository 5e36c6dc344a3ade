/* bench.c: the training-step benchmark. Inputs are synthetic N(0,1) images (drawn once, as the
 * PyTorch peer's torch.randn), the loss is bench.loss (the peer's VICReg or SimCLR), the
 * optimizer the config's. Untimed warm-up steps first, then bench.steps timed steps. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm.h"
#include "losses/losses.h"
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
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static enum ssl_status bench_setup(struct bench *b, const struct ssl_config *cfg, int64_t batch,
                                   struct ssl_error *err)
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
    int64_t d = b->model.projection_dim, in_elems = batch * mc.in_channels * mc.image_size * mc.image_size;
    int64_t work = b->simclr ? ssl_simclr_work_elems(batch, d) : ssl_vicreg_work_elems(batch, d);
    b->loss_work = malloc((size_t)work * sizeof(double));
    for (int v = 0; v < 2; v++) {
        b->x[v] = malloc((size_t)in_elems * sizeof(ssl_real));
        b->dz[v] = malloc((size_t)(batch * d) * sizeof(ssl_real));
        if (b->x[v] == NULL || b->dz[v] == NULL || b->loss_work == NULL)
            return ssl_error_set(err, SSL_E_OTHER, "out of memory for the benchmark inputs");
        struct ssl_rng rng;
        ssl_rng_init(&rng, b->seed, SSL_RNG_BENCH, (uint32_t)v, 0, 0);
        for (int64_t i = 0; i < in_elems; i++) b->x[v][i] = (ssl_real)ssl_rng_normal(&rng);
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
    ssl_optim_free(&b->optim);
    ssl_model_free(&b->model);
}

/* One full step; returns the loss. */
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
    struct ssl_vicreg_weights w = {25, 25, 1};
    double loss = b->simclr ? ssl_simclr_loss(b->dz[0], b->dz[1], z0, z1, n, d, 0.2, b->loss_work)
                            : ssl_vicreg_loss(b->dz[0], b->dz[1], z0, z1, n, d, &w, NULL, b->loss_work);
    for (int v = 0; v < 2; v++) SSL_CHECK(ssl_model_backward(m, v, b->dz[v], NULL) == 0);
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
    enum ssl_status rc = bench_setup(&b, cfg, global / comm->size, err);
    if (rc) {
        bench_free(&b);
        return rc;
    }
    double mib = (double)(2 * ssl_net_view_bytes(&b.model.net) + ssl_net_work_bytes(&b.model.net)) / 1048576.0;
    ssl_log(lg, SSL_LOG_INFO,
            "bench: %s, %lld parameters, activations+workspace %.1f MiB per rank, %d BLAS threads (%s kernels)",
            ssl_config_str(cfg, "model.backbone"), (long long)b.model.params.n_params, mib,
            ssl_gemm_threads(), ssl_gemm_kernels());
    double loss = 0;
    for (int64_t s = 0; s < ssl_config_int(cfg, "bench.warmup"); s++) loss = bench_step(&b);
    int64_t steps = ssl_config_int(cfg, "bench.steps");
    double t0 = now_s();
    for (int64_t s = 0; s < steps; s++) loss = bench_step(&b);
    double step_s = (now_s() - t0) / (double)steps;
    ssl_log(lg, SSL_LOG_INFO,
            "ssltrain bench: model=%s loss=%s batch=%lld proj=%lld threads=%d last_loss=%.6g step_s=%.4f images_per_s=%.1f",
            ssl_config_str(cfg, "model.backbone"), ssl_config_str(cfg, "bench.loss"), (long long)global,
            (long long)b.model.projection_dim, ssl_gemm_threads(), loss, step_s, (double)global / step_s);
    *images_per_s = (double)global / step_s;
    bench_free(&b);
    return SSL_OK;
}
