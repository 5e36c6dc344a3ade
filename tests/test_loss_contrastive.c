/* test_loss_contrastive.c: SimCLR NT-Xent, MoCo v2 InfoNCE with a queue and SwAV
 * (src/losses/contrastive.c) on the fp64 core:
 *   - fp64 central differences (gradcheck.c) for every differentiable input (SimCLR a, b; MoCo
 *     q, one- and two-directional; SwAV z and the prototypes, codes held fixed: they are a
 *     stop-gradient), the accumulate and NULL-gradient checks;
 *   - a second, independent value from naive loops written here from the formulas
 *     (LOSSES-SPEC sections 8, 9, 13), including the official Sinkhorn in its K x B layout;
 *   - known values (identical embeddings, orthogonal queues, uniform scores);
 *   - the global batch through the comm hooks: a fake comm simulating rank r of P = 3 ranks
 *     that all hold the same local batch, against one process on the 3-times-duplicated batch
 *     (applies to all three losses: SimCLR gathers all rows, MoCo sums the per-rank loss and
 *     gathers keys for the queue, SwAV sums the Sinkhorn marginals and the loss);
 *   - the MoCo queue update (ring pointer, K % global batch check).
 * The seed is printed by gc_rng_begin (override with SSL_TEST_SEED). */
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
#include "gradcheck.h"
#include "losses/contrastive.h"
#include "losses/losses.h"
#include "rng.h"

#ifndef SSL_F64
#error "test_loss_contrastive needs the fp64 core (ssl_core_f64)"
#endif

static double *xalloc(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    assert_non_null(p);
    return p;
}

static void nrm_row_eps(double *u, const double *x, int64_t d, double eps)
{
    double s = 0.0;
    for (int64_t k = 0; k < d; k++) s += x[k] * x[k];
    s = fmax(sqrt(s), eps);
    for (int64_t k = 0; k < d; k++) u[k] = x[k] / s;
}

/* F.normalize */
static void nrm_row(double *u, const double *x, int64_t d)
{
    double s = 0.0;
    for (int64_t k = 0; k < d; k++) s += x[k] * x[k];
    s = fmax(sqrt(s), 1e-12);
    for (int64_t k = 0; k < d; k++) u[k] = x[k] / s;
}

static double dot(const double *a, const double *b, int64_t d)
{
    double s = 0.0;
    for (int64_t k = 0; k < d; k++) s += a[k] * b[k];
    return s;
}

static bool close_rel(double a, double b, double rel)
{
    return fabs(a - b) <= rel * fmax(1.0, fmax(fabs(a), fabs(b)));
}

static double max_abs_diff(const double *a, const double *b, int64_t n)
{
    double w = 0.0;
    for (int64_t i = 0; i < n; i++) w = fmax(w, fabs(a[i] - b[i]));
    return w;
}

/* ------------------------------------------------------------------------------------------
 * A fake comm: rank `rank` of P ranks that all hold the same local rows.
 * sum: every rank holds the same partial sums, so the total is P times this one.
 * gather: P copies, this rank's block at rank*rows.
 * scatter: the sum over ranks r' of G_{r'}[block rank]; by the block-permutation symmetry of
 * the duplicated batch G_{r'}[block rank] = G_rank[block r'], so it is the sum of this rank's
 * P blocks.
 * ------------------------------------------------------------------------------------------ */

struct fake {
    int P, rank;
    int n_sum, n_gather, n_scatter;
};

static int fake_sum(void *ctx, double *v, int64_t n)
{
    struct fake *f = ctx;
    f->n_sum++;
    for (int64_t i = 0; i < n; i++) v[i] *= f->P;
    return 0;
}

static int fake_gather(void *ctx, const double *local, int64_t rows, int64_t cols, double *global,
                       int64_t *offset)
{
    struct fake *f = ctx;
    f->n_gather++;
    for (int r = 0; r < f->P; r++)
        memcpy(global + (int64_t)r * rows * cols, local, (size_t)(rows * cols) * sizeof *global);
    *offset = (int64_t)f->rank * rows;
    return 0;
}

static int fake_scatter(void *ctx, const double *g, int64_t rows, int64_t cols, double *local)
{
    struct fake *f = ctx;
    f->n_scatter++;
    for (int64_t e = 0; e < rows * cols; e++) {
        double s = 0.0;
        for (int r = 0; r < f->P; r++) s += g[(int64_t)r * rows * cols + e];
        local[e] = s;
    }
    return 0;
}

static int64_t fake_rows(void *ctx, int64_t rows) { return ((struct fake *)ctx)->P * rows; }

static struct ssl_loss_comm fake_comm(struct fake *f)
{
    return (struct ssl_loss_comm){.sum = fake_sum,
                                  .gather = fake_gather,
                                  .scatter = fake_scatter,
                                  .global_rows = fake_rows,
                                  .ctx = f};
}

/* dup (P*n, d) = P copies of x (n, d) */
static void duplicate(double *dup, const double *x, int64_t n, int64_t d, int P)
{
    for (int r = 0; r < P; r++) memcpy(dup + (int64_t)r * n * d, x, (size_t)(n * d) * sizeof *dup);
}

/* ------------------------------------------------------------------------------------------
 * SimCLR
 * ------------------------------------------------------------------------------------------ */

/* Straight from the formula: h = [a; b] / max(||row||, eps) (2n rows); anchor i's positive is
 * its partner, its negatives every other row but itself; L = sum over the 2n anchors of CE / n
 * (official: sum of the two directions' means), halved when averaging. */
static double simclr_naive(const double *a, const double *b, int64_t n, int64_t d, double t,
                           bool average, double eps)
{
    int64_t m = 2 * n;
    double *h = xalloc(m * d), total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        nrm_row_eps(h + i * d, a + i * d, d, eps);
        nrm_row_eps(h + (n + i) * d, b + i * d, d, eps);
    }
    for (int64_t i = 0; i < m; i++) {
        int64_t partner = i < n ? i + n : i - n;
        double den = 0.0;
        for (int64_t j = 0; j < m; j++)
            if (j != i) den += exp(dot(h + i * d, h + j * d, d) / t);
        total += -log(exp(dot(h + i * d, h + partner * d, d) / t) / den);
    }
    free(h);
    return (average ? 0.5 : 1.0) * total / (double)n;
}

struct simctx {
    int64_t n, d;
    struct ssl_simclr_opts o;
    const struct ssl_loss_ctx *lc;
    double *a, *b, *da, *db, *work;
};

static double sim_loss(void *ctx)
{
    struct simctx *c = ctx;
    double v;
    assert_int_equal(
        ssl_simclr_nt_xent_loss(&v, NULL, NULL, c->a, c->b, c->n, c->d, &c->o, c->lc, c->work), 0);
    return v;
}

static void sim_backward(void *ctx)
{
    struct simctx *c = ctx;
    double v;
    assert_int_equal(
        ssl_simclr_nt_xent_loss(&v, c->da, c->db, c->a, c->b, c->n, c->d, &c->o, c->lc, c->work),
        0);
}

static void simctx_alloc(struct simctx *c, int64_t n, int64_t d, const struct ssl_loss_ctx *lc)
{
    c->n = n;
    c->d = d;
    c->lc = lc;
    c->a = xalloc(n * d);
    c->b = xalloc(n * d);
    c->da = xalloc(n * d);
    c->db = xalloc(n * d);
    c->work = xalloc(ssl_simclr_nt_xent_work_elems(lc, n, d, NULL));
}

