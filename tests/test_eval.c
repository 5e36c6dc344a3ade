/* test_eval.c: the kNN classifier and the linear probe in one process (src/eval_*.c).
 *
 * kNN: against an independent naive implementation in this file (cosine similarities in fp64
 * from the raw rows, an explicit insertion sort of all train rows by (similarity desc, index
 * asc), explicit class ranking) on random clustered data with duplicated train rows (exact ties)
 * and k from 1 to beyond the train set (clamped); known values (well-separated clusters give
 * 100 %, a hand-computed example with 3 train points, tie rules); the errors.
 * Linear probe: the loss gradient by central finite differences in fp64, the standardisation
 * statistics against a naive computation, separable data reaching 100 %, the errors.
 * Seeds are fixed (SEED) and printed on failure through the assertion's line. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm.h"
#include "eval.h"
#include "rng.h"

static const uint64_t SEED = 20261123;
static struct ssl_comm g_comm; /* one process: the world of this test program */

/* Clustered rows: centre of the class (from the seed) plus noise; labels cycle over classes. */
static void make_clusters(float *x, int32_t *y, int64_t n, int64_t d, int n_classes, double noise,
                          uint64_t seed, uint32_t stream)
{
    struct ssl_rng r;
    for (int64_t i = 0; i < n; i++) {
        int32_t c = (int32_t)((i * 7 + stream) % (uint64_t)n_classes);
        y[i] = c;
        for (int64_t j = 0; j < d; j++) {
            ssl_rng_init(&r, seed, SSL_RNG_TEST, 1000, (uint32_t)c, (uint32_t)j);
            double centre = ssl_rng_normal(&r);
            ssl_rng_init(&r, seed, SSL_RNG_TEST, stream, (uint32_t)i, (uint32_t)j);
            x[i * d + j] = (float)(centre + noise * ssl_rng_normal(&r));
        }
    }
}

/* ---- the naive kNN ------------------------------------------------------------------------ */

static double naive_cos(const float *a, const float *b, int64_t d)
{
    double ab = 0, aa = 0, bb = 0;
    for (int64_t j = 0; j < d; j++) {
        ab += (double)a[j] * (double)b[j];
        aa += (double)a[j] * (double)a[j];
        bb += (double)b[j] * (double)b[j];
    }
    return ab / (fmax(sqrt(aa), 1e-12) * fmax(sqrt(bb), 1e-12));
}

static void naive_knn(struct ssl_eval_acc *acc, const float *train, const int32_t *ytr, int64_t n_tr,
                      const float *test, const int32_t *yte, int64_t n_te, int64_t d, int n_classes,
                      int k, double t)
{
    double *sim = malloc((size_t)n_tr * sizeof *sim);
    int64_t *idx = malloc((size_t)n_tr * sizeof *idx);
    double *score = malloc((size_t)n_classes * sizeof *score);
    int *order = malloc((size_t)n_classes * sizeof *order);
    int kk = k < n_tr ? k : (int)n_tr, m = 5;
    if (kk < m) m = kk;
    if (n_classes < m) m = n_classes;
    int64_t c1 = 0, c5 = 0;
    for (int64_t i = 0; i < n_te; i++) {
        for (int64_t j = 0; j < n_tr; j++) {
            sim[j] = naive_cos(test + i * d, train + j * d, d);
            idx[j] = j;
        }
        for (int64_t a = 1; a < n_tr; a++) /* insertion sort, best first */
            for (int64_t b = a; b > 0; b--) {
                int64_t p = idx[b - 1], q = idx[b];
                if (sim[q] > sim[p] || (sim[q] == sim[p] && q < p)) {
                    idx[b - 1] = q;
                    idx[b] = p;
                } else {
                    break;
                }
            }
        for (int c = 0; c < n_classes; c++) score[c] = 0, order[c] = c;
        for (int a = 0; a < kk; a++) score[ytr[idx[a]]] += exp(sim[idx[a]] / t);
        for (int a = 1; a < n_classes; a++)
            for (int b = a; b > 0 && (score[order[b]] > score[order[b - 1]]); b--) {
                int s = order[b];
                order[b] = order[b - 1];
                order[b - 1] = s;
            }
        c1 += order[0] == yte[i];
        for (int a = 0; a < m; a++) c5 += order[a] == yte[i];
    }
    acc->n = n_te;
    acc->top1 = 100.0 * (double)c1 / (double)n_te;
    acc->top5 = 100.0 * (double)c5 / (double)n_te;
    free(order);
    free(score);
    free(idx);
    free(sim);
}

