/* engine.c: the distributed training step of every method (engine.h). */
#include "engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_config.h"
#include "optim_config.h"
#include "rng.h"

static void *alloc_elems(int64_t n, size_t size)
{
    return calloc(n > 0 ? (size_t)n : 1, size);
}

/* The largest workspace any loss of this method (and the auxiliary terms) needs. */
static int64_t work_elems(const struct ssl_engine *e, int64_t n, int64_t d)
{
    const struct ssl_method *m = &e->method;
    const struct ssl_loss_ctx *c = &e->ctx;
    int64_t w = 0, V = e->n_views, pd = e->model.prediction_dim;
#define TAKE(x) do { int64_t t_ = (x); if (t_ > w) w = t_; } while (0)
    switch (m->kind) {
    case SSL_METHOD_SIMCLR: TAKE(ssl_simclr_nt_xent_work_elems(c, n, d, &m->simclr)); break;
    case SSL_METHOD_MOCO:
        TAKE(ssl_moco_sym_work_elems(c, n, d, m->queue_len, &m->moco));
        TAKE(ssl_moco_enqueue_work_elems(c, n, d));
        break;
    case SSL_METHOD_BYOL: TAKE(ssl_byol_work_elems(c, n, pd, &m->byol)); break;
    case SSL_METHOD_SIMSIAM: TAKE(ssl_simsiam_work_elems(c, n, pd, &m->simsiam)); break;
    case SSL_METHOD_RDM: TAKE(ssl_rdm_work_elems(c, n, pd, &m->rdm)); break;
    case SSL_METHOD_SWAV: TAKE(ssl_swav_work_elems(c, n, d, m->prototypes, V, &m->swav)); break;
    case SSL_METHOD_BARLOW: TAKE(ssl_barlow_work_elems(c, n, d, &m->barlow)); break;
    case SSL_METHOD_VICREG: TAKE(ssl_vicreg_full_work_elems(c, n, d, &m->vicreg)); break;
    case SSL_METHOD_ZERO_CL: TAKE(ssl_zerocl_work_elems(c, n, d, &m->zerocl)); break;
    case SSL_METHOD_WMSE:
    case SSL_METHOD_SDBN:
    case SSL_METHOD_CWRGP: TAKE(ssl_whitening_work_elems(c, n, d, &m->whitening, V)); break;
    case SSL_METHOD_COUNT: break;
    }
    if (m->w2_weight > 0) TAKE(ssl_w2_work_elems(c, n, d, &m->w2));
    if (m->unif_weight > 0) TAKE(ssl_uniformity_work_elems(c, n, d, &m->unif));
    if (m->align_weight > 0) TAKE(ssl_alignment_work_elems(c, n, d, &m->align));
#undef TAKE
    return w;
}

/* The views' sizes (aug.size per view, 0 = the model's) and, for small crops, the second net. */
static enum ssl_status build_small(struct ssl_engine *e, const struct ssl_model_cfg *mc,
                                   const struct ssl_config *cfg, struct ssl_error *err)
{
    int64_t small = 0;
    e->n_large = e->n_views;
    for (int v = 0; v < e->n_views; v++) {
        int64_t size = (int64_t)ssl_config_float_at(cfg, "aug.size", v);
        if (size == 0) size = mc->image_size;
        e->view_elems[v] = mc->in_channels * size * size;
        if (size == mc->image_size && small == 0) continue;
        if (e->n_large == e->n_views) e->n_large = v;
        if (small != 0 && size != small)
            return ssl_error_set(err, SSL_E_USAGE, "aug.size: the views after the large ones must "
                                 "share one smaller size (%lld and %lld)", (long long)small, (long long)size);
        small = size;
    }
    if (small == 0) return SSL_OK;
    if (e->method.kind != SSL_METHOD_SWAV || e->n_large < 1)
        return ssl_error_set(err, SSL_E_USAGE, "aug.size: views of another size than "
                             "model.image_size (multi-crop) are for method swav, after the large ones");
    struct ssl_model_cfg sc = *mc;
    sc.image_size = small;
    enum ssl_status rc = ssl_model_build(&e->small, &sc, e->micro, e->n_views - e->n_large, err);
    if (rc) return rc;
    e->has_small = true;
    struct ssl_params *p = &e->small.params, *q = &e->model.params;
    SSL_CHECK(p->n_params == q->n_params && p->n_buffers == q->n_buffers &&
              p->n_counters == q->n_counters);
    e->small_own = p->counters; /* the block ssl_params_free releases */
    p->counters = q->counters, p->params = q->params, p->grads = q->grads, p->buffers = q->buffers;
    if (ssl_config_bool(cfg, "model.sync_bn")) ssl_mpi_bn_sync_init(&e->small.net.bn_sync, e->comm);
    return SSL_OK;
}