static void simctx_free(struct simctx *c)
{
    free(c->a);
    free(c->b);
    free(c->da);
    free(c->db);
    free(c->work);
}

static void test_simclr_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_simclr_grad");
    int bad = 0;
    for (int avg = 0; avg < 2; avg++) {
        struct simctx c = {.o = ssl_simclr_defaults()};
        c.o.average_directions = avg;
        c.o.temperature = avg ? 0.5 : 0.1;
        simctx_alloc(&c, 6, 5, NULL);
        gc_fill_normal(&r, c.a, c.n * c.d, 0.0, 1.0);
        gc_fill_normal(&r, c.b, c.n * c.d, 0.0, 1.0);
        for (int64_t e = 0; e < c.n * c.d; e++) c.b[e] = 0.7 * c.a[e] + 0.5 * c.b[e];
        struct gc_param p[2] = {
            {.name = "a", .x = c.a, .grad = c.da, .n = c.n * c.d, .grad_slot = &c.da},
            {.name = "b", .x = c.b, .grad = c.db, .n = c.n * c.d, .grad_slot = &c.db}};
        struct gc_problem prob = {.name = avg ? "simclr avg" : "simclr",
                                  .loss = sim_loss,
                                  .backward = sim_backward,
                                  .ctx = &c,
                                  .params = p,
                                  .n_params = 2};
        bad += gc_check(&prob, &GC_TOL_DEFAULT);
        bad += gc_check_accumulates(&prob, &r);
        bad += gc_check_null_grads(&prob);
        simctx_free(&c);
    }
    assert_int_equal(bad, 0);
}

static void test_simclr_value(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_simclr_value");
    struct simctx c = {.o = ssl_simclr_defaults()};
    simctx_alloc(&c, 7, 4, NULL);
    gc_fill_normal(&r, c.a, c.n * c.d, 0.0, 1.0);
    gc_fill_normal(&r, c.b, c.n * c.d, 0.0, 1.0);
    assert_true(c.o.temperature == 0.1 && !c.o.average_directions);
    for (int avg = 0; avg < 2; avg++)
        for (int ti = 0; ti < 2; ti++) {
            c.o.average_directions = avg;
            c.o.temperature = ti ? 0.5 : 0.1;
            double got = sim_loss(&c),
                   want = simclr_naive(c.a, c.b, c.n, c.d, c.o.temperature, avg, 1e-6);
            printf("[simclr_value] avg=%d t=%.1f got %.15f naive %.15f\n", avg, c.o.temperature,
                   got, want);
            assert_true(close_rel(got, want, 1e-12));
        }
    /* the norm clamp: tf.math.l2_normalize's (1e-6 on the norm) against F.normalize's 1e-12, on
     * a row of norm ~1e-8 */
    for (int64_t k = 0; k < c.d; k++) c.a[2 * c.d + k] *= 1e-8;
    c.o = ssl_simclr_defaults();
    assert_true(c.o.norm_eps == 1e-6);
    for (int e = 0; e < 2; e++) {
        c.o.norm_eps = e ? 1e-12 : 1e-6;
        double got = sim_loss(&c), want = simclr_naive(c.a, c.b, c.n, c.d, 0.1, false, c.o.norm_eps);
        printf("[simclr_value] tiny row, norm_eps %.0e: %.15f naive %.15f\n", c.o.norm_eps, got,
               want);
        assert_true(close_rel(got, want, 1e-12));
    }
    for (int64_t k = 0; k < c.d; k++) c.a[2 * c.d + k] *= 1e8;
    /* the benchmark's entry point (losses.h) is the averaged form, same gradient */
    double *work = xalloc(ssl_simclr_work_elems(c.n, c.d)), *ga = xalloc(c.n * c.d),
           *gb = xalloc(c.n * c.d);
    double wrapped = ssl_simclr_loss(ga, gb, c.a, c.b, c.n, c.d, 0.2, work);
    c.o = (struct ssl_simclr_opts){.temperature = 0.2, .average_directions = true, .norm_eps = 1e-12};
    memset(c.da, 0, (size_t)(c.n * c.d) * sizeof *c.da);
    memset(c.db, 0, (size_t)(c.n * c.d) * sizeof *c.db);
    sim_backward(&c);
    assert_true(wrapped == sim_loss(&c));
    assert_true(max_abs_diff(ga, c.da, c.n * c.d) == 0.0 &&
                max_abs_diff(gb, c.db, c.n * c.d) == 0.0);
    /* known: all 2n embeddings the same direction -> every logit 1/t, CE = log(2n - 1) per
     * anchor; official L = 2 log(2n - 1), averaged log(2n - 1) */
    for (int64_t i = 0; i < c.n; i++)
        for (int64_t k = 0; k < c.d; k++)
            c.a[i * c.d + k] = c.b[i * c.d + k] = (double)(k + 1) * (double)(i + 1);
    c.o = ssl_simclr_defaults();
    double known = 2.0 * log(2.0 * (double)c.n - 1.0);
    printf("[simclr_value] identical rows: %.15f, 2 log(2n-1) = %.15f\n", sim_loss(&c), known);
    assert_true(close_rel(sim_loss(&c), known, 1e-12));
    free(work);
    free(ga);
    free(gb);
    simctx_free(&c);
}

static void test_simclr_global(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_simclr_global");
    const int P = 3;
    const int64_t n = 4, d = 5;
    struct simctx one = {.o = ssl_simclr_defaults()};
    simctx_alloc(&one, P * n, d, NULL);
    double *a = xalloc(n * d), *b = xalloc(n * d);
    gc_fill_normal(&r, a, n * d, 0.0, 1.0);
    gc_fill_normal(&r, b, n * d, 0.0, 1.0);
    duplicate(one.a, a, n, d, P);
    duplicate(one.b, b, n, d, P);
    double want = sim_loss(&one);
    sim_backward(&one);
    for (int rank = 0; rank < P; rank += P - 1) {
        struct fake f = {.P = P, .rank = rank};
        struct ssl_loss_comm comm = fake_comm(&f);
        struct ssl_loss_ctx lc = {.comm = &comm};
        struct simctx c = {.o = ssl_simclr_defaults()};
        simctx_alloc(&c, n, d, &lc);
        memcpy(c.a, a, (size_t)(n * d) * sizeof *a);
        memcpy(c.b, b, (size_t)(n * d) * sizeof *b);
        double got = sim_loss(&c);
        sim_backward(&c);
        double ea = max_abs_diff(c.da, one.da + rank * n * d, n * d);
        double eb = max_abs_diff(c.db, one.db + rank * n * d, n * d);
        printf("[simclr_global] rank %d/%d: L %.15f (one process %.15f), max |dgrad| %.2e %.2e; "
               "calls sum %d gather %d scatter %d\n",
               rank, P, got, want, ea, eb, f.n_sum, f.n_gather, f.n_scatter);
        assert_true(close_rel(got, want, 1e-12));
        assert_true(ea < 1e-12 && eb < 1e-12);
        assert_int_equal(f.n_sum, 2); /* one per call: loss, backward */
        assert_int_equal(f.n_scatter, 2);
        simctx_free(&c);
    }
    free(a);
    free(b);
    simctx_free(&one);
}