static void test_knn_matches_naive(void **state)
{
    (void)state;
    enum { NTR = 150, NTE = 61, D = 7, C = 6 };
    float *tr = malloc(NTR * D * sizeof *tr), *te = malloc(NTE * D * sizeof *te);
    int32_t ytr[NTR], yte[NTE];
    make_clusters(tr, ytr, NTR, D, C, 0.9, SEED, 1);
    make_clusters(te, yte, NTE, D, C, 0.9, SEED, 2);
    /* Exact ties: train duplicates with other labels, and test rows equal to train rows. */
    for (int i = 0; i < 20; i++) {
        memcpy(tr + (NTR - 1 - i) * D, tr + i * 3 * D, D * sizeof *tr);
        ytr[NTR - 1 - i] = (ytr[i * 3] + 1 + i % 2) % C;
    }
    for (int i = 0; i < 10; i++) memcpy(te + i * 5 * D, tr + i * 3 * D, D * sizeof *te);
    const int ks[] = {1, 2, 3, 5, 20, 149, 150, 1000};
    const double ts[] = {0.07, 0.5};
    for (size_t a = 0; a < sizeof ks / sizeof *ks; a++)
        for (size_t b = 0; b < 2; b++) {
            struct ssl_eval_acc got, want;
            struct ssl_error err = {0};
            assert_int_equal(ssl_knn_eval(&got, tr, ytr, NTR, te, yte, NTE, D, C, ks[a], ts[b], &g_comm, &err), SSL_OK);
            naive_knn(&want, tr, ytr, NTR, te, yte, NTE, D, C, ks[a], ts[b]);
            if (got.top1 != want.top1 || got.top5 != want.top5)
                print_error("k=%d T=%g: got %.4f/%.4f want %.4f/%.4f\n", ks[a], ts[b], got.top1,
                            got.top5, want.top1, want.top5);
            assert_true(got.top1 == want.top1 && got.top5 == want.top5);
            assert_int_equal(got.n, NTE);
            assert_true(got.top1 > 20 && got.top1 <= got.top5); /* the data is learnable */
        }
    free(te);
    free(tr);
}

static void test_knn_separated_clusters(void **state)
{
    (void)state;
    enum { NTR = 240, NTE = 120, D = 16, C = 10 };
    float *tr = malloc(NTR * D * sizeof *tr), *te = malloc(NTE * D * sizeof *te);
    int32_t ytr[NTR], yte[NTE];
    make_clusters(tr, ytr, NTR, D, C, 0.01, SEED, 3);
    make_clusters(te, yte, NTE, D, C, 0.01, SEED, 4);
    struct ssl_eval_acc acc;
    struct ssl_error err = {0};
    assert_int_equal(ssl_knn_eval(&acc, tr, ytr, NTR, te, yte, NTE, D, C, SSL_KNN_DEFAULT_K,
                                  SSL_KNN_DEFAULT_TEMPERATURE, &g_comm, &err), SSL_OK);
    assert_true(acc.top1 == 100.0 && acc.top5 == 100.0);
    free(te);
    free(tr);
}

/* Train a=(1,0):0, b=(0,1):1, c=(1,1):1; test q1=(1,0):0, q2=(0.6,0.8):0.
 * cos: q1 -> a 1, b 0, c 0.7071; q2 -> a 0.6, b 0.8, c 0.98995.
 * k=1: q1 -> a (right), q2 -> c (wrong); Acc@5 looks at min(5, k, C) = 1 class: 50 / 50.
 * k=2, T=0.5: q1 -> {a, c}: class 0 e^2 = 7.39 > class 1 e^1.414 = 4.11 (right);
 *             q2 -> {c, b}: only class 1 (wrong, but 2nd of 2 classes): 50 / 100.
 * k=10 is clamped to 3: q1: 7.39 vs 1 + 4.11 (right); q2: e^1.2 = 3.32 vs e^1.6 + e^1.98 (wrong):
 *             50 / 100. */
