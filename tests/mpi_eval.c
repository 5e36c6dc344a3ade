/* mpi_eval.c: the evaluations over P ranks equal one process on the same global data.
 *
 * Every rank generates the SAME global train / test sets from SEED (clustered rows with noise,
 * duplicated train rows with other labels so that exact ties occur; sizes divisible by 12) and
 * runs each evaluation twice: over the world with its contiguous block of each split, and alone
 * (a one-rank communicator) on the whole sets. Checked:
 *   - kNN Acc@1 / Acc@5 exactly equal, for k = 1, 5, 20 and k > N (clamped);
 * each for two layouts: the train split even and the test split uneven (rank 0 holds none of it
 * when P > 1), and the reverse;
 *   - linear probe: accuracies exactly equal, final weights, bias and loss equal to 1e-5
 *     relative (the sums over ranks are MPI's, so equality is to rounding only).
 * Rank 0 prints one line per check and a summary; every rank exits 1 if any check failed.
 *
 * `mpi_eval bench N_TRAIN N_TEST D [C [probe]]` instead times ssl_knn_eval (and the default linear
 * probe when "probe" follows) on random clustered data; rank 0 prints it. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "comm.h"
#include "eval.h"
#include "rng.h"

enum { NTR = 240, NTE = 120, D = 12, C = 7 };
static const uint64_t SEED = 777001;
static const double TOL = 1e-5;

struct split {
    int64_t tr0, ntr, te0, nte; /* this rank's blocks */
};

static void make_data(float *x, int32_t *y, int64_t n, int64_t d, int n_classes, double noise,
                      uint32_t stream)
{
    struct ssl_rng r;
    for (int64_t i = 0; i < n; i++) {
        int32_t c = (int32_t)(((uint64_t)i + stream) % (uint64_t)n_classes);
        y[i] = c;
        for (int64_t j = 0; j < d; j++) {
            ssl_rng_init(&r, SEED, SSL_RNG_TEST, 1000, (uint32_t)c, (uint32_t)j);
            double centre = ssl_rng_normal(&r);
            ssl_rng_init(&r, SEED, SSL_RNG_TEST, stream, (uint32_t)i, (uint32_t)j);
            x[i * d + j] = (float)(centre + noise * ssl_rng_normal(&r));
        }
    }
}

/* Contiguous blocks: even (n/P each) or uneven (rank 0 none, the others share n). */
static void block(int64_t *start, int64_t *count, int64_t n, int rank, int size, bool uneven)
{
    if (!uneven || size == 1) {
        *start = n * rank / size;
        *count = n * (rank + 1) / size - *start;
        return;
    }
    if (rank == 0) {
        *start = 0;
        *count = 0;
        return;
    }
    *start = n * (rank - 1) / (size - 1);
    *count = n * rank / (size - 1) - *start;
}

static double rel_err(const double *got, const double *want, int64_t n)
{
    double diff = 0, scale = 1e-12;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]);
        diff = isnan(e) ? (double)INFINITY : fmax(diff, e);
        scale = fmax(scale, fabs(want[i]));
    }
    return diff / scale;
}

/* Rank 0 prints; returns 1 if the check failed on any rank. */
static int report(const struct ssl_comm *comm, const char *what, bool ok, double detail)
{
    int bad = !ok, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm->world);
    if (comm->rank == 0) printf("%-44s %s (%.3g)\n", what, any ? "FAIL" : "ok", detail);
    return any;
}