/* ------------------------------------------------------------------------------------------
 * MoCo
 * ------------------------------------------------------------------------------------------ */

/* Straight from builder.py: mean over rows of CE([n(q).n(k), n(q) . queue_j] / T, 0). */
static double moco_naive(const double *q, const double *k, const double *queue, int64_t K,
                         int64_t n, int64_t d, double t)
{
    double *uq = xalloc(d), *uk = xalloc(d), total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        nrm_row(uq, q + i * d, d);
        nrm_row(uk, k + i * d, d);
        double pos = exp(dot(uq, uk, d) / t), den = pos;
        for (int64_t j = 0; j < K; j++) den += exp(dot(uq, queue + j * d, d) / t);
        total += -log(pos / den);
    }
    free(uq);
    free(uk);
    return total / (double)n;
}

struct mococtx {
    int64_t n, d, K;
    bool sym;
    struct ssl_moco_opts o;
    const struct ssl_loss_ctx *lc;
    double *q1, *q2, *k1, *k2, *queue, *dq1, *dq2, *work;
};

static double moco_run(struct mococtx *c, double *dq1, double *dq2)
{
    double v;
    if (c->sym)
        assert_int_equal(ssl_moco_sym_loss(&v, dq1, dq2, c->q1, c->q2, c->k1, c->k2, c->queue, c->n,
                                           c->d, c->K, &c->o, c->lc, c->work),
                         0);
    else
        assert_int_equal(ssl_moco_loss(&v, dq1, c->q1, c->k1, c->queue, c->n, c->d, c->K, &c->o,
                                       c->lc, c->work),
                         0);
    return v;
}

static double moco_loss_cb(void *ctx) { return moco_run(ctx, NULL, NULL); }

static void moco_backward_cb(void *ctx)
{
    struct mococtx *c = ctx;
    (void)moco_run(c, c->dq1, c->dq2);
}

static void mococtx_alloc(struct mococtx *c, int64_t n, int64_t d, int64_t K, struct ssl_rng *r)
{
    c->n = n;
    c->d = d;
    c->K = K;
    c->q1 = xalloc(n * d);
    c->q2 = xalloc(n * d);
    c->k1 = xalloc(n * d);
    c->k2 = xalloc(n * d);
    c->dq1 = xalloc(n * d);
    c->dq2 = xalloc(n * d);
    c->queue = xalloc(K * d);
    c->work = xalloc(ssl_moco_sym_work_elems(NULL, n, d, K, NULL));
    if (r == NULL) return;
    gc_fill_normal(r, c->q1, n * d, 0.0, 1.0);
    gc_fill_normal(r, c->q2, n * d, 0.0, 1.0);
    gc_fill_normal(r, c->k1, n * d, 0.0, 1.0);
    gc_fill_normal(r, c->k2, n * d, 0.0, 1.0);
    for (int64_t e = 0; e < n * d; e++) {
        c->k1[e] += 0.8 * c->q1[e];
        c->k2[e] += 0.8 * c->q2[e];
    }
    ssl_moco_queue_init(c->queue, K, d, r);
}

static void mococtx_free(struct mococtx *c)
{
    free(c->q1);
    free(c->q2);
    free(c->k1);
    free(c->k2);
    free(c->dq1);
    free(c->dq2);
    free(c->queue);
    free(c->work);
}

static void test_moco_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_moco_grad");
    int bad = 0;
    for (int sym = 0; sym < 2; sym++) {
        struct mococtx c = {.o = ssl_moco_defaults(), .sym = sym};
        mococtx_alloc(&c, 5, 6, 8, &r);
        struct gc_param p[2] = {
            {.name = "q1", .x = c.q1, .grad = c.dq1, .n = c.n * c.d, .grad_slot = &c.dq1},
            {.name = "q2", .x = c.q2, .grad = c.dq2, .n = c.n * c.d, .grad_slot = &c.dq2}};
        struct gc_problem prob = {.name = sym ? "moco sym" : "moco",
                                  .loss = moco_loss_cb,
                                  .backward = moco_backward_cb,
                                  .ctx = &c,
                                  .params = p,
                                  .n_params = sym ? 2 : 1};
        bad += gc_check(&prob, &GC_TOL_DEFAULT);
        bad += gc_check_accumulates(&prob, &r);
        bad += gc_check_null_grads(&prob);
        mococtx_free(&c);
    }
    assert_int_equal(bad, 0);
}

static void test_moco_value(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_moco_value");
    struct mococtx c = {.o = ssl_moco_defaults()};
    mococtx_alloc(&c, 6, 5, 12, &r);
    assert_true(c.o.temperature == 0.2);
    double one = moco_loss_cb(&c), want = moco_naive(c.q1, c.k1, c.queue, c.K, c.n, c.d, 0.2);
    printf("[moco_value] one direction %.15f naive %.15f\n", one, want);
    assert_true(close_rel(one, want, 1e-12));
    c.sym = true;
    double sym = moco_loss_cb(&c);
    double want_sym = moco_naive(c.q1, c.k2, c.queue, c.K, c.n, c.d, 0.2) +
                      moco_naive(c.q2, c.k1, c.queue, c.K, c.n, c.d, 0.2);
    printf("[moco_value] two directions %.15f naive %.15f\n", sym, want_sym);
    assert_true(close_rel(sym, want_sym, 1e-12));
    /* queue rows are unit vectors */
    for (int64_t j = 0; j < c.K; j++)
        assert_true(fabs(dot(c.queue + j * c.d, c.queue + j * c.d, c.d) - 1.0) < 1e-14);
    mococtx_free(&c);
    /* known: q = k = 2 e1, queue = K rows orthogonal to e1 -> logits [1/T, 0 x K]:
     * L = log(exp(1/T) + K) - 1/T */
    struct mococtx o = {.o = ssl_moco_defaults()};
    mococtx_alloc(&o, 3, 4, 6, NULL);
    for (int64_t i = 0; i < o.n; i++) o.q1[i * o.d] = o.k1[i * o.d] = 2.0;
    for (int64_t j = 0; j < o.K; j++) o.queue[j * o.d + 1 + j % 3] = 1.0;
    double known = log(exp(5.0) + 6.0) - 5.0, got = moco_loss_cb(&o);
    printf("[moco_value] orthogonal queue %.15f known %.15f\n", got, known);
    assert_true(close_rel(got, known, 1e-13));
    mococtx_free(&o);
}

