/* eval_linear.c: the linear probe on frozen features, distributed over the ranks.
 *
 * Everything after the input is fp64: the standardised features, the layer, the gradients.
 * Each step every rank computes the summed gradient of ITS rows of the global mini-batch
 * (the batch is a slice of a permutation of the global train set, keyed by (seed, epoch) and
 * identical on every rank); one MPI_Allreduce of [dW, db, loss] sums them and every rank divides
 * by the global batch size and applies the same SGD update, so the weights stay identical on all
 * ranks and equal (to rounding) what one process computes on the whole train set. */
#include "eval.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "rng.h"

struct ssl_linear_probe_opts ssl_linear_probe_defaults(void)
{
    return (struct ssl_linear_probe_opts){
        .epochs = 100, .batch = 256, .lr = 0.1, .momentum = 0.9, .weight_decay = 0, .seed = 0};
}

/* The layer, its momentum and the packed reduction buffer [gw (C, d), gb (C), loss]. */
struct probe {
    int64_t d;
    int n_classes;
    double *w, *b;       /* (C, d), (C) */
    double *mw, *mb;     /* momentum buffers, same shapes */
    double *grad;        /* (C * d + C + 1) */
    double *xb, *logits; /* (batch, d), (batch, C): this rank's rows of a batch */
    int32_t *yb;         /* (batch) */
    int64_t *perm;       /* (N) */
};

static enum ssl_status probe_check_opts(const struct ssl_linear_probe_opts *o, int64_t d,
                                        int n_classes, struct ssl_error *err)
{
    if (d < 1) return ssl_error_set(err, SSL_E_USAGE, "linear probe: feature dimension %lld < 1", (long long)d);
    if (n_classes < 2) return ssl_error_set(err, SSL_E_USAGE, "linear probe: n_classes %d < 2", n_classes);
    if (o->epochs < 1) return ssl_error_set(err, SSL_E_USAGE, "linear probe: epochs %d < 1", o->epochs);
    if (o->batch < 1) return ssl_error_set(err, SSL_E_USAGE, "linear probe: batch %lld < 1", (long long)o->batch);
    if (!(o->lr > 0) || !isfinite(o->lr))
        return ssl_error_set(err, SSL_E_USAGE, "linear probe: lr %g is not positive", o->lr);
    if (!(o->momentum >= 0 && o->momentum < 1))
        return ssl_error_set(err, SSL_E_USAGE, "linear probe: momentum %g is outside [0, 1)", o->momentum);
    if (!(o->weight_decay >= 0) || !isfinite(o->weight_decay))
        return ssl_error_set(err, SSL_E_USAGE, "linear probe: weight_decay %g is negative", o->weight_decay);
    return SSL_OK;
}

enum ssl_status ssl_eval_standardize_stats(double *mean, double *std, const float *x, int64_t n,
                                           int64_t d, const struct ssl_comm *comm,
                                           struct ssl_error *err)
{
    int64_t n_all, row0;
    ssl_eval_rows(&n_all, &row0, n, comm);
    enum ssl_status s = ssl_eval_check_finite(x, n, d, row0, "standardisation:", err);
    s = ssl_eval_agree(s, comm, err);
    if (s != SSL_OK) return s;
    if (n_all == 0) return ssl_error_set(err, SSL_E_DATA, "standardisation: no rows");
    /* Two passes (mean, then squared deviations): no cancellation for features far from 0. */
    for (int64_t j = 0; j < d; j++) mean[j] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) mean[j] += (double)x[i * d + j];
    MPI_Allreduce(MPI_IN_PLACE, mean, ssl_int(d), MPI_DOUBLE, MPI_SUM, comm->world);
    for (int64_t j = 0; j < d; j++) mean[j] /= (double)n_all;
    for (int64_t j = 0; j < d; j++) std[j] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            double c = (double)x[i * d + j] - mean[j];
            std[j] += c * c;
        }
    MPI_Allreduce(MPI_IN_PLACE, std, ssl_int(d), MPI_DOUBLE, MPI_SUM, comm->world);
    for (int64_t j = 0; j < d; j++) {
        std[j] = sqrt(std[j] / (double)n_all);
        if (std[j] < 1e-12) std[j] = 1; /* a constant feature is only centred */
    }
    return SSL_OK;
}

