/* eval.h: evaluation of frozen features, distributed over the ranks: the weighted kNN classifier
 * of solo-learn and a linear probe (docs/EVALUATION.md has the formulas and sources).
 *
 * Data layout (every function below): rank r holds a contiguous block of the global train set
 * and a contiguous block of the global test set, the blocks in rank order (rank 0 first), as
 * row-major float (n_local, d) features and int32 labels in [0, n_classes). A rank may hold no
 * rows of either split; the global splits must not be empty.
 *
 * Invariants:
 *   - every function taking a comm is COLLECTIVE over comm->world: all ranks call it with the
 *     same d, n_classes and options, and all return the same status and message (a bad label
 *     found on one rank is reported by every rank);
 *   - results are a pure function of the GLOBAL data and the options, whatever the rank count:
 *     kNN accuracies exactly (neighbours are ranked by fp64 similarities with ties to the lower
 *     global train index), the linear probe up to floating-point rounding (the sum over ranks
 *     is MPI's);
 *   - accumulation is fp64; nothing here uses a random number that depends on the rank. */
#ifndef SSL_EVAL_H
#define SSL_EVAL_H

#include <stdint.h>

#include "check.h"
#include "comm.h"

/* Accuracies in percent over the n global test rows. */
struct ssl_eval_acc {
    double top1, top5;
    int64_t n;
};

/* solo-learn's defaults (WeightedKNNClassifier: k = 20, T = 0.07, cosine). */
#define SSL_KNN_DEFAULT_K 20
#define SSL_KNN_DEFAULT_TEMPERATURE 0.07

/* Collective. Weighted kNN: rows L2-normalised, similarity = cosine, the k most similar global
 * train rows of each test row vote with weight exp(sim / temperature), classes ranked by their
 * summed weight (ties: lower class first). Acc@5 looks at the first min(5, k, n_classes)
 * classes. k larger than the global train set is clamped to it (as solo-learn does).
 * Errors: k < 1, temperature <= 0, d < 1 or n_classes < 2 -> SSL_E_USAGE; a label out of range,
 * a non-finite feature or an empty global split -> SSL_E_DATA. Memory per rank: the global
 * normalised train set (n_train_global, d) floats plus fixed buffers (a 1 MiB similarity block,
 * candidate lists of about 4k per test row of a 256-row chunk); the global train split must
 * have at most INT_MAX rows (MPI displacements). The neighbour selection runs on
 * omp_get_max_threads() OpenMP threads; the result does not depend on their number. */
enum ssl_status ssl_knn_eval(struct ssl_eval_acc *acc, const float *train /* (n_train, d) */,
                             const int32_t *train_labels /* (n_train) */, int64_t n_train,
                             const float *test /* (n_test, d) */,
                             const int32_t *test_labels /* (n_test) */, int64_t n_test, int64_t d,
                             int n_classes, int k, double temperature, const struct ssl_comm *comm,
                             struct ssl_error *err);

struct ssl_linear_probe_opts {
    int epochs;
    int64_t batch;        /* global mini-batch; the last batch of an epoch may be smaller */
    double lr;            /* peak learning rate, cosine-annealed to 0 over all steps */
    double momentum;      /* SGD momentum (torch semantics), in [0, 1) */
    double weight_decay;  /* L2 added to the gradient of weight and bias (torch SGD) */
    uint64_t seed;        /* the batch permutation of epoch e is keyed by (seed, e) */
};

/* epochs 100, batch 256, lr 0.1, momentum 0.9, weight_decay 0, seed 0. */
struct ssl_linear_probe_opts ssl_linear_probe_defaults(void);

/* Collective. Per-feature mean and population std of the GLOBAL rows x (two passes, fp64 sums
 * over all ranks). A feature whose std is below 1e-12 gets std 1 (it is then only centred).
 * mean and std are (d), identical on every rank. Non-finite values -> SSL_E_DATA. */
enum ssl_status ssl_eval_standardize_stats(double *mean /* (d) */, double *std /* (d) */,
                                           const float *x /* (n, d) */, int64_t n, int64_t d,
                                           const struct ssl_comm *comm, struct ssl_error *err);

/* Not collective, pure. Softmax cross-entropy of the linear layer logits = x w^T + b on the rows
 * x (n, d) with labels y: returns the SUM over the rows of -log softmax(logits)[y] and ADDS the
 * sum over the rows of the gradients into gw (n_classes, d) and gb (n_classes) (either may be
 * NULL). logits (n, n_classes) is the caller's scratch. Labels must be in range (SSL_ASSERT). */
double ssl_linear_probe_loss_grad(const double *x, const int32_t *y, int64_t n, int64_t d,
                                  int n_classes, const double *w /* (n_classes, d) */,
                                  const double *b /* (n_classes) */, double *gw, double *gb,
                                  double *logits);

/* Collective. Linear probe: features standardised with the train split's global mean/std,
 * a linear layer d -> n_classes (zero init) trained with softmax cross-entropy by SGD with
 * momentum on a cosine schedule, mini-batches taken in the order of a permutation of the
 * GLOBAL train set keyed by (seed, epoch); each rank contributes the gradient of its own rows
 * of the batch, summed over ranks and divided by the global batch size. acc gets the test split's
 * Acc@1 / Acc@5 (first min(5, n_classes) classes, ties to the lower class). weight_out
 * (n_classes, d) and bias_out (n_classes), in the standardised feature space, may be NULL;
 * final_loss (may be NULL) gets the mean train loss over the batches of the last epoch.
 * Errors: bad options, d < 1, n_classes < 2 -> SSL_E_USAGE; bad labels, non-finite features or
 * an empty global split -> SSL_E_DATA; a non-finite loss -> SSL_E_NONFINITE. */
enum ssl_status ssl_linear_probe_eval(struct ssl_eval_acc *acc, const float *train /* (n_train, d) */,
                                      const int32_t *train_labels, int64_t n_train,
                                      const float *test /* (n_test, d) */,
                                      const int32_t *test_labels, int64_t n_test, int64_t d,
                                      int n_classes, const struct ssl_linear_probe_opts *o,
                                      double *weight_out, double *bias_out, double *final_loss,
                                      const struct ssl_comm *comm, struct ssl_error *err);

/* Shared by both evaluations (eval_knn.c). Collective: if any rank's status is not SSL_OK, the
 * first such rank's status and message are given to every rank; returns the common status. */
enum ssl_status ssl_eval_agree(enum ssl_status local, const struct ssl_comm *comm,
                               struct ssl_error *err);
/* Not collective: SSL_E_DATA naming `what` and the global row if a label is outside
 * [0, n_classes). row0 is the global index of labels[0]. */
enum ssl_status ssl_eval_check_labels(const int32_t *labels, int64_t n, int64_t row0,
                                      int n_classes, const char *what, struct ssl_error *err);
/* Not collective: SSL_E_DATA naming `what` and the global row if a value is NaN or infinite. */
enum ssl_status ssl_eval_check_finite(const float *x, int64_t n, int64_t d, int64_t row0,
                                      const char *what, struct ssl_error *err);
/* Collective. Global row count and this rank's first global row. */
void ssl_eval_rows(int64_t *n_global, int64_t *row0, int64_t n_local, const struct ssl_comm *comm);

#endif
