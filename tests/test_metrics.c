/* test_metrics.c: the collapse metrics (src/metrics.c) on the fp64 core, against values known
 * in closed form, second computations that share no code with the library (a naive pair loop
 * with plain exp/log, a cyclic Jacobi eigensolver in naive loops), their invariances
 * (instance cloning, LOSSES-SPEC 1c) and the dimensional-collapse trend of LOSSES-SPEC 1c.
 * Random inputs come from the project RNG (SSL_RNG_TEST) with a printed seed, overridable
 * with SSL_TEST_SEED. Every workspace has a guard tail that must come back untouched. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "check.h"
#include "metrics.h"
#include "rng.h"

#ifndef SSL_F64
#error "test_metrics needs the fp64 core (ssl_core_f64)"
#endif

#define DEFAULT_SEED 20240611u
#define GUARD 64
#define SENTINEL (-12345.678)

/* ------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------ */

static uint64_t test_seed(void)
{
    const char *s = getenv("SSL_TEST_SEED");
    return s && *s ? strtoull(s, NULL, 10) : DEFAULT_SEED;
}

static void rng_begin(struct ssl_rng *r, const char *name, uint32_t word)
{
    uint64_t seed = test_seed();
    printf("[%s] seed %" PRIu64 "%s\n", name, seed,
           seed == DEFAULT_SEED ? " (override with SSL_TEST_SEED)" : " (from SSL_TEST_SEED)");
    fflush(stdout);
    ssl_rng_init(r, seed, SSL_RNG_TEST, word, 0, 0);
}

static void fill_normal(struct ssl_rng *r, double *x, int64_t n_elems)
{
    for (int64_t i = 0; i < n_elems; i++) x[i] = ssl_rng_normal(r);
}

/* A workspace for (n, d) with a guard tail of SENTINEL values. */
static double *work_new(int64_t n, int64_t d)
{
    int64_t n_elems = ssl_metrics_work_elems(n, d);
    double *w = malloc((size_t)(n_elems + GUARD) * sizeof *w);
    assert_non_null(w);
    for (int64_t i = 0; i < n_elems + GUARD; i++) w[i] = SENTINEL;
    return w;
}

static void work_free(double *w, int64_t n, int64_t d)
{
    int64_t n_elems = ssl_metrics_work_elems(n, d);
    for (int64_t i = n_elems; i < n_elems + GUARD; i++) assert_true(w[i] == SENTINEL);
    free(w);
}

static void assert_close(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol)) {
        fprintf(stderr, "%s: got %.17g, want %.17g (|diff| %.3g > tol %.3g)\n", what, got, want,
                fabs(got - want), tol);
        fail();
    }
}

static double w2_of(const double *z, int64_t n, int64_t d)
{
    double *w = work_new(n, d);
    double v = ssl_metric_w2(z, n, d, w);
    work_free(w, n, d);
    return v;
}

static double w2_sq_of(const double *z, int64_t n, int64_t d)
{
    double *w = work_new(n, d);
    double v = ssl_metric_w2_sq(z, n, d, w);
    work_free(w, n, d);
    return v;
}

static struct ssl_metrics metrics_of(const double *z, int64_t n, int64_t d)
{
    double *w = work_new(n, d);
    struct ssl_metrics m;
    assert_int_equal(ssl_metrics_compute(&m, z, n, d, w), 0);
    work_free(w, n, d);
    return m;
}

/* Rows +-scale * e_k, k = 0..d-1: n = 2d unit-direction rows with mean 0 and, once
 * normalised, biased covariance exactly I/d. */
static double *signed_basis(int64_t d, double scale)
{
    double *z = calloc((size_t)(2 * d * d), sizeof *z);
    assert_non_null(z);
    for (int64_t k = 0; k < d; k++) {
        z[(2 * k) * d + k] = scale;
        z[(2 * k + 1) * d + k] = -scale;
    }
    return z;
}