static void standardize_rows(double *out, const float *x, int64_t n, int64_t d, const double *mean,
                             const double *std)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) out[i * d + j] = ((double)x[i * d + j] - mean[j]) / std[j];
}

/* logits (n, C) = x w^T + b. */
static void probe_logits(double *logits, const double *x, int64_t n, int64_t d, int n_classes,
                         const double *w, const double *b)
{
    if (n == 0) return;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ssl_int(n), n_classes, ssl_int(d), 1.0, x,
                ssl_int(d), w, ssl_int(d), 0.0, logits, n_classes);
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < n_classes; c++) logits[i * n_classes + c] += b[c];
}

/* Row i of logits becomes softmax - onehot(y); returns -log softmax[y]. */
static double softmax_xent_row(double *z, int32_t y, int n_classes)
{
    double top = z[0];
    for (int c = 1; c < n_classes; c++) top = fmax(top, z[c]);
    double sum = 0;
    for (int c = 0; c < n_classes; c++) sum += exp(z[c] - top);
    double lse = top + log(sum), loss = lse - z[y];
    for (int c = 0; c < n_classes; c++) z[c] = exp(z[c] - lse);
    z[y] -= 1;
    return loss;
}

double ssl_linear_probe_loss_grad(const double *x, const int32_t *y, int64_t n, int64_t d,
                                  int n_classes, const double *w, const double *b, double *gw,
                                  double *gb, double *logits)
{
    if (n == 0) return 0;
    probe_logits(logits, x, n, d, n_classes, w, b);
    double loss = 0;
    for (int64_t i = 0; i < n; i++) {
        SSL_ASSERT(y[i] >= 0 && y[i] < n_classes);
        loss += softmax_xent_row(logits + i * n_classes, y[i], n_classes);
    }
    if (gw != NULL)
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_classes, ssl_int(d), ssl_int(n), 1.0,
                    logits, n_classes, x, ssl_int(d), 1.0, gw, ssl_int(d));
    if (gb != NULL)
        for (int64_t i = 0; i < n; i++)
            for (int c = 0; c < n_classes; c++) gb[c] += logits[i * n_classes + c];
    return loss;
}

/* Fisher-Yates (the sampler's recipe) over the evaluation stream (seed, SSL_RNG_EVAL) at words
 * (1 = the probe's batch order, epoch low, epoch high): never the training sampler's numbers. */