static enum ssl_status build_models(struct ssl_engine *e, const struct ssl_config *cfg,
                                    struct ssl_error *err)
{
    struct ssl_model_cfg mc;
    enum ssl_status rc = ssl_model_cfg_from_config(&mc, cfg, err);
    if (rc) return rc;
    mc.prototypes = e->method.kind == SSL_METHOD_SWAV ? e->method.prototypes : 0;
    rc = ssl_model_build(&e->model, &mc, e->micro, e->n_views, err);
    if (rc) return rc;
    ssl_model_init_params(&e->model, e->seed);
    if (e->model.param_prototypes >= 0)
        ssl_swav_normalize_prototypes(ssl_param_data(&e->model.params, e->model.param_prototypes),
                                      e->method.prototypes, e->model.projection_dim);
    bool sync = ssl_config_bool(cfg, "model.sync_bn");
    if (sync) ssl_mpi_bn_sync_init(&e->model.net.bn_sync, e->comm);
    rc = build_small(e, &mc, cfg, err);
    if (rc) return rc;
    if (!e->method.needs_target) return SSL_OK;
    /* the target is backbone + projector, built in the same order: its parameters and buffers
     * are the prefix of the online model's (the predictor and prototypes come last) */
    struct ssl_model_cfg tc = mc;
    tc.has_predictor = false;
    tc.prototypes = 0;
    rc = ssl_model_build(&e->target, &tc, e->micro, e->n_views, err);
    if (rc) return rc;
    e->has_target = true;
    memcpy(e->target.params.params, e->model.params.params,
           (size_t)e->target.params.n_params * sizeof(ssl_real));
    memcpy(e->target.params.buffers, e->model.params.buffers,
           (size_t)e->target.params.n_buffers * sizeof(ssl_real));
    if (sync) ssl_mpi_bn_sync_init(&e->target.net.bn_sync, e->comm);
    return SSL_OK;
}

static enum ssl_status setup_optim(struct ssl_engine *e, const struct ssl_config *cfg,
                                   struct ssl_error *err)
{
    struct ssl_optim_cfg oc;
    ssl_optim_cfg_from_config(&oc, cfg);
    if (ssl_optim_init(&e->optim, &oc, &e->model.params) != 0)
        return ssl_error_set(err, SSL_E_OTHER, "out of memory for the optimizer state");
    ssl_schedule_from_config(&e->schedule, cfg, e->total_steps);
    if (strcmp(ssl_config_str(cfg, "optim.lr_scaling"), "linear") == 0) {
        /* base_lr * batch / 256 (Goyal et al.; SimCLR, BYOL, SimSiam, solo-learn) */
        double f = (double)ssl_config_int(cfg, "data.batch") / 256.0;
        e->schedule.base_lr *= f;
        e->schedule.final_lr *= f;
        if (e->schedule.predictor_lr >= 0) e->schedule.predictor_lr *= f;
    }
    return SSL_OK;
}