/* Cyclic Jacobi eigenvalues of the symmetric a (m, m) (destroyed), sorted descending. */
static void jacobi_eig(double *a, double *eig, int64_t m)
{
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0;
        for (int64_t p = 0; p < m; p++)
            for (int64_t q = p + 1; q < m; q++) off += a[p * m + q] * a[p * m + q];
        if (off < 1e-30) break;
        for (int64_t p = 0; p < m; p++) {
            for (int64_t q = p + 1; q < m; q++) {
                double apq = a[p * m + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int64_t k = 0; k < m; k++) { /* columns p, q */
                    double akp = a[k * m + p], akq = a[k * m + q];
                    a[k * m + p] = c * akp - s * akq;
                    a[k * m + q] = s * akp + c * akq;
                }
                for (int64_t k = 0; k < m; k++) { /* rows p, q */
                    double apk = a[p * m + k], aqk = a[q * m + k];
                    a[p * m + k] = c * apk - s * aqk;
                    a[q * m + k] = s * apk + c * aqk;
                }
            }
        }
    }
    for (int64_t k = 0; k < m; k++) eig[k] = a[k * m + k];
    for (int64_t i = 1; i < m; i++) /* insertion sort, descending */
        for (int64_t j = i; j > 0 && eig[j] > eig[j - 1]; j--) {
            double t = eig[j];
            eig[j] = eig[j - 1];
            eig[j - 1] = t;
        }
}

/* Naive biased covariance (d, d) of z (n, d), optionally uncentred and without the 1/n. */
static void naive_cov(double *c, const double *z, int64_t n, int64_t d, bool centred)
{
    double *mu = calloc((size_t)d, sizeof *mu);
    assert_non_null(mu);
    if (centred)
        for (int64_t j = 0; j < d; j++) {
            for (int64_t i = 0; i < n; i++) mu[j] += z[i * d + j];
            mu[j] /= (double)n;
        }
    for (int64_t a = 0; a < d; a++)
        for (int64_t b = 0; b < d; b++) {
            double s = 0.0;
            for (int64_t i = 0; i < n; i++) s += (z[i * d + a] - mu[a]) * (z[i * d + b] - mu[b]);
            c[a * d + b] = centred ? s / (double)n : s;
        }
    free(mu);
}

/* ------------------------------------------------------------------------------------------
 * W2
 * ------------------------------------------------------------------------------------------ */

/* Normalised moments exactly (0, I/d): W2^2 = 1 + 1 - (2/sqrt d) d sqrt(1/d + 1e-8)
 * = 2 - 2 sqrt(1 + d 1e-8) < 0, so the clamped W2 is exactly 0. Row scale must not matter. */
static void test_w2_exact_gaussian_moments(void **state)
{
    (void)state;
    const int64_t dims[] = {2, 8, 33};
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        int64_t d = dims[t];
        double *z = signed_basis(d, 3.5);
        double want = 2.0 - 2.0 * sqrt(1.0 + (double)d * 1e-8);
        double got = w2_sq_of(z, 2 * d, d);
        printf("  d %3" PRId64 ": W2^2 arg %.6e (want %.6e)\n", d, got, want);
        assert_close(got, want, 1e-13, "W2^2 argument, (0, I/d) moments");
        assert_true(got < 0.0);
        assert_true(w2_of(z, 2 * d, d) == 0.0);
        free(z);
    }
}

/* Complete collapse (every row c_i e_1, c_i > 0): mu = e_1, Sigma = 0:
 * W2^2 = 1 + 1 + 0 - (2/sqrt d) d sqrt(1e-8) = 2 - 2e-4 sqrt(d).
 * Two antipodal points +-e_1: mu = 0, Sigma = e_1 e_1^T:
 * W2^2 = 1 + 1 - (2/sqrt d) (sqrt(1 + 1e-8) + (d - 1) 1e-4), for n = 2 < d (Gram route, the
 * d - n missing zero eigenvalues added analytically) and n = 20 > d (covariance route). */
static void test_w2_closed_forms(void **state)
{
    (void)state;
    const int64_t d = 8;
    double z[20 * 8] = {0};
    for (int64_t i = 0; i < 5; i++) z[i * d] = 0.5 + (double)i;
    double want = 2.0 - 2e-4 * sqrt((double)d);
    assert_close(w2_sq_of(z, 5, d), want, 1e-14, "W2^2, complete collapse");
    assert_close(w2_of(z, 5, d), sqrt(want), 1e-14, "W2, complete collapse");

    memset(z, 0, sizeof z);
    for (int64_t i = 0; i < 20; i++) z[i * d] = (i % 2) ? -2.0 : 1.0;
    want = 2.0 - 2.0 / sqrt((double)d) * (sqrt(1.0 + 1e-8) + (double)(d - 1) * 1e-4);
    assert_close(w2_sq_of(z, 2, d), want, 1e-14, "W2^2, +-e_1, n = 2 < d");
    assert_close(w2_sq_of(z, 20, d), want, 1e-14, "W2^2, +-e_1, n = 20 > d");
}