static int check_knn(const struct ssl_comm *comm, const struct ssl_comm *self, const float *tr,
                     const int32_t *ytr, const float *te, const int32_t *yte, bool uneven)
{
    int64_t tr0, ntr, te0, nte, failures = 0;
    block(&tr0, &ntr, NTR, comm->rank, comm->size, uneven);
    block(&te0, &nte, NTE, comm->rank, comm->size, !uneven); /* the other split the other way */
    const int ks[] = {1, 5, 20, 1000};
    for (int a = 0; a < 4; a++) {
        struct ssl_eval_acc got, want;
        struct ssl_error e1 = {0}, e2 = {0};
        enum ssl_status s1 = ssl_knn_eval(&got, tr + tr0 * D, ytr + tr0, ntr, te + te0 * D, yte + te0,
                                          nte, D, C, ks[a], 0.07, comm, &e1);
        enum ssl_status s2 = ssl_knn_eval(&want, tr, ytr, NTR, te, yte, NTE, D, C, ks[a], 0.07, self, &e2);
        char what[96];
        snprintf(what, sizeof what, "knn k=%d train %s: %.3f/%.3f", ks[a], uneven ? "uneven" : "even",
                 got.top1, got.top5);
        bool ok = s1 == SSL_OK && s2 == SSL_OK && got.top1 == want.top1 && got.top5 == want.top5 &&
                  got.n == NTE && want.top1 > 30 && want.top1 < 100;
        failures += report(comm, what, ok, fabs(got.top1 - want.top1) + fabs(got.top5 - want.top5));
    }
    return (int)failures;
}

static int check_probe(const struct ssl_comm *comm, const struct ssl_comm *self, const float *tr,
                       const int32_t *ytr, const float *te, const int32_t *yte, bool uneven)
{
    int64_t tr0, ntr, te0, nte;
    block(&tr0, &ntr, NTR, comm->rank, comm->size, uneven);
    block(&te0, &nte, NTE, comm->rank, comm->size, !uneven);
    struct ssl_linear_probe_opts o = ssl_linear_probe_defaults();
    o.epochs = 20;
    o.batch = 36; /* 240 = 6 * 36 + 24: the last batch of each epoch is smaller */
    o.weight_decay = 1e-3;
    o.seed = 5;
    double w1[C * D + C], w0[C * D + C], l1 = 0, l0 = 0;
    struct ssl_eval_acc got, want;
    struct ssl_error e1 = {0}, e2 = {0};
    enum ssl_status s1 = ssl_linear_probe_eval(&got, tr + tr0 * D, ytr + tr0, ntr, te + te0 * D,
                                               yte + te0, nte, D, C, &o, w1, w1 + C * D, &l1, comm, &e1);
    enum ssl_status s2 = ssl_linear_probe_eval(&want, tr, ytr, NTR, te, yte, NTE, D, C, &o, w0,
                                               w0 + C * D, &l0, self, &e2);
    double ew = rel_err(w1, w0, C * D + C), el = fabs(l1 - l0) / fmax(fabs(l0), 1e-12);
    char what[96];
    snprintf(what, sizeof what, "probe train %s: %.3f/%.3f loss %.4f", uneven ? "uneven" : "even",
             got.top1, got.top5, l1);
    bool ok = s1 == SSL_OK && s2 == SSL_OK && got.top1 == want.top1 && got.top5 == want.top5 &&
              ew < TOL && el < TOL && want.top1 > 30;
    return report(comm, what, ok, fmax(ew, el));
}

static int run_checks(const struct ssl_comm *comm)
{
    struct ssl_comm self = {MPI_COMM_NULL, 0, 1};
    MPI_Comm_dup(MPI_COMM_SELF, &self.world);
    float *tr = malloc(NTR * D * sizeof *tr), *te = malloc(NTE * D * sizeof *te);
    int32_t ytr[NTR], yte[NTE];
    make_data(tr, ytr, NTR, D, C, 1.1, 1);
    make_data(te, yte, NTE, D, C, 1.1, 2);
    for (int i = 0; i < 24; i++) { /* exact ties */
        memcpy(tr + (NTR - 1 - i) * D, tr + i * 4 * D, D * sizeof *tr);
        ytr[NTR - 1 - i] = (ytr[i * 4] + 1) % C;
    }
    for (int i = 0; i < 12; i++) memcpy(te + i * 7 * D, tr + i * 4 * D, D * sizeof *te);
    int failures = 0;
    for (int uneven = 0; uneven < 2; uneven++) {
        failures += check_knn(comm, &self, tr, ytr, te, yte, uneven);
        failures += check_probe(comm, &self, tr, ytr, te, yte, uneven);
    }
    free(te);
    free(tr);
    MPI_Comm_free(&self.world);
    return failures;
}