static enum ssl_status setup_buffers(struct ssl_engine *e, struct ssl_error *err)
{
    int64_t n = e->micro, d = e->model.projection_dim;
    int64_t dmax = e->model.prediction_dim > d ? e->model.prediction_dim : d;
    int64_t per = e->n_views * n * dmax;
    e->dz = alloc_elems(per, sizeof(ssl_real));
    e->dp = alloc_elems(per, sizeof(ssl_real));
    e->tmp = alloc_elems(per, sizeof(ssl_real));
    bool swav = e->method.kind == SSL_METHOD_SWAV;
    e->zcat = swav ? alloc_elems(per, sizeof(ssl_real)) : NULL;
    e->work_elems = work_elems(e, n, d);
    e->work = alloc_elems(e->work_elems, sizeof(double));
    if (e->method.kind == SSL_METHOD_MOCO) {
        e->queue = alloc_elems(e->method.queue_len * d, sizeof(double));
        if (e->queue != NULL) {
            struct ssl_rng r;
            ssl_rng_init(&r, e->seed, SSL_RNG_STATE, 1, 0, 0);
            ssl_moco_queue_init(e->queue, e->method.queue_len, d, &r);
        }
    }
    if (!e->dz || !e->dp || !e->tmp || (swav && !e->zcat) || !e->work ||
        (e->method.kind == SSL_METHOD_MOCO && !e->queue))
        return ssl_error_set(err, SSL_E_OTHER, "out of memory for the loss buffers");
    return SSL_OK;
}

enum ssl_status ssl_engine_init(struct ssl_engine *e, const struct ssl_config *cfg,
                                int64_t local_batch, int64_t steps_per_epoch, int64_t epochs,
                                const struct ssl_comm *comm, struct ssl_error *err)
{
    memset(e, 0, sizeof *e);
    e->comm = comm;
    e->seed = (uint64_t)ssl_config_int(cfg, "run.seed");
    e->accumulate = (int)ssl_config_int(cfg, "optim.accumulate");
    e->skip_nonfinite = strcmp(ssl_config_str(cfg, "train.on_nonfinite"), "skip") == 0;
    e->steps_per_epoch = steps_per_epoch;
    e->epochs = epochs;
    /* the schedule always spans the configured epochs; train.max_steps only stops early, so
     * a run cut short follows the same trajectory as the full one */
    e->total_steps = steps_per_epoch * epochs;
    enum ssl_status rc = ssl_method_from_config(&e->method, cfg, err);
    if (rc) return rc;
    e->n_views = e->method.n_views;
    if (e->n_views > SSL_ENGINE_MAX_VIEWS)
        return ssl_error_set(err, SSL_E_USAGE, "aug.views=%d: the trainer supports up to %d",
                             e->n_views, SSL_ENGINE_MAX_VIEWS);
    if (local_batch % e->accumulate != 0 || local_batch / e->accumulate < 2)
        return ssl_error_set(err, SSL_E_USAGE,
                             "optim.accumulate=%d: the %lld rows per rank must split into "
                             "micro-batches of at least 2 rows",
                             e->accumulate, (long long)local_batch);
    e->micro = local_batch / e->accumulate;
    ssl_mpi_loss_comm_init(&e->lc, &e->lc_state, comm,
                           ssl_config_int(cfg, "linalg.scalapack_threshold"));
    e->ctx = (struct ssl_loss_ctx){.comm = &e->lc, .seed = e->seed, .step = 0};
    rc = build_models(e, cfg, err);
    if (!rc) rc = setup_optim(e, cfg, err);
    if (!rc) rc = setup_buffers(e, err);
    if (rc) return rc;
    const struct ssl_model_cfg *mc = &e->model.cfg;
    e->image_elems = mc->in_channels * mc->image_size * mc->image_size;
    if (ssl_grad_reduce_init(&e->reduce, e->model.params.grads, e->model.params.n_params,
                             SSL_GRAD_REDUCE_DEFAULT_BUCKET_BYTES, comm) != 0)
        return ssl_error_set(err, SSL_E_OTHER, "cannot set up the gradient allreduce");
    e->reduce_ready = true;
    return SSL_OK;
}