/* Duplicating every sample changes neither the mean nor the biased covariance, so W2, the
 * ranks and the stable ranks are unchanged; the uniformity is not (the zero-distance pairs
 * enter its mean). n = 10 < d = 16 becomes 20 > 16, so the clone also crosses from the Gram
 * route to the covariance route. */
static void test_instance_cloning(void **state)
{
    (void)state;
    struct ssl_rng r;
    rng_begin(&r, "instance_cloning", 1);
    const int64_t shapes[][2] = {{10, 16}, {60, 16}};
    for (size_t t = 0; t < 2; t++) {
        int64_t n = shapes[t][0], d = shapes[t][1];
        double *z = malloc((size_t)(2 * n * d) * sizeof *z);
        assert_non_null(z);
        fill_normal(&r, z, n * d);
        for (int64_t i = 0; i < n; i++) { z[i * d] += 1.0; } /* a non-zero mean */
        memcpy(z + n * d, z, (size_t)(n * d) * sizeof *z);
        struct ssl_metrics a = metrics_of(z, n, d), b = metrics_of(z, 2 * n, d);
        printf("  n %" PRId64 " d %" PRId64 ": W2 %.15f -> %.15f, stable rank %.12f -> %.12f, "
               "L_U %.6f -> %.6f\n",
               n, d, a.w2, b.w2, a.stable_rank, b.stable_rank, a.uniformity, b.uniformity);
        assert_close(b.w2, a.w2, 1e-12, "W2 under cloning");
        assert_close(b.stable_rank, a.stable_rank, 1e-11 * a.stable_rank, "stable rank");
        assert_close(b.stable_rank_sv, a.stable_rank_sv, 1e-11 * a.stable_rank_sv,
                     "stable rank sv");
        assert_close(b.effective_rank_cov, a.effective_rank_cov, 1e-10, "erank cov");
        assert_close(b.rank, a.rank, 0.0, "rank");
        assert_close(b.z_std_mean, a.z_std_mean, 0.05 * a.z_std_mean, "z std (n-1 only)");
        assert_true(fabs(b.uniformity - a.uniformity) > 1e-2);
        free(z);
    }
}

/* LOSSES-SPEC 1c: N = 3000, m = 200, first (1 - eta) m columns N(0, 1), the rest zero, rows
 * normalised. The column counts are those of statsle/WassersteinSSL
 * EmpiricalStudy/DimensionalCollapseDegrees/AnalysisOnCollapseLevel.py, int(200*(1-level))
 * and int(200*level), truncated: at eta = 0.9 that is 19 + 180 = 199 columns, not 20 + 180
 * (200 * (1 - 0.9) = 19.999999999999996), which is what the table's 1.175 / -3.588 show.
 * Checked against the table (W2 +-0.03, L_U +-0.01) and, for W2, against the population
 * value W2^2 = 2 - 2 sqrt(k/D) plus the Marchenko-Pastur bias k / (4N), D = total columns. */
static void test_dimensional_collapse_trend(void **state)
{
    (void)state;
    const int64_t n = 3000, m = 200;
    const double eta[] = {0.0, 0.25, 0.5, 0.75, 0.9};
    const double w2_table[] = {0.130, 0.528, 0.768, 1.000, 1.175};
    const double lu_table[] = {-3.960, -3.947, -3.920, -3.841, -3.588};
    struct ssl_rng r;
    rng_begin(&r, "dimensional_collapse", 2);
    double *z = malloc((size_t)(n * m) * sizeof *z);
    double *w = work_new(n, m);
    assert_non_null(z);
    for (size_t t = 0; t < 5; t++) {
        int64_t k = (int64_t)((double)m * (1.0 - eta[t])); /* Python int(): truncation */
        int64_t d = k + (int64_t)((double)m * eta[t]);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) z[i * d + j] = j < k ? ssl_rng_normal(&r) : 0.0;
        double w2 = ssl_metric_w2(z, n, d, w);
        double lu = ssl_metric_uniformity(z, n, d, 2.0);
        double pop = sqrt(2.0 - 2.0 * sqrt((double)k / (double)d) + (double)k / (4.0 * (double)n));
        printf("  eta %.2f (k %3" PRId64 ", D %3" PRId64 "): W2 %.4f (table %.3f, population+bias"
               " %.4f)  L_U %.4f (table %.3f)\n",
               eta[t], k, d, w2, w2_table[t], pop, lu, lu_table[t]);
        assert_close(w2, w2_table[t], 0.03, "W2 vs LOSSES-SPEC 1c table");
        assert_close(w2, pop, 0.03, "W2 vs population + bias");
        assert_close(lu, lu_table[t], 0.01, "L_U vs LOSSES-SPEC 1c table");
    }
    work_free(w, n, m);
    free(z);
}