static void test_moco_global(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_moco_global");
    const int P = 3;
    struct mococtx loc = {.o = ssl_moco_defaults(), .sym = true};
    mococtx_alloc(&loc, 4, 5, 24, &r);
    struct mococtx one = {.o = ssl_moco_defaults(), .sym = true};
    mococtx_alloc(&one, P * loc.n, loc.d, loc.K, NULL);
    duplicate(one.q1, loc.q1, loc.n, loc.d, P);
    duplicate(one.q2, loc.q2, loc.n, loc.d, P);
    duplicate(one.k1, loc.k1, loc.n, loc.d, P);
    duplicate(one.k2, loc.k2, loc.n, loc.d, P);
    memcpy(one.queue, loc.queue, (size_t)(loc.K * loc.d) * sizeof *one.queue);
    double want = moco_loss_cb(&one);
    moco_backward_cb(&one);
    struct fake f = {.P = P, .rank = 1};
    struct ssl_loss_comm comm = fake_comm(&f);
    struct ssl_loss_ctx lc = {.comm = &comm};
    loc.lc = &lc;
    double got = moco_loss_cb(&loc);
    moco_backward_cb(&loc);
    double e1 = max_abs_diff(loc.dq1, one.dq1 + loc.n * loc.d, loc.n * loc.d);
    double e2 = max_abs_diff(loc.dq2, one.dq2 + loc.n * loc.d, loc.n * loc.d);
    printf("[moco_global] rank 1/3: L %.15f (one process %.15f), max |dgrad| %.2e %.2e\n", got,
           want, e1, e2);
    assert_true(close_rel(got, want, 1e-12));
    assert_true(e1 < 1e-12 && e2 < 1e-12);
    /* the queue update with the gathered keys: 3 ranks x 2 views x 4 rows = 24 = K: one step
     * fills the queue, rank blocks in rank order, [n(k1); n(k2)] inside a block */
    struct ssl_error err = {0};
    int64_t ptr = 0;
    double *work = xalloc(ssl_moco_enqueue_work_elems(&lc, loc.n, loc.d));
    assert_int_equal(
        ssl_moco_enqueue(loc.queue, &ptr, loc.k1, loc.k2, loc.n, loc.d, loc.K, &lc, work, &err),
        SSL_OK);
    assert_int_equal(ptr, 0);
    double *u = xalloc(loc.d), worst = 0.0;
    for (int rk = 0; rk < P; rk++)
        for (int v = 0; v < 2; v++)
            for (int64_t i = 0; i < loc.n; i++) {
                nrm_row(u, (v ? loc.k2 : loc.k1) + i * loc.d, loc.d);
                int64_t row = (rk * 2 + v) * loc.n + i;
                worst = fmax(worst, max_abs_diff(u, loc.queue + row * loc.d, loc.d));
            }
    printf("[moco_global] enqueue of gathered keys: max |err| %.2e\n", worst);
    assert_true(worst < 1e-15);
    free(u);
    free(work);
    mococtx_free(&loc);
    mococtx_free(&one);
}

static void test_moco_enqueue(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_moco_enqueue");
    struct mococtx c = {.o = ssl_moco_defaults()};
    mococtx_alloc(&c, 3, 4, 9, &r);
    double *work = xalloc(ssl_moco_enqueue_work_elems(NULL, c.n, c.d)), *u = xalloc(c.d);
    double *before = xalloc(c.K * c.d);
    struct ssl_error err = {0};
    int64_t ptr = 0;
    for (int step = 0; step < 4; step++) {
        memcpy(before, c.queue, (size_t)(c.K * c.d) * sizeof *before);
        for (int64_t e = 0; e < c.n * c.d; e++) c.k1[e] += 1.0;
        int64_t at = ptr;
        assert_int_equal(
            ssl_moco_enqueue(c.queue, &ptr, c.k1, NULL, c.n, c.d, c.K, NULL, work, &err), SSL_OK);
        assert_int_equal(ptr, (at + c.n) % c.K);
        for (int64_t j = 0; j < c.K; j++) {
            bool in = j >= at && j < at + c.n;
            if (in) {
                nrm_row(u, c.k1 + (j - at) * c.d, c.d);
                assert_true(max_abs_diff(u, c.queue + j * c.d, c.d) < 1e-15);
            } else {
                assert_true(max_abs_diff(before + j * c.d, c.queue + j * c.d, c.d) == 0.0);
            }
        }
    }
    /* two directions: 6 keys per step do not divide 9: an error, nothing written */
    memcpy(before, c.queue, (size_t)(c.K * c.d) * sizeof *before);
    assert_int_equal(ssl_moco_enqueue(c.queue, &ptr, c.k1, c.k2, c.n, c.d, c.K, NULL, work, &err),
                     SSL_E_USAGE);
    printf("[moco_enqueue] error: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "multiple"));
    assert_true(max_abs_diff(before, c.queue, c.K * c.d) == 0.0);
    free(before);
    free(u);
    free(work);
    mococtx_free(&c);
}

/* ------------------------------------------------------------------------------------------
 * SwAV
 * ------------------------------------------------------------------------------------------ */

/* distributed_sinkhorn literally, in its K x B layout: out (B, K) scores -> codes (B, K). */
static void sinkhorn_naive(double *codes, const double *out, int64_t B, int64_t K, double eps,
                           int iters)
{
    double *Q = xalloc(K * B), s = 0.0; /* Q[k][b] */
    for (int64_t k = 0; k < K; k++)
        for (int64_t b = 0; b < B; b++) s += (Q[k * B + b] = exp(out[b * K + k] / eps));
    for (int64_t e = 0; e < K * B; e++) Q[e] /= s;
    for (int it = 0; it < iters; it++) {
        for (int64_t k = 0; k < K; k++) {
            double rs = 0.0;
            for (int64_t b = 0; b < B; b++) rs += Q[k * B + b];
            for (int64_t b = 0; b < B; b++) Q[k * B + b] = Q[k * B + b] / rs / (double)K;
        }
        for (int64_t b = 0; b < B; b++) {
            double cs = 0.0;
            for (int64_t k = 0; k < K; k++) cs += Q[k * B + b];
            for (int64_t k = 0; k < K; k++) Q[k * B + b] = Q[k * B + b] / cs / (double)B;
        }
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t b = 0; b < B; b++) codes[b * K + k] = Q[k * B + b] * (double)B;
    free(Q);
}

/* main_swav.py's loss from the formula, codes computed by sinkhorn_naive. */
static double swav_naive(const double *z, const double *c, int V, int64_t n, int64_t d, int64_t K,
                         const struct ssl_swav_opts *o)
{
    double *u = xalloc(V * n * d), *s = xalloc(V * n * K), *q = xalloc(o->n_assign * n * K);
    for (int64_t i = 0; i < V * n; i++) nrm_row(u + i * d, z + i * d, d);
    for (int64_t i = 0; i < V * n; i++)
        for (int64_t k = 0; k < K; k++) s[i * K + k] = dot(u + i * d, c + k * d, d);
    for (int a = 0; a < o->n_assign; a++)
        sinkhorn_naive(q + a * n * K, s + a * n * K, n, K, o->epsilon, o->sinkhorn_iterations);
    double loss = 0.0;
    for (int a = 0; a < o->n_assign; a++) {
        double sub = 0.0;
        for (int v = 0; v < V; v++) {
            if (v == a) continue;
            double m = 0.0;
            for (int64_t i = 0; i < n; i++) {
                const double *x = s + (v * n + i) * K;
                double den = 0.0;
                for (int64_t k = 0; k < K; k++) den += exp(x[k] / o->temperature);
                for (int64_t k = 0; k < K; k++)
                    m += q[(a * n + i) * K + k] * log(exp(x[k] / o->temperature) / den);
            }
            sub -= m / (double)n;
        }
        loss += sub / (double)(V - 1);
    }
    free(u);
    free(s);
    free(q);
    return loss / (double)o->n_assign;
}

struct swavctx {
    int V;
    int64_t n, d, K;
    struct ssl_swav_opts o;
    const struct ssl_loss_ctx *lc;
    double *z, *c, *dz, *dc, *codes, *work;
};

static double swav_loss_cb(void *ctx)
{
    struct swavctx *s = ctx;
    double v;
    assert_int_equal(ssl_swav_codes_loss(&v, NULL, NULL, s->z, s->c, s->codes, s->n, s->d, s->K,
                                         s->V, &s->o, s->lc, s->work),
                     0);
    return v;
}

static void swav_backward_cb(void *ctx)
{
    struct swavctx *s = ctx;
    double v;
    assert_int_equal(ssl_swav_codes_loss(&v, s->dz, s->dc, s->z, s->c, s->codes, s->n, s->d, s->K,
                                         s->V, &s->o, s->lc, s->work),
                     0);
}

/* ssl_swav_loss asserted to succeed: the value. */
static double swav_value(double *codes_out, ssl_real *dz, ssl_real *dc, const ssl_real *z,
                         const ssl_real *c, int64_t n, int64_t d, int64_t K, int64_t V,
                         const struct ssl_swav_opts *o, const struct ssl_loss_ctx *lc, double *work)
{
    double v;
    assert_int_equal(ssl_swav_loss(&v, codes_out, dz, dc, z, c, n, d, K, V, o, lc, work), 0);
    return v;
}

static void swavctx_alloc(struct swavctx *s, int V, int64_t n, int64_t d, int64_t K,
                          struct ssl_rng *r)
{
    s->V = V;
    s->n = n;
    s->d = d;
    s->K = K;
    s->z = xalloc(V * n * d);
    s->dz = xalloc(V * n * d);
    s->c = xalloc(K * d);
    s->dc = xalloc(K * d);
    s->codes = xalloc(s->o.n_assign * n * K);
    s->work = xalloc(ssl_swav_work_elems(NULL, n, d, K, V, &s->o));
    if (r == NULL) return;
    gc_fill_normal(r, s->z, V * n * d, 0.0, 1.0);
    gc_fill_normal(r, s->c, K * d, 0.0, 1.0);
    ssl_swav_normalize_prototypes(s->c, K, d);
}

static void swavctx_free(struct swavctx *s)
{
    free(s->z);
    free(s->dz);
    free(s->c);
    free(s->dc);
    free(s->codes);
    free(s->work);
}

static void test_swav_sinkhorn(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_swav_sinkhorn");
    const int64_t n = 9, K = 5;
    double *s = xalloc(n * K), *q = xalloc(n * K), *want = xalloc(n * K), *wk = xalloc(K);
    gc_fill_normal(&r, s, n * K, 0.0, 0.4);
    for (int iters = 0; iters <= 1000; iters += iters < 3 ? 1 : 997) {
        memcpy(q, s, (size_t)(n * K) * sizeof *q);
        assert_int_equal(ssl_swav_sinkhorn(q, n, K, 0.05, iters, NULL, wk), 0);
        sinkhorn_naive(want, s, n, K, 0.05, iters);
        double err = max_abs_diff(q, want, n * K), row = 0.0, col = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double t = 0.0;
            for (int64_t k = 0; k < K; k++) t += q[i * K + k];
            row = fmax(row, fabs(t - 1.0));
        }
        for (int64_t k = 0; k < K; k++) {
            double t = 0.0;
            for (int64_t i = 0; i < n; i++) t += q[i * K + k];
            col = fmax(col, fabs(t - (double)n / (double)K));
        }
        printf("[swav_sinkhorn] iters %2d: max |q - naive| %.2e, max |sample sum - 1| %.2e, "
               "max |prototype sum - B/K| %.2e\n",
               iters, err, row, col);
        assert_true(err < 1e-13);
        if (iters > 0) assert_true(row < 1e-13);
        if (iters == 1000) assert_true(col < 1e-9);
    }
    free(s);
    free(q);
    free(want);
    free(wk);
}