static void test_knn_hand_example(void **state)
{
    (void)state;
    const float tr[] = {1, 0, 0, 1, 1, 1}, te[] = {1, 0, 0.6f, 0.8f};
    const int32_t ytr[] = {0, 1, 1}, yte[] = {0, 0};
    const int ks[] = {1, 2, 10};
    const double top5[] = {50, 100, 100};
    for (int a = 0; a < 3; a++) {
        struct ssl_eval_acc acc;
        struct ssl_error err = {0};
        assert_int_equal(ssl_knn_eval(&acc, tr, ytr, 3, te, yte, 2, 2, 2, ks[a], 0.5, &g_comm, &err), SSL_OK);
        assert_true(acc.top1 == 50.0);
        assert_true(acc.top5 == top5[a]);
    }
}

/* Exact ties: equal train rows go to the lower global index; equal class scores to the lower
 * class. */
static void test_knn_ties(void **state)
{
    (void)state;
    const float tr[] = {1, 0, 1, 0, 0, 1}, te[] = {1, 0};
    const int32_t ytr[] = {1, 0, 0};
    struct ssl_eval_acc acc;
    struct ssl_error err = {0};
    int32_t y = 1; /* k=1: train row 0 (label 1) beats its copy row 1 (label 0) */
    assert_int_equal(ssl_knn_eval(&acc, tr, ytr, 3, te, &y, 1, 2, 3, 1, 0.07, &g_comm, &err), SSL_OK);
    assert_true(acc.top1 == 100.0);
    y = 0; /* k=2: classes 0 and 1 score e^(1/T) each: class 0 first */
    assert_int_equal(ssl_knn_eval(&acc, tr, ytr, 3, te, &y, 1, 2, 3, 2, 0.07, &g_comm, &err), SSL_OK);
    assert_true(acc.top1 == 100.0);
    y = 1;
    assert_int_equal(ssl_knn_eval(&acc, tr, ytr, 3, te, &y, 1, 2, 3, 2, 0.07, &g_comm, &err), SSL_OK);
    assert_true(acc.top1 == 0.0 && acc.top5 == 100.0);
    y = 2; /* no vote: after classes 0 and 1 */
    assert_int_equal(ssl_knn_eval(&acc, tr, ytr, 3, te, &y, 1, 2, 3, 2, 0.07, &g_comm, &err), SSL_OK);
    assert_true(acc.top1 == 0.0 && acc.top5 == 0.0); /* Acc@5 width min(5, k=2, 3) = 2 */
}

static void test_knn_errors(void **state)
{
    (void)state;
    const float tr[] = {1, 0, 0, 1}, te[] = {1, 0};
    const float bad[] = {1, NAN};
    const int32_t ytr[] = {0, 1}, yte[] = {0}, ybad[] = {0, 2};
    struct ssl_eval_acc acc;
    struct ssl_error err = {0};
    assert_int_equal(ssl_knn_eval(&acc, tr, ybad, 2, te, yte, 1, 2, 2, 1, 0.07, &g_comm, &err), SSL_E_DATA);
    assert_non_null(strstr(err.msg, "train label 2 at row 1 is outside [0, 2)"));
    err = (struct ssl_error){0};
    assert_int_equal(ssl_knn_eval(&acc, tr, ytr, 2, te, ybad + 1, 1, 2, 2, 1, 0.07, &g_comm, &err), SSL_E_DATA);
    assert_non_null(strstr(err.msg, "test label"));
    err = (struct ssl_error){0};
    assert_int_equal(ssl_knn_eval(&acc, bad, ytr, 1, te, yte, 1, 2, 2, 1, 0.07, &g_comm, &err), SSL_E_DATA);
    assert_non_null(strstr(err.msg, "not finite"));
    err = (struct ssl_error){0};
    assert_int_equal(ssl_knn_eval(&acc, tr, ytr, 2, te, yte, 1, 2, 2, 0, 0.07, &g_comm, &err), SSL_E_USAGE);
    err = (struct ssl_error){0};
    assert_int_equal(ssl_knn_eval(&acc, tr, ytr, 2, te, yte, 1, 2, 2, 1, 0, &g_comm, &err), SSL_E_USAGE);
    err = (struct ssl_error){0};
    assert_int_equal(ssl_knn_eval(&acc, tr, ytr, 0, te, yte, 1, 2, 2, 1, 0.07, &g_comm, &err), SSL_E_DATA);
    assert_non_null(strstr(err.msg, "train split is empty"));
}

