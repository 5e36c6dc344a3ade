/* train_eval.h: what the trainer measures at the end of an epoch and `ssltrain eval` reports.
 *
 *   - on a fixed held-out batch (the first eval.metrics_batch test images, un-augmented,
 *     replicated on every rank): W2, uniformity, effective rank and the per-dimension std of
 *     n(z) (src/metrics.h); alignment between two augmented views of those images (views 0
 *     and 1 of the training recipes, keyed by (seed, epoch 0, index, view));
 *   - weighted kNN and a linear probe (src/eval.h) on backbone features of eval.train_samples
 *     training and eval.test_samples test images (fixed random subsets), sharded over ranks. */
#ifndef SSL_TRAIN_EVAL_H
#define SSL_TRAIN_EVAL_H

#include <stdint.h>

#include "augment.h"
#include "check.h"
#include "comm.h"
#include "config.h"
#include "dataset.h"
#include "models/model.h"

struct ssl_eval_report {
    double knn_top1, knn_top5, linear_top1, linear_top5; /* NAN when not run */
    double w2, uniformity, alignment, effective_rank, z_std;
    int64_t n_train, n_test;
};

/* Collective. recipes: the training views (at least 2). */
enum ssl_status ssl_train_evaluate(struct ssl_eval_report *rep, struct ssl_model *m,
                                   struct ssl_dataset *train, struct ssl_dataset *test,
                                   const struct ssl_aug_recipe *recipes,
                                   const struct ssl_config *cfg, const struct ssl_comm *comm,
                                   struct ssl_error *err);

#endif
