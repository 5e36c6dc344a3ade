/* mpi_eig_gram.c: ssl_eig_power_rows (mpi/eig_gram.h), W = (G + eps I)^power of a symmetric
 * matrix held as block rows, on both paths, against references rank 0 computes on its own full
 * copy without LAPACK, ScaLAPACK or BLAS.
 *
 * Every rank builds the SAME matrices (src/rng.h, SSL_RNG_TEST stream keyed by SEED and
 * (n, case)) and passes a private copy of its own block rows. Cases, for n = 60, 132, 264
 * (divisible by 1..4; 60 < the block size 64, 264 spans several blocks):
 *   distinct  G = Q diag(lambda) Q^T, Q random orthogonal (Gram-Schmidt twice on normal entries),
 *             lambda spread over [0.5, 10]: compared with W_ref = Q diag(f(lambda)) Q^T;
 *   repeated  the same with only 3 distinct eigenvalues (0.25, 1, 4): U is not unique, W is;
 *   gram      G = S S^T / d, S (n, d) normal, d = n / 4 (rank-deficient), eps = 0.01, power -0.5
 *             (Zero-CL's ZCA): no closed form, so the defining properties are checked:
 *             |W (G + eps I) W - I|, |W - W^T| / |W|, and W positive definite (Cholesky) - the
 *             three together pin W = (G + eps I)^(-1/2) down (a symmetric positive definite W with
 *             W A W = I has W^-1 = the unique SPD square root of A);
 * plus variations of eps and power (power 1: G + eps I, a known value, also with eps < 0;
 * power 2 with eps = -1 through a zero eigenvalue; power -1: W (G + eps I) = I; power 0.5),
 * a strictly lower triangle made slightly asymmetric (both paths read only the upper triangle
 * and must return the symmetric answer), and the failures: a NaN in the last rank's rows, a
 * negative power of a non-positive lambda + eps, a fractional power of a negative one, bad
 * sizes and eps differing between ranks. Each is run in three modes:
 *   replicated  threshold n + 1 (allgather, LAPACK on every rank),
 *   threshold0  threshold 0 (ScaLAPACK when P > 1, the replicated path at P = 1),
 *   scalapack   ssl_eig_power_rows_scalapack (ScaLAPACK always, a 1 x 1 grid at P = 1).
 * Errors are max-norm, relative to the reference's largest entry, tolerance 1e-9; the return
 * code must be the expected one and equal on every rank. Rank 0 prints one line per check with
 * the worst error over the ranks' row blocks and the rank that has it, then
 * "mpi_eig_gram np=P: N checks, F failures"; every rank exits 1 on any failure. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "check.h"
#include "comm.h"
#include "eig_gram.h"
#include "mpi_test_util.h"
#include "rng.h"

static const uint64_t SEED = 20261123;
static const double TOL = 1e-9;

enum mode { MODE_REPLICATED, MODE_THRESHOLD0, MODE_SCALAPACK, N_MODES };
static const char *const MODE_NAMES[N_MODES] = {"replicated", "threshold0", "scalapack"};

struct run {
    const struct ssl_comm *comm;
    int n_checks, n_failures;
};

/* One symmetric test matrix, identical on every rank; q and lambda are NULL for the Gram case. */
struct problem {
    int64_t n, rows;
    double *g;      /* (n, n) */
    double *q;      /* (n, n), columns orthonormal, or NULL */
    double *lambda; /* (n) or NULL */
};

static double *alloc_doubles(int64_t count)
{
    double *p = malloc((size_t)(count > 0 ? count : 1) * sizeof *p);
    SSL_CHECKF(p, "out of memory (%lld doubles)", (long long)count);
    return p;
}

/* ---- building the matrices ------------------------------------------------------------- */

/* q (n, n): a random orthogonal matrix, modified Gram-Schmidt twice on normal entries. */
static void random_orthogonal(double *q, int64_t n, struct ssl_rng *rng)
{
    for (int64_t i = 0; i < n * n; i++) q[i] = ssl_rng_normal(rng);
    mpi_test_orthonormalize(q, n);
}

/* out (n, n) = Q diag(d) Q^T, exactly symmetric (the upper triangle mirrored). */
static void spectral(double *out, const double *q, const double *d, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++) s += q[i * n + k] * d[k] * q[j * n + k];
            out[i * n + j] = out[j * n + i] = s;
        }
}