/* ------------------------------------------------------------------------------------------
 * Uniformity and alignment
 * ------------------------------------------------------------------------------------------ */

static double naive_uniformity(const double *z, int64_t n, int64_t d, double t)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            double ni = 0.0, nj = 0.0, dist2 = 0.0;
            for (int64_t k = 0; k < d; k++) {
                ni += z[i * d + k] * z[i * d + k];
                nj += z[j * d + k] * z[j * d + k];
            }
            for (int64_t k = 0; k < d; k++) {
                double diff = z[i * d + k] / sqrt(ni) - z[j * d + k] / sqrt(nj);
                dist2 += diff * diff;
            }
            sum += exp(-t * dist2);
        }
    return log(sum / ((double)n * (double)(n - 1) / 2.0));
}

static void test_uniformity_naive(void **state)
{
    (void)state;
    struct ssl_rng r;
    rng_begin(&r, "uniformity_naive", 3);
    const int64_t n = 40, d = 7;
    double z[40 * 7];
    fill_normal(&r, z, n * d);
    const double ts[] = {2.0, 0.5, 7.0};
    for (size_t i = 0; i < 3; i++) {
        double want = naive_uniformity(z, n, d, ts[i]);
        assert_close(ssl_metric_uniformity(z, n, d, ts[i]), want, 1e-12 * fabs(want) + 1e-14,
                     "uniformity vs naive loop");
    }
    /* e_1 and e_2 are sqrt(2) apart: log exp(-2t) = -2t exactly, even where exp underflows. */
    double two[2 * 3] = {1, 0, 0, 0, 5, 0};
    assert_close(ssl_metric_uniformity(two, 2, 3, 2.0), -4.0, 1e-15, "two points, t = 2");
    assert_close(ssl_metric_uniformity(two, 2, 3, 500.0), -1000.0, 1e-12, "t = 500");
    assert_true(isnan(ssl_metric_uniformity(two, 1, 3, 2.0)));
}

static void test_alignment_by_hand(void **state)
{
    (void)state;
    /* n(3,4) = (.6,.8), n(4,3) = (.8,.6): ||.||^2 = 0.08; n(1,0) = e1, n(0,2) = e2: 2. */
    const double z1[] = {3, 4, 1, 0}, z2[] = {4, 3, 0, 2};
    assert_close(ssl_metric_alignment(z1, z2, 2, 2, 2.0), (0.08 + 2.0) / 2.0, 1e-15, "alpha 2");
    assert_close(ssl_metric_alignment(z1, z2, 2, 2, 1.0), (sqrt(0.08) + sqrt(2.0)) / 2.0,
                 1e-15, "alpha 1");
    assert_close(ssl_metric_alignment(z1, z1, 2, 2, 2.0), 0.0, 0.0, "identical views");
}

/* ------------------------------------------------------------------------------------------
 * Spectrum and ranks
 * ------------------------------------------------------------------------------------------ */

/* Both routes against Jacobi on the naive (d, d) matrix, for n > d (covariance route) and
 * n < d (Gram route); uncentred also Z against Z^T, which swaps the routes on one spectrum. */