void ssl_engine_free(struct ssl_engine *e)
{
    if (e->reduce_ready) ssl_grad_reduce_free(&e->reduce);
    free(e->dz);
    free(e->dp);
    free(e->tmp);
    free(e->zcat);
    free(e->work);
    free(e->queue);
    ssl_optim_free(&e->optim);
    if (e->has_target) ssl_model_free(&e->target);
    if (e->has_small) {
        e->small.params.counters = e->small_own;
        ssl_model_free(&e->small);
    }
    ssl_model_free(&e->model);
    memset(e, 0, sizeof *e);
}

/* ---- the step ----------------------------------------------------------------------------- */

/* The net a view runs through, and its view slot there. */
static struct ssl_model *view_model(struct ssl_engine *e, int v)
{
    return v < e->n_large ? &e->model : &e->small;
}

static int view_index(const struct ssl_engine *e, int v)
{
    return v < e->n_large ? v : v - e->n_large;
}

/* Views' outputs of the current micro-batch. */
struct outs {
    const ssl_real *z[SSL_ENGINE_MAX_VIEWS], *p[SSL_ENGINE_MAX_VIEWS], *t[SSL_ENGINE_MAX_VIEWS];
    ssl_real *dz[SSL_ENGINE_MAX_VIEWS], *dp[SSL_ENGINE_MAX_VIEWS];
};

static struct outs views_of(struct ssl_engine *e)
{
    struct outs o;
    memset(&o, 0, sizeof o);
    int64_t n = e->micro, d = e->model.projection_dim, pd = e->model.prediction_dim;
    for (int v = 0; v < e->n_views; v++) {
        const struct ssl_model *m = view_model(e, v);
        int mv = view_index(e, v);
        o.z[v] = ssl_model_projection(m, mv);
        o.p[v] = ssl_model_prediction(m, mv);
        o.t[v] = e->has_target ? ssl_model_projection(&e->target, v) : o.z[v];
        o.dz[v] = e->dz + v * n * d;
        o.dp[v] = e->dp + v * n * pd;
    }
    return o;
}

static void scale_views(ssl_real *g, int64_t count, double f)
{
    for (int64_t i = 0; i < count; i++) g[i] = (ssl_real)((double)g[i] * f);
}

/* The SwAV crops concatenated (V n, d) as the loss wants them, and their gradient split back. */
static int swav_loss(struct ssl_engine *e, double *value, const struct outs *o)
{
    int64_t n = e->micro, d = e->model.projection_dim, V = e->n_views;
    for (int v = 0; v < V; v++) memcpy(e->zcat + v * n * d, o->z[v], (size_t)(n * d) * sizeof(ssl_real));
    ssl_real *dc = ssl_param_grad(&e->model.params, e->model.param_prototypes);
    const ssl_real *c = ssl_param_data(&e->model.params, e->model.param_prototypes);
    /* dz is (V, n, d) in view order: exactly the concatenation's layout */
    return ssl_swav_loss(value, NULL, e->dz, dc, e->zcat, c, n, d, e->method.prototypes, V,
                         &e->method.swav, &e->ctx, e->work);
}

static int whitening_loss(struct ssl_engine *e, double *value, const struct outs *o,
                          struct ssl_error *err)
{
    int64_t n = e->micro, d = e->model.projection_dim;
    int rc = ssl_whitening_loss(value, o->dz, o->z, e->n_views, n, d, &e->method.whitening,
                                &e->ctx, e->work, err);
    if (!e->method.whitening.per_rank) return rc;
    /* per-rank losses are local means: average them over the ranks as DDP does; the sum also
     * carries the failure of any rank, so no rank waits alone in the next collective */
    double P = (double)e->comm->size, s[2] = {rc ? 0.0 : *value, rc ? 1.0 : 0.0};
    int crc = ssl_loss_sum(&e->ctx, s, 2);
    if (rc || crc) return rc ? rc : crc;
    if (s[1] > 0) return ssl_error_set(err, SSL_E_NONFINITE, "whitening loss failed on another rank");
    *value = s[0] / P;
    scale_views(e->dz, e->n_views * n * d, 1.0 / P);
    return rc;
}