static void make_spectral(struct problem *p, bool repeated, struct ssl_rng *rng)
{
    const int64_t n = p->n;
    p->q = alloc_doubles(n * n);
    p->lambda = alloc_doubles(n);
    random_orthogonal(p->q, n, rng);
    static const double three[3] = {0.25, 1.0, 4.0};
    for (int64_t k = 0; k < n; k++)
        p->lambda[k] = repeated ? three[k % 3] : 0.5 + 9.5 * (double)k / (double)(n - 1);
    spectral(p->g, p->q, p->lambda, n);
}

/* g = S S^T / d with S (n, d) standard normal: PSD of rank d < n. */
static void make_gram(struct problem *p, int64_t d, struct ssl_rng *rng)
{
    const int64_t n = p->n;
    double *s = alloc_doubles(n * d);
    for (int64_t i = 0; i < n * d; i++) s[i] = ssl_rng_normal(rng);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            double acc = 0;
            for (int64_t k = 0; k < d; k++) acc += s[i * d + k] * s[j * d + k];
            p->g[i * n + j] = p->g[j * n + i] = acc / (double)d;
        }
    free(s);
}

enum kind { KIND_DISTINCT, KIND_REPEATED, KIND_GRAM };

static struct problem problem_make(enum kind kind, int64_t n, int size)
{
    struct problem p = {.n = n, .rows = n / size, .g = alloc_doubles(n * n)};
    struct ssl_rng rng;
    ssl_rng_init(&rng, SEED, SSL_RNG_TEST, (uint32_t)n, (uint32_t)kind, 0);
    if (kind == KIND_GRAM)
        make_gram(&p, n / 4, &rng);
    else
        make_spectral(&p, kind == KIND_REPEATED, &rng);
    return p;
}

static void problem_free(struct problem *p)
{
    free(p->lambda);
    free(p->q);
    free(p->g);
}

/* ---- references and errors (rank 0, plain loops) ---------------------------------------- */

/* out (n, n) = a b, both (n, n). */
static void matmul(double *out, const double *a, const double *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) out[i * n + j] = 0;
        for (int64_t k = 0; k < n; k++) {
            const double aik = a[i * n + k];
            for (int64_t j = 0; j < n; j++) out[i * n + j] += aik * b[k * n + j];
        }
    }
}

/* W_ref = Q diag((lambda + eps)^power) Q^T from the known factors. */
static void reference_from_factors(double *w_ref, const struct problem *p, double eps,
                                   double power)
{
    double *f = alloc_doubles(p->n);
    for (int64_t k = 0; k < p->n; k++) f[k] = pow(p->lambda[k] + eps, power);
    spectral(w_ref, p->q, f, p->n);
    free(f);
}

/* Per row block r: max |w - ref| over the block, relative to max |ref|. */
static void block_errors(double *err, const double *w, const double *ref, const struct problem *p,
                         int size)
{
    const double scale = mpi_test_max_abs(ref, p->n * p->n);
    for (int r = 0; r < size; r++) {
        double e = 0;
        for (int64_t i = r * p->rows * p->n; i < (r + 1) * p->rows * p->n; i++)
            e = fmax(e, fabs(w[i] - ref[i]));
        err[r] = e / scale;
    }
}

/* a (n, n) := a + shift I. */
static void add_identity(double *a, int64_t n, double shift)
{
    for (int64_t i = 0; i < n; i++) a[i * n + i] += shift;
}

/* Per row block r: max over its rows of |(W A)_ij - I_ij| (mode 1) or |(W A W)_ij - I_ij|
 * (mode 2), A = G + eps I: both are relative to |I| = 1. */
static void inverse_errors(double *err, const double *w, const struct problem *p, double eps,
                           int times_w, int size)
{
    const int64_t n = p->n;
    double *a = alloc_doubles(n * n), *wa = alloc_doubles(n * n), *waw = alloc_doubles(n * n);
    memcpy(a, p->g, (size_t)(n * n) * sizeof *a);
    add_identity(a, n, eps);
    matmul(wa, w, a, n);
    if (times_w == 2) matmul(waw, wa, w, n);
    const double *r_mat = times_w == 2 ? waw : wa;
    for (int r = 0; r < size; r++) {
        double e = 0;
        for (int64_t i = r * p->rows; i < (r + 1) * p->rows; i++)
            for (int64_t j = 0; j < n; j++)
                e = fmax(e, fabs(r_mat[i * n + j] - (i == j ? 1.0 : 0.0)));
        err[r] = e;
    }
    free(waw);
    free(wa);
    free(a);
}

/* Per row block: max |W_ij - W_ji| relative to max |W|. */
static void symmetry_errors(double *err, const double *w, const struct problem *p, int size)
{
    const double scale = mpi_test_max_abs(w, p->n * p->n);
    for (int r = 0; r < size; r++) {
        double e = 0;
        for (int64_t i = r * p->rows; i < (r + 1) * p->rows; i++)
            for (int64_t j = 0; j < p->n; j++) e = fmax(e, fabs(w[i * p->n + j] - w[j * p->n + i]));
        err[r] = e / scale;
    }
}