static void test_spectrum_routes(void **state)
{
    (void)state;
    struct ssl_rng r;
    rng_begin(&r, "spectrum_routes", 4);
    const int64_t shapes[][2] = {{12, 7}, {5, 9}, {9, 9}};
    for (size_t t = 0; t < 3; t++) {
        int64_t n = shapes[t][0], d = shapes[t][1], mn = n < d ? n : d;
        double z[12 * 9], zt[12 * 9], c[9 * 9], jac[9], eig[9], eig_t[9];
        fill_normal(&r, z, n * d);
        for (int64_t i = 0; i < n; i++) z[i * d + 1] += 2.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) zt[j * n + i] = z[i * d + j];
        for (int centred = 0; centred < 2; centred++) {
            double *w = work_new(n, d);
            assert_int_equal(ssl_metric_spectrum(eig, z, n, d, centred, w), 0);
            work_free(w, n, d);
            naive_cov(c, z, n, d, centred);
            jacobi_eig(c, jac, d);
            for (int64_t k = 0; k < mn; k++)
                assert_close(eig[k], fmax(jac[k], 0.0), 1e-12 * jac[0], "spectrum vs Jacobi");
            for (int64_t k = 1; k < mn; k++) assert_true(eig[k] <= eig[k - 1]);
            if (!centred) {
                double *wt = work_new(d, n);
                assert_int_equal(ssl_metric_spectrum(eig_t, zt, d, n, false, wt), 0);
                work_free(wt, d, n);
                for (int64_t k = 0; k < mn; k++)
                    assert_close(eig_t[k], eig[k], 1e-12 * eig[0], "Z vs Z^T");
            }
        }
    }
}

/* Z = A B with A (50, 3), B (3, 10): rank 3 centred and raw; adding a constant row offset
 * makes the raw rank 4 while the centred rank stays 3. Wide (n = 6 < d = 10) too. */
static void test_rank_low_rank(void **state)
{
    (void)state;
    struct ssl_rng r;
    rng_begin(&r, "rank_low_rank", 5);
    const int64_t ns[] = {50, 6};
    const int64_t d = 10;
    for (size_t t = 0; t < 2; t++) {
        int64_t n = ns[t];
        double a[50 * 3], b[3 * 10], z[50 * 10];
        fill_normal(&r, a, n * 3);
        fill_normal(&r, b, 3 * d);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < 3; k++) s += a[i * 3 + k] * b[k * d + j];
                z[i * d + j] = s;
            }
        struct ssl_metrics m = metrics_of(z, n, d);
        assert_close(m.rank, 3.0, 0.0, "rank of A B");
        assert_close(m.rank_raw, 3.0, 0.0, "raw rank of A B");
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) z[i * d + j] += 0.3 * (double)(j + 1);
        m = metrics_of(z, n, d);
        assert_close(m.rank, 3.0, 0.0, "rank of A B + 1 c^T");
        assert_close(m.rank_raw, 4.0, 0.0, "raw rank of A B + 1 c^T");
        assert_true(m.stable_rank >= 1.0 && m.stable_rank <= 3.0 + 1e-12);
        assert_true(m.effective_rank_cov >= 1.0 && m.effective_rank_cov <= 3.0 + 1e-12);
    }
}

/* Diagonal-like Z (8, 6) = [diag(s); 0]: its singular values are s exactly. */
static void test_rank_diagonal(void **state)
{
    (void)state;
    const double s[] = {2.0, 1.0, 0.5, 0.2, 0.05, 0.01};
    const int64_t n = 8, d = 6;
    double z[8 * 6] = {0};
    for (int64_t k = 0; k < d; k++) z[k * d + k] = s[k];
    struct ssl_metrics m = metrics_of(z, n, d);
    assert_close(m.rank_tol01, 4.0, 0.0, "#(sigma > 0.1)");
    assert_close(m.rank_raw, 6.0, 0.0, "raw rank, all above 8 * FLT_EPSILON * 2");
    assert_close(m.effective_rank, ssl_metric_effective_rank(s, 6), 1e-12, "erank of sigma");
    assert_close(m.rankme, ssl_metric_rankme(s, 6), 1e-12, "RankMe of sigma");
    /* a tiny singular value below sigma_max * max(n, d) * FLT_EPSILON does not count */
    z[5 * d + 5] = 2.0 * 8.0 * (double)FLT_EPSILON * 0.5;
    assert_close(metrics_of(z, n, d).rank_raw, 5.0, 0.0, "tolerance");
}