static int bench(const struct ssl_comm *comm, int64_t n_tr, int64_t n_te, int64_t d, int n_classes,
                 bool probe)
{
    int64_t tr0 = n_tr * comm->rank / comm->size, ntr = n_tr * (comm->rank + 1) / comm->size - tr0;
    int64_t te0 = n_te * comm->rank / comm->size, nte = n_te * (comm->rank + 1) / comm->size - te0;
    float *tr = malloc((size_t)(ntr * d + 1) * sizeof *tr), *te = malloc((size_t)(nte * d + 1) * sizeof *te);
    int32_t *ytr = malloc((size_t)(ntr + 1) * sizeof *ytr), *yte = malloc((size_t)(nte + 1) * sizeof *yte);
    float *all = malloc((size_t)((n_tr > n_te ? n_tr : n_te) * d) * sizeof *all);
    int32_t *yall = malloc((size_t)(n_tr > n_te ? n_tr : n_te) * sizeof *yall);
    make_data(all, yall, n_tr, d, n_classes, 5.0, 1);
    memcpy(tr, all + tr0 * d, (size_t)(ntr * d) * sizeof *tr);
    memcpy(ytr, yall + tr0, (size_t)ntr * sizeof *ytr);
    make_data(all, yall, n_te, d, n_classes, 5.0, 2);
    memcpy(te, all + te0 * d, (size_t)(nte * d) * sizeof *te);
    memcpy(yte, yall + te0, (size_t)nte * sizeof *yte);
    free(yall);
    free(all);
    struct ssl_eval_acc acc;
    struct ssl_error err = {0};
    MPI_Barrier(comm->world);
    double t0 = MPI_Wtime();
    enum ssl_status s = ssl_knn_eval(&acc, tr, ytr, ntr, te, yte, nte, d, n_classes, SSL_KNN_DEFAULT_K,
                                     SSL_KNN_DEFAULT_TEMPERATURE, comm, &err);
    double t1 = MPI_Wtime();
    if (comm->rank == 0)
        printf("knn np=%d %lld x %lld / %lld: %.3f s, acc %.2f/%.2f (%s)\n", comm->size,
               (long long)n_tr, (long long)d, (long long)n_te, t1 - t0, acc.top1, acc.top5,
               s == SSL_OK ? "ok" : err.msg);
    if (probe && s == SSL_OK) {
        struct ssl_linear_probe_opts o = ssl_linear_probe_defaults();
        double loss = 0;
        MPI_Barrier(comm->world);
        t0 = MPI_Wtime();
        s = ssl_linear_probe_eval(&acc, tr, ytr, ntr, te, yte, nte, d, n_classes, &o, NULL, NULL, &loss, comm, &err);
        t1 = MPI_Wtime();
        if (comm->rank == 0)
            printf("probe np=%d %d epochs: %.3f s, acc %.2f/%.2f loss %.4f (%s)\n", comm->size,
                   o.epochs, t1 - t0, acc.top1, acc.top5, loss, s == SSL_OK ? "ok" : err.msg);
    }
    free(yte);
    free(ytr);
    free(te);
    free(tr);
    return s != SSL_OK;
}

int main(int argc, char **argv)
{
    struct ssl_comm comm;
    if (ssl_comm_init(&comm, &argc, &argv) != 0) return 1;
    int failures;
    if (argc >= 5 && strcmp(argv[1], "bench") == 0) {
        failures = bench(&comm, atoll(argv[2]), atoll(argv[3]), atoll(argv[4]),
                         argc > 5 ? atoi(argv[5]) : 10, argc > 6 && strcmp(argv[6], "probe") == 0);
    } else {
        failures = run_checks(&comm);
        if (comm.rank == 0) printf("mpi_eval np=%d: %d failures\n", comm.size, failures);
    }
    ssl_comm_finalize(&comm);
    return failures != 0;
}