/* The method's loss on the current micro-batch into *value; gradients into e->dz / e->dp. */
static int main_loss(struct ssl_engine *e, double *value, const struct outs *o,
                     struct ssl_error *err)
{
    const struct ssl_method *m = &e->method;
    const struct ssl_loss_ctx *c = &e->ctx;
    int64_t n = e->micro, d = e->model.projection_dim, pd = e->model.prediction_dim;
    switch (m->kind) {
    case SSL_METHOD_SIMCLR:
        return ssl_simclr_nt_xent_loss(value, o->dz[0], o->dz[1], o->z[0], o->z[1], n, d,
                                       &m->simclr, c, e->work);
    case SSL_METHOD_MOCO: {
        int rc = ssl_moco_sym_loss(value, o->dz[0], o->dz[1], o->z[0], o->z[1], o->t[0], o->t[1],
                                   e->queue, n, d, m->queue_len, &m->moco, c, e->work);
        /* as the official forward: the keys of this batch enter the queue after the loss */
        if (rc == 0)
            rc = ssl_moco_enqueue(e->queue, &e->queue_ptr, o->t[0], o->t[1], n, d, m->queue_len,
                                  c, e->work, err);
        return rc;
    }
    case SSL_METHOD_BYOL:
        return ssl_byol_loss(value, o->dp[0], o->dp[1], o->p[0], o->p[1], o->t[0], o->t[1], n,
                             pd, &m->byol, c, e->work);
    case SSL_METHOD_SIMSIAM:
        return ssl_simsiam_loss(value, o->dp[0], o->dp[1], o->p[0], o->p[1], o->t[0], o->t[1],
                                n, pd, &m->simsiam, c, e->work);
    case SSL_METHOD_RDM:
        return ssl_rdm_loss(value, o->dp[0], o->dp[1], o->p[0], o->p[1], o->t[0], o->t[1], n, pd,
                            &m->rdm, c, e->work);
    case SSL_METHOD_SWAV: return swav_loss(e, value, o);
    case SSL_METHOD_BARLOW:
        return ssl_barlow_loss(value, NULL, o->dz[0], o->dz[1], o->z[0], o->z[1], n, d,
                               &m->barlow, c, e->work);
    case SSL_METHOD_VICREG:
        return ssl_vicreg_full_loss(value, NULL, o->dz[0], o->dz[1], o->z[0], o->z[1], n, d,
                                    &m->vicreg, c, e->work);
    case SSL_METHOD_ZERO_CL: {
        int rc = ssl_zerocl_loss(value, NULL, o->dz[0], o->dz[1], o->z[0], o->z[1], n, d,
                                 &m->zerocl, c, e->work);
        /* per rank, as the official code under DDP: the value is already the all-reduced one,
         * the gradients are averaged over the ranks (the same rule as `ssltrain loss`) */
        if (rc == 0 && m->zerocl.per_rank) scale_views(e->dz, 2 * n * d, 1.0 / (double)e->comm->size);
        return rc;
    }
    case SSL_METHOD_WMSE:
    case SSL_METHOD_SDBN:
    case SSL_METHOD_CWRGP: return whitening_loss(e, value, o, err);
    case SSL_METHOD_COUNT: break;
    }
    return SSL_E_USAGE;
}

enum aux_kind { AUX_W2, AUX_UNIF, AUX_ALIGN };