/* ---- linear probe -------------------------------------------------------------------------- */

static void test_probe_gradient(void **state)
{
    (void)state;
    enum { N = 7, D = 5, C = 4 };
    double x[N * D], w[C * D], b[C], gw[C * D] = {0}, gb[C] = {0}, logits[N * C];
    int32_t y[N];
    struct ssl_rng r;
    ssl_rng_init(&r, SEED, SSL_RNG_TEST, 10, 0, 0);
    for (int i = 0; i < N * D; i++) x[i] = ssl_rng_normal(&r);
    for (int i = 0; i < C * D; i++) w[i] = ssl_rng_normal(&r);
    for (int i = 0; i < C; i++) b[i] = ssl_rng_normal(&r);
    for (int i = 0; i < N; i++) y[i] = (int32_t)ssl_rng_below(&r, C);
    ssl_linear_probe_loss_grad(x, y, N, D, C, w, b, gw, gb, logits);
    const double h = 1e-5;
    double worst = 0;
    for (int i = 0; i < C * D + C; i++) {
        double *p = i < C * D ? &w[i] : &b[i - C * D], keep = *p;
        *p = keep + h;
        double lp = ssl_linear_probe_loss_grad(x, y, N, D, C, w, b, NULL, NULL, logits);
        *p = keep - h;
        double lm = ssl_linear_probe_loss_grad(x, y, N, D, C, w, b, NULL, NULL, logits);
        *p = keep;
        double fd = (lp - lm) / (2 * h), an = i < C * D ? gw[i] : gb[i - C * D];
        worst = fmax(worst, fabs(fd - an) / fmax(fabs(an), 1e-3));
    }
    if (worst > 1e-7) print_error("seed %llu: gradient relative error %.3e\n", (unsigned long long)SEED, worst);
    assert_true(worst < 1e-7);
    /* The value itself: the sum over rows of lse - z_y, recomputed here. */
    double want = 0;
    for (int i = 0; i < N; i++) {
        double z[C], top = -INFINITY, s = 0;
        for (int c = 0; c < C; c++) {
            z[c] = b[c];
            for (int j = 0; j < D; j++) z[c] += w[c * D + j] * x[i * D + j];
            top = fmax(top, z[c]);
        }
        for (int c = 0; c < C; c++) s += exp(z[c] - top);
        want += top + log(s) - z[y[i]];
    }
    double got = ssl_linear_probe_loss_grad(x, y, N, D, C, w, b, NULL, NULL, logits);
    assert_true(fabs(got - want) < 1e-12 * fabs(want));
}

static void test_probe_standardize(void **state)
{
    (void)state;
    enum { N = 50, D = 4 };
    float x[N * D];
    struct ssl_rng r;
    ssl_rng_init(&r, SEED, SSL_RNG_TEST, 11, 0, 0);
    for (int i = 0; i < N; i++) {
        x[i * D + 0] = (float)(1000 + ssl_rng_normal(&r)); /* far from 0: two passes needed */
        x[i * D + 1] = (float)(3 * ssl_rng_normal(&r) - 2);
        x[i * D + 2] = 7;                                   /* constant: std -> 1 */
        x[i * D + 3] = (float)ssl_rng_uniform(&r);
    }
    double mean[D], std[D];
    struct ssl_error err = {0};
    assert_int_equal(ssl_eval_standardize_stats(mean, std, x, N, D, &g_comm, &err), SSL_OK);
    for (int j = 0; j < D; j++) {
        long double m = 0, v = 0;
        for (int i = 0; i < N; i++) m += x[i * D + j];
        m /= N;
        for (int i = 0; i < N; i++) v += (x[i * D + j] - m) * (x[i * D + j] - m);
        double s = sqrt((double)(v / N));
        if (j == 2) s = 1;
        assert_true(fabs(mean[j] - (double)m) <= 1e-12 * fmax(1, fabs((double)m)));
        assert_true(fabs(std[j] - s) <= 1e-10 * s);
    }
}

