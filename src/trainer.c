/* trainer.c: the training run (trainer.h). */
#include "trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "checkpoint.h"
#include "data_config.h"
#include "engine.h"
#include "gemm.h"
#include "model_config.h"
#include "run_dir.h"
#include "sampler.h"
#include "signals.h"
#include "train_ckpt.h"
#include "train_dump.h"
#include "train_eval.h"

struct run {
    const struct ssl_config *cfg;
    const struct ssl_comm *comm;
    const struct ssl_logger *lg;
    struct ssl_dataset *train, *test;
    const struct ssl_dataset_info *info;
    struct ssl_aug_recipe rec[SSL_MAX_VIEWS];
    int n_views;
    struct ssl_sampler sampler;
    struct ssl_engine engine;
    bool engine_ready;
    struct ssl_run_dir rd;
    bool rd_open;
    struct ssl_train_cursor cur;
    int64_t global, local, epochs, max_steps;
    uint64_t seed;
    int64_t log_every, ckpt_every; /* read once: the step loop needs no config lookups */
    uint8_t *images;
    ssl_real *x[SSL_ENGINE_MAX_VIEWS];
    float *scratch;
    double t_log, images_since_log, t_start;
    int64_t steps_at_start;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- set-up ------------------------------------------------------------------------------- */

static enum ssl_status open_data(struct run *r, struct ssl_error *err)
{
    struct ssl_dataset_open_args a;
    ssl_dataset_args_from_config(&a, r->cfg, SSL_SPLIT_TRAIN, r->comm->world);
    enum ssl_status rc = ssl_dataset_open(&r->train, &a, err);
    if (rc) return rc;
    r->info = ssl_dataset_info(r->train);
    enum ssl_dataset_kind kind = a.kind;
    rc = ssl_aug_recipes_from_config(r->rec, &r->n_views, r->cfg, r->info, kind, err);
    if (rc) return rc;
    if (r->rec[0].out_size != ssl_config_int(r->cfg, "model.image_size"))
        return ssl_error_set(err, SSL_E_USAGE, "model.image_size=%lld but the views are %lld pixels (aug.size)",
                             (long long)ssl_config_int(r->cfg, "model.image_size"), (long long)r->rec[0].out_size);
    if (r->info->channels != ssl_config_int(r->cfg, "model.in_channels"))
        return ssl_error_set(err, SSL_E_USAGE, "model.in_channels=%lld but %s has %lld channels",
                             (long long)ssl_config_int(r->cfg, "model.in_channels"), r->info->source,
                             (long long)r->info->channels);
    bool need_test = ssl_config_int(r->cfg, "eval.every") > 0 || ssl_config_int(r->cfg, "dump.every") > 0;
    if (!need_test) return SSL_OK;
    ssl_dataset_args_from_config(&a, r->cfg, SSL_SPLIT_TEST, r->comm->world);
    return ssl_dataset_open(&r->test, &a, err);
}

static enum ssl_status setup(struct run *r, struct ssl_error *err)
{
    r->global = ssl_config_int(r->cfg, "data.batch");
    r->epochs = ssl_config_int(r->cfg, "train.epochs");
    r->max_steps = ssl_config_int(r->cfg, "train.max_steps");
    r->seed = (uint64_t)ssl_config_int(r->cfg, "run.seed");
    r->log_every = ssl_config_int(r->cfg, "train.log_every");
    r->ckpt_every = ssl_config_int(r->cfg, "ckpt.every");
    if (r->global % r->comm->size != 0)
        return ssl_error_set(err, SSL_E_USAGE, "data.batch=%lld is not divisible by the %d ranks",
                             (long long)r->global, r->comm->size);
    r->local = r->global / r->comm->size;
    if (ssl_config_int(r->cfg, "run.threads") > 0) ssl_gemm_set_threads((int)ssl_config_int(r->cfg, "run.threads"));
    enum ssl_status rc = open_data(r, err);
    if (!rc) rc = ssl_sampler_init(&r->sampler, r->info->count, r->global, r->comm->rank,
                                   r->comm->size, r->seed, err);
    if (rc) return rc;
    if (r->sampler.steps_per_epoch < 1)
        return ssl_error_set(err, SSL_E_USAGE, "data.batch=%lld is larger than the %lld training images",
                             (long long)r->global, (long long)r->info->count);
    rc = ssl_engine_init(&r->engine, r->cfg, r->local, r->sampler.steps_per_epoch, r->epochs,
                         r->comm, err);
    r->engine_ready = true;
    return rc;
}

static enum ssl_status alloc_buffers(struct run *r, struct ssl_error *err)
{
    const struct ssl_dataset_info *in = r->info;
    int64_t img = in->channels * in->height * in->width;
    r->images = malloc((size_t)(r->local * img));
    for (int v = 0; v < r->n_views; v++)
        r->x[v] = malloc((size_t)(r->local * r->engine.view_elems[v]) * sizeof(ssl_real));
    int64_t scr = 0;
    for (int v = 0; v < r->n_views; v++) {
        int64_t s = ssl_augment_scratch_elems(in->channels, in->height, in->width, &r->rec[v]);
        if (s > scr) scr = s;
    }
    r->scratch = malloc((size_t)(scr * omp_get_max_threads()) * sizeof(float));
    bool ok = r->images && r->scratch;
    for (int v = 0; v < r->n_views; v++) ok = ok && r->x[v];
    return ok ? SSL_OK : ssl_error_set(err, SSL_E_OTHER, "out of memory for the input batch");
}

static void teardown(struct run *r)
{
    free(r->images);
    for (int v = 0; v < SSL_ENGINE_MAX_VIEWS; v++) free(r->x[v]);
    free(r->scratch);
    if (r->engine_ready) ssl_engine_free(&r->engine);
    ssl_sampler_free(&r->sampler);
    if (r->train) ssl_dataset_close(r->train);
    if (r->test) ssl_dataset_close(r->test);
    if (r->rd_open) ssl_run_dir_close(&r->rd);
}

/* ---- the plan (--dry-run and the first lines of a run) ------------------------------------ */

static double memory_mib(const struct run *r)
{
    const struct ssl_engine *e = &r->engine;
    double b = 0;
    const struct ssl_params *p = &e->model.params;
    b += (double)(2 * p->n_params + p->n_buffers) * sizeof(ssl_real) + (double)e->optim.n_state * sizeof(ssl_real);
    b += (double)(e->n_views * ssl_net_view_bytes(&e->model.net) + ssl_net_work_bytes(&e->model.net));
    if (e->has_target)
        b += (double)(2 * e->target.params.n_params) * sizeof(ssl_real) +
             (double)(e->n_views * ssl_net_view_bytes(&e->target.net) + ssl_net_work_bytes(&e->target.net));
    b += (double)e->work_elems * sizeof(double) + 4.0 * (double)(e->n_views * e->micro) *
         (double)(e->model.prediction_dim > e->model.projection_dim ? e->model.prediction_dim : e->model.projection_dim) * sizeof(ssl_real);
    b += (double)(e->queue ? e->method.queue_len * e->model.projection_dim * 8 : 0);
    b += (double)r->local * (double)(r->info->channels * r->info->height * r->info->width) +
         (double)(r->n_views * r->local * e->image_elems) * sizeof(ssl_real) +
         (double)(e->has_small ? (e->n_views - e->n_large) * ssl_net_view_bytes(&e->small.net) : 0);
    return b / 1048576.0;
}

static void log_plan(const struct run *r)
{
    const struct ssl_engine *e = &r->engine;
    int64_t total = e->total_steps, planned = r->max_steps > 0 && r->max_steps < total ? r->max_steps : total;
    ssl_log(r->lg, SSL_LOG_INFO,
            "plan: method %s, %s on %s (%lld images, %lld classes), %d ranks x %lld images per "
            "step (global batch %lld, %d micro-batch%s of %lld per rank), %d views",
            ssl_method_name(e->method.kind), ssl_config_str(r->cfg, "model.backbone"),
            r->info->source, (long long)r->info->count, (long long)r->info->n_classes,
            r->comm->size, (long long)r->local, (long long)r->global, e->accumulate,
            e->accumulate > 1 ? "es" : "", (long long)e->micro, e->n_views);
    ssl_log(r->lg, SSL_LOG_INFO,
            "plan: %lld epochs x %lld steps = %lld steps%s; lr %.4g (optim.lr %.4g, %s scaling), "
            "%lld parameters, ~%.1f MiB per rank",
            (long long)r->epochs, (long long)r->sampler.steps_per_epoch, (long long)total,
            planned < total ? " (train.max_steps stops earlier)" : "", e->schedule.base_lr,
            ssl_config_float(r->cfg, "optim.lr"), ssl_config_str(r->cfg, "optim.lr_scaling"),
            (long long)e->model.params.n_params, memory_mib(r));
}

/* The keys set away from their defaults, on one line: what makes this run this run (the whole
 * resolved config is in config.yaml). */
static void log_config(const struct run *r)
{
    struct ssl_config *dflt = NULL;
    struct ssl_error e = {0};
    if (r->comm->rank != 0 || ssl_config_create(&dflt, &e) != SSL_OK) return;
    char line[4096] = "", a[256], b[256];
    size_t used = 0;
    for (int i = 0; i < ssl_config_n_keys && used < sizeof line; i++) {
        const struct ssl_key_spec *k = &ssl_config_keys[i];
        ssl_config_value_text(r->cfg, k, a, sizeof a);
        ssl_config_value_text(dflt, k, b, sizeof b);
        if (strcmp(a, b) != 0)
            used += (size_t)snprintf(line + used, sizeof line - used, " %s=%s", k->key, a);
    }
    ssl_config_free(dflt);
    ssl_log(r->lg, SSL_LOG_INFO, "config (non-default keys):%s", line[0] ? line : " none");
}

/* ---- resume ------------------------------------------------------------------------------- */

static enum ssl_status resume(struct run *r, struct ssl_error *err)
{
    const char *how = ssl_config_str(r->cfg, "run.resume");
    r->cur = (struct ssl_train_cursor){0};
    if (strcmp(how, "never") == 0) return SSL_OK;
    const char *path = how;
    struct ssl_ckpt_found found;
    if (strcmp(how, "auto") == 0) {
        enum ssl_status rc = ssl_ckpt_find_resumable(r->rd.ckpt, r->comm, &found, err);
        if (rc) return rc;
        if (found.n_rejected > 0)
            ssl_log(r->lg, SSL_LOG_WARN, "resume: %s", found.warning);
        if (!found.found) return SSL_OK;
        path = found.path;
    }
    enum ssl_status rc = ssl_train_ckpt_load(&r->engine, &r->cur, r->cfg, path, r->comm, err);
    if (!rc)
        ssl_log(r->lg, SSL_LOG_INFO, "resumed from %s: step %lld, epoch %lld (+%lld steps)", path,
                (long long)r->cur.step, (long long)r->cur.epoch, (long long)r->cur.epoch_step);
    return rc;
}

/* ---- logging ------------------------------------------------------------------------------ */

static void add_number(cJSON *o, const char *name, double v)
{
    if (isfinite(v)) cJSON_AddNumberToObject(o, name, v);
    else cJSON_AddNullToObject(o, name);
}

static void write_json(const struct run *r, cJSON *o)
{
    char *text = cJSON_PrintUnformatted(o);
    if (text && r->rd.metrics) {
        fprintf(r->rd.metrics, "%s\n", text);
        fflush(r->rd.metrics); /* a preempted job keeps every line it logged */
    }
    free(text);
    cJSON_Delete(o);
}

static void log_step(struct run *r, const struct ssl_step_result *s, int64_t epoch)
{
    double t = now_s(), ips = r->images_since_log / (t - r->t_log);
    r->t_log = t;
    r->images_since_log = 0;
    if (r->comm->rank != 0) return;
    cJSON *o = cJSON_CreateObject(), *terms = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)r->cur.step);
    cJSON_AddNumberToObject(o, "epoch", (double)epoch);
    add_number(o, "loss", s->loss);
    add_number(terms, ssl_method_name(r->engine.method.kind), s->main);
    if (s->w2_weight > 0) add_number(terms, "w2", s->w2);
    if (s->uniformity_weight > 0) add_number(terms, "uniformity", s->uniformity);
    if (s->alignment_weight > 0) add_number(terms, "alignment", s->alignment);
    cJSON_AddItemToObject(o, "terms", terms);
    add_number(o, "lr", s->lr);
    add_number(o, "grad_norm", s->grad_norm);
    add_number(o, "images_per_s", ips);
    if (s->skipped) cJSON_AddBoolToObject(o, "skipped", 1);
    write_json(r, o);
    int64_t total = r->engine.total_steps;
    if (r->max_steps > 0 && r->max_steps < total) total = r->max_steps;
    double done = (double)(r->cur.step - r->steps_at_start), left = (double)(total - r->cur.step);
    double eta = done > 0 ? (t - r->t_start) / done * left : 0;
    char bar[24] = "";
    if (isatty(fileno(stdout))) {
        int filled = (int)(20.0 * (double)r->cur.step / (double)(total > 0 ? total : 1));
        for (int i = 0; i < 20; i++) bar[i] = i < filled ? '#' : '.';
        bar[20] = ' ';
    }
    ssl_log(r->lg, SSL_LOG_INFO, "%sstep %lld/%lld epoch %lld loss %.5g lr %.4g |g| %.3g %.0f img/s ETA %.0fm%02.0fs",
            bar, (long long)r->cur.step, (long long)total, (long long)epoch, s->loss, s->lr,
            s->grad_norm, ips, floor(eta / 60), fmod(eta, 60));
}

