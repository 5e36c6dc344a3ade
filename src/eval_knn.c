/* eval_knn.c: solo-learn's weighted kNN classifier over sharded features, and the helpers both
 * evaluations share (status agreement, label and finiteness checks, row offsets).
 *
 * Distribution: each rank L2-normalises its train block into its place in a (N, d) bank that
 * MPI_Allgatherv completes on every rank; each rank then classifies its own test rows against
 * the whole bank and the correct counts are summed. Similarities are never held as a whole
 * (n_test, N) matrix: a chunk of CHUNK_ROWS test rows meets the bank in blocks of BLOCK_COLS
 * train rows (one sgemm each, the block staying in cache) and each test row keeps a streaming
 * top-k selection across the blocks.
 *
 * Exactness: a float sgemm rounds differently for different matrix shapes (chunking depends on
 * the rank count), so the float similarities only PRE-select: every train row whose float
 * similarity is within 2e of the k-th largest (e a bound on the float error) is a candidate, the
 * candidates' similarities are recomputed in fp64 in a fixed order, and the k best by (fp64
 * similarity descending, global index ascending) are the neighbours. That set provably contains
 * the true top k, so neighbours, votes and accuracies are the same at every rank count. */
#include "eval.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

/* Test rows per chunk and train rows per block: the (CHUNK_ROWS, BLOCK_COLS) float similarity
 * block (1 MiB) stays in cache between the sgemm that writes it and the scan that reads it. */
enum { CHUNK_ROWS = 256, BLOCK_COLS = 1024 };

struct knn_candidate {
    double sim;
    int64_t index; /* global train row */
};

/* The streaming selection of one test row over the train blocks. */
struct knn_row {
    float *heap;                 /* (k) min-heap of the largest float similarities seen */
    int n_heap;
    struct knn_candidate *cands; /* (cap) the train rows within margin of the heap minimum */
    int64_t n_cands, cap;
    bool failed;                 /* out of memory while growing cands */
};

struct knn_problem {
    const float *bank;        /* (N, d) normalised global train rows */
    const int32_t *labels;    /* (N) */
    int64_t n_bank, d;
    int n_classes, k;         /* k already clamped to N */
    double temperature;
    float margin;             /* 2e: candidates lie within it of the k-th float similarity */
};

enum ssl_status ssl_eval_agree(enum ssl_status local, const struct ssl_comm *comm,
                               struct ssl_error *err)
{
    int mine = local != SSL_OK ? comm->rank : comm->size, first = comm->size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm->world);
    if (first == comm->size) return SSL_OK;
    /* The first failing rank's message, so every rank reports the same line. */
    int code = (int)local;
    char msg[sizeof err->msg];
    if (comm->rank == first) memcpy(msg, err->msg, sizeof msg);
    MPI_Bcast(&code, 1, MPI_INT, first, comm->world);
    MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, comm->world);
    err->code = (enum ssl_status)code;
    memcpy(err->msg, msg, sizeof msg);
    return err->code;
}

enum ssl_status ssl_eval_check_labels(const int32_t *labels, int64_t n, int64_t row0,
                                      int n_classes, const char *what, struct ssl_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= n_classes)
            return ssl_error_set(err, SSL_E_DATA, "%s label %d at row %lld is outside [0, %d)", what,
                                 (int)labels[i], (long long)(row0 + i), n_classes);
    return SSL_OK;
}

enum ssl_status ssl_eval_check_finite(const float *x, int64_t n, int64_t d, int64_t row0,
                                      const char *what, struct ssl_error *err)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            if (!isfinite(x[i * d + j]))
                return ssl_error_set(err, SSL_E_DATA, "%s feature %lld of row %lld is not finite",
                                     what, (long long)j, (long long)(row0 + i));
    return SSL_OK;
}