static void test_swav_grad(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_swav_grad");
    int bad = 0;
    const int crops[2] = {2, 4}; /* 2 large; 2 large + 2 small */
    for (int t = 0; t < 2; t++) {
        struct swavctx s = {.o = ssl_swav_defaults()};
        swavctx_alloc(&s, crops[t], 5, 4, 6, &r);
        /* codes at the unperturbed point, then held fixed (they are a stop-gradient) */
        double *gz = xalloc(s.V * s.n * s.d), *gc = xalloc(s.K * s.d);
        double full =
            swav_value(s.codes, gz, gc, s.z, s.c, s.n, s.d, s.K, s.V, &s.o, NULL, s.work);
        swav_backward_cb(&s);
        printf("[swav_grad] V=%d: loss %.15f; with the codes given %.15f\n", s.V, full,
               swav_loss_cb(&s));
        assert_true(full == swav_loss_cb(&s));
        assert_true(max_abs_diff(gz, s.dz, s.V * s.n * s.d) == 0.0);
        assert_true(max_abs_diff(gc, s.dc, s.K * s.d) == 0.0);
        memset(s.dz, 0, (size_t)(s.V * s.n * s.d) * sizeof *s.dz);
        memset(s.dc, 0, (size_t)(s.K * s.d) * sizeof *s.dc);
        struct gc_param p[2] = {
            {.name = "z", .x = s.z, .grad = s.dz, .n = s.V * s.n * s.d, .grad_slot = &s.dz},
            {.name = "protos", .x = s.c, .grad = s.dc, .n = s.K * s.d, .grad_slot = &s.dc}};
        struct gc_problem prob = {.name = t ? "swav multicrop" : "swav",
                                  .loss = swav_loss_cb,
                                  .backward = swav_backward_cb,
                                  .ctx = &s,
                                  .params = p,
                                  .n_params = 2};
        bad += gc_check(&prob, &GC_TOL_DEFAULT);
        bad += gc_check_accumulates(&prob, &r);
        bad += gc_check_null_grads(&prob);
        free(gz);
        free(gc);
        swavctx_free(&s);
    }
    assert_int_equal(bad, 0);
}

static void test_swav_value(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_swav_value");
    struct ssl_swav_opts d0 = ssl_swav_defaults();
    assert_true(d0.temperature == 0.1 && d0.epsilon == 0.05 && d0.sinkhorn_iterations == 3 &&
                d0.n_assign == 2);
    for (int V = 2; V <= 5; V += 3) {
        struct swavctx s = {.o = d0};
        swavctx_alloc(&s, V, 7, 4, 5, &r);
        double got =
            swav_value(NULL, NULL, NULL, s.z, s.c, s.n, s.d, s.K, V, &s.o, NULL, s.work);
        double want = swav_naive(s.z, s.c, V, s.n, s.d, s.K, &s.o);
        printf("[swav_value] V=%d: %.15f naive %.15f\n", V, got, want);
        assert_true(close_rel(got, want, 1e-12));
        /* one assignment crop */
        s.o.n_assign = 1;
        got = swav_value(NULL, NULL, NULL, s.z, s.c, s.n, s.d, s.K, V, &s.o, NULL, s.work);
        want = swav_naive(s.z, s.c, V, s.n, s.d, s.K, &s.o);
        assert_true(close_rel(got, want, 1e-12));
        swavctx_free(&s);
    }
    /* known: identical prototypes -> each sample's scores are equal over k -> uniform softmax
     * and uniform codes 1/K: L = log K */
    struct swavctx s = {.o = d0};
    swavctx_alloc(&s, 3, 4, 3, 7, &r);
    for (int64_t k = 0; k < s.K; k++)
        for (int64_t j = 0; j < s.d; j++) s.c[k * s.d + j] = (double)(j + 1) / sqrt(14.0);
    double got =
        swav_value(s.codes, NULL, NULL, s.z, s.c, s.n, s.d, s.K, s.V, &s.o, NULL, s.work);
    printf("[swav_value] identical prototypes %.15f, log K = %.15f\n", got, log(7.0));
    assert_true(close_rel(got, log(7.0), 1e-13));
    for (int64_t e = 0; e < s.o.n_assign * s.n * s.K; e++)
        assert_true(fabs(s.codes[e] - 1.0 / 7.0) < 1e-14);
    swavctx_free(&s);
    /* prototype normalisation */
    double c[6] = {3, 4, 0, 0, 0, 2};
    ssl_swav_normalize_prototypes(c, 2, 3);
    assert_true(fabs(c[0] - 0.6) < 1e-15 && fabs(c[1] - 0.8) < 1e-15 && c[5] == 1.0);
}