static void log_eval(const struct run *r, int64_t epoch, const struct ssl_eval_report *e)
{
    if (r->comm->rank != 0) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "epoch", (double)epoch);
    cJSON_AddNumberToObject(o, "step", (double)r->cur.step);
    add_number(o, "knn_top1", e->knn_top1);
    add_number(o, "knn_top5", e->knn_top5);
    add_number(o, "linear_top1", e->linear_top1);
    add_number(o, "linear_top5", e->linear_top5);
    add_number(o, "w2", e->w2);
    add_number(o, "uniformity", e->uniformity);
    add_number(o, "alignment", e->alignment);
    add_number(o, "effective_rank", e->effective_rank);
    add_number(o, "z_std", e->z_std);
    write_json(r, o);
    ssl_log(r->lg, SSL_LOG_INFO,
            "epoch %lld: knn top1 %.2f%% linear top1 %.2f%% | w2 %.4f uniformity %.4f alignment %.4f "
            "effective rank %.2f z_std %.4f",
            (long long)epoch, e->knn_top1, e->linear_top1, e->w2, e->uniformity, e->alignment,
            e->effective_rank, e->z_std);
}

/* ---- the loop ----------------------------------------------------------------------------- */

static enum ssl_status save(struct run *r, struct ssl_error *err)
{
    return ssl_train_ckpt_write(&r->engine, &r->cur, r->cfg, r->rd.ckpt,
                                (int)ssl_config_int(r->cfg, "ckpt.keep"), r->comm, err);
}