void ssl_eval_rows(int64_t *n_global, int64_t *row0, int64_t n_local, const struct ssl_comm *comm)
{
    int64_t before = 0, total = 0;
    MPI_Exscan(&n_local, &before, 1, MPI_INT64_T, MPI_SUM, comm->world);
    MPI_Allreduce(&n_local, &total, 1, MPI_INT64_T, MPI_SUM, comm->world);
    *row0 = comm->rank == 0 ? 0 : before; /* Exscan leaves rank 0's output undefined */
    *n_global = total;
}

/* F.normalize: x / max(||x||, 1e-12), the norm in fp64. */
static void normalize_rows(float *out, const float *x, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)x[i * d + j] * (double)x[i * d + j];
        double scale = 1.0 / fmax(sqrt(ss), 1e-12);
        for (int64_t j = 0; j < d; j++) out[i * d + j] = (float)((double)x[i * d + j] * scale);
    }
}

static enum ssl_status knn_check_args(int64_t d, int n_classes, int k, double temperature,
                                      struct ssl_error *err)
{
    if (d < 1) return ssl_error_set(err, SSL_E_USAGE, "kNN: feature dimension %lld < 1", (long long)d);
    if (n_classes < 2) return ssl_error_set(err, SSL_E_USAGE, "kNN: n_classes %d < 2", n_classes);
    if (k < 1) return ssl_error_set(err, SSL_E_USAGE, "kNN: k = %d < 1", k);
    if (!(temperature > 0) || !isfinite(temperature))
        return ssl_error_set(err, SSL_E_USAGE, "kNN: temperature %g is not positive", temperature);
    return SSL_OK;
}

/* This rank's part of the checks on the data; the caller makes the ranks agree. */
static enum ssl_status knn_check_local(const float *train, const int32_t *train_labels,
                                       int64_t n_train, int64_t train0, const float *test,
                                       const int32_t *test_labels, int64_t n_test, int64_t test0,
                                       int64_t d, int n_classes, struct ssl_error *err)
{
    enum ssl_status s = ssl_eval_check_labels(train_labels, n_train, train0, n_classes, "kNN: train", err);
    if (s == SSL_OK) s = ssl_eval_check_labels(test_labels, n_test, test0, n_classes, "kNN: test", err);
    if (s == SSL_OK) s = ssl_eval_check_finite(train, n_train, d, train0, "kNN: train", err);
    if (s == SSL_OK) s = ssl_eval_check_finite(test, n_test, d, test0, "kNN: test", err);
    return s;
}

/* Every rank gets the normalised global train rows and labels in rank order. */
static void knn_gather_bank(float *bank, int32_t *labels, const float *train,
                            const int32_t *train_labels, int64_t n_train, int64_t train0, int64_t d,
                            int *counts, int *displs, const struct ssl_comm *comm)
{
    normalize_rows(bank + train0 * d, train, n_train, d);
    memcpy(labels + train0, train_labels, (size_t)n_train * sizeof *labels);
    int mine = ssl_int(n_train), start = ssl_int(train0);
    MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, comm->world);
    MPI_Allgather(&start, 1, MPI_INT, displs, 1, MPI_INT, comm->world);
    /* Rows as one datatype, so counts stay row counts (N * d may exceed an int). */
    MPI_Datatype row;
    MPI_Type_contiguous(ssl_int(d), MPI_FLOAT, &row);
    MPI_Type_commit(&row);
    MPI_Allgatherv(MPI_IN_PLACE, 0, row, bank, counts, displs, row, comm->world);
    MPI_Type_free(&row);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_INT32_T, labels, counts, displs, MPI_INT32_T, comm->world);
}

static void heap_sift_down(float *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l] < h[m]) m = l;
        if (r < n && h[r] < h[m]) m = r;
        if (m == i) return;
        float t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_push(float *h, int n, float v)
{
    int i = n;
    h[i] = v;
    while (i > 0 && h[(i - 1) / 2] > h[i]) {
        int up = (i - 1) / 2;
        float t = h[up];
        h[up] = h[i];
        h[i] = t;
        i = up;
    }
}

/* Room for one more candidate: drop those below the current cut (which only rises, so they can
 * never be needed), and grow when that frees too little. */