static void test_probe_separable(void **state)
{
    (void)state;
    enum { NTR = 240, NTE = 120, D = 8, C = 6 };
    float *tr = malloc(NTR * D * sizeof *tr), *te = malloc(NTE * D * sizeof *te);
    int32_t ytr[NTR], yte[NTE];
    make_clusters(tr, ytr, NTR, D, C, 0.05, SEED, 5);
    make_clusters(te, yte, NTE, D, C, 0.05, SEED, 6);
    struct ssl_linear_probe_opts o = ssl_linear_probe_defaults();
    o.epochs = 30;
    o.batch = 32;
    struct ssl_eval_acc acc;
    struct ssl_error err = {0};
    double loss = -1, w[C * D], b[C];
    assert_int_equal(ssl_linear_probe_eval(&acc, tr, ytr, NTR, te, yte, NTE, D, C, &o, w, b, &loss, &g_comm, &err), SSL_OK);
    assert_true(acc.top1 == 100.0 && acc.top5 == 100.0 && acc.n == NTE);
    assert_true(loss >= 0 && loss < 0.05);
    free(te);
    free(tr);
}

static void test_probe_errors(void **state)
{
    (void)state;
    const float tr[] = {1, 0, 0, 1}, te[] = {1, 0};
    const int32_t ytr[] = {0, 1}, yte[] = {0}, ybad[] = {-1, 0};
    struct ssl_eval_acc acc;
    struct ssl_error err = {0};
    struct ssl_linear_probe_opts o = ssl_linear_probe_defaults();
    assert_int_equal(ssl_linear_probe_eval(&acc, tr, ybad, 2, te, yte, 1, 2, 2, &o, NULL, NULL, NULL, &g_comm, &err), SSL_E_DATA);
    assert_non_null(strstr(err.msg, "train label -1 at row 0"));
    o.momentum = 1;
    err = (struct ssl_error){0};
    assert_int_equal(ssl_linear_probe_eval(&acc, tr, ytr, 2, te, yte, 1, 2, 2, &o, NULL, NULL, NULL, &g_comm, &err), SSL_E_USAGE);
    /* Three copies of one point labelled 0, 0, 1: the gradient never vanishes and an absurd
     * learning rate overflows the bias. */
    const float same[] = {1, 1, 1, 1, 1, 1};
    const int32_t y3[] = {0, 0, 1};
    o = ssl_linear_probe_defaults();
    o.lr = 1e308;
    err = (struct ssl_error){0};
    assert_int_equal(ssl_linear_probe_eval(&acc, same, y3, 3, te, yte, 1, 2, 2, &o, NULL, NULL, NULL, &g_comm, &err), SSL_E_NONFINITE);
    assert_non_null(strstr(err.msg, "non-finite loss"));
}

int main(int argc, char **argv)
{
    if (ssl_comm_init(&g_comm, &argc, &argv) != 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_knn_matches_naive), cmocka_unit_test(test_knn_separated_clusters),
        cmocka_unit_test(test_knn_hand_example),  cmocka_unit_test(test_knn_ties),
        cmocka_unit_test(test_knn_errors),        cmocka_unit_test(test_probe_gradient),
        cmocka_unit_test(test_probe_standardize), cmocka_unit_test(test_probe_separable),
        cmocka_unit_test(test_probe_errors),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    ssl_comm_finalize(&g_comm);
    return failed != 0;
}
