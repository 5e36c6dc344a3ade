/* train_eval.c: end-of-epoch evaluation (train_eval.h). */
#include "train_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "eval_features.h"
#include "metrics.h"

enum { SUBSET_TRAIN = 1, SUBSET_TEST = 2 };

/* The held-out batch metrics; every rank extracts the same rows (no communication needed). */
static enum ssl_status heldout_metrics(struct ssl_eval_report *rep, struct ssl_model *m,
                                       struct ssl_dataset *test, const struct ssl_aug_recipe *rec,
                                       const struct ssl_config *cfg, const struct ssl_comm *comm,
                                       struct ssl_error *err)
{
    int64_t count = ssl_dataset_info(test)->count, n = ssl_config_int(cfg, "eval.metrics_batch");
    if (n > count) n = count;
    uint64_t seed = (uint64_t)ssl_config_int(cfg, "run.seed");
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    if (idx == NULL) return ssl_error_set(err, SSL_E_OTHER, "out of memory for the held-out batch");
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    struct ssl_aug_recipe plain = ssl_plain_recipe(&rec[0]);
    struct ssl_features f = {0}, a = {0}, b = {0};
    enum ssl_status rc = ssl_features_extract(&f, m, test, &plain, seed, 0, idx, n, comm, err);
    if (!rc) rc = ssl_features_extract(&a, m, test, &rec[0], seed, 0, idx, n, comm, err);
    if (!rc) rc = ssl_features_extract(&b, m, test, &rec[1], seed, 1, idx, n, comm, err);
    double *work = rc ? NULL : malloc((size_t)ssl_metrics_work_elems(n, f.dz) * sizeof *work);
    if (!rc && work == NULL) rc = ssl_error_set(err, SSL_E_OTHER, "out of memory for the metrics");
    struct ssl_metrics mt;
    if (!rc && ssl_metrics_compute(&mt, f.z, n, f.dz, work) != 0)
        rc = ssl_error_set(err, SSL_E_NONFINITE, "collapse metrics of the held-out batch are not finite");
    if (!rc) {
        rep->w2 = mt.w2;
        rep->uniformity = mt.uniformity;
        rep->effective_rank = mt.effective_rank;
        rep->z_std = mt.z_std_mean;
        rep->alignment = ssl_metric_alignment(a.z, b.z, n, f.dz, 2.0);
    }
    free(work);
    free(idx);
    ssl_features_free(&f);
    ssl_features_free(&a);
    ssl_features_free(&b);
    return rc;
}

static int32_t *labels32(const struct ssl_features *f)
{
    int32_t *l = malloc((size_t)(f->n > 0 ? f->n : 1) * sizeof *l);
    for (int64_t i = 0; l && i < f->n; i++) l[i] = (int32_t)f->labels[i];
    return l;
}

/* kNN and the linear probe on backbone features of fixed subsets, sharded over the ranks. */
static enum ssl_status classify(struct ssl_eval_report *rep, struct ssl_model *m,
                                struct ssl_dataset *train, struct ssl_dataset *test,
                                const struct ssl_aug_recipe *rec, const struct ssl_config *cfg,
                                const struct ssl_comm *comm, struct ssl_error *err)
{
    uint64_t seed = (uint64_t)ssl_config_int(cfg, "run.seed");
    int64_t ntr = 0, nte = 0;
    int64_t *itr = ssl_eval_subset(&ntr, ssl_dataset_info(train)->count,
                                   ssl_config_int(cfg, "eval.train_samples"), seed, SUBSET_TRAIN, comm);
    int64_t *ite = ssl_eval_subset(&nte, ssl_dataset_info(test)->count,
                                   ssl_config_int(cfg, "eval.test_samples"), seed, SUBSET_TEST, comm);
    struct ssl_aug_recipe plain = ssl_plain_recipe(&rec[0]);
    struct ssl_features ftr = {0}, fte = {0};
    enum ssl_status rc = itr && ite ? SSL_OK : ssl_error_set(err, SSL_E_OTHER, "out of memory for the eval subsets");
    if (!rc) rc = ssl_features_extract(&ftr, m, train, &plain, seed, 0, itr, ntr, comm, err);
    if (!rc) rc = ssl_features_extract(&fte, m, test, &plain, seed, 0, ite, nte, comm, err);
    int32_t *ltr = rc ? NULL : labels32(&ftr), *lte = rc ? NULL : labels32(&fte);
    int classes = (int)ssl_dataset_info(train)->n_classes;
    struct ssl_eval_acc knn = {0}, lin = {0};
    if (!rc)
        rc = ssl_knn_eval(&knn, ftr.h, ltr, ntr, fte.h, lte, nte, ftr.dh, classes,
                          (int)ssl_config_int(cfg, "eval.knn_k"),
                          ssl_config_float(cfg, "eval.knn_temperature"), comm, err);
    if (!rc) {
        rep->knn_top1 = knn.top1, rep->knn_top5 = knn.top5;
        rep->n_train = knn.n, rep->n_test = knn.n;
    }
    struct ssl_linear_probe_opts lo = ssl_linear_probe_defaults();
    lo.epochs = (int)ssl_config_int(cfg, "eval.linear_epochs");
    lo.lr = ssl_config_float(cfg, "eval.linear_lr");
    lo.seed = seed;
    if (!rc && lo.epochs > 0) {
        rc = ssl_linear_probe_eval(&lin, ftr.h, ltr, ntr, fte.h, lte, nte, ftr.dh, classes, &lo,
                                   NULL, NULL, NULL, comm, err);
        if (!rc) rep->linear_top1 = lin.top1, rep->linear_top5 = lin.top5;
    }
    free(itr);
    free(ite);
    free(ltr);
    free(lte);
    ssl_features_free(&ftr);
    ssl_features_free(&fte);
    return rc;
}

enum ssl_status ssl_train_evaluate(struct ssl_eval_report *rep, struct ssl_model *m,
                                   struct ssl_dataset *train, struct ssl_dataset *test,
                                   const struct ssl_aug_recipe *recipes,
                                   const struct ssl_config *cfg, const struct ssl_comm *comm,
                                   struct ssl_error *err)
{
    *rep = (struct ssl_eval_report){.knn_top1 = NAN, .knn_top5 = NAN, .linear_top1 = NAN,
                                    .linear_top5 = NAN, .w2 = NAN, .uniformity = NAN,
                                    .alignment = NAN, .effective_rank = NAN, .z_std = NAN};
    enum ssl_status rc = heldout_metrics(rep, m, test, recipes, cfg, comm, err);
    if (!rc) rc = classify(rep, m, train, test, recipes, cfg, comm, err);
    return rc;
}