static bool knn_make_room(struct knn_row *r, int k, float margin)
{
    if (r->n_cands < r->cap) return true;
    if (r->n_heap == k) {
        double cut = (double)(r->heap[0] - margin);
        int64_t m = 0;
        for (int64_t c = 0; c < r->n_cands; c++)
            if (r->cands[c].sim >= cut) r->cands[m++] = r->cands[c];
        r->n_cands = m;
    }
    if (r->n_cands <= r->cap / 2) return true;
    struct knn_candidate *grown = realloc(r->cands, 2 * (size_t)r->cap * sizeof *grown);
    if (grown == NULL) return false;
    r->cands = grown;
    r->cap *= 2;
    return true;
}

/* Feeds the similarities of one test row to train rows col0 .. col0 + cols. Every train row
 * within margin of the k-th largest similarity seen so far becomes a candidate; that threshold
 * only rises, so the candidates include every row within margin of the final k-th. The common
 * case is one compare against a threshold held in a register. */
static void knn_stream(struct knn_row *r, const float *sims, int64_t cols, int64_t col0, int k,
                       float margin)
{
    float cut = r->n_heap == k ? r->heap[0] - margin : -INFINITY;
    for (int64_t j = 0; j < cols; j++) {
        float s = sims[j];
        if (s < cut) continue;
        if (r->n_heap < k) {
            heap_push(r->heap, r->n_heap++, s);
        } else if (s > r->heap[0]) {
            r->heap[0] = s;
            heap_sift_down(r->heap, k, 0);
        }
        if (r->failed || !knn_make_room(r, k, margin)) {
            r->failed = true;
            return;
        }
        r->cands[r->n_cands++] = (struct knn_candidate){(double)s, col0 + j};
        if (r->n_heap == k) cut = r->heap[0] - margin;
    }
}

static double dot_f64(const float *a, const float *b, int64_t d)
{
    double s = 0;
    for (int64_t j = 0; j < d; j++) s += (double)a[j] * (double)b[j];
    return s;
}