/* One auxiliary term on views 0 and 1: *value, and weight * its gradient added to dz. */
static int aux_term(struct ssl_engine *e, enum aux_kind k, double weight, double *value,
                    const struct outs *o)
{
    const struct ssl_method *m = &e->method;
    int64_t n = e->micro, d = e->model.projection_dim;
    ssl_real *g0 = e->tmp, *g1 = e->tmp + n * d;
    memset(e->tmp, 0, (size_t)(2 * n * d) * sizeof(ssl_real));
    int rc = k == AUX_W2 ? ssl_w2_loss(value, NULL, g0, g1, o->z[0], o->z[1], n, d, &m->w2,
                                       &e->ctx, e->work)
             : k == AUX_UNIF ? ssl_uniformity_loss(value, g0, g1, o->z[0], o->z[1], n, d,
                                                   &m->unif, &e->ctx, e->work)
                             : ssl_alignment_loss(value, g0, g1, o->z[0], o->z[1], n, d,
                                                  &m->align, &e->ctx, e->work);
    for (int64_t i = 0; i < n * d; i++) {
        o->dz[0][i] = (ssl_real)((double)o->dz[0][i] + weight * (double)g0[i]);
        o->dz[1][i] = (ssl_real)((double)o->dz[1][i] + weight * (double)g1[i]);
    }
    return rc;
}

static int aux_terms(struct ssl_engine *e, struct ssl_step_result *r, const struct outs *o)
{
    int rc = 0;
    if (r->w2_weight > 0) rc = aux_term(e, AUX_W2, r->w2_weight, &r->w2, o);
    if (!rc && r->uniformity_weight > 0)
        rc = aux_term(e, AUX_UNIF, r->uniformity_weight, &r->uniformity, o);
    if (!rc && r->alignment_weight > 0)
        rc = aux_term(e, AUX_ALIGN, r->alignment_weight, &r->alignment, o);
    return rc;
}

/* Whether the projections get a gradient (not in BYOL, SimSiam or RDM without aux terms). */
static bool projections_trained(const struct ssl_engine *e, const struct ssl_step_result *r)
{
    return !e->method.needs_predictor || r->w2_weight > 0 || r->uniformity_weight > 0 ||
           r->alignment_weight > 0;
}

static void start_ready_buckets(void *ctx, int64_t first_elem)
{
    (void)ssl_grad_reduce_ready(ctx, first_elem); /* MPI errors abort through the handler */
}

/* Forward, loss and backward of micro-batch a; the loss (main, weighted aux) is added to r
 * divided by the micro-batch count, and so are the gradients. */
static int micro_step(struct ssl_engine *e, ssl_real *const *x, int a, struct ssl_step_result *r,
                      struct ssl_error *err)
{
    int64_t n = e->micro, d = e->model.projection_dim, pd = e->model.prediction_dim;
    int V = e->n_views, rc = 0;
    e->ctx.step = e->optim.n_steps * e->accumulate + a;
    for (int v = 0; v < V && !rc; v++) {
        const ssl_real *xv = x[v] + (int64_t)a * n * e->view_elems[v];
        rc = ssl_model_forward(view_model(e, v), view_index(e, v), xv, true);
        if (!rc && e->has_target) rc = ssl_model_forward(&e->target, v, xv, true);
    }
    if (rc) return rc;
    memset(e->dz, 0, (size_t)(V * n * d) * sizeof(ssl_real));
    memset(e->dp, 0, (size_t)(V * n * pd) * sizeof(ssl_real));
    struct outs o = views_of(e);
    double main = NAN, scale = 1.0 / (double)e->accumulate;
    rc = main_loss(e, &main, &o, err);
    if (!rc) rc = aux_terms(e, r, &o);
    if (rc) return rc;
    r->main += main * scale;
    if (e->accumulate > 1) {
        scale_views(e->dz, V * n * d, scale);
        scale_views(e->dp, V * n * pd, scale);
    }
    bool train_z = projections_trained(e, r);
    for (int v = 0; v < V && !rc; v++) {
        struct ssl_model *m = view_model(e, v);
        bool last = a == e->accumulate - 1 && v == V - 1;
        m->net.grads_ready = last ? start_ready_buckets : NULL;
        m->net.grads_ready_ctx = &e->reduce;
        rc = ssl_model_backward(m, view_index(e, v), train_z ? o.dz[v] : NULL,
                                e->method.needs_predictor ? o.dp[v] : NULL);
        m->net.grads_ready = NULL;
    }
    return rc;
}