static void test_swav_global(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_swav_global");
    const int P = 3, V = 4;
    struct swavctx loc = {.o = ssl_swav_defaults()};
    swavctx_alloc(&loc, V, 3, 4, 5, &r);
    struct swavctx one = {.o = ssl_swav_defaults()};
    swavctx_alloc(&one, V, P * loc.n, loc.d, loc.K, NULL);
    for (int v = 0; v < V; v++)
        duplicate(one.z + v * one.n * one.d, loc.z + v * loc.n * loc.d, loc.n, loc.d, P);
    memcpy(one.c, loc.c, (size_t)(loc.K * loc.d) * sizeof *one.c);
    double want = swav_value(one.codes, one.dz, one.dc, one.z, one.c, one.n, one.d, one.K, V,
                             &one.o, NULL, one.work);
    struct fake f = {.P = P, .rank = 2};
    struct ssl_loss_comm comm = fake_comm(&f);
    struct ssl_loss_ctx lc = {.comm = &comm};
    double got = swav_value(loc.codes, loc.dz, loc.dc, loc.z, loc.c, loc.n, loc.d, loc.K, V,
                            &loc.o, &lc, loc.work);
    double ez = 0.0, eq = 0.0, ec = 0.0;
    for (int v = 0; v < V; v++)
        ez = fmax(ez, max_abs_diff(loc.dz + v * loc.n * loc.d,
                                   one.dz + (v * one.n + 2 * loc.n) * loc.d, loc.n * loc.d));
    for (int a = 0; a < loc.o.n_assign; a++)
        eq = fmax(eq, max_abs_diff(loc.codes + a * loc.n * loc.K,
                                   one.codes + (a * one.n + 2 * loc.n) * loc.K, loc.n * loc.K));
    for (int64_t e = 0; e < loc.K * loc.d; e++) ec = fmax(ec, fabs(P * loc.dc[e] - one.dc[e]));
    printf("[swav_global] rank 2/3: L %.15f (one process %.15f); max |d codes| %.2e, |d dz| %.2e, "
           "|P dc_rank - dc| %.2e; sum calls %d\n",
           got, want, eq, ez, ec, f.n_sum);
    assert_true(close_rel(got, want, 1e-12));
    assert_true(eq < 1e-12 && ez < 1e-12 && ec < 1e-12);
    assert_int_equal(f.n_sum, loc.o.n_assign * (1 + loc.o.sinkhorn_iterations) + 1);
    swavctx_free(&loc);
    swavctx_free(&one);
}

/* ------------------------------------------------------------------------------------------
 * A replaying comm: P ranks with DIFFERENT local rows, run one after the other. Each pass runs
 * every rank once; every comm call (numbered in call order, the same on every rank) records
 * this rank's contribution and answers from the contributions all ranks recorded in the
 * PREVIOUS pass (this rank's own input where there is none yet). By induction, in pass p the
 * first p calls answer exactly what the real collectives would, so after more passes than
 * calls every rank's value and gradients are exact. Catches what the duplicated batch cannot
 * (rank offsets, which block a gradient lands in).
 * ------------------------------------------------------------------------------------------ */

#define RP_MAXP 4
#define RP_MAXC 64

struct replay {
    int P, rank, call;
    int64_t n[2][RP_MAXC][RP_MAXP];
    double *v[2][RP_MAXC][RP_MAXP]; /* [0]: this pass, [1]: the previous pass */
};

static void rp_record(struct replay *f, const double *x, int64_t n)
{
    SSL_CHECK(f->call < RP_MAXC);
    double **slot = &f->v[0][f->call][f->rank];
    free(*slot);
    *slot = xalloc(n);
    memcpy(*slot, x, (size_t)n * sizeof **slot);
    f->n[0][f->call][f->rank] = n;
}

static bool rp_have(const struct replay *f, int c)
{
    for (int r = 0; r < f->P; r++)
        if (f->v[1][c][r] == NULL) return false;
    return true;
}

static int rp_sum(void *ctx, double *v, int64_t n)
{
    struct replay *f = ctx;
    int c = f->call;
    rp_record(f, v, n);
    if (rp_have(f, c))
        for (int64_t i = 0; i < n; i++) {
            v[i] = 0.0;
            for (int r = 0; r < f->P; r++) v[i] += f->v[1][c][r][i];
        }
    f->call++;
    return 0;
}

static int rp_gather(void *ctx, const double *local, int64_t rows, int64_t cols, double *global,
                     int64_t *offset)
{
    struct replay *f = ctx;
    int c = f->call;
    rp_record(f, local, rows * cols);
    *offset = (int64_t)f->rank * rows;
    for (int r = 0; r < f->P; r++)
        memcpy(global + (int64_t)r * rows * cols, rp_have(f, c) ? f->v[1][c][r] : local,
               (size_t)(rows * cols) * sizeof *global);
    f->call++;
    return 0;
}

static int rp_scatter(void *ctx, const double *g, int64_t rows, int64_t cols, double *local)
{
    struct replay *f = ctx;
    int c = f->call;
    rp_record(f, g, f->P * rows * cols);
    for (int64_t e = 0; e < rows * cols; e++) {
        int64_t at = (int64_t)f->rank * rows * cols + e;
        if (!rp_have(f, c)) {
            local[e] = g[at];
            continue;
        }
        local[e] = 0.0;
        for (int r = 0; r < f->P; r++) local[e] += f->v[1][c][r][at];
    }
    f->call++;
    return 0;
}

static int64_t rp_rows(void *ctx, int64_t rows) { return ((struct replay *)ctx)->P * rows; }

/* Starts rank `rank`'s run in the current pass. */
static void rp_begin(struct replay *f, int rank)
{
    f->rank = rank;
    f->call = 0;
}

/* Ends a pass: this pass's records become the previous pass's. */
static void rp_end_pass(struct replay *f)
{
    for (int c = 0; c < RP_MAXC; c++)
        for (int r = 0; r < RP_MAXP; r++) {
            free(f->v[1][c][r]);
            f->v[1][c][r] = f->v[0][c][r];
            f->n[1][c][r] = f->n[0][c][r];
            f->v[0][c][r] = NULL;
        }
}

static void rp_free(struct replay *f)
{
    for (int c = 0; c < RP_MAXC; c++)
        for (int r = 0; r < RP_MAXP; r++) {
            free(f->v[0][c][r]);
            free(f->v[1][c][r]);
        }
}

static struct ssl_loss_comm replay_comm(struct replay *f)
{
    return (struct ssl_loss_comm){.sum = rp_sum,
                                  .gather = rp_gather,
                                  .scatter = rp_scatter,
                                  .global_rows = rp_rows,
                                  .ctx = f};
}