static int candidate_order(const void *pa, const void *pb)
{
    const struct knn_candidate *a = pa, *b = pb;
    if (a->sim != b->sim) return a->sim > b->sim ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/* The final candidates of query q (normalised, (d)) with fp64 similarities, best first; the
 * first k are the neighbours. */
static void knn_neighbours(const struct knn_problem *p, const float *q, struct knn_row *r)
{
    double cut = (double)(r->heap[0] - p->margin);
    int64_t m = 0;
    for (int64_t c = 0; c < r->n_cands; c++)
        if (r->cands[c].sim >= cut) {
            int64_t j = r->cands[c].index;
            r->cands[m++] = (struct knn_candidate){dot_f64(q, p->bank + j * p->d, p->d), j};
        }
    r->n_cands = m;
    qsort(r->cands, (size_t)m, sizeof *r->cands, candidate_order);
}

/* 0 if the label is the top class, else the number of classes ranked above it (higher score, or
 * an equal score and a lower class index). scores (n_classes) is scratch. */
static int knn_label_rank(const struct knn_problem *p, const struct knn_row *r, int32_t label,
                          double *scores)
{
    for (int c = 0; c < p->n_classes; c++) scores[c] = 0;
    /* exp((sim - best) / T): solo-learn's exp(sim / T) times one common factor, which ranks
     * the classes the same and cannot overflow for a small T. */
    double best = r->cands[0].sim;
    for (int i = 0; i < p->k; i++)
        scores[p->labels[r->cands[i].index]] += exp((r->cands[i].sim - best) / p->temperature);
    int above = 0;
    double mine = scores[label];
    for (int c = 0; c < p->n_classes; c++)
        above += scores[c] > mine || (scores[c] == mine && c < label);
    return above;
}

static int knn_top5_width(const struct knn_problem *p)
{
    int m = 5;
    if (p->k < m) m = p->k; /* solo-learn: "top5 does not make sense if k < 5" */
    if (p->n_classes < m) m = p->n_classes;
    return m;
}

/* The work buffers of one chunk: the rows' selection states, the similarity block, the
 * normalised queries and per-thread class scores. */
struct knn_work {
    struct knn_row rows[CHUNK_ROWS];
    float *heaps, *sims, *q;
    double *scores;
    int n_threads;
};

static void knn_work_free(struct knn_work *w)
{
    for (int i = 0; i < CHUNK_ROWS; i++) free(w->rows[i].cands);
    free(w->heaps);
    free(w->sims);
    free(w->q);
    free(w->scores);
}

static bool knn_work_alloc(struct knn_work *w, const struct knn_problem *p)
{
    memset(w, 0, sizeof *w);
    w->n_threads = omp_get_max_threads();
    w->heaps = malloc((size_t)CHUNK_ROWS * (size_t)p->k * sizeof *w->heaps);
    w->sims = malloc((size_t)CHUNK_ROWS * BLOCK_COLS * sizeof *w->sims);
    w->q = malloc((size_t)CHUNK_ROWS * (size_t)p->d * sizeof *w->q);
    w->scores = malloc((size_t)w->n_threads * (size_t)p->n_classes * sizeof *w->scores);
    bool ok = w->heaps && w->sims && w->q && w->scores;
    for (int i = 0; ok && i < CHUNK_ROWS; i++) {
        w->rows[i].heap = w->heaps + (int64_t)i * p->k;
        w->rows[i].cap = 4 * (int64_t)p->k + 64;
        w->rows[i].cands = malloc((size_t)w->rows[i].cap * sizeof *w->rows[i].cands);
        ok = w->rows[i].cands != NULL;
    }
    if (!ok) knn_work_free(w);
    return ok;
}

/* Streams the whole bank past the chunk's rows, block by block. */
static bool knn_select(struct knn_work *w, const struct knn_problem *p, int64_t rows)
{
    for (int64_t i = 0; i < rows; i++) w->rows[i].n_heap = 0, w->rows[i].n_cands = 0;
    for (int64_t col0 = 0; col0 < p->n_bank; col0 += BLOCK_COLS) {
        int64_t cols = p->n_bank - col0 < BLOCK_COLS ? p->n_bank - col0 : BLOCK_COLS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ssl_int(rows), ssl_int(cols),
                    ssl_int(p->d), 1.0f, w->q, ssl_int(p->d), p->bank + col0 * p->d, ssl_int(p->d),
                    0.0f, w->sims, ssl_int(cols));
#pragma omp parallel for schedule(static) num_threads(w->n_threads)
        for (int64_t i = 0; i < rows; i++)
            knn_stream(&w->rows[i], w->sims + i * cols, cols, col0, p->k, p->margin);
    }
    bool ok = true;
    for (int64_t i = 0; i < rows; i++) ok = ok && !w->rows[i].failed;
    return ok;
}

/* Adds the correct counts [top1, top5] of the chunk's rows (queries w->q, labels). */
static void knn_vote(int64_t counts[2], struct knn_work *w, const struct knn_problem *p,
                     const int32_t *labels, int64_t rows)
{
    int64_t c1 = 0, c5 = 0;
    int m = knn_top5_width(p);
#pragma omp parallel for schedule(dynamic, 8) num_threads(w->n_threads) reduction(+ : c1, c5)
    for (int64_t i = 0; i < rows; i++) {
        double *scores = w->scores + (int64_t)omp_get_thread_num() * p->n_classes;
        knn_neighbours(p, w->q + i * p->d, &w->rows[i]);
        int rank = knn_label_rank(p, &w->rows[i], labels[i], scores);
        c1 += rank == 0;
        c5 += rank < m;
    }
    counts[0] += c1;
    counts[1] += c5;
}