/* This rank's views of step s of the current epoch into r->x. */
static enum ssl_status load_views(struct run *r, int64_t epoch, int64_t s, struct ssl_error *err)
{
    const int64_t *idx = ssl_sampler_local(&r->sampler, s);
    const struct ssl_dataset_info *in = r->info;
    enum ssl_status rc = ssl_dataset_read(r->train, idx, r->local, r->images, NULL, err);
    if (rc) return rc;
    for (int v = 0; v < r->n_views; v++)
        ssl_augment_batch(r->x[v], r->images, idx, r->local, in->channels, in->height, in->width,
                          &r->rec[v], r->seed,
                          (uint32_t)epoch, (uint32_t)v, r->scratch);
    return SSL_OK;
}

/* Every rank agrees whether a stop signal arrived (they may see it at different steps). */
static int agreed_signal(const struct run *r)
{
    int sig = ssl_signals_pending(), any = 0;
    MPI_Allreduce(&sig, &any, 1, MPI_INT, MPI_MAX, r->comm->world);
    return any;
}

static enum ssl_status epoch_end(struct run *r, int64_t epoch, struct ssl_error *err)
{
    int64_t every = ssl_config_int(r->cfg, "eval.every");
    enum ssl_status rc = SSL_OK;
    if (every > 0 && ((epoch + 1) % every == 0 || epoch + 1 == r->epochs)) {
        struct ssl_eval_report rep;
        rc = ssl_train_evaluate(&rep, &r->engine.model, r->train, r->test, r->rec, r->cfg,
                                r->comm, err);
        if (!rc) log_eval(r, epoch, &rep);
    }
    int64_t dump = ssl_config_int(r->cfg, "dump.every");
    if (!rc && dump > 0 && ((epoch + 1) % dump == 0 || epoch + 1 == r->epochs)) {
        char path[SSL_RUN_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/embeddings-epoch%04lld.h5", r->rd.path, (long long)epoch);
        rc = ssl_train_dump(path, &r->engine.model, r->test, SSL_SPLIT_TEST, r->rec, r->cfg,
                            r->cur.step, epoch, r->comm, err);
        if (!rc) ssl_log(r->lg, SSL_LOG_INFO, "dumped the test split's embeddings to %s", path);
    }
    r->cur.epoch = epoch + 1;
    r->cur.epoch_step = 0;
    return rc ? rc : save(r, err);
}

static enum ssl_status stop_on_signal(struct run *r, int sig, struct ssl_error *err)
{
    enum ssl_status rc = save(r, err);
    if (rc) return rc;
    char why[128];
    snprintf(why, sizeof why, "%s at step %lld", ssl_signal_name(sig), (long long)r->cur.step);
    ssl_run_dir_mark_requeue(&r->rd, why, r->comm);
    ssl_log(r->lg, SSL_LOG_INFO, "%s: checkpointed at step %lld; exiting with status 85 (requeue)",
            ssl_signal_name(sig), (long long)r->cur.step);
    return ssl_error_set(err, SSL_E_REQUEUE, "stopped by %s after checkpointing step %lld",
                         ssl_signal_name(sig), (long long)r->cur.step);
}

static enum ssl_status train_step(struct run *r, int64_t epoch, int64_t s, struct ssl_error *err)
{
    struct ssl_step_result res;
    enum ssl_status rc = load_views(r, epoch, s, err);
    if (!rc) rc = ssl_engine_step(&r->engine, r->x, epoch, &res, err);
    if (rc == SSL_E_NONFINITE)
        ssl_log(r->lg, SSL_LOG_ERROR, "%s; the last good checkpoint is kept in %s", err->msg, r->rd.ckpt);
    if (rc) return rc;
    r->cur.step++;
    r->cur.epoch_step = s + 1;
    r->images_since_log += (double)r->global;
    if (res.skipped)
        ssl_log(r->lg, SSL_LOG_WARN, "step %lld: non-finite loss or gradient, step skipped",
                (long long)r->cur.step - 1);
    if (r->cur.step % r->log_every == 0 || res.skipped)
        log_step(r, &res, epoch);
    if (r->ckpt_every > 0 && r->cur.step % r->ckpt_every == 0 && s + 1 < r->sampler.steps_per_epoch) rc = save(r, err);
    return rc;
}

static enum ssl_status loop(struct run *r, struct ssl_error *err)
{
    r->t_start = r->t_log = now_s();
    r->steps_at_start = r->cur.step;
    for (int64_t epoch = r->cur.epoch; epoch < r->epochs; epoch++) {
        ssl_sampler_set_epoch(&r->sampler, epoch);
        for (int64_t s = r->cur.epoch_step; s < r->sampler.steps_per_epoch; s++) {
            if (r->max_steps > 0 && r->cur.step >= r->max_steps) return save(r, err);
            enum ssl_status rc = train_step(r, epoch, s, err);
            if (rc) return rc;
            int sig = agreed_signal(r);
            if (sig) return stop_on_signal(r, sig, err);
        }
        enum ssl_status rc = epoch_end(r, epoch, err);
        if (rc) return rc;
    }
    return SSL_OK;
}

enum ssl_status ssl_train_run(const struct ssl_config *cfg, const char *job_path, bool dry_run,
                              const struct ssl_comm *comm, const struct ssl_logger *lg,
                              struct ssl_error *err)
{
    struct run r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg, r.comm = comm, r.lg = lg;
    enum ssl_status rc = setup(&r, err);
    if (!rc) log_config(&r);
    if (!rc) log_plan(&r);
    if (!rc && !dry_run) rc = alloc_buffers(&r, err);
    if (!rc && !dry_run) {
        rc = ssl_run_dir_open(&r.rd, cfg, job_path, comm, err);
        r.rd_open = rc == SSL_OK;
    }
    if (!rc && !dry_run) {
        ssl_log(lg, SSL_LOG_INFO, "run directory %s", r.rd.path);
        ssl_signals_install();
        rc = resume(&r, err);
    }
    if (!rc && !dry_run) rc = loop(&r, err);
    if (!rc && !dry_run)
        ssl_log(lg, SSL_LOG_INFO, "finished: %lld steps; run directory %s", (long long)r.cur.step,
                r.rd.path);
    teardown(&r);
    return rc;
}

enum ssl_status ssl_train_check(const struct ssl_config *cfg, const struct ssl_comm *comm,
                                const struct ssl_logger *lg, struct ssl_error *err)
{
    struct ssl_method m;
    int64_t global = ssl_config_int(cfg, "data.batch"), acc = ssl_config_int(cfg, "optim.accumulate");
    enum ssl_status rc = ssl_method_from_config(&m, cfg, err);
    if (!rc && global % ((int64_t)comm->size * acc) != 0)
        rc = ssl_error_set(err, SSL_E_USAGE, "data.batch=%lld does not split over %d ranks x "
                           "optim.accumulate=%lld micro-batches", (long long)global, comm->size,
                           (long long)acc);
    struct ssl_model_cfg mc;
    struct ssl_model model;
    if (!rc) rc = ssl_model_cfg_from_config(&mc, cfg, err);
    if (!rc) {
        mc.prototypes = m.kind == SSL_METHOD_SWAV ? m.prototypes : 0;
        /* shapes do not depend on the batch: 2 rows (BatchNorm's minimum) keep the check cheap
         * even for the large-batch jobs; the per-rank batch is checked above */
        int64_t micro = global / comm->size / acc;
        if (micro < 2)
            rc = ssl_error_set(err, SSL_E_USAGE, "data.batch=%lld gives %lld rows per rank and "
                               "micro-batch: BatchNorm needs at least 2", (long long)global,
                               (long long)micro);
        else
            rc = ssl_model_build(&model, &mc, 2, m.n_views, err);
        if (!rc) {
            ssl_log(lg, SSL_LOG_INFO, "check: method %s, %s, %lld parameters, %d views, global batch %lld: ok",
                    ssl_method_name(m.kind), ssl_config_str(cfg, "model.backbone"),
                    (long long)model.params.n_params, m.n_views, (long long)global);
            ssl_model_free(&model);
        }
    }
    return rc;
}