/* The three losses on P = 3 ranks with different rows against one process on the global
 * batch (rank blocks in rank order; SwAV: per crop). */
static void test_replay_ranks(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_replay_ranks");
    enum { P = 3, PASSES = 16 };
    const int64_t n = 3, d = 4, K = 6;
    const int V = 4;
    struct replay *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->P = P;
    struct ssl_loss_comm comm = replay_comm(f);
    struct ssl_loss_ctx lc = {.comm = &comm};
    int64_t N = P * n;
    double *a = xalloc(N * d), *b = xalloc(N * d), *k1 = xalloc(N * d), *k2 = xalloc(N * d);
    double *z = xalloc(V * N * d), *c = xalloc(K * d), *queue = xalloc(K * d);
    gc_fill_normal(&r, a, N * d, 0.0, 1.0);
    gc_fill_normal(&r, b, N * d, 0.0, 1.0);
    gc_fill_normal(&r, k1, N * d, 0.0, 1.0);
    gc_fill_normal(&r, k2, N * d, 0.0, 1.0);
    gc_fill_normal(&r, z, V * N * d, 0.0, 1.0);
    gc_fill_normal(&r, c, K * d, 0.0, 1.0);
    ssl_swav_normalize_prototypes(c, K, d);
    ssl_moco_queue_init(queue, K, d, &r);
    /* one process */
    struct ssl_simclr_opts so = ssl_simclr_defaults();
    struct ssl_moco_opts mo = ssl_moco_defaults();
    struct ssl_swav_opts wo = ssl_swav_defaults();
    double *ga = xalloc(N * d), *gb = xalloc(N * d), *gz = xalloc(V * N * d), *gc = xalloc(K * d);
    double *w1 = xalloc(ssl_simclr_nt_xent_work_elems(NULL, N, d, &so));
    double *w2 = xalloc(ssl_moco_work_elems(NULL, N, d, K, &mo));
    double *w3 = xalloc(ssl_swav_work_elems(NULL, N, d, K, V, &wo));
    double Ls, Lm;
    assert_int_equal(ssl_simclr_nt_xent_loss(&Ls, ga, gb, a, b, N, d, &so, NULL, w1), 0);
    assert_int_equal(ssl_moco_loss(&Lm, NULL, a, k1, queue, N, d, K, &mo, NULL, w2), 0);
    double Lw = swav_value(NULL, gz, gc, z, c, N, d, K, V, &wo, NULL, w3);
    /* P ranks */
    double *la = xalloc(N * d), *lb = xalloc(N * d), *lz = xalloc(V * n * d),
           *lgz = xalloc(V * N * d);
    double *lgc = xalloc(K * d), *dc_rank = xalloc(K * d);
    double *e1 = xalloc(ssl_simclr_nt_xent_work_elems(&lc, n, d, &so)),
           *e2 = xalloc(ssl_moco_work_elems(&lc, n, d, K, &mo));
    double *e3 = xalloc(ssl_swav_work_elems(&lc, n, d, K, V, &wo));
    double *e4 = xalloc(ssl_moco_enqueue_work_elems(&lc, n, d));
    double *mqueue = xalloc(2 * N * d), *oqueue = xalloc(2 * N * d),
           *ew = xalloc(ssl_moco_enqueue_work_elems(NULL, N, d));
    double Rs[P], Rm[P], Rw[P];
    int64_t ptr = 0, optr = 0;
    struct ssl_error err = {0};
    for (int pass = 0; pass < PASSES; pass++) {
        memset(la, 0, (size_t)(N * d) * sizeof *la);
        memset(lb, 0, (size_t)(N * d) * sizeof *lb);
        memset(lgz, 0, (size_t)(V * N * d) * sizeof *lgz);
        memset(lgc, 0, (size_t)(K * d) * sizeof *lgc);
        for (int rk = 0; rk < P; rk++) {
            rp_begin(f, rk);
            int64_t o = rk * n * d;
            assert_int_equal(
                ssl_simclr_nt_xent_loss(&Rs[rk], la + o, lb + o, a + o, b + o, n, d, &so, &lc, e1),
                0);
            assert_int_equal(
                ssl_moco_loss(&Rm[rk], NULL, a + o, k1 + o, queue, n, d, K, &mo, &lc, e2), 0);
            for (int v = 0; v < V; v++)
                memcpy(lz + v * n * d, z + (v * N * d) + o, (size_t)(n * d) * sizeof *lz);
            memset(dc_rank, 0, (size_t)(K * d) * sizeof *dc_rank);
            double *lgz_r = xalloc(V * n * d);
            Rw[rk] = swav_value(NULL, lgz_r, dc_rank, lz, c, n, d, K, V, &wo, &lc, e3);
            for (int v = 0; v < V; v++)
                memcpy(lgz + v * N * d + o, lgz_r + v * n * d, (size_t)(n * d) * sizeof *lgz);
            for (int64_t e = 0; e < K * d; e++) lgc[e] += dc_rank[e]; /* the trainer's allreduce */
            free(lgz_r);
            ptr = 0;
            assert_int_equal(
                ssl_moco_enqueue(mqueue, &ptr, k1 + o, k2 + o, n, d, 2 * N, &lc, e4, &err), SSL_OK);
        }
        rp_end_pass(f);
    }
    /* the queue update in one process: the global keys in the gathered order (per rank [k1; k2]) */
    for (int rk = 0; rk < P; rk++) {
        int64_t o = rk * n * d;
        double *kk = xalloc(2 * n * d);
        memcpy(kk, k1 + o, (size_t)(n * d) * sizeof *kk);
        memcpy(kk + n * d, k2 + o, (size_t)(n * d) * sizeof *kk);
        assert_int_equal(ssl_moco_enqueue(oqueue, &optr, kk, NULL, 2 * n, d, 2 * N, NULL, ew, &err),
                         SSL_OK);
        free(kk);
    }
    double es = fmax(max_abs_diff(la, ga, N * d), max_abs_diff(lb, gb, N * d));
    double ez = max_abs_diff(lgz, gz, V * N * d), ec = max_abs_diff(lgc, gc, K * d);
    double eq = max_abs_diff(mqueue, oqueue, 2 * N * d);
    for (int rk = 0; rk < P; rk++) {
        printf("[replay] rank %d/%d: simclr %.15f (one %.15f) moco %.15f (one %.15f) swav %.15f "
               "(one %.15f)\n",
               rk, P, Rs[rk], Ls, Rm[rk], Lm, Rw[rk], Lw);
        assert_true(close_rel(Rs[rk], Ls, 1e-12) && close_rel(Rm[rk], Lm, 1e-12) &&
                    close_rel(Rw[rk], Lw, 1e-12));
    }
    printf("[replay] max |grad - one process|: simclr %.2e, swav z %.2e, swav prototypes (summed "
           "over ranks) %.2e; moco queue %.2e\n",
           es, ez, ec, eq);
    assert_true(es < 1e-12 && ez < 1e-12 && ec < 1e-12 && eq < 1e-15);
    free(a);
    free(b);
    free(k1);
    free(k2);
    free(z);
    free(c);
    free(queue);
    free(ga);
    free(gb);
    free(gz);
    free(gc);
    free(w1);
    free(w2);
    free(w3);
    free(la);
    free(lb);
    free(lz);
    free(lgz);
    free(lgc);
    free(dc_rank);
    free(e1);
    free(e2);
    free(e3);
    free(e4);
    free(mqueue);
    free(oqueue);
    free(ew);
    rp_free(f);
    free(f);
}

