/* cmd_train.c: `ssltrain dump` and `ssltrain eval` (cmd_train.h). */
#include "cmd_train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "data_config.h"
#include "model_config.h"
#include "models/model.h"
#include "train_ckpt.h"
#include "train_dump.h"
#include "train_eval.h"

enum { EVAL_BATCH = 256 }; /* rows per forward of the eval-mode model */

/* What both commands hold: the checkpoint's config with overrides, its model, a dataset. */
struct loaded {
    struct ssl_config *cfg;
    struct ssl_model model;
    bool model_ready;
    struct ssl_dataset *train, *test;
    struct ssl_aug_recipe rec[SSL_MAX_VIEWS];
};

static enum ssl_status load_config(struct loaded *l, const char *ckpt, const char *const *pre,
                                   int n_pre, int n_over, char **over, const struct ssl_comm *comm,
                                   struct ssl_error *err)
{
    char *text = NULL;
    enum ssl_status rc = ssl_train_ckpt_config(&text, ckpt, comm, err);
    if (!rc) rc = ssl_config_create(&l->cfg, err);
    if (!rc) rc = ssl_config_parse_serialized(l->cfg, text, ckpt, err);
    for (int i = 0; i < n_pre && !rc; i++) rc = ssl_config_set_arg(l->cfg, pre[i], err);
    for (int i = 0; i < n_over && !rc; i++) {
        if (strchr(over[i], '=') == NULL)
            rc = ssl_error_set(err, SSL_E_USAGE, "unexpected argument '%s' (expected key=value)", over[i]);
        else
            rc = ssl_config_set_arg(l->cfg, over[i], err);
    }
    free(text);
    return rc;
}

static enum ssl_status open_split(struct ssl_dataset **ds, const struct ssl_config *cfg,
                                  enum ssl_split split, const struct ssl_comm *comm,
                                  struct ssl_error *err)
{
    struct ssl_dataset_open_args a;
    ssl_dataset_args_from_config(&a, cfg, split, comm->world);
    return ssl_dataset_open(ds, &a, err);
}

static enum ssl_status load(struct loaded *l, const char *ckpt, const char *const *pre, int n_pre,
                            int n_over, char **over, bool need_train, const struct ssl_comm *comm,
                            struct ssl_error *err)
{
    enum ssl_status rc = load_config(l, ckpt, pre, n_pre, n_over, over, comm, err);
    struct ssl_model_cfg mc;
    if (!rc) rc = ssl_model_cfg_from_config(&mc, l->cfg, err);
    if (!rc) rc = ssl_model_build(&l->model, &mc, EVAL_BATCH, 1, err);
    l->model_ready = rc == SSL_OK;
    if (!rc) rc = ssl_train_ckpt_load_model(&l->model, NULL, ckpt, comm, err);
    if (!rc) rc = open_split(&l->test, l->cfg, SSL_SPLIT_TEST, comm, err);
    if (!rc && need_train) rc = open_split(&l->train, l->cfg, SSL_SPLIT_TRAIN, comm, err);
    int n_views = 0;
    struct ssl_dataset_open_args a;
    if (!rc) ssl_dataset_args_from_config(&a, l->cfg, SSL_SPLIT_TEST, comm->world);
    if (!rc) rc = ssl_aug_recipes_from_config(l->rec, &n_views, l->cfg, ssl_dataset_info(l->test), a.kind, err);
    return rc;
}

static void unload(struct loaded *l)
{
    if (l->train) ssl_dataset_close(l->train);
    if (l->test) ssl_dataset_close(l->test);
    if (l->model_ready) ssl_model_free(&l->model);
    ssl_config_free(l->cfg);
}

enum ssl_status ssl_cmd_dump(const char *ckpt, const char *out, const char *split, int n_over,
                             char **over, const struct ssl_comm *comm,
                             const struct ssl_logger *lg, struct ssl_error *err)
{
    if (out == NULL) return ssl_error_set(err, SSL_E_USAGE, "dump needs --out EMB.h5");
    bool train = split && strcmp(split, "train") == 0;
    if (split && !train && strcmp(split, "test") != 0)
        return ssl_error_set(err, SSL_E_USAGE, "--split: '%s' is not train or test", split);
    struct loaded l = {0};
    enum ssl_status rc = load(&l, ckpt, NULL, 0, n_over, over, train, comm, err);
    int64_t step = 0, epoch = 0;
    if (!rc)
        rc = ssl_train_dump(out, &l.model, train ? l.train : l.test,
                            train ? SSL_SPLIT_TRAIN : SSL_SPLIT_TEST, l.rec, l.cfg, step, epoch,
                            comm, err);
    if (!rc) ssl_log(lg, SSL_LOG_INFO, "wrote %s (%s split of %s)", out, train ? "train" : "test", ckpt);
    unload(&l);
    return rc;
}

static void print_eval(const struct ssl_eval_report *r, const char *ckpt, bool json)
{
    if (!json) {
        printf("%s: kNN (k=20, T=0.07) top1 %.2f%% top5 %.2f%% | linear probe top1 %.2f%% top5 %.2f%% "
               "| w2 %.4f uniformity %.4f alignment %.4f effective rank %.2f z_std %.4f\n",
               ckpt, r->knn_top1, r->knn_top5, r->linear_top1, r->linear_top5, r->w2,
               r->uniformity, r->alignment, r->effective_rank, r->z_std);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "checkpoint", ckpt);
    const char *names[] = {"knn_top1", "knn_top5", "linear_top1", "linear_top5", "w2",
                           "uniformity", "alignment", "effective_rank", "z_std"};
    double v[] = {r->knn_top1, r->knn_top5, r->linear_top1, r->linear_top5, r->w2,
                  r->uniformity, r->alignment, r->effective_rank, r->z_std};
    for (int i = 0; i < 9; i++) {
        if (isfinite(v[i])) cJSON_AddNumberToObject(o, names[i], v[i]);
        else cJSON_AddNullToObject(o, names[i]);
    }
    char *text = cJSON_PrintUnformatted(o);
    if (text) puts(text);
    free(text);
    cJSON_Delete(o);
}

enum ssl_status ssl_cmd_eval(const char *ckpt, int n_over, char **over, bool json,
                             const struct ssl_comm *comm, const struct ssl_logger *lg,
                             struct ssl_error *err)
{
    (void)lg;
    /* the whole splits unless the command line says otherwise */
    static const char *const all[] = {"eval.train_samples=0", "eval.test_samples=0",
                                      "eval.linear_epochs=30"};
    struct loaded l = {0};
    enum ssl_status rc = load(&l, ckpt, all, 3, n_over, over, true, comm, err);
    struct ssl_eval_report rep;
    if (!rc) rc = ssl_train_evaluate(&rep, &l.model, l.train, l.test, l.rec, l.cfg, comm, err);
    if (!rc && comm->rank == 0) print_eval(&rep, ckpt, json);
    unload(&l);
    return rc;
}