static void probe_permutation(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch)
{
    struct ssl_rng rng;
    ssl_rng_init(&rng, seed, SSL_RNG_EVAL, 1, (uint32_t)epoch, (uint32_t)((uint64_t)epoch >> 32));
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ssl_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static void probe_free(struct probe *p)
{
    free(p->w);
    free(p->mw);
    free(p->grad);
    free(p->xb);
    free(p->logits);
    free(p->yb);
    free(p->perm);
    memset(p, 0, sizeof *p);
}

static enum ssl_status probe_alloc(struct probe *p, int64_t d, int n_classes, int64_t batch,
                                   int64_t n_all, struct ssl_error *err)
{
    int64_t cd = n_classes * d;
    p->d = d;
    p->n_classes = n_classes;
    p->w = calloc((size_t)(cd + n_classes), sizeof *p->w); /* zero init: a convex problem */
    p->mw = calloc((size_t)(cd + n_classes), sizeof *p->mw);
    p->grad = malloc((size_t)(cd + n_classes + 1) * sizeof *p->grad);
    p->xb = malloc((size_t)(batch * d) * sizeof *p->xb);
    p->logits = malloc((size_t)(batch * n_classes) * sizeof *p->logits);
    p->yb = malloc((size_t)batch * sizeof *p->yb);
    p->perm = malloc((size_t)n_all * sizeof *p->perm);
    if (!p->w || !p->mw || !p->grad || !p->xb || !p->logits || !p->yb || !p->perm) {
        probe_free(p);
        return ssl_error_set(err, SSL_E_OTHER, "linear probe: out of memory");
    }
    p->b = p->w + cd;
    p->mb = p->mw + cd;
    return SSL_OK;
}

/* torch.optim.SGD on the packed [w, b]: g += wd p; m = mu m + g (m = g at the first step);
 * p -= lr m. grad holds the global mean gradient. */
static void probe_sgd(struct probe *p, const struct ssl_linear_probe_opts *o, double lr, bool first)
{
    int64_t n = p->n_classes * p->d + p->n_classes;
    for (int64_t i = 0; i < n; i++) {
        double g = p->grad[i] + o->weight_decay * p->w[i];
        p->mw[i] = first ? g : o->momentum * p->mw[i] + g;
        p->w[i] -= lr * p->mw[i];
    }
}

/* One step on the global batch perm[lo, hi): this rank's rows, the sum over ranks, the update.
 * Returns the batch's summed loss (the same on every rank). */
static double probe_step(struct probe *p, const double *xs, const int32_t *labels, int64_t n_local,
                         int64_t row0, int64_t lo, int64_t hi, const struct ssl_linear_probe_opts *o,
                         double lr, bool first, const struct ssl_comm *comm)
{
    int64_t d = p->d, nb = 0, cd = p->n_classes * d;
    for (int64_t t = lo; t < hi; t++) {
        int64_t r = p->perm[t] - row0;
        if (r < 0 || r >= n_local) continue;
        memcpy(p->xb + nb * d, xs + r * d, (size_t)d * sizeof *p->xb);
        p->yb[nb++] = labels[r];
    }
    memset(p->grad, 0, (size_t)(cd + p->n_classes + 1) * sizeof *p->grad);
    p->grad[cd + p->n_classes] = ssl_linear_probe_loss_grad(
        p->xb, p->yb, nb, d, p->n_classes, p->w, p->b, p->grad, p->grad + cd, p->logits);
    MPI_Allreduce(MPI_IN_PLACE, p->grad, ssl_int(cd + p->n_classes + 1), MPI_DOUBLE, MPI_SUM,
                  comm->world);
    double scale = 1.0 / (double)(hi - lo);
    for (int64_t i = 0; i < cd + p->n_classes; i++) p->grad[i] *= scale;
    probe_sgd(p, o, lr, first);
    return p->grad[cd + p->n_classes];
}

/* All epochs; *last_loss = mean loss over the last epoch's batches. */
static enum ssl_status probe_train(struct probe *p, const double *xs, const int32_t *labels,
                                   int64_t n_local, int64_t row0, int64_t n_all,
                                   const struct ssl_linear_probe_opts *o, double *last_loss,
                                   const struct ssl_comm *comm, struct ssl_error *err)
{
    const double pi = 3.14159265358979323846;
    int64_t batch = o->batch < n_all ? o->batch : n_all;
    int64_t steps = (n_all + batch - 1) / batch, total = steps * o->epochs, t = 0;
    for (int epoch = 0; epoch < o->epochs; epoch++) {
        probe_permutation(p->perm, n_all, o->seed, epoch);
        double epoch_loss = 0;
        for (int64_t s = 0; s < steps; s++, t++) {
            double lr = 0.5 * o->lr * (1 + cos(pi * (double)t / (double)total));
            int64_t lo = s * batch, hi = lo + batch < n_all ? lo + batch : n_all;
            epoch_loss += probe_step(p, xs, labels, n_local, row0, lo, hi, o, lr, t == 0, comm);
        }
        if (!isfinite(epoch_loss))
            return ssl_error_set(err, SSL_E_NONFINITE, "linear probe: non-finite loss in epoch %d (lr %g too large?)",
                                 epoch, o->lr);
        *last_loss = epoch_loss / (double)n_all;
    }
    return SSL_OK;
}

/* Correct counts [top1, top5] of this rank's test rows (standardised into xb in batches). */
static void probe_test(int64_t correct[2], struct probe *p, int64_t batch, const float *test,
                       const int32_t *labels, int64_t n_test, const double *mean, const double *std)
{
    int C = p->n_classes, m = C < 5 ? C : 5;
    for (int64_t i0 = 0; i0 < n_test; i0 += batch) {
        int64_t rows = n_test - i0 < batch ? n_test - i0 : batch;
        standardize_rows(p->xb, test + i0 * p->d, rows, p->d, mean, std);
        probe_logits(p->logits, p->xb, rows, p->d, C, p->w, p->b);
        for (int64_t i = 0; i < rows; i++) {
            const double *z = p->logits + i * C;
            int32_t y = labels[i0 + i];
            int above = 0;
            for (int c = 0; c < C; c++) above += z[c] > z[y] || (z[c] == z[y] && c < y);
            correct[0] += above == 0;
            correct[1] += above < m;
        }
    }
}

static enum ssl_status probe_check_local(const float *train, const int32_t *train_labels,
                                         int64_t n_train, int64_t train0, const float *test,
                                         const int32_t *test_labels, int64_t n_test, int64_t test0,
                                         int64_t d, int n_classes, struct ssl_error *err)
{
    enum ssl_status s = ssl_eval_check_labels(train_labels, n_train, train0, n_classes, "linear probe: train", err);
    if (s == SSL_OK) s = ssl_eval_check_labels(test_labels, n_test, test0, n_classes, "linear probe: test", err);
    if (s == SSL_OK) s = ssl_eval_check_finite(test, n_test, d, test0, "linear probe: test", err);
    if (s == SSL_OK) s = ssl_eval_check_finite(train, n_train, d, train0, "linear probe: train", err);
    return s;
}

static void probe_outputs(const struct probe *p, double *weight_out, double *bias_out)
{
    if (weight_out != NULL) memcpy(weight_out, p->w, (size_t)(p->n_classes * p->d) * sizeof *p->w);
    if (bias_out != NULL) memcpy(bias_out, p->b, (size_t)p->n_classes * sizeof *p->b);
}

enum ssl_status ssl_linear_probe_eval(struct ssl_eval_acc *acc, const float *train,
                                      const int32_t *train_labels, int64_t n_train,
                                      const float *test, const int32_t *test_labels, int64_t n_test,
                                      int64_t d, int n_classes, const struct ssl_linear_probe_opts *o,
                                      double *weight_out, double *bias_out, double *final_loss,
                                      const struct ssl_comm *comm, struct ssl_error *err)
{
    memset(acc, 0, sizeof *acc);
    enum ssl_status s = probe_check_opts(o, d, n_classes, err);
    if (s != SSL_OK) return s; /* the options are the same on every rank */
    int64_t n_all, train0, n_test_all, test0;
    ssl_eval_rows(&n_all, &train0, n_train, comm);
    ssl_eval_rows(&n_test_all, &test0, n_test, comm);
    if (n_all == 0 || n_test_all == 0)
        return ssl_error_set(err, SSL_E_DATA, "linear probe: the %s split is empty", n_all == 0 ? "train" : "test");
    s = ssl_eval_agree(probe_check_local(train, train_labels, n_train, train0, test, test_labels,
                                         n_test, test0, d, n_classes, err),
                       comm, err);
    if (s != SSL_OK) return s;
    int64_t batch = o->batch < n_all ? o->batch : n_all;
    struct probe p = {0};
    double *stats = malloc(2 * (size_t)d * sizeof *stats);
    double *xs = malloc((size_t)(n_train * d) * sizeof *xs + 1); /* + 1: never malloc(0) */
    s = probe_alloc(&p, d, n_classes, batch, n_all, err);
    if (s == SSL_OK && (stats == NULL || xs == NULL))
        s = ssl_error_set(err, SSL_E_OTHER, "linear probe: out of memory for the features");
    s = ssl_eval_agree(s, comm, err);
    if (s == SSL_OK) s = ssl_eval_standardize_stats(stats, stats + d, train, n_train, d, comm, err);
    double loss = 0;
    if (s == SSL_OK) {
        standardize_rows(xs, train, n_train, d, stats, stats + d);
        s = probe_train(&p, xs, train_labels, n_train, train0, n_all, o, &loss, comm, err);
    }
    if (s == SSL_OK) {
        int64_t correct[2] = {0, 0};
        probe_test(correct, &p, batch, test, test_labels, n_test, stats, stats + d);
        MPI_Allreduce(MPI_IN_PLACE, correct, 2, MPI_INT64_T, MPI_SUM, comm->world);
        acc->n = n_test_all;
        acc->top1 = 100.0 * (double)correct[0] / (double)n_test_all;
        acc->top5 = 100.0 * (double)correct[1] / (double)n_test_all;
        probe_outputs(&p, weight_out, bias_out);
        if (final_loss != NULL) *final_loss = loss;
    }
    probe_free(&p);
    free(xs);
    free(stats);
    return s;
}