/* Correct counts of this rank's test rows, classified in chunks. */
static enum ssl_status knn_classify(int64_t counts[2], const struct knn_problem *p,
                                    const float *test, const int32_t *test_labels, int64_t n_test,
                                    struct ssl_error *err)
{
    struct knn_work *w = malloc(sizeof *w);
    if (w == NULL || !knn_work_alloc(w, p)) {
        free(w);
        return ssl_error_set(err, SSL_E_OTHER, "kNN: out of memory for the work buffers");
    }
    enum ssl_status status = SSL_OK;
    for (int64_t i0 = 0; i0 < n_test; i0 += CHUNK_ROWS) {
        int64_t rows = n_test - i0 < CHUNK_ROWS ? n_test - i0 : CHUNK_ROWS;
        normalize_rows(w->q, test + i0 * p->d, rows, p->d);
        if (!knn_select(w, p, rows)) {
            status = ssl_error_set(err, SSL_E_OTHER, "kNN: out of memory for neighbour candidates");
            break;
        }
        knn_vote(counts, w, p, test_labels + i0, rows);
    }
    knn_work_free(w);
    free(w);
    return status;
}

/* A bound e on |float similarity - exact| for rows of norm 1 (+ the normalisation's rounding):
 * the float dot product of d terms errs by at most about d * FLT_EPSILON / 2. Doubled and padded
 * generously: a wider margin only adds candidates, never changes the result. */
static float knn_margin(int64_t d)
{
    return (float)(2.0 * (double)(d + 8) * (double)FLT_EPSILON);
}

enum ssl_status ssl_knn_eval(struct ssl_eval_acc *acc, const float *train,
                             const int32_t *train_labels, int64_t n_train, const float *test,
                             const int32_t *test_labels, int64_t n_test, int64_t d, int n_classes,
                             int k, double temperature, const struct ssl_comm *comm,
                             struct ssl_error *err)
{
    memset(acc, 0, sizeof *acc);
    enum ssl_status s = knn_check_args(d, n_classes, k, temperature, err);
    if (s != SSL_OK) return s; /* the arguments are the same on every rank */
    int64_t n_bank, train0, n_test_all, test0;
    ssl_eval_rows(&n_bank, &train0, n_train, comm);
    ssl_eval_rows(&n_test_all, &test0, n_test, comm);
    if (n_bank == 0 || n_test_all == 0)
        return ssl_error_set(err, SSL_E_DATA, "kNN: the %s split is empty", n_bank == 0 ? "train" : "test");
    s = knn_check_local(train, train_labels, n_train, train0, test, test_labels, n_test, test0, d,
                        n_classes, err);
    float *bank = malloc((size_t)(n_bank * d) * sizeof *bank);
    int32_t *labels = malloc((size_t)n_bank * sizeof *labels);
    int *counts = malloc(2 * (size_t)comm->size * sizeof *counts);
    if (s == SSL_OK && (bank == NULL || labels == NULL || counts == NULL))
        s = ssl_error_set(err, SSL_E_OTHER, "kNN: out of memory for %lld x %lld train features",
                          (long long)n_bank, (long long)d);
    s = ssl_eval_agree(s, comm, err);
    if (s == SSL_OK) {
        knn_gather_bank(bank, labels, train, train_labels, n_train, train0, d, counts,
                        counts + comm->size, comm);
        struct knn_problem p = {bank, labels, n_bank, d, n_classes, k < n_bank ? k : (int)n_bank,
                                temperature, knn_margin(d)};
        int64_t correct[2] = {0, 0};
        s = ssl_eval_agree(knn_classify(correct, &p, test, test_labels, n_test, err), comm, err);
        MPI_Allreduce(MPI_IN_PLACE, correct, 2, MPI_INT64_T, MPI_SUM, comm->world);
        acc->n = n_test_all;
        acc->top1 = 100.0 * (double)correct[0] / (double)n_test_all;
        acc->top5 = 100.0 * (double)correct[1] / (double)n_test_all;
    }
    free(counts);
    free(labels);
    free(bank);
    if (s != SSL_OK) memset(acc, 0, sizeof *acc);
    return s;
}