/* Hand values of the entropies. */
static void test_entropy_ranks(void **state)
{
    (void)state;
    const double eq[] = {3.0, 3.0, 3.0, 3.0, 0.0, 0.0};
    assert_close(ssl_metric_effective_rank(eq, 6), 4.0, 1e-14, "erank of 4 equal values");
    double p = 0.25 + 1e-7, q = 1e-7;
    assert_close(ssl_metric_rankme(eq, 6), exp(-(4.0 * p * log(p) + 2.0 * q * log(q))), 1e-13,
                 "RankMe with eps");
    const double two[] = {3.0, 1.0};
    assert_close(ssl_metric_effective_rank(two, 2), exp(-(0.75 * log(0.75) + 0.25 * log(0.25))),
                 1e-14, "erank (3, 1)");
    const double zero[] = {0.0, 0.0};
    assert_true(ssl_metric_effective_rank(zero, 2) == 0.0);
    assert_true(ssl_metric_rankme(zero, 2) == 0.0);

    /* k equal singular values through the whole pipeline: rows 3 e_k, k < 4, and 2 zero rows */
    double z[6 * 10] = {0};
    for (int64_t k = 0; k < 4; k++) z[k * 10 + k] = 3.0;
    struct ssl_metrics m = metrics_of(z, 6, 10);
    assert_close(m.effective_rank, 4.0, 1e-12, "erank, 4 equal sigma");
}

/* Rows +-e_k (n = 2d): Z_c = Z, Z_c^T Z_c = 2 I, so every rank is d. The normalised columns
 * hold one +1 and one -1: unbiased std sqrt(2 / (n - 1)). */
static void test_identity_like(void **state)
{
    (void)state;
    const int64_t d = 12, n = 24;
    double *z = signed_basis(d, 1.0);
    struct ssl_metrics m = metrics_of(z, n, d);
    assert_close(m.rank, (double)d, 0.0, "rank");
    assert_close(m.rank_raw, (double)d, 0.0, "raw rank");
    assert_close(m.rank_tol01, (double)d, 0.0, "rank tol 0.1");
    assert_close(m.stable_rank, (double)d, 1e-12, "stable rank");
    assert_close(m.stable_rank_sv, (double)d, 1e-12, "stable rank sv");
    assert_close(m.effective_rank, (double)d, 1e-12, "erank");
    assert_close(m.effective_rank_cov, (double)d, 1e-12, "erank cov");
    assert_close(m.z_std_mean, sqrt(2.0 / (double)(n - 1)), 1e-15, "z std mean");
    assert_true(m.w2 == 0.0);
    free(z);

    /* every row equal: Z_c = 0, ranks and stable ranks 0; raw rank 1 */
    double c[4 * 3] = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3};
    m = metrics_of(c, 4, 3);
    assert_true(m.rank == 0.0 && m.stable_rank == 0.0 && m.stable_rank_sv == 0.0);
    assert_true(m.effective_rank_cov == 0.0 && m.z_std_mean == 0.0);
    assert_close(m.rank_raw, 1.0, 0.0, "raw rank of equal rows");
    assert_close(m.effective_rank, 1.0, 1e-12, "erank of equal rows");
}

static void test_nonfinite(void **state)
{
    (void)state;
    double z[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 0, 1};
    z[4] = NAN;
    double *w = work_new(4, 3);
    struct ssl_metrics m;
    double eig[3];
    assert_int_equal(ssl_metrics_compute(&m, z, 4, 3, w), SSL_E_NONFINITE);
    assert_true(isnan(m.w2) && isnan(m.rank) && isnan(m.z_std_mean));
    assert_int_equal(ssl_metric_spectrum(eig, z, 4, 3, true, w), SSL_E_NONFINITE);
    assert_true(isnan(ssl_metric_w2(z, 4, 3, w)));
    work_free(w, 4, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_w2_exact_gaussian_moments),
        cmocka_unit_test(test_w2_closed_forms),
        cmocka_unit_test(test_instance_cloning),
        cmocka_unit_test(test_uniformity_naive),
        cmocka_unit_test(test_alignment_by_hand),
        cmocka_unit_test(test_spectrum_routes),
        cmocka_unit_test(test_rank_low_rank),
        cmocka_unit_test(test_rank_diagonal),
        cmocka_unit_test(test_entropy_ranks),
        cmocka_unit_test(test_identity_like),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_dimensional_collapse_trend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