/* Cholesky of (W + W^T) / 2 succeeds: W is positive definite. */
static bool positive_definite(const double *w, int64_t n)
{
    double *l = alloc_doubles(n * n);
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++)
        for (int64_t j = 0; j <= i && ok; j++) {
            double s = 0.5 * (w[i * n + j] + w[j * n + i]);
            for (int64_t k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
            if (i == j) {
                ok = s > 0;
                l[i * n + i] = ok ? sqrt(s) : 0;
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    free(l);
    return ok;
}

/* ---- running a call and reporting ------------------------------------------------------- */

/* Collective: this rank's block rows of g through `mode`; w (n, n) on rank 0 is the gathered
 * result. Returns the code; *codes_equal says whether every rank returned the same one. */
static int run_mode(double *w, const double *g, const struct problem *p, double eps, double power,
                    enum mode mode, bool *codes_equal, const struct ssl_comm *comm)
{
    const int64_t block = p->rows * p->n;
    double *g_rows = alloc_doubles(block), *w_rows = alloc_doubles(block);
    memcpy(g_rows, g + comm->rank * block, (size_t)block * sizeof *g_rows);
    for (int64_t i = 0; i < block; i++) w_rows[i] = (double)NAN; /* nothing left over */
    int rc = mode == MODE_REPLICATED
                 ? ssl_eig_power_rows(w_rows, g_rows, p->rows, p->n, eps, power, p->n + 1, comm)
             : mode == MODE_THRESHOLD0
                 ? ssl_eig_power_rows(w_rows, g_rows, p->rows, p->n, eps, power, 0, comm)
                 : ssl_eig_power_rows_scalapack(w_rows, g_rows, p->rows, p->n, eps, power, comm);
    int lo = 0, hi = 0;
    MPI_Allreduce(&rc, &lo, 1, MPI_INT, MPI_MIN, comm->world);
    MPI_Allreduce(&rc, &hi, 1, MPI_INT, MPI_MAX, comm->world);
    *codes_equal = lo == hi;
    MPI_Gather(w_rows, ssl_int(block), MPI_DOUBLE, w, ssl_int(block), MPI_DOUBLE, 0, comm->world);
    free(w_rows);
    free(g_rows);
    return rc;
}

/* Collective: rank 0's per-block errors decide; prints the worst and its rank. */
static void report(struct run *r, const char *name, const struct problem *p, enum mode mode,
                   const double *err, bool ok_extra, const char *extra)
{
    int bad = 0;
    if (r->comm->rank == 0) {
        int worst = 0;
        for (int k = 1; k < r->comm->size; k++)
            if (!(err[k] <= err[worst])) worst = k;
        bad = !ok_extra || !(err[worst] <= TOL);
        printf("  %-16s n=%-4lld np=%d %-10s worst %.2e (rank %d)%s%s  %s\n", name,
               (long long)p->n, r->comm->size, MODE_NAMES[mode], err[worst], worst,
               extra[0] ? "  " : "", extra, bad ? "FAIL" : "ok");
        fflush(stdout);
    }
    MPI_Bcast(&bad, 1, MPI_INT, 0, r->comm->world);
    r->n_checks++;
    r->n_failures += bad;
}

/* A call expected to fail with `expected` on every rank. */
static void check_code(struct run *r, const char *name, const struct problem *p, const double *g,
                       double eps, double power, enum mode mode, int expected)
{
    double *w = alloc_doubles(r->comm->rank == 0 ? p->n * p->n : 1);
    bool equal = false;
    const int rc = run_mode(w, g, p, eps, power, mode, &equal, r->comm);
    char extra[64];
    snprintf(extra, sizeof extra, "rc %d (want %d) %s", rc, expected,
             equal ? "on every rank" : "DIFFERS between ranks");
    double zero[64] = {0};
    SSL_CHECK(r->comm->size <= 64);
    report(r, name, p, mode, zero, rc == expected && equal, extra);
    free(w);
}

/* Compare with a known W (ref on rank 0). */
static void check_value(struct run *r, const char *name, const struct problem *p, const double *g,
                        double eps, double power, const double *ref)
{
    const bool root = r->comm->rank == 0;
    double *w = alloc_doubles(root ? p->n * p->n : 1), err[64] = {0};
    SSL_CHECK(r->comm->size <= 64);
    for (int m = 0; m < N_MODES; m++) {
        bool equal = false;
        const int rc = run_mode(w, g, p, eps, power, (enum mode)m, &equal, r->comm);
        if (root) block_errors(err, w, ref, p, r->comm->size);
        char extra[64] = "";
        if (rc != 0 || !equal)
            snprintf(extra, sizeof extra, "rc %d%s", rc, equal ? "" : " differs");
        report(r, name, p, (enum mode)m, err, rc == 0 && equal, extra);
    }
    free(w);
}

/* The Gram case's defining properties (rank 0): W A W = I, W symmetric, W positive definite. */
static void check_inverse_sqrt(struct run *r, const char *name, const struct problem *p,
                               double eps)
{
    const bool root = r->comm->rank == 0;
    double *w = alloc_doubles(root ? p->n * p->n : 1), err[64] = {0}, sym[64] = {0};
    SSL_CHECK(r->comm->size <= 64);
    for (int m = 0; m < N_MODES; m++) {
        bool equal = false, pd = false;
        const int rc = run_mode(w, p->g, p, eps, -0.5, (enum mode)m, &equal, r->comm);
        char extra[96] = "";
        if (root) {
            inverse_errors(err, w, p, eps, 2, r->comm->size);
            symmetry_errors(sym, w, p, r->comm->size);
            for (int k = 0; k < r->comm->size; k++) err[k] = fmax(err[k], sym[k]);
            pd = positive_definite(w, p->n);
            snprintf(extra, sizeof extra, "(|WAW-I|, |W-W^T|) PD %s%s", pd ? "yes" : "NO",
                     rc != 0 || !equal ? " rc" : "");
        }
        report(r, name, p, (enum mode)m, err, rc == 0 && equal && (pd || !root), extra);
    }
    free(w);
}

/* W (G + eps I) = I for power -1, on every mode. */
static void check_inverse(struct run *r, const char *name, const struct problem *p, double eps)
{
    const bool root = r->comm->rank == 0;
    double *w = alloc_doubles(root ? p->n * p->n : 1), err[64] = {0};
    SSL_CHECK(r->comm->size <= 64);
    for (int m = 0; m < N_MODES; m++) {
        bool equal = false;
        const int rc = run_mode(w, p->g, p, eps, -1.0, (enum mode)m, &equal, r->comm);
        if (root) inverse_errors(err, w, p, eps, 1, r->comm->size);
        report(r, name, p, (enum mode)m, err, rc == 0 && equal, rc ? "rc" : "");
    }
    free(w);
}

/* ---- the cases -------------------------------------------------------------------------- */

static void check_spectral(struct run *r, enum kind kind, int64_t n)
{
    const bool root = r->comm->rank == 0;
    struct problem p = problem_make(kind, n, r->comm->size);
    double *ref = alloc_doubles(root ? n * n : 1);
    const char *tag = kind == KIND_DISTINCT ? "distinct" : "repeated";
    char name[40];

    /* ZCA: power -0.5, eps 0.01 (distinct) and eps 0 (repeated). */
    const double eps = kind == KIND_DISTINCT ? 0.01 : 0.0;
    if (root) reference_from_factors(ref, &p, eps, -0.5);
    snprintf(name, sizeof name, "%s/zca", tag);
    check_value(r, name, &p, p.g, eps, -0.5, ref);

    /* power 1 returns G + eps I, here with eps < 0 too. */
    const double shift = kind == KIND_DISTINCT ? 0.25 : -5.0;
    if (root) {
        memcpy(ref, p.g, (size_t)(n * n) * sizeof *ref);
        add_identity(ref, n, shift);
    }
    snprintf(name, sizeof name, "%s/p=1", tag);
    check_value(r, name, &p, p.g, shift, 1.0, ref);

    if (kind == KIND_DISTINCT) {
        if (root) reference_from_factors(ref, &p, 0.0, 0.5);
        check_value(r, "distinct/sqrt", &p, p.g, 0.0, 0.5, ref);
        check_inverse(r, "distinct/inverse", &p, 0.5);
        /* Both paths read the upper triangle only: junk below it changes nothing. */
        double *g_junk = alloc_doubles(n * n);
        memcpy(g_junk, p.g, (size_t)(n * n) * sizeof *g_junk);
        for (int64_t i = 1; i < n; i++)
            for (int64_t j = 0; j < i; j++) g_junk[i * n + j] += 1e-3 * (double)((i * 7 + j) % 5);
        if (root) reference_from_factors(ref, &p, 0.01, -0.5);
        check_value(r, "distinct/lower", &p, g_junk, 0.01, -0.5, ref);
        free(g_junk);
    } else {
        /* power 2 with eps = -1: f = (-0.75)^2, 0^2 (a zero eigenvalue), 3^2. */
        if (root) reference_from_factors(ref, &p, -1.0, 2.0);
        check_value(r, "repeated/p=2", &p, p.g, -1.0, 2.0, ref);
    }
    free(ref);
    problem_free(&p);
}

static void check_gram(struct run *r, int64_t n)
{
    const bool root = r->comm->rank == 0;
    struct problem p = problem_make(KIND_GRAM, n, r->comm->size);
    check_inverse_sqrt(r, "gram/zca", &p, 0.01);
    double *ref = alloc_doubles(root ? n * n : 1);
    if (root) memcpy(ref, p.g, (size_t)(n * n) * sizeof *ref);
    check_value(r, "gram/p=1,eps=0", &p, p.g, 0.0, 1.0, ref);
    free(ref);
    problem_free(&p);
}

/* Bad sizes: n != rows * P and rows = 0, refused with SSL_E_USAGE on every rank. */
static void check_usage(struct run *r, const struct problem *p)
{
    const int64_t n_bad = p->n + 1;
    double *g_rows = alloc_doubles(p->rows * n_bad), *w_rows = alloc_doubles(p->rows * n_bad);
    for (int64_t i = 0; i < p->rows * n_bad; i++) g_rows[i] = 1.0;
    for (int m = 0; m < N_MODES; m++)
        for (int variant = 0; variant < 2; variant++) {
            const int64_t rows = variant == 0 ? p->rows : 0, n = variant == 0 ? n_bad : 0;
            const int rc = m == MODE_SCALAPACK
                               ? ssl_eig_power_rows_scalapack(w_rows, g_rows, rows, n, 0.01,
                                                              -0.5, r->comm)
                               : ssl_eig_power_rows(w_rows, g_rows, rows, n, 0.01, -0.5,
                                                    m == MODE_REPLICATED ? n + 1 : 0, r->comm);
            int bad = rc != SSL_E_USAGE, any = 0;
            MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, r->comm->world);
            const double zero[64] = {0};
            report(r, variant == 0 ? "bad-n" : "rows=0", p, (enum mode)m, zero, !any,
                   any ? "rc (want SSL_E_USAGE on every rank)" : "SSL_E_USAGE on every rank");
        }
    free(w_rows);
    free(g_rows);
}

static void check_failures(struct run *r, int64_t n)
{
    struct problem p = problem_make(KIND_DISTINCT, n, r->comm->size);
    double *g_nan = alloc_doubles(n * n);
    memcpy(g_nan, p.g, (size_t)(n * n) * sizeof *g_nan);
    g_nan[(n - 1) * n] = (double)NAN; /* the last rank's rows, below the diagonal */
    for (int m = 0; m < N_MODES; m++) {
        check_code(r, "nan-input", &p, g_nan, 0.01, -0.5, (enum mode)m, SSL_E_NONFINITE);
        /* lambda in [0.5, 10]: lambda - 5 changes sign. */
        check_code(r, "neg-base/p<0", &p, p.g, -5.0, -0.5, (enum mode)m, SSL_E_NONFINITE);
        check_code(r, "neg-base/p=0.5", &p, p.g, -5.0, 0.5, (enum mode)m, SSL_E_NONFINITE);
    }
    check_usage(r, &p);
    /* eps differing between ranks would scale columns inconsistently: refused. */
    if (r->comm->size > 1) {
        const double eps = r->comm->rank == 0 ? 0.02 : 0.01;
        check_code(r, "eps-differs", &p, p.g, eps, -0.5, MODE_SCALAPACK, SSL_E_USAGE);
    }
    free(g_nan);
    problem_free(&p);
}

int main(int argc, char **argv)
{
    struct ssl_comm comm;
    SSL_CHECK(ssl_comm_init(&comm, &argc, &argv) == 0);
    struct run r = {.comm = &comm};
    if (comm.rank == 0)
        printf("mpi_eig_gram np=%d seed=%llu tol=%.0e\n", comm.size, (unsigned long long)SEED,
               TOL);
    static const int64_t sizes[] = {60, 132, 264};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_spectral(&r, KIND_DISTINCT, sizes[i]);
        check_spectral(&r, KIND_REPEATED, sizes[i]);
        check_gram(&r, sizes[i]);
        check_failures(&r, sizes[i]);
    }
    if (comm.rank == 0)
        printf("mpi_eig_gram np=%d: %d checks, %d failures\n", comm.size, r.n_checks,
               r.n_failures);
    const int failed = r.n_failures != 0;
    ssl_comm_finalize(&comm);
    return failed ? 1 : 0;
}