/* ------------------------------------------------------------------------------------------
 * The status convention (contrastive.h): 0 and the value; otherwise the code and NAN.
 * ------------------------------------------------------------------------------------------ */

static int failing_sum(void *ctx, double *v, int64_t n)
{
    (void)ctx;
    (void)v;
    (void)n;
    return 7;
}

static int failing_gather(void *ctx, const double *local, int64_t rows, int64_t cols,
                          double *global, int64_t *offset)
{
    (void)ctx;
    (void)local;
    (void)rows;
    (void)cols;
    (void)global;
    (void)offset;
    return 9;
}

static void test_status(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "contrastive_status");
    const int64_t n = 4, d = 3, K = 5, V = 2;
    double *a = xalloc(n * d), *b = xalloc(n * d), *z = xalloc(V * n * d), *c = xalloc(K * d);
    double *queue = xalloc(K * d), *codes = xalloc(2 * n * K), *da = xalloc(n * d);
    double *ws = xalloc(ssl_simclr_nt_xent_work_elems(NULL, n, d, NULL));
    double *wm = xalloc(ssl_moco_work_elems(NULL, n, d, K, NULL));
    double *ww = xalloc(ssl_swav_work_elems(NULL, n, d, K, V, NULL));
    double *we = xalloc(ssl_moco_enqueue_work_elems(NULL, n, d));
    gc_fill_normal(&r, a, n * d, 0.0, 1.0);
    gc_fill_normal(&r, b, n * d, 0.0, 1.0);
    gc_fill_normal(&r, z, V * n * d, 0.0, 1.0);
    gc_fill_normal(&r, c, K * d, 0.0, 1.0);
    ssl_swav_normalize_prototypes(c, K, d);
    ssl_moco_queue_init(queue, K, d, &r);
    for (int64_t e = 0; e < 2 * n * K; e++) codes[e] = 1.0 / (double)K;
    /* NULL opts are the defaults */
    struct ssl_simclr_opts so = ssl_simclr_defaults();
    struct ssl_moco_opts mo = ssl_moco_defaults();
    struct ssl_swav_opts wo = ssl_swav_defaults();
    double v1, v2;
    assert_int_equal(ssl_simclr_nt_xent_loss(&v1, NULL, NULL, a, b, n, d, NULL, NULL, ws), 0);
    assert_int_equal(ssl_simclr_nt_xent_loss(&v2, NULL, NULL, a, b, n, d, &so, NULL, ws), 0);
    assert_true(v1 == v2);
    assert_int_equal(ssl_moco_loss(&v1, NULL, a, b, queue, n, d, K, NULL, NULL, wm), 0);
    assert_int_equal(ssl_moco_loss(&v2, NULL, a, b, queue, n, d, K, &mo, NULL, wm), 0);
    assert_true(v1 == v2);
    assert_int_equal(ssl_swav_loss(&v1, NULL, NULL, NULL, z, c, n, d, K, V, NULL, NULL, ww), 0);
    assert_int_equal(ssl_swav_loss(&v2, NULL, NULL, NULL, z, c, n, d, K, V, &wo, NULL, ww), 0);
    assert_true(v1 == v2);
    /* options that do not fit the shapes: SSL_E_USAGE and NAN */
    struct ssl_swav_opts bad = wo;
    bad.n_assign = 3;
    v1 = 0.0;
    assert_int_equal(ssl_swav_loss(&v1, NULL, NULL, NULL, z, c, n, d, K, V, &bad, NULL, ww),
                     SSL_E_USAGE);
    assert_true(isnan(v1));
    v1 = 0.0;
    assert_int_equal(
        ssl_swav_codes_loss(&v1, NULL, NULL, z, c, codes, n, d, K, 1, NULL, NULL, ww),
        SSL_E_USAGE);
    assert_true(isnan(v1));
    /* a non-finite value: SSL_E_NONFINITE and NAN */
    double keep = a[1];
    a[1] = NAN;
    v1 = 0.0;
    assert_int_equal(ssl_simclr_nt_xent_loss(&v1, da, NULL, a, b, n, d, NULL, NULL, ws),
                     SSL_E_NONFINITE);
    assert_true(isnan(v1));
    v1 = 0.0;
    assert_int_equal(ssl_moco_sym_loss(&v1, da, da, a, b, b, a, queue, n, d, K, NULL, NULL, wm),
                     SSL_E_NONFINITE);
    assert_true(isnan(v1));
    a[1] = keep;
    keep = z[2];
    z[2] = INFINITY;
    v1 = 0.0;
    assert_int_equal(ssl_swav_codes_loss(&v1, NULL, NULL, z, c, codes, n, d, K, V, NULL, NULL, ww),
                     SSL_E_NONFINITE);
    assert_true(isnan(v1));
    z[2] = keep;
    /* a failed comm operation: its own code and NAN */
    struct ssl_loss_comm fc = {.sum = failing_sum, .gather = failing_gather};
    struct ssl_loss_ctx lc = {.comm = &fc};
    v1 = 0.0;
    assert_int_equal(ssl_simclr_nt_xent_loss(&v1, NULL, NULL, a, b, n, d, NULL, &lc, ws), 9);
    assert_true(isnan(v1));
    struct ssl_loss_comm sc = {.sum = failing_sum};
    struct ssl_loss_ctx slc = {.comm = &sc};
    v1 = 0.0;
    assert_int_equal(ssl_simclr_nt_xent_loss(&v1, NULL, NULL, a, b, n, d, NULL, &slc, ws), 7);
    assert_true(isnan(v1));
    v1 = 0.0;
    assert_int_equal(ssl_moco_loss(&v1, NULL, a, b, queue, n, d, K, NULL, &slc, wm), 7);
    assert_true(isnan(v1));
    v1 = 0.0;
    assert_int_equal(ssl_swav_loss(&v1, NULL, NULL, NULL, z, c, n, d, K, V, NULL, &slc, ww), 7);
    assert_true(isnan(v1));
    struct ssl_error err = {0};
    int64_t ptr = 0;
    double *big = xalloc(2 * n * d);
    assert_int_equal(ssl_moco_enqueue(big, &ptr, a, NULL, n, d, 2 * n, &lc, we, &err), 9);
    printf("[status] enqueue with a failed gather: %d, %s\n", (int)err.code, err.msg);
    assert_int_equal(ptr, 0);
    free(big);
    free(a);
    free(b);
    free(z);
    free(c);
    free(queue);
    free(codes);
    free(da);
    free(ws);
    free(wm);
    free(ww);
    free(we);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simclr_grad),   cmocka_unit_test(test_simclr_value),
        cmocka_unit_test(test_simclr_global), cmocka_unit_test(test_moco_grad),
        cmocka_unit_test(test_moco_value),    cmocka_unit_test(test_moco_global),
        cmocka_unit_test(test_moco_enqueue),  cmocka_unit_test(test_swav_sinkhorn),
        cmocka_unit_test(test_swav_grad),     cmocka_unit_test(test_swav_value),
        cmocka_unit_test(test_swav_global),   cmocka_unit_test(test_replay_ranks),
        cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