static double grad_norm(const struct ssl_params *p)
{
    double s = 0.0;
    for (int64_t i = 0; i < p->n_params; i++) s += (double)p->grads[i] * (double)p->grads[i];
    return sqrt(s);
}

/* Which term went non-finite, for the message. */
static const char *nonfinite_term(const struct ssl_step_result *r)
{
    if (!isfinite(r->main)) return "the main loss";
    if (r->w2_weight > 0 && !isfinite(r->w2)) return "w2";
    if (r->uniformity_weight > 0 && !isfinite(r->uniformity)) return "uniformity";
    if (r->alignment_weight > 0 && !isfinite(r->alignment)) return "alignment";
    return "the gradient";
}

/* The update after a finite step: optimizer, target EMA, SwAV's prototypes. */
static void update(struct ssl_engine *e, struct ssl_step_result *r)
{
    double lr[SSL_GROUP_COUNT];
    int64_t step = e->optim.n_steps;
    ssl_schedule_group_lrs(&e->schedule, step, lr);
    r->lr = lr[SSL_GROUP_MAIN];
    ssl_optim_step(&e->optim, &e->model.params, lr);
    if (e->has_target) {
        /* BYOL's tau rises to 1 on a cosine; MoCo keeps its momentum constant */
        double tau = e->method.kind == SSL_METHOD_MOCO
                         ? e->method.ema_base
                         : ssl_ema_tau(e->method.ema_base, step, e->total_steps);
        ssl_ema_update(e->target.params.params, e->model.params.params,
                       e->target.params.n_params, tau);
    }
    if (e->model.param_prototypes >= 0)
        ssl_swav_normalize_prototypes(ssl_param_data(&e->model.params, e->model.param_prototypes),
                                      e->method.prototypes, e->model.projection_dim);
}

enum ssl_status ssl_engine_step(struct ssl_engine *e, ssl_real *const *x, int64_t epoch,
                                struct ssl_step_result *r, struct ssl_error *err)
{
    *r = (struct ssl_step_result){.w2 = NAN, .uniformity = NAN, .alignment = NAN};
    ssl_method_aux_weights(&e->method, epoch, e->epochs, &r->w2_weight, &r->uniformity_weight,
                           &r->alignment_weight);
    ssl_model_zero_grads(&e->model);
    ssl_model_set_step(&e->model, e->seed, e->optim.n_steps);
    if (e->has_small) ssl_model_set_step(&e->small, e->seed, e->optim.n_steps);
    if (e->has_target) ssl_model_set_step(&e->target, e->seed, e->optim.n_steps);
    int rc = 0;
    for (int a = 0; a < e->accumulate && !rc; a++) rc = micro_step(e, x, a, r, err);
    if (rc == 0) rc = ssl_grad_reduce_finish(&e->reduce);
    if (rc == SSL_E_NONFINITE) r->main = NAN;
    else if (rc) return err->msg[0] ? (enum ssl_status)rc
                                    : ssl_error_set(err, SSL_E_OTHER, "step %lld failed (status %d)",
                                                    (long long)e->optim.n_steps, rc);
    else r->grad_norm = grad_norm(&e->model.params);
    r->loss = r->main;
    if (r->w2_weight > 0) r->loss += r->w2_weight * r->w2;
    if (r->uniformity_weight > 0) r->loss += r->uniformity_weight * r->uniformity;
    if (r->alignment_weight > 0) r->loss += r->alignment_weight * r->alignment;
    if (!isfinite(r->loss) || !isfinite(r->grad_norm)) {
        /* every rank sees the same values here, so all take the same branch */
        if (e->skip_nonfinite) {
            r->skipped = true;
            e->optim.n_steps++; /* the schedule moves on; the parameters do not */
            return SSL_OK;
        }
        return ssl_error_set(err, SSL_E_NONFINITE, "step %lld: %s is not finite (loss %g)",
                             (long long)e->optim.n_steps, nonfinite_term(r), r->loss);
    }
    update(e, r);
    return SSL_OK;
}
