/* test_layers.c: every layer of src/layers/layers.h against a second, independent computation
 * and (in fp64) against finite differences.
 *
 * Built twice from this one file (tests/engine.cmake):
 *   test_layers      against ssl_core_f64: everything below;
 *   test_layers_f32  against ssl_core_f32 with -DSSL_TEST_REFERENCE_ONLY: the reference groups
 *                    only (naive loops, index arithmetic, the BatchNorm formulas and SyncBN),
 *                    with float tolerances, so the float core that trains is checked too.
 * Finite differences need the fp64 core and are compiled only against it.
 *
 * Reference tolerances are rounding-error bounds, not guesses: a reference returns, with each
 * value, the sum of the absolute values of the terms that make it (`scale`), and the layer's
 * result must satisfy |got - ref| <= REF_REL * scale. A sum of K terms computed in any order
 * is within K*u*scale of the exact value (u the unit roundoff, Higham 3.1); the largest K here
 * is a few hundred, hence REF_REL = 1e-12 in fp64 (u = 1.1e-16) and 3e-5 in fp32
 * (u = 6e-8). Results that involve no arithmetic (copies, one addition) must be exact.
 * SSL_TEST_VERBOSE=1 prints the worst |diff| / bound of every comparison.
 *
 * Contract checks beyond the values: every output and scratch buffer is pre-filled with junk
 * before each call (a forward that accumulates into its output shows), and once with NaN
 * (test_outputs_not_read: a result that reads its output or scratch at all shows); every
 * buffer carries guard elements past its end that must survive; backward is checked to
 * accumulate into pre-filled gradients and to skip NULL ones. SyncBN is checked with 2, 3
 * and 4 threads playing the ranks around an allreduce-like sum. Seeds: gradcheck.h. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "check.h"
#include "gradcheck.h"
#include "layers/layers.h"
#include "rng.h"

#if !defined(SSL_F64) && !defined(SSL_TEST_REFERENCE_ONLY)
#error "finite differences need the fp64 core: link ssl_core_f64, or define SSL_TEST_REFERENCE_ONLY"
#endif
#if defined(SSL_F64) && !defined(SSL_TEST_REFERENCE_ONLY)
#define SSL_TEST_GRADCHECK 1
#endif

#ifdef SSL_F64
#define REF_REL 1e-12
#else
#define REF_REL 3e-5
#endif

/* ------------------------------------------------------------------------------------------
 * Buffers with guards, fills, comparisons
 * ------------------------------------------------------------------------------------------ */

enum { GUARD = 16 };
#define GUARD_REAL ((ssl_real)7777.0)
#define GUARD_DOUBLE (-5555.0)

/* n zeroed elements followed by GUARD guard elements. */
static ssl_real *ralloc(int64_t n)
{
    ssl_real *p = malloc((size_t)(n + GUARD) * sizeof *p);
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = 0;
    for (int64_t i = n; i < n + GUARD; i++) p[i] = GUARD_REAL;
    return p;
}

static double *dalloc(int64_t n)
{
    double *p = malloc((size_t)(n + GUARD) * sizeof *p);
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = 0.0;
    for (int64_t i = n; i < n + GUARD; i++) p[i] = GUARD_DOUBLE;
    return p;
}

static void rguard(const ssl_real *p, int64_t n, const char *what)
{
    if (p == NULL) return; /* a gradient not asked for */
    for (int64_t i = n; i < n + GUARD; i++) {
        if (p[i] != GUARD_REAL) {
            printf("  FAIL %s: written past its end (element %" PRId64 " of %" PRId64 ")\n", what,
                   i, n);
            fail_msg("%s: buffer overrun", what);
        }
    }
}

static void dguard(const double *p, int64_t n, const char *what)
{
    if (p == NULL) return;
    for (int64_t i = n; i < n + GUARD; i++) {
        if (p[i] != GUARD_DOUBLE) {
            printf("  FAIL %s: written past its end (element %" PRId64 " of %" PRId64 ")\n", what,
                   i, n);
            fail_msg("%s: buffer overrun", what);
        }
    }
}

/* Outputs and scratch are filled before each call: with a finite junk value (a forward
 * that accumulates into its output, or a result that depends on the scratch, shows), or with
 * NaN for test_outputs_not_read (a forward that reads its output at all, e.g. 0 * y, shows). */
#define JUNK 1234.5
static void rpoison(ssl_real *p, int64_t n, bool nan)
{
    for (int64_t i = 0; i < n; i++) p[i] = nan ? (ssl_real)NAN : (ssl_real)JUNK;
}

static void dpoison(double *p, int64_t n, bool nan)
{
    for (int64_t i = 0; i < n; i++) p[i] = nan ? (double)NAN : JUNK;
}

static void rfill(struct ssl_rng *r, ssl_real *x, int64_t n, double mean, double std)
{
    for (int64_t i = 0; i < n; i++) x[i] = (ssl_real)(mean + std * ssl_rng_normal(r));
}

static void rcopy(ssl_real *dst, const ssl_real *src, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof *dst);
}

/* got against want: |got - want| <= rel * scale_i, or, with scale NULL, exactly equal to want
 * rounded to ssl_real (results of no arithmetic or of one correctly rounded operation).
 * Prints the worst element and fails the test if anything is out. */
static void check_close(const char *what, const ssl_real *got, const double *want,
                        const double *scale, int64_t n, double rel)
{
    int64_t n_bad = 0, worst = -1;
    double worst_ratio = -1.0;
    for (int64_t i = 0; i < n; i++) {
        double g = (double)got[i];
        double w = (double)(ssl_real)want[i];
        double bound = scale ? rel * scale[i] + 1e-300 : 0.0;
        double err = fabs(g - w);
        bool ok = scale ? err <= bound : g == w;
        double ratio = ok ? (bound > 0.0 ? err / bound : 0.0) : HUGE_VAL;
        if (!ok) n_bad++;
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            worst = i;
        }
    }
    const char *verbose = getenv("SSL_TEST_VERBOSE");
    if (verbose && *verbose && *verbose != '0' && n > 0)
        printf("  check %s: worst |diff|/bound %.3g\n", what, worst_ratio);
    if (n_bad) {
        printf("  FAIL %s: %" PRId64 " of %" PRId64 " elements differ; worst [%" PRId64
               "] got % .12e want % .12e (|diff| %.3e, bound %.3e)\n",
               what, n_bad, n, worst, (double)got[worst], want[worst],
               fabs((double)got[worst] - want[worst]), scale ? rel * scale[worst] : 0.0);
        fail_msg("%s: %" PRId64 " elements differ from the reference", what, n_bad);
    }
}

/* want_i = prefill_i + ref_i and scale_i = |prefill_i| + ref_scale_i (in place in ref/scale):
 * what a backward that accumulates must produce from a pre-filled gradient. */
static void add_prefill(double *ref, double *scale, const ssl_real *prefill, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        ref[i] += (double)prefill[i];
        if (scale) scale[i] += fabs((double)prefill[i]);
    }
}

/* ------------------------------------------------------------------------------------------
 * linear: y (n, out) = x (n, in) w^T + b
 * ------------------------------------------------------------------------------------------ */

struct linear_case {
    const char *name;
    int64_t n, in, out;
    bool bias;
};

static const struct linear_case LINEAR_CASES[] = {
    {"linear n5 in7 out3", 5, 7, 3, true},   {"linear n5 in7 out3 nobias", 5, 7, 3, false},
    {"linear n1 in4 out6", 1, 4, 6, true},   {"linear n6 in1 out2", 6, 1, 2, true},
    {"linear n3 in8 out1 nobias", 3, 8, 1, false},
};

static void ref_linear_forward(double *y, double *ys, const ssl_real *x, const ssl_real *w,
                               const ssl_real *b, int64_t n, int64_t in, int64_t out)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? (double)b[o] : 0.0, a = fabs(s);
            for (int64_t k = 0; k < in; k++) {
                double t = (double)x[i * in + k] * (double)w[o * in + k];
                s += t;
                a += fabs(t);
            }
            y[i * out + o] = s;
            ys[i * out + o] = a;
        }
}

static void ref_linear_backward(double *dx, double *dxs, double *dw, double *dws, double *db,
                                double *dbs, const ssl_real *dy, const ssl_real *x,
                                const ssl_real *w, int64_t n, int64_t in, int64_t out)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double g = (double)dy[i * out + o];
            db[o] += g;
            dbs[o] += fabs(g);
            for (int64_t k = 0; k < in; k++) {
                double tx = g * (double)w[o * in + k], tw = g * (double)x[i * in + k];
                dx[i * in + k] += tx;
                dxs[i * in + k] += fabs(tx);
                dw[o * in + k] += tw;
                dws[o * in + k] += fabs(tw);
            }
        }
}

static void linear_reference_case(struct ssl_rng *r, int64_t n, int64_t in, int64_t out,
                                  bool bias, const char *name)
{
    int64_t nx = n * in, nw = out * in, ny = n * out;
    ssl_real *x = ralloc(nx), *w = ralloc(nw), *b = ralloc(out), *y = ralloc(ny);
    ssl_real *dy = ralloc(ny), *dx = ralloc(nx), *dw = ralloc(nw), *db = ralloc(out);
    double *ry = dalloc(ny), *rys = dalloc(ny), *rdx = dalloc(nx), *rdxs = dalloc(nx);
    double *rdw = dalloc(nw), *rdws = dalloc(nw), *rdb = dalloc(out), *rdbs = dalloc(out);
    rfill(r, x, nx, 0.0, 1.0);
    rfill(r, w, nw, 0.0, 1.0 / sqrt((double)in));
    rfill(r, b, out, 0.0, 0.5);
    rfill(r, dy, ny, 0.0, 1.0);
    rfill(r, dx, nx, 0.0, 1.0); /* pre-filled: backward must accumulate */
    rfill(r, dw, nw, 0.0, 1.0);
    rfill(r, db, out, 0.0, 1.0);
    const ssl_real *bb = bias ? b : NULL;
    char what[160];

    rpoison(y, ny, false);
    ssl_linear_forward(y, x, w, bb, n, in, out);
    ref_linear_forward(ry, rys, x, w, bb, n, in, out);
    snprintf(what, sizeof what, "%s forward y", name);
    check_close(what, y, ry, rys, ny, REF_REL);
    rguard(y, ny, what);

    ref_linear_backward(rdx, rdxs, rdw, rdws, rdb, rdbs, dy, x, w, n, in, out);
    add_prefill(rdx, rdxs, dx, nx);
    add_prefill(rdw, rdws, dw, nw);
    add_prefill(rdb, rdbs, db, out);
    ssl_linear_backward(dx, dw, bias ? db : NULL, dy, x, w, n, in, out);
    snprintf(what, sizeof what, "%s backward dx", name);
    check_close(what, dx, rdx, rdxs, nx, REF_REL);
    rguard(dx, nx, what);
    snprintf(what, sizeof what, "%s backward dw", name);
    check_close(what, dw, rdw, rdws, nw, REF_REL);
    rguard(dw, nw, what);
    if (bias) {
        snprintf(what, sizeof what, "%s backward db", name);
        check_close(what, db, rdb, rdbs, out, REF_REL);
        rguard(db, out, what);
    }
    printf("  reference %s: ok\n", name);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
    free(ry), free(rys), free(rdx), free(rdxs), free(rdw), free(rdws), free(rdb), free(rdbs);
}

static void test_linear_reference(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "linear_reference");
    for (size_t i = 0; i < sizeof LINEAR_CASES / sizeof LINEAR_CASES[0]; i++) {
        const struct linear_case *c = &LINEAR_CASES[i];
        linear_reference_case(&r, c->n, c->in, c->out, c->bias, c->name);
    }
    /* Large enough for the BLAS to block and vectorise. */
    linear_reference_case(&r, 64, 96, 48, true, "linear n64 in96 out48");
}

/* ------------------------------------------------------------------------------------------
 * conv2d: y (c_out, n, h_out, w_out) from x (c_in, n, h_in, w_in), w (c_out, c_in, k, k)
 * ------------------------------------------------------------------------------------------ */

struct conv_case {
    const char *name;
    int64_t n, c_in, h, w, c_out, k, stride, pad;
    int64_t chunk; /* > 0: forced im2col chunk (samples) */
    bool bias;
};

static const struct conv_case CONV_CASES[] = {
    {"conv 3x3 s1 p1", 2, 3, 6, 6, 4, 3, 1, 1, 0, true},
    {"conv 3x3 s1 p1 nobias", 2, 3, 6, 6, 4, 3, 1, 1, 0, false},
    {"conv 3x3 s2 p1 in7x7", 2, 3, 7, 7, 4, 3, 2, 1, 0, true},
    {"conv 1x1 s2 p0", 2, 4, 6, 6, 3, 1, 2, 0, 0, false},
    {"conv 5x5 s1 p2", 2, 2, 6, 6, 3, 5, 1, 2, 0, true},
    {"conv in7x5 3x3 s2 p1", 2, 3, 7, 5, 2, 3, 2, 1, 0, true},
    {"conv in7x5 3x3 s1 p0", 2, 2, 7, 5, 3, 3, 1, 0, 0, false},
    {"conv c_in=1 3x3 s1 p1", 3, 1, 5, 5, 2, 3, 1, 1, 0, true},
    {"conv n5 chunk2 3x3 s1 p1", 5, 2, 5, 5, 3, 3, 1, 1, 2, true},
    {"conv n5 chunk1 3x3 s2 p1", 5, 2, 6, 6, 2, 3, 2, 1, 1, false},
    {"conv n4 chunk3 in5x7 5x5 s2 p1", 4, 2, 5, 7, 2, 5, 2, 1, 3, true},
    /* 1x1, stride 1, no padding: the path without im2col */
    {"conv 1x1 s1 p0", 2, 3, 4, 5, 4, 1, 1, 0, 0, true},
    {"conv n5 chunk2 1x1 s1 p0", 5, 3, 3, 4, 2, 1, 1, 0, 2, false},
};

static inline int64_t conv_x_at(const struct ssl_conv2d_dims *d, int64_t ci, int64_t n,
                                int64_t ih, int64_t iw)
{
    return ((ci * d->n + n) * d->h_in + ih) * d->w_in + iw;
}

static inline int64_t conv_w_at(const struct ssl_conv2d_dims *d, int64_t co, int64_t ci,
                                int64_t kh, int64_t kw)
{
    return ((co * d->c_in + ci) * d->k_h + kh) * d->k_w + kw;
}

static inline int64_t conv_y_at(const struct ssl_conv2d_dims *d, int64_t co, int64_t n,
                                int64_t oh, int64_t ow)
{
    return ((co * d->n + n) * d->h_out + oh) * d->w_out + ow;
}

/* The direct 7-loop convolution, and its backward scattered from the same definition. */
static void ref_conv_forward(double *y, double *ys, const ssl_real *x, const ssl_real *w,
                             const ssl_real *b, const struct ssl_conv2d_dims *d)
{
    for (int64_t co = 0; co < d->c_out; co++)
        for (int64_t n = 0; n < d->n; n++)
            for (int64_t oh = 0; oh < d->h_out; oh++)
                for (int64_t ow = 0; ow < d->w_out; ow++) {
                    double s = b ? (double)b[co] : 0.0, a = fabs(s);
                    for (int64_t ci = 0; ci < d->c_in; ci++)
                        for (int64_t kh = 0; kh < d->k_h; kh++)
                            for (int64_t kw = 0; kw < d->k_w; kw++) {
                                int64_t ih = oh * d->stride - d->pad + kh;
                                int64_t iw = ow * d->stride - d->pad + kw;
                                if (ih < 0 || ih >= d->h_in || iw < 0 || iw >= d->w_in) continue;
                                double t = (double)w[conv_w_at(d, co, ci, kh, kw)] *
                                           (double)x[conv_x_at(d, ci, n, ih, iw)];
                                s += t;
                                a += fabs(t);
                            }
                    y[conv_y_at(d, co, n, oh, ow)] = s;
                    ys[conv_y_at(d, co, n, oh, ow)] = a;
                }
}

static void ref_conv_backward(double *dx, double *dxs, double *dw, double *dws, double *db,
                              double *dbs, const ssl_real *dy, const ssl_real *x,
                              const ssl_real *w, const struct ssl_conv2d_dims *d)
{
    for (int64_t co = 0; co < d->c_out; co++)
        for (int64_t n = 0; n < d->n; n++)
            for (int64_t oh = 0; oh < d->h_out; oh++)
                for (int64_t ow = 0; ow < d->w_out; ow++) {
                    double g = (double)dy[conv_y_at(d, co, n, oh, ow)];
                    db[co] += g;
                    dbs[co] += fabs(g);
                    for (int64_t ci = 0; ci < d->c_in; ci++)
                        for (int64_t kh = 0; kh < d->k_h; kh++)
                            for (int64_t kw = 0; kw < d->k_w; kw++) {
                                int64_t ih = oh * d->stride - d->pad + kh;
                                int64_t iw = ow * d->stride - d->pad + kw;
                                if (ih < 0 || ih >= d->h_in || iw < 0 || iw >= d->w_in) continue;
                                int64_t xi = conv_x_at(d, ci, n, ih, iw);
                                int64_t wi = conv_w_at(d, co, ci, kh, kw);
                                double tx = g * (double)w[wi], tw = g * (double)x[xi];
                                dx[xi] += tx;
                                dxs[xi] += fabs(tx);
                                dw[wi] += tw;
                                dws[wi] += fabs(tw);
                            }
                }
}

struct conv_ctx {
    struct ssl_conv2d_dims d;
    const char *name;
    int64_t nx, nw, ny, nb, n_scratch;
    ssl_real *x, *w, *b, *y, *r, *dx, *dw, *db, *scratch;
    bool bias;
    bool nan; /* outputs and scratch pre-filled with NaN instead of JUNK */
};

/* Dimensions checked against the textbook formula, buffers allocated and filled. */
static void conv_setup(struct conv_ctx *c, const struct conv_case *cc, struct ssl_rng *r)
{
    memset(c, 0, sizeof *c);
    c->name = cc->name;
    c->bias = cc->bias;
    bool ok = ssl_conv2d_dims_init(&c->d, cc->n, cc->c_in, cc->h, cc->w, cc->c_out, cc->k,
                                   cc->stride, cc->pad);
    assert_true(ok);
    int64_t h_out = (cc->h + 2 * cc->pad - cc->k) / cc->stride + 1;
    int64_t w_out = (cc->w + 2 * cc->pad - cc->k) / cc->stride + 1;
    assert_int_equal(c->d.n, cc->n);
    assert_int_equal(c->d.c_in, cc->c_in);
    assert_int_equal(c->d.h_in, cc->h);
    assert_int_equal(c->d.w_in, cc->w);
    assert_int_equal(c->d.c_out, cc->c_out);
    assert_int_equal(c->d.k_h, cc->k);
    assert_int_equal(c->d.k_w, cc->k);
    assert_int_equal(c->d.stride, cc->stride);
    assert_int_equal(c->d.pad, cc->pad);
    assert_int_equal(c->d.h_out, h_out);
    assert_int_equal(c->d.w_out, w_out);
    assert_true(c->d.chunk >= 1);
    if (cc->chunk > 0) {
        c->d.chunk = cc->chunk;
        assert_true(cc->chunk < cc->n); /* the case is about several chunks */
    }
    c->n_scratch = ssl_conv2d_scratch_elems(&c->d);
    assert_true(c->n_scratch >= 0);
    c->nx = cc->c_in * cc->n * cc->h * cc->w;
    c->nw = cc->c_out * cc->c_in * cc->k * cc->k;
    c->ny = cc->c_out * cc->n * h_out * w_out;
    c->nb = cc->c_out;
    c->x = ralloc(c->nx), c->w = ralloc(c->nw), c->b = ralloc(c->nb), c->y = ralloc(c->ny);
    c->r = ralloc(c->ny), c->dx = ralloc(c->nx), c->dw = ralloc(c->nw), c->db = ralloc(c->nb);
    c->scratch = ralloc(c->n_scratch);
    rfill(r, c->x, c->nx, 0.0, 1.0);
    rfill(r, c->w, c->nw, 0.0, 1.0 / sqrt((double)(cc->c_in * cc->k * cc->k)));
    rfill(r, c->b, c->nb, 0.0, 0.5);
    rfill(r, c->r, c->ny, 0.0, 1.0);
}

static void conv_free(struct conv_ctx *c)
{
    free(c->x), free(c->w), free(c->b), free(c->y), free(c->r), free(c->dx), free(c->dw);
    free(c->db), free(c->scratch);
}

static void conv_forward(struct conv_ctx *c)
{
    rpoison(c->y, c->ny, c->nan);
    rpoison(c->scratch, c->n_scratch, c->nan);
    ssl_conv2d_forward(c->y, c->scratch, c->x, c->w, c->bias ? c->b : NULL, &c->d);
    rguard(c->y, c->ny, "conv2d y");
    rguard(c->scratch, c->n_scratch, "conv2d scratch (forward)");
}

static void conv_reference_case(struct conv_ctx *c, struct ssl_rng *r)
{
    const struct ssl_conv2d_dims *d = &c->d;
    double *ry = dalloc(c->ny), *rys = dalloc(c->ny);
    double *rdx = dalloc(c->nx), *rdxs = dalloc(c->nx), *rdw = dalloc(c->nw);
    double *rdws = dalloc(c->nw), *rdb = dalloc(c->nb), *rdbs = dalloc(c->nb);
    char what[200];

    conv_forward(c);
    ref_conv_forward(ry, rys, c->x, c->w, c->bias ? c->b : NULL, d);
    snprintf(what, sizeof what, "%s forward y", c->name);
    check_close(what, c->y, ry, rys, c->ny, REF_REL);

    rfill(r, c->dx, c->nx, 0.0, 1.0); /* pre-filled: backward must accumulate */
    rfill(r, c->dw, c->nw, 0.0, 1.0);
    rfill(r, c->db, c->nb, 0.0, 1.0);
    ref_conv_backward(rdx, rdxs, rdw, rdws, rdb, rdbs, c->r, c->x, c->w, d);
    add_prefill(rdx, rdxs, c->dx, c->nx);
    add_prefill(rdw, rdws, c->dw, c->nw);
    add_prefill(rdb, rdbs, c->db, c->nb);
    rpoison(c->scratch, c->n_scratch, c->nan);
    ssl_conv2d_backward(c->dx, c->dw, c->bias ? c->db : NULL, c->scratch, c->r, c->x, c->w, d);
    rguard(c->scratch, c->n_scratch, "conv2d scratch (backward)");
    snprintf(what, sizeof what, "%s backward dx", c->name);
    check_close(what, c->dx, rdx, rdxs, c->nx, REF_REL);
    rguard(c->dx, c->nx, what);
    snprintf(what, sizeof what, "%s backward dw", c->name);
    check_close(what, c->dw, rdw, rdws, c->nw, REF_REL);
    rguard(c->dw, c->nw, what);
    if (c->bias) {
        snprintf(what, sizeof what, "%s backward db", c->name);
        check_close(what, c->db, rdb, rdbs, c->nb, REF_REL);
        rguard(c->db, c->nb, what);
    }
    printf("  reference %s (h_out %" PRId64 " w_out %" PRId64 " chunk %" PRId64
           " scratch %" PRId64 "): ok\n",
           c->name, d->h_out, d->w_out, d->chunk, c->n_scratch);
    free(ry), free(rys), free(rdx), free(rdxs), free(rdw), free(rdws), free(rdb), free(rdbs);
}

static void test_conv2d_dims(void **state)
{
    (void)state;
    struct ssl_conv2d_dims d;
    /* An empty output is refused: kernel larger than the padded input. */
    assert_false(ssl_conv2d_dims_init(&d, 2, 3, 2, 2, 4, 5, 1, 0));
    assert_false(ssl_conv2d_dims_init(&d, 2, 3, 4, 2, 4, 3, 1, 0));
    /* ResNet-18 CIFAR shapes. */
    assert_true(ssl_conv2d_dims_init(&d, 8, 3, 32, 32, 64, 3, 1, 1));
    assert_int_equal(d.h_out, 32);
    assert_int_equal(d.w_out, 32);
    assert_true(d.chunk >= 1);
    assert_true(ssl_conv2d_dims_init(&d, 8, 64, 32, 32, 128, 3, 2, 1));
    assert_int_equal(d.h_out, 16);
    assert_int_equal(d.w_out, 16);
    assert_true(ssl_conv2d_dims_init(&d, 8, 64, 32, 32, 128, 1, 2, 0));
    assert_int_equal(d.h_out, 16);
    assert_int_equal(d.w_out, 16);
    /* Odd sizes floor. */
    assert_true(ssl_conv2d_dims_init(&d, 1, 1, 7, 5, 1, 3, 2, 1));
    assert_int_equal(d.h_out, 4);
    assert_int_equal(d.w_out, 3);
    assert_true(ssl_conv2d_dims_init(&d, 1, 1, 28, 28, 1, 5, 1, 2));
    assert_int_equal(d.h_out, 28);
    /* A smaller chunk never needs more scratch. */
    assert_true(ssl_conv2d_dims_init(&d, 16, 8, 12, 12, 8, 3, 1, 1));
    int64_t full = ssl_conv2d_scratch_elems(&d);
    d.chunk = 1;
    assert_true(ssl_conv2d_scratch_elems(&d) <= full);
    assert_true(ssl_conv2d_scratch_elems(&d) > 0);
}

static void test_conv2d_reference(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "conv2d_reference");
    for (size_t i = 0; i < sizeof CONV_CASES / sizeof CONV_CASES[0]; i++) {
        struct conv_ctx c;
        conv_setup(&c, &CONV_CASES[i], &r);
        conv_reference_case(&c, &r);
        conv_free(&c);
    }
    /* Larger: the BLAS blocks and vectorises, ResNet-like channel counts. */
    static const struct conv_case big[] = {
        {"conv n6 c16->24 12x12 3x3 s1 p1", 6, 16, 12, 12, 24, 3, 1, 1, 0, false},
        {"conv n6 c16->24 12x12 3x3 s2 p1 chunk4", 6, 16, 12, 12, 24, 3, 2, 1, 4, true},
        {"conv n6 c16->24 12x12 1x1 s2 p0", 6, 16, 12, 12, 24, 1, 2, 0, 0, false},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        struct conv_ctx c;
        conv_setup(&c, &big[i], &r);
        conv_reference_case(&c, &r);
        conv_free(&c);
    }
    /* The default chunk: the smallest batch (up to 4096) for which ssl_conv2d_dims_init itself
     * splits the batch, so the chunking chosen in production is exercised too. */
    struct conv_case chunked = {"conv default chunk < n", 0, 3, 8, 8, 2, 3, 1, 1, 0, true};
    for (int64_t n = 2; n <= 4096; n *= 2) {
        struct ssl_conv2d_dims d;
        assert_true(ssl_conv2d_dims_init(&d, n, chunked.c_in, chunked.h, chunked.w,
                                         chunked.c_out, chunked.k, chunked.stride, chunked.pad));
        if (d.chunk < n) {
            chunked.n = n + 1; /* and not a multiple of the chunk */
            break;
        }
    }
    if (chunked.n > 0) {
        struct conv_ctx c;
        conv_setup(&c, &chunked, &r);
        printf("  default chunk %" PRId64 " < n %" PRId64 "\n", c.d.chunk, c.d.n);
        conv_reference_case(&c, &r);
        conv_free(&c);
    } else {
        printf("  note: the default chunk covers batches up to 4096 of 3x8x8: forced chunks "
               "only\n");
    }
}

/* ------------------------------------------------------------------------------------------
 * pointwise and layout layers: relu, add, avgpool, flatten, l2norm, nchw_to_cnhw
 * ------------------------------------------------------------------------------------------ */

static void test_relu_add_reference(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "relu_add_reference");
    const int64_t n = 257;
    ssl_real *x = ralloc(n), *y = ralloc(n), *dy = ralloc(n), *dx = ralloc(n), *b = ralloc(n);
    double *ref = dalloc(n);
    rfill(&r, x, n, 0.0, 1.0);
    x[3] = 0;
    x[4] = (ssl_real)-0.0;
    rpoison(y, n, false);
    ssl_relu_forward(y, x, n);
    for (int64_t i = 0; i < n; i++) ref[i] = (double)x[i] > 0.0 ? (double)x[i] : 0.0;
    check_close("relu forward", y, ref, NULL, n, 0.0);
    rguard(y, n, "relu y");
    rfill(&r, dy, n, 0.0, 1.0);
    rfill(&r, dx, n, 0.0, 1.0);
    for (int64_t i = 0; i < n; i++)
        ref[i] = (double)dx[i] + ((double)x[i] > 0.0 ? (double)dy[i] : 0.0);
    ssl_relu_backward(dx, dy, y, n);
    check_close("relu backward dx (accumulated)", dx, ref, NULL, n, 0.0);
    rguard(dx, n, "relu dx");

    /* In place, as the models may call it: y == x. */
    rcopy(y, x, n);
    ssl_relu_forward(y, y, n);
    for (int64_t i = 0; i < n; i++) ref[i] = (double)x[i] > 0.0 ? (double)x[i] : 0.0;
    check_close("relu forward in place", y, ref, NULL, n, 0.0);

    rfill(&r, b, n, 0.0, 1.0);
    rpoison(y, n, false);
    ssl_add_forward(y, x, b, n);
    for (int64_t i = 0; i < n; i++) ref[i] = (double)x[i] + (double)b[i];
    check_close("add forward", y, ref, NULL, n, 0.0);
    rguard(y, n, "add y");
    ssl_real *da = ralloc(n), *db = ralloc(n);
    double *ref_b = dalloc(n);
    rfill(&r, da, n, 0.0, 1.0);
    rfill(&r, db, n, 0.0, 1.0);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = (double)da[i] + (double)dy[i];
        ref_b[i] = (double)db[i] + (double)dy[i];
    }
    ssl_add_backward(da, db, dy, n);
    check_close("add backward da (accumulated)", da, ref, NULL, n, 0.0);
    check_close("add backward db (accumulated)", db, ref_b, NULL, n, 0.0);
    rguard(da, n, "add da");
    rguard(db, n, "add db");
    /* NULL gradients are skipped. */
    for (int64_t i = 0; i < n; i++) ref[i] = (double)da[i] + (double)dy[i];
    ssl_add_backward(da, NULL, dy, n);
    check_close("add backward da (db NULL)", da, ref, NULL, n, 0.0);
    for (int64_t i = 0; i < n; i++) ref_b[i] = (double)db[i] + (double)dy[i];
    ssl_add_backward(NULL, db, dy, n);
    check_close("add backward db (da NULL)", db, ref_b, NULL, n, 0.0);
    ssl_add_backward(NULL, NULL, dy, n);
    printf("  reference relu, add: ok\n");
    free(x), free(y), free(dy), free(dx), free(b), free(ref), free(da), free(db), free(ref_b);
}

static void test_pool_flatten_reference(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "pool_flatten_reference");
    /* A CNHW tensor built from an NCHW one by index arithmetic, so the layout is tested
     * against PyTorch's (n, c, h, w) meaning of the same values. */
    static const int64_t shapes[][3] = {{3, 2, 6}, {5, 4, 1}, {1, 3, 9}, {16, 7, 16}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t c = shapes[s][0], n = shapes[s][1], hw = shapes[s][2], nx = c * n * hw;
        ssl_real *nchw = ralloc(nx), *x = ralloc(nx), *y = ralloc(nx), *dy = ralloc(nx);
        ssl_real *dx = ralloc(nx), *pooled = ralloc(n * c);
        double *ref = dalloc(nx), *scale = dalloc(nx);
        rfill(&r, nchw, nx, 0.0, 1.0);

        /* ssl_nchw_to_cnhw: x[c][n][k] = nchw[n][c][k]. */
        rpoison(x, nx, false);
        ssl_nchw_to_cnhw(x, nchw, n, c, hw);
        for (int64_t ni = 0; ni < n; ni++)
            for (int64_t ci = 0; ci < c; ci++)
                for (int64_t k = 0; k < hw; k++)
                    ref[(ci * n + ni) * hw + k] = (double)nchw[(ni * c + ci) * hw + k];
        check_close("nchw_to_cnhw", x, ref, NULL, nx, 0.0);
        rguard(x, nx, "nchw_to_cnhw y");

        /* flatten: y[n][c*hw + k] = NCHW[n][c][k], i.e. torch.flatten(x, 1). */
        rpoison(y, nx, false);
        ssl_flatten_forward(y, x, c, n, hw);
        for (int64_t i = 0; i < nx; i++) ref[i] = (double)nchw[i];
        check_close("flatten forward", y, ref, NULL, nx, 0.0);
        rguard(y, nx, "flatten y");
        rfill(&r, dy, nx, 0.0, 1.0);
        rfill(&r, dx, nx, 0.0, 1.0);
        for (int64_t ni = 0; ni < n; ni++)
            for (int64_t ci = 0; ci < c; ci++)
                for (int64_t k = 0; k < hw; k++)
                    ref[(ci * n + ni) * hw + k] =
                        (double)dx[(ci * n + ni) * hw + k] + (double)dy[(ni * c + ci) * hw + k];
        ssl_flatten_backward(dx, dy, c, n, hw);
        check_close("flatten backward (accumulated)", dx, ref, NULL, nx, 0.0);
        rguard(dx, nx, "flatten dx");

        /* avgpool: y[n][c] = mean_k NCHW[n][c][k]. */
        rpoison(pooled, n * c, false);
        ssl_avgpool_forward(pooled, x, c, n, hw);
        for (int64_t ni = 0; ni < n; ni++)
            for (int64_t ci = 0; ci < c; ci++) {
                double sum = 0.0, a = 0.0;
                for (int64_t k = 0; k < hw; k++) {
                    sum += (double)nchw[(ni * c + ci) * hw + k];
                    a += fabs((double)nchw[(ni * c + ci) * hw + k]);
                }
                ref[ni * c + ci] = sum / (double)hw;
                scale[ni * c + ci] = a / (double)hw;
            }
        check_close("avgpool forward", pooled, ref, scale, n * c, REF_REL);
        rguard(pooled, n * c, "avgpool y");
        rfill(&r, dx, nx, 0.0, 1.0);
        for (int64_t ci = 0; ci < c; ci++)
            for (int64_t ni = 0; ni < n; ni++)
                for (int64_t k = 0; k < hw; k++) {
                    int64_t i = (ci * n + ni) * hw + k;
                    double t = (double)dy[ni * c + ci] / (double)hw;
                    ref[i] = (double)dx[i] + t;
                    scale[i] = fabs((double)dx[i]) + fabs(t);
                }
        ssl_avgpool_backward(dx, dy, c, n, hw);
        check_close("avgpool backward (accumulated)", dx, ref, scale, nx, REF_REL);
        rguard(dx, nx, "avgpool dx");
        free(nchw), free(x), free(y), free(dy), free(dx), free(pooled), free(ref), free(scale);
    }
    printf("  reference nchw_to_cnhw, flatten, avgpool: ok\n");
}

/* Rows scaled to a chosen norm, to keep away from the eps kink. */
static void scale_row(ssl_real *x, int64_t d, double norm)
{
    double s = 0.0;
    for (int64_t j = 0; j < d; j++) s += (double)x[j] * (double)x[j];
    double f = norm / sqrt(s);
    for (int64_t j = 0; j < d; j++) x[j] = (ssl_real)((double)x[j] * f);
}

static void ref_l2norm(double *y, double *ys, double *norms, const ssl_real *x, int64_t n,
                       int64_t d, double eps)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < d; j++) s += (double)x[i * d + j] * (double)x[i * d + j];
        norms[i] = sqrt(s);
        double den = fmax(norms[i], eps);
        for (int64_t j = 0; j < d; j++) {
            y[i * d + j] = (double)x[i * d + j] / den;
            ys[i * d + j] = fabs(y[i * d + j]) * (double)d; /* the norm's own rounding */
        }
    }
}

static void test_l2norm_reference(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "l2norm_reference");
    const int64_t n = 5, d = 7, nx = n * d;
    const double eps = 1e-12; /* torch.nn.functional.normalize's default */
    ssl_real *x = ralloc(nx), *y = ralloc(nx), *norms = ralloc(n), *dy = ralloc(nx);
    ssl_real *dx = ralloc(nx);
    double *ry = dalloc(nx), *rys = dalloc(nx), *rn = dalloc(n), *rdx = dalloc(nx);
    double *rdxs = dalloc(nx);
    rfill(&r, x, nx, 0.0, 1.0);
    scale_row(x + 1 * d, d, 1e-14); /* below eps: y = x / eps */
    scale_row(x + 3 * d, d, 0.0);   /* zero row: y = 0, finite gradient */
    rpoison(y, nx, false);
    rpoison(norms, n, false);
    ssl_l2norm_forward(y, norms, x, n, d, eps);
    ref_l2norm(ry, rys, rn, x, n, d, eps);
    check_close("l2norm forward y", y, ry, rys, nx, REF_REL);
    rguard(y, nx, "l2norm y");
    rguard(norms, n, "l2norm norms");
    for (int64_t i = 0; i < n; i++) {
        if (rn[i] > eps) {
            double err = fabs((double)norms[i] - rn[i]);
            if (err > REF_REL * rn[i] * (double)d)
                fail_msg("l2norm saved norm of row %" PRId64 ": got %.12e want %.12e", i,
                         (double)norms[i], rn[i]);
        }
        assert_true(isfinite((double)norms[i]));
    }
    /* Backward: (dy - y (y . dy)) / ||x|| above eps, dy / eps below (the max is constant). */
    rfill(&r, dy, nx, 0.0, 1.0);
    rfill(&r, dx, nx, 0.0, 1.0);
    for (int64_t i = 0; i < n; i++) {
        double yd = 0.0, yda = 0.0;
        for (int64_t j = 0; j < d; j++) {
            yd += ry[i * d + j] * (double)dy[i * d + j];
            yda += fabs(ry[i * d + j] * (double)dy[i * d + j]);
        }
        for (int64_t j = 0; j < d; j++) {
            int64_t k = i * d + j;
            if (rn[i] > eps) {
                rdx[k] = ((double)dy[k] - ry[k] * yd) / rn[i];
                rdxs[k] = (fabs((double)dy[k]) + fabs(ry[k]) * yda) / rn[i] * (double)d;
            } else {
                rdx[k] = (double)dy[k] / eps;
                rdxs[k] = fabs(rdx[k]);
            }
        }
    }
    add_prefill(rdx, rdxs, dx, nx);
    ssl_l2norm_backward(dx, dy, y, norms, n, d, eps);
    check_close("l2norm backward dx (accumulated)", dx, rdx, rdxs, nx, REF_REL);
    rguard(dx, nx, "l2norm dx");
    printf("  reference l2norm (rows: normal, below eps, normal, zero, normal): ok\n");
    free(x), free(y), free(norms), free(dy), free(dx), free(ry), free(rys), free(rn), free(rdx);
    free(rdxs);
}

/* ------------------------------------------------------------------------------------------
 * batchnorm
 * ------------------------------------------------------------------------------------------ */

struct bn_ctx {
    struct ssl_bn_dims d;
    int64_t n, hw; /* samples and pixels per sample (hw = 1 for rows); m = n * hw */
    bool train, affine;
    bool nan; /* outputs and scratch pre-filled with NaN instead of JUNK */
    const struct ssl_bn_sync *sync;
    ssl_real *x, *y, *r, *dx;                  /* (c, m) or (m, c) */
    ssl_real *gamma, *beta, *dgamma, *dbeta;   /* (c) */
    ssl_real *rm, *rv, *rm0, *rv0;             /* (c) running stats, and their start */
    int64_t nb;
    double *saved, *scratch; /* (2, c), (n_scratch) */
    int64_t n_scratch;
};

/* Element (ch, sample, pixel) of a BN tensor of n samples. */
static inline int64_t bn_at(const struct bn_ctx *b, int64_t ch, int64_t sample, int64_t pix)
{
    if (b->d.layout == SSL_BN_CHANNEL_MAJOR) return (ch * b->n + sample) * b->hw + pix;
    return sample * b->d.c + ch;
}

static void bn_alloc(struct bn_ctx *b, enum ssl_bn_layout layout, int64_t c, int64_t n,
                     int64_t hw, bool affine, bool train, double eps, double momentum)
{
    memset(b, 0, sizeof *b);
    assert_true(layout == SSL_BN_CHANNEL_MAJOR || hw == 1);
    b->d.c = c;
    b->d.m = n * hw;
    b->d.layout = layout;
    b->d.eps = eps;
    b->d.momentum = momentum;
    b->n = n, b->hw = hw, b->train = train, b->affine = affine;
    int64_t nx = c * n * hw;
    b->x = ralloc(nx), b->y = ralloc(nx), b->r = ralloc(nx), b->dx = ralloc(nx);
    b->gamma = ralloc(c), b->beta = ralloc(c), b->dgamma = ralloc(c), b->dbeta = ralloc(c);
    b->rm = ralloc(c), b->rv = ralloc(c), b->rm0 = ralloc(c), b->rv0 = ralloc(c);
    b->saved = dalloc(2 * c);
    b->n_scratch = ssl_batchnorm_scratch_elems(c);
    assert_true(b->n_scratch >= 1);
    b->scratch = dalloc(b->n_scratch);
}

static void bn_free(struct bn_ctx *b)
{
    free(b->x), free(b->y), free(b->r), free(b->dx), free(b->gamma), free(b->beta);
    free(b->dgamma), free(b->dbeta), free(b->rm), free(b->rv), free(b->rm0), free(b->rv0);
    free(b->saved), free(b->scratch);
}

/* Per-channel offsets and spreads, so that a mix-up of channels shows. */
static void bn_fill(struct bn_ctx *b, struct ssl_rng *r)
{
    for (int64_t ch = 0; ch < b->d.c; ch++) {
        double mu = 0.7 * ssl_rng_normal(r), sd = 0.4 + 1.2 * ssl_rng_uniform(r);
        for (int64_t s = 0; s < b->n; s++)
            for (int64_t p = 0; p < b->hw; p++)
                b->x[bn_at(b, ch, s, p)] = (ssl_real)(mu + sd * ssl_rng_normal(r));
        b->gamma[ch] = (ssl_real)(1.0 + 0.3 * ssl_rng_normal(r));
        b->beta[ch] = (ssl_real)(0.3 * ssl_rng_normal(r));
        b->rm0[ch] = (ssl_real)(0.2 * ssl_rng_normal(r));
        b->rv0[ch] = (ssl_real)(0.5 + ssl_rng_uniform(r));
    }
    rfill(r, b->r, b->d.c * b->d.m, 0.0, 1.0);
    rcopy(b->rm, b->rm0, b->d.c);
    rcopy(b->rv, b->rv0, b->d.c);
}

static int bn_forward(struct bn_ctx *b)
{
    int64_t nx = b->d.c * b->d.m;
    rpoison(b->y, nx, b->nan);
    dpoison(b->scratch, b->n_scratch, b->nan);
    dpoison(b->saved, 2 * b->d.c, b->nan);
    int rc = ssl_batchnorm_forward(b->y, b->saved, b->rm, b->rv, &b->nb, b->x,
                                   b->affine ? b->gamma : NULL, b->affine ? b->beta : NULL, &b->d,
                                   b->train, b->sync, b->scratch);
    rguard(b->y, nx, "batchnorm y");
    dguard(b->saved, 2 * b->d.c, "batchnorm saved");
    dguard(b->scratch, b->n_scratch, "batchnorm scratch (forward)");
    rguard(b->rm, b->d.c, "batchnorm running_mean");
    rguard(b->rv, b->d.c, "batchnorm running_var");
    return rc;
}

/* Backward with dL/dy = r into the context's gradients (NULL where not affine). */
static int bn_backward(struct bn_ctx *b)
{
    dpoison(b->scratch, b->n_scratch, b->nan);
    int rc = ssl_batchnorm_backward(b->dx, b->affine ? b->dgamma : NULL,
                                    b->affine ? b->dbeta : NULL, b->r, b->x, b->saved,
                                    b->affine ? b->gamma : NULL, &b->d, b->train, b->sync,
                                    b->scratch);
    rguard(b->dx, b->d.c * b->d.m, "batchnorm dx");
    rguard(b->dgamma, b->d.c, "batchnorm dgamma");
    rguard(b->dbeta, b->d.c, "batchnorm dbeta");
    dguard(b->scratch, b->n_scratch, "batchnorm scratch (backward)");
    return rc;
}

/* The BatchNorm formulas of torch.nn.BatchNorm{1,2}d, written out in fp64: output, saved
 * statistics, running statistics after one step from (rm0, rv0), and the backward with
 * dL/dy = r. Each value comes with the sum of the magnitudes of its terms (s*). */
struct bn_ref {
    double *y, *ys, *mean, *mabs, *invstd, *rm, *rms, *rv, *rvs;
    double *dx, *dxs, *dgamma, *dgs, *dbeta, *dbs;
};

static void bn_ref_alloc(struct bn_ref *o, int64_t c, int64_t nx)
{
    o->y = dalloc(nx), o->ys = dalloc(nx), o->dx = dalloc(nx), o->dxs = dalloc(nx);
    o->mean = dalloc(c), o->mabs = dalloc(c), o->invstd = dalloc(c);
    o->rm = dalloc(c), o->rms = dalloc(c);
    o->rv = dalloc(c), o->rvs = dalloc(c), o->dgamma = dalloc(c), o->dgs = dalloc(c);
    o->dbeta = dalloc(c), o->dbs = dalloc(c);
}

static void bn_ref_free(struct bn_ref *o)
{
    free(o->y), free(o->ys), free(o->dx), free(o->dxs), free(o->mean), free(o->mabs);
    free(o->invstd);
    free(o->rm), free(o->rms), free(o->rv), free(o->rvs), free(o->dgamma), free(o->dgs);
    free(o->dbeta), free(o->dbs);
}

/* The scales: the sums' |terms| as everywhere, times 4 (8 for invstd) for the few roundings
 * after the sums (the division by M, sqrt, the products with invstd and gamma, the affine
 * map), each of which adds at most u times the magnitude; and, where the variance enters, the
 * term E[x^2] / var, the conditioning of a variance computed from sums of squares. */
static void bn_reference(struct bn_ref *o, const struct bn_ctx *b)
{
    const double eps = b->d.eps, mom = b->d.momentum;
    const int64_t M = b->d.m;
    for (int64_t ch = 0; ch < b->d.c; ch++) {
        double g = b->affine ? (double)b->gamma[ch] : 1.0;
        double be = b->affine ? (double)b->beta[ch] : 0.0;
        double sum = 0.0, abs_sum = 0.0, sq_sum = 0.0;
        for (int64_t i = 0; i < M; i++) {
            double v = (double)b->x[bn_at(b, ch, i / b->hw, i % b->hw)];
            sum += v;
            abs_sum += fabs(v);
            sq_sum += v * v;
        }
        double mean, var, invstd;
        if (b->train) {
            mean = sum / (double)M;
            double ss = 0.0;
            for (int64_t i = 0; i < M; i++) {
                double v = (double)b->x[bn_at(b, ch, i / b->hw, i % b->hw)] - mean;
                ss += v * v;
            }
            var = ss / (double)M; /* biased: normalisation */
            invstd = 1.0 / sqrt(var + eps);
            double unbiased = ss / (double)(M - 1); /* unbiased: running_var */
            o->rm[ch] = (1.0 - mom) * (double)b->rm0[ch] + mom * mean;
            o->rms[ch] = (1.0 - mom) * fabs((double)b->rm0[ch]) + mom * abs_sum / (double)M;
            o->rv[ch] = (1.0 - mom) * (double)b->rv0[ch] + mom * unbiased;
            o->rvs[ch] =
                (1.0 - mom) * fabs((double)b->rv0[ch]) + mom * sq_sum / (double)(M - 1) * 4.0;
        } else {
            mean = (double)b->rm0[ch];
            var = (double)b->rv0[ch];
            invstd = 1.0 / sqrt(var + eps);
            o->rm[ch] = (double)b->rm0[ch];
            o->rms[ch] = 0.0; /* unchanged, exactly */
            o->rv[ch] = (double)b->rv0[ch];
            o->rvs[ch] = 0.0;
        }
        o->mean[ch] = mean;
        o->invstd[ch] = invstd;
        double mean_abs = b->train ? abs_sum / (double)M : fabs(mean);
        double s1 = 0.0, s1a = 0.0, s2 = 0.0, s2a = 0.0, sdy = 0.0, sdya = 0.0;
        double sg = 0.0, sga = 0.0;
        for (int64_t i = 0; i < M; i++) {
            int64_t k = bn_at(b, ch, i / b->hw, i % b->hw);
            double xv = (double)b->x[k], xhat = (xv - mean) * invstd;
            double dy = (double)b->r[k];
            o->y[k] = g * xhat + be;
            /* the output's rounding, plus the statistics' (mean, and var's square sum) */
            o->ys[k] = fabs(g) * invstd * (fabs(xv) + mean_abs) * 4.0 + fabs(be) +
                       fabs(g * xhat) * (b->train ? sq_sum / (double)M * invstd * invstd : 1.0);
            s1 += dy * g;
            s1a += fabs(dy * g);
            s2 += dy * g * xhat;
            s2a += fabs(dy * g * xhat);
            sg += dy * xhat;
            sga += fabs(dy * xhat);
            sdy += dy;
            sdya += fabs(dy);
        }
        o->dgamma[ch] = sg;
        o->dgs[ch] = sga * 4.0;
        o->dbeta[ch] = sdy;
        o->dbs[ch] = sdya;
        o->mabs[ch] = mean_abs;
        for (int64_t i = 0; i < M; i++) {
            int64_t k = bn_at(b, ch, i / b->hw, i % b->hw);
            double xhat = ((double)b->x[k] - mean) * invstd, dxhat = (double)b->r[k] * g;
            if (b->train) {
                o->dx[k] = invstd * (dxhat - s1 / (double)M - xhat * s2 / (double)M);
                double terms = fabs(dxhat) + s1a / (double)M + fabs(xhat) * s2a / (double)M;
                o->dxs[k] = invstd * terms * 4.0 +
                            fabs(o->dx[k]) * sq_sum / (double)M * invstd * invstd;
            } else {
                o->dx[k] = invstd * dxhat;
                o->dxs[k] = fabs(o->dx[k]) * 2.0;
            }
        }
    }
}

/* The layer's outputs, saved statistics, running statistics and counter against the
 * formulas; then the backward (into pre-filled gradients) against the formulas. */
static void bn_check_against_reference(struct bn_ctx *b, struct ssl_rng *r, const char *name,
                                       int64_t nb_before)
{
    const int64_t c = b->d.c, nx = c * b->d.m;
    struct bn_ref o;
    bn_ref_alloc(&o, c, nx);
    bn_reference(&o, b);
    char what[200];
    snprintf(what, sizeof what, "%s y", name);
    check_close(what, b->y, o.y, o.ys, nx, REF_REL);
    for (int64_t ch = 0; ch < c; ch++) {
        /* saved (2, c) fp64: the mean and 1/sqrt(var + eps) used */
        double em = fabs(b->saved[ch] - o.mean[ch]);
        double ei = fabs(b->saved[c + ch] - o.invstd[ch]);
        if (!(em <= REF_REL * o.mabs[ch] * 4.0) ||
            !(ei <= REF_REL * o.invstd[ch] * 8.0))
            fail_msg("%s saved[%" PRId64 "]: mean %.15e invstd %.15e, want %.15e %.15e", name,
                     ch, b->saved[ch], b->saved[c + ch], o.mean[ch], o.invstd[ch]);
    }
    snprintf(what, sizeof what, "%s running_mean", name);
    check_close(what, b->rm, o.rm, b->train ? o.rms : NULL, c, REF_REL);
    snprintf(what, sizeof what, "%s running_var", name);
    check_close(what, b->rv, o.rv, b->train ? o.rvs : NULL, c, REF_REL);
    if (b->nb != nb_before + (b->train ? 1 : 0))
        fail_msg("%s num_batches_tracked %" PRId64 ", want %" PRId64, name, b->nb,
                 nb_before + (b->train ? 1 : 0));

    rfill(r, b->dx, nx, 0.0, 1.0); /* pre-filled: backward must accumulate */
    rfill(r, b->dgamma, c, 0.0, 1.0);
    rfill(r, b->dbeta, c, 0.0, 1.0);
    add_prefill(o.dx, o.dxs, b->dx, nx);
    add_prefill(o.dgamma, o.dgs, b->dgamma, c);
    add_prefill(o.dbeta, o.dbs, b->dbeta, c);
    assert_int_equal(bn_backward(b), 0);
    snprintf(what, sizeof what, "%s backward dx", name);
    check_close(what, b->dx, o.dx, o.dxs, nx, REF_REL);
    if (b->affine) {
        snprintf(what, sizeof what, "%s backward dgamma", name);
        check_close(what, b->dgamma, o.dgamma, o.dgs, c, REF_REL);
        snprintf(what, sizeof what, "%s backward dbeta", name);
        check_close(what, b->dbeta, o.dbeta, o.dbs, c, REF_REL);
    }
    bn_ref_free(&o);
}

struct bn_case {
    const char *name;
    enum ssl_bn_layout layout;
    int64_t c, n, hw;
    bool affine, train;
    double eps, momentum;
};

static const struct bn_case BN_CASES[] = {
    {"bn2d train affine", SSL_BN_CHANNEL_MAJOR, 3, 2, 9, true, true, 1e-5, 0.1},
    {"bn2d train noaffine", SSL_BN_CHANNEL_MAJOR, 3, 2, 9, false, true, 1e-5, 0.1},
    {"bn2d eval affine", SSL_BN_CHANNEL_MAJOR, 3, 2, 9, true, false, 1e-5, 0.1},
    {"bn2d eval noaffine", SSL_BN_CHANNEL_MAJOR, 2, 3, 4, false, false, 1e-5, 0.1},
    {"bn2d train n1 hw6", SSL_BN_CHANNEL_MAJOR, 2, 1, 6, true, true, 1e-5, 0.1},
    {"bn2d train hw1", SSL_BN_CHANNEL_MAJOR, 4, 5, 1, true, true, 1e-5, 0.1},
    {"bn1d train affine", SSL_BN_ROW_MAJOR, 5, 6, 1, true, true, 1e-5, 0.1},
    {"bn1d train noaffine", SSL_BN_ROW_MAJOR, 5, 6, 1, false, true, 1e-5, 0.1},
    {"bn1d train m2", SSL_BN_ROW_MAJOR, 3, 2, 1, true, true, 1e-5, 0.1},
    {"bn1d eval affine", SSL_BN_ROW_MAJOR, 4, 5, 1, true, false, 1e-5, 0.1},
    {"bn1d eval noaffine", SSL_BN_ROW_MAJOR, 4, 3, 1, false, false, 1e-5, 0.1},
    /* eps that matters (var ~ 0.2..2.6 vs eps 0.5) and a momentum that is not 0.1 */
    {"bn2d train eps0.5 mom0.3", SSL_BN_CHANNEL_MAJOR, 3, 2, 4, true, true, 0.5, 0.3},
    {"bn1d train eps0.5 mom0.3", SSL_BN_ROW_MAJOR, 3, 4, 1, true, true, 0.5, 0.3},
    {"bn1d eval eps0.5", SSL_BN_ROW_MAJOR, 3, 4, 1, true, false, 0.5, 0.3},
};

static void test_batchnorm_reference(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "batchnorm_reference");
    for (size_t i = 0; i < sizeof BN_CASES / sizeof BN_CASES[0]; i++) {
        const struct bn_case *k = &BN_CASES[i];
        struct bn_ctx b;
        bn_alloc(&b, k->layout, k->c, k->n, k->hw, k->affine, k->train, k->eps, k->momentum);
        bn_fill(&b, &r);
        b.nb = 41;
        assert_int_equal(bn_forward(&b), 0);
        bn_check_against_reference(&b, &r, k->name, 41);

        /* A second step from the updated running statistics, with new data. */
        rcopy(b.rm0, b.rm, b.d.c);
        rcopy(b.rv0, b.rv, b.d.c);
        rfill(&r, b.x, b.d.c * b.d.m, 0.5, 1.5);
        assert_int_equal(bn_forward(&b), 0);
        char name[160];
        snprintf(name, sizeof name, "%s (step 2)", k->name);
        bn_check_against_reference(&b, &r, name, k->train ? 42 : 41);
        printf("  reference %s: ok\n", k->name);
        bn_free(&b);
    }
    /* Larger, ResNet-like: many channels, a long m. */
    struct bn_ctx b;
    bn_alloc(&b, SSL_BN_CHANNEL_MAJOR, 16, 8, 64, true, true, 1e-5, 0.1);
    bn_fill(&b, &r);
    assert_int_equal(bn_forward(&b), 0);
    bn_check_against_reference(&b, &r, "bn2d c16 n8 hw64", 0);
    printf("  reference bn2d c16 n8 hw64: ok\n");
    bn_free(&b);
}

/* ---- SyncBN: fake reductions ---- */

/* Simulates P identical ranks: every global sum is P times the local one. */
struct scale_sync {
    double factor;
    int n_calls;
};

static int scale_sync_sum(void *ctx, double *values, int64_t n_values)
{
    struct scale_sync *s = ctx;
    s->n_calls++;
    for (int64_t i = 0; i < n_values; i++) values[i] *= s->factor;
    return 0;
}

static int failing_sync_sum(void *ctx, double *values, int64_t n_values)
{
    (void)values, (void)n_values;
    (*(int *)ctx)++;
    return 17;
}

/* P threads as P ranks, and a sum over them with the semantics of MPI_Allreduce(MPI_SUM):
 * every rank gets the same sum, in the same (rank) order. A rank that waits more than 20 s
 * for the others (a different number of calls on different ranks: a hang under MPI) makes
 * every rank's sum fail instead of hanging the test. */
enum { MAX_RANKS = 4 };

struct fake_world {
    int p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived;
    unsigned generation;
    bool failed, length_mismatch;
    double *slot[MAX_RANKS];
    int64_t len[MAX_RANKS];
};

struct fake_rank {
    struct fake_world *w;
    int rank;
    int n_calls;
};

static int world_barrier(struct fake_world *w)
{
    pthread_mutex_lock(&w->mu);
    if (w->failed) {
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    unsigned gen = w->generation;
    if (++w->arrived == w->p) {
        w->arrived = 0;
        w->generation++;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        return 0;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    while (gen == w->generation && !w->failed) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &deadline) == ETIMEDOUT) {
            w->failed = true;
            pthread_cond_broadcast(&w->cv);
        }
    }
    int rc = gen != w->generation ? 0 : -1;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static int fake_allreduce(void *ctx, double *values, int64_t n_values)
{
    struct fake_rank *me = ctx;
    struct fake_world *w = me->w;
    me->n_calls++;
    w->slot[me->rank] = values;
    w->len[me->rank] = n_values;
    if (world_barrier(w)) return -1;
    double *sum = calloc((size_t)(n_values > 0 ? n_values : 1), sizeof *sum);
    if (sum == NULL) abort();
    bool mismatch = false;
    for (int q = 0; q < w->p; q++) mismatch |= w->len[q] != n_values;
    if (!mismatch)
        for (int64_t i = 0; i < n_values; i++)
            for (int q = 0; q < w->p; q++) sum[i] += w->slot[q][i];
    if (world_barrier(w)) { /* everyone has read every slot */
        free(sum);
        return -1;
    }
    if (mismatch) {
        pthread_mutex_lock(&w->mu);
        w->length_mismatch = true;
        pthread_mutex_unlock(&w->mu);
        free(sum);
        return -1;
    }
    memcpy(values, sum, (size_t)n_values * sizeof *values);
    free(sum);
    return 0;
}

struct rank_job {
    struct bn_ctx *b;
    int rc_forward, rc_backward;
};

static void *rank_main(void *arg)
{
    struct rank_job *job = arg;
    job->rc_forward = bn_forward(job->b);
    job->rc_backward = bn_backward(job->b);
    return NULL;
}

/* One global batch of N samples split over P ranks as counts[]; each rank runs BN forward and
 * backward on its slice with the fake allreduce; the result on each rank must be the global
 * batch's (reference formulas over the concatenation), and the parameter gradients must sum
 * to the global ones. This is exactly what SyncBN promises. */
static void syncbn_case(struct ssl_rng *r, enum ssl_bn_layout layout, int64_t c, int64_t hw,
                        const int64_t *counts, int p, bool affine, const char *name)
{
    int64_t N = 0;
    for (int q = 0; q < p; q++) N += counts[q];
    struct bn_ctx full;
    bn_alloc(&full, layout, c, N, hw, affine, true, 1e-5, 0.1);
    bn_fill(&full, r);
    struct bn_ref o;
    bn_ref_alloc(&o, c, c * N * hw);
    bn_reference(&o, &full);

    struct fake_world w = {.p = p};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    struct bn_ctx ranks[MAX_RANKS];
    struct fake_rank fr[MAX_RANKS];
    struct ssl_bn_sync sync[MAX_RANKS];
    struct rank_job jobs[MAX_RANKS];
    pthread_t threads[MAX_RANKS];
    int64_t first = 0;
    for (int q = 0; q < p; q++) {
        struct bn_ctx *b = &ranks[q];
        bn_alloc(b, layout, c, counts[q], hw, affine, true, 1e-5, 0.1);
        /* Rank q holds samples [first, first + counts[q]) of the global batch: in CNHW that
         * is, for every channel, one block of counts[q] * hw values. */
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t s = 0; s < counts[q]; s++)
                for (int64_t pix = 0; pix < hw; pix++) {
                    b->x[bn_at(b, ch, s, pix)] = full.x[bn_at(&full, ch, first + s, pix)];
                    b->r[bn_at(b, ch, s, pix)] = full.r[bn_at(&full, ch, first + s, pix)];
                }
        rcopy(b->gamma, full.gamma, c);
        rcopy(b->beta, full.beta, c);
        rcopy(b->rm, full.rm0, c);
        rcopy(b->rv, full.rv0, c);
        rcopy(b->rm0, full.rm0, c);
        rcopy(b->rv0, full.rv0, c);
        fr[q] = (struct fake_rank){.w = &w, .rank = q};
        sync[q] = (struct ssl_bn_sync){.sum = fake_allreduce, .ctx = &fr[q]};
        b->sync = &sync[q];
        jobs[q] = (struct rank_job){.b = b};
        first += counts[q];
    }
    for (int q = 0; q < p; q++)
        assert_int_equal(pthread_create(&threads[q], NULL, rank_main, &jobs[q]), 0);
    for (int q = 0; q < p; q++) assert_int_equal(pthread_join(threads[q], NULL), 0);

    if (w.failed || w.length_mismatch)
        fail_msg("%s: the ranks' sync calls do not match (%s): a hang or garbage under MPI",
                 name, w.failed ? "different numbers of calls" : "different lengths");
    char what[200];
    double *want = dalloc(c * N * hw), *scale = dalloc(c * N * hw);
    double *sum_dgamma = dalloc(c), *sum_dbeta = dalloc(c);
    ssl_real *acc_dgamma = ralloc(c), *acc_dbeta = ralloc(c);
    first = 0;
    for (int q = 0; q < p; q++) {
        struct bn_ctx *b = &ranks[q];
        assert_int_equal(jobs[q].rc_forward, 0);
        assert_int_equal(jobs[q].rc_backward, 0);
        if (fr[q].n_calls < 2)
            fail_msg("%s rank %d: sync called %d times in forward + backward (want >= 2)", name,
                     q, fr[q].n_calls);
        if (fr[q].n_calls != fr[0].n_calls)
            fail_msg("%s: rank %d called sync %d times, rank 0 %d", name, q, fr[q].n_calls,
                     fr[0].n_calls);
        int64_t nq = c * counts[q] * hw;
        for (int pass = 0; pass < 2; pass++) {
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t s = 0; s < counts[q]; s++)
                    for (int64_t pix = 0; pix < hw; pix++) {
                        int64_t g = bn_at(&full, ch, first + s, pix), l = bn_at(b, ch, s, pix);
                        want[l] = pass == 0 ? o.y[g] : o.dx[g];
                        scale[l] = pass == 0 ? o.ys[g] : o.dxs[g];
                    }
            snprintf(what, sizeof what, "%s rank %d/%d (%" PRId64 " of %" PRId64 " samples) %s",
                     name, q, p, counts[q], N, pass == 0 ? "y" : "dx");
            check_close(what, pass == 0 ? b->y : b->dx, want, scale, nq, REF_REL);
        }
        snprintf(what, sizeof what, "%s rank %d running_mean", name, q);
        check_close(what, b->rm, o.rm, o.rms, c, REF_REL);
        snprintf(what, sizeof what, "%s rank %d running_var (unbiased over the global batch)",
                 name, q);
        check_close(what, b->rv, o.rv, o.rvs, c, REF_REL);
        if (b->nb != 1) fail_msg("%s rank %d: num_batches_tracked %" PRId64, name, q, b->nb);
        for (int64_t ch = 0; ch < c; ch++) {
            sum_dgamma[ch] += (double)b->dgamma[ch];
            sum_dbeta[ch] += (double)b->dbeta[ch];
        }
        first += counts[q];
    }
    if (affine) {
        /* The local parameter gradients are partial: their sum over ranks (what the gradient
         * allreduce computes) is the global batch's gradient. */
        for (int64_t ch = 0; ch < c; ch++) {
            acc_dgamma[ch] = (ssl_real)sum_dgamma[ch];
            acc_dbeta[ch] = (ssl_real)sum_dbeta[ch];
        }
        snprintf(what, sizeof what, "%s sum over ranks of dgamma", name);
        check_close(what, acc_dgamma, o.dgamma, o.dgs, c, REF_REL);
        snprintf(what, sizeof what, "%s sum over ranks of dbeta", name);
        check_close(what, acc_dbeta, o.dbeta, o.dbs, c, REF_REL);
    }
    printf("  syncbn %s: ok (%d sync calls per rank)\n", name, fr[0].n_calls);
    for (int q = 0; q < p; q++) bn_free(&ranks[q]);
    bn_free(&full);
    bn_ref_free(&o);
    free(want), free(scale), free(sum_dgamma), free(sum_dbeta), free(acc_dgamma);
    free(acc_dbeta);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
}

static void test_batchnorm_sync_ranks(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "batchnorm_sync_ranks");
    static const int64_t halves[] = {3, 3}, uneven3[] = {1, 2, 3}, uneven2[] = {4, 3},
                         four[] = {2, 1, 2, 2}, rows3[] = {2, 2, 3};
    syncbn_case(&r, SSL_BN_CHANNEL_MAJOR, 3, 4, halves, 2, true, "bn2d 2 ranks 3+3");
    syncbn_case(&r, SSL_BN_CHANNEL_MAJOR, 3, 4, uneven3, 3, true, "bn2d 3 ranks 1+2+3");
    syncbn_case(&r, SSL_BN_CHANNEL_MAJOR, 2, 5, uneven2, 2, false, "bn2d noaffine 2 ranks 4+3");
    syncbn_case(&r, SSL_BN_CHANNEL_MAJOR, 2, 3, four, 4, true, "bn2d 4 ranks 2+1+2+2");
    syncbn_case(&r, SSL_BN_ROW_MAJOR, 5, 1, uneven2, 2, true, "bn1d 2 ranks 4+3");
    syncbn_case(&r, SSL_BN_ROW_MAJOR, 4, 1, rows3, 3, true, "bn1d 3 ranks 2+2+3");
}

/* P identical ranks: the outputs and the input gradient are the local batch's, the parameter
 * gradients are the local (partial) ones, and running_var's unbiased correction uses the
 * global count P*m. */
static void syncbn_scaled_case(struct ssl_rng *r, enum ssl_bn_layout layout, int64_t c,
                               int64_t n, int64_t hw, int P, const char *name)
{
    struct bn_ctx loc, syn;
    bn_alloc(&loc, layout, c, n, hw, true, true, 1e-5, 0.1);
    bn_alloc(&syn, layout, c, n, hw, true, true, 1e-5, 0.1);
    bn_fill(&loc, r);
    int64_t nx = c * n * hw;
    rcopy(syn.x, loc.x, nx), rcopy(syn.r, loc.r, nx), rcopy(syn.gamma, loc.gamma, c);
    rcopy(syn.beta, loc.beta, c), rcopy(syn.rm, loc.rm, c), rcopy(syn.rv, loc.rv, c);
    rcopy(syn.rm0, loc.rm0, c), rcopy(syn.rv0, loc.rv0, c);
    struct scale_sync ss = {.factor = (double)P};
    struct ssl_bn_sync sync = {.sum = scale_sync_sum, .ctx = &ss};
    syn.sync = &sync;
    assert_int_equal(bn_forward(&loc), 0);
    assert_int_equal(bn_forward(&syn), 0);
    int calls_forward = ss.n_calls;
    assert_int_equal(bn_backward(&loc), 0);
    assert_int_equal(bn_backward(&syn), 0);
    if (calls_forward < 1 || ss.n_calls <= calls_forward)
        fail_msg("%s: sync called %d times in forward and %d in backward (want >= 1 each)", name,
                 calls_forward, ss.n_calls - calls_forward);

    struct bn_ref o;
    bn_ref_alloc(&o, c, nx);
    bn_reference(&o, &loc);
    char what[200];
    snprintf(what, sizeof what, "%s y", name);
    check_close(what, syn.y, o.y, o.ys, nx, REF_REL);
    snprintf(what, sizeof what, "%s dx", name);
    check_close(what, syn.dx, o.dx, o.dxs, nx, REF_REL);
    snprintf(what, sizeof what, "%s dgamma (local part)", name);
    check_close(what, syn.dgamma, o.dgamma, o.dgs, c, REF_REL);
    snprintf(what, sizeof what, "%s dbeta (local part)", name);
    check_close(what, syn.dbeta, o.dbeta, o.dbs, c, REF_REL);
    snprintf(what, sizeof what, "%s running_mean", name);
    check_close(what, syn.rm, o.rm, o.rms, c, REF_REL);
    /* running_var: var * M/(M-1) with M = P*m, not m/(m-1). */
    const double mom = syn.d.momentum, M = (double)(P * n * hw), m = (double)(n * hw);
    for (int64_t ch = 0; ch < c; ch++) {
        double var = (o.rv[ch] - (1.0 - mom) * (double)loc.rv0[ch]) / mom * (m - 1.0) / m;
        o.rv[ch] = (1.0 - mom) * (double)loc.rv0[ch] + mom * var * M / (M - 1.0);
    }
    snprintf(what, sizeof what, "%s running_var (unbiased with the global count)", name);
    check_close(what, syn.rv, o.rv, o.rvs, c, REF_REL);
    assert_int_equal(syn.nb, 1);
    printf("  syncbn %s: ok (%d sync calls)\n", name, ss.n_calls);
    bn_ref_free(&o);
    bn_free(&loc);
    bn_free(&syn);
}

static void test_batchnorm_sync_scaled(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "batchnorm_sync_scaled");
    syncbn_scaled_case(&r, SSL_BN_CHANNEL_MAJOR, 3, 2, 5, 3, "bn2d x3 identical ranks");
    syncbn_scaled_case(&r, SSL_BN_ROW_MAJOR, 4, 3, 1, 2, "bn1d x2 identical ranks");
    syncbn_scaled_case(&r, SSL_BN_ROW_MAJOR, 4, 2, 1, 4, "bn1d m2 x4 identical ranks");

    /* A NULL sum in a non-NULL hook keeps the local batch. */
    struct bn_ctx a, b;
    bn_alloc(&a, SSL_BN_CHANNEL_MAJOR, 2, 3, 4, true, true, 1e-5, 0.1);
    bn_alloc(&b, SSL_BN_CHANNEL_MAJOR, 2, 3, 4, true, true, 1e-5, 0.1);
    bn_fill(&a, &r);
    rcopy(b.x, a.x, 24), rcopy(b.r, a.r, 24), rcopy(b.gamma, a.gamma, 2);
    rcopy(b.beta, a.beta, 2), rcopy(b.rm, a.rm, 2), rcopy(b.rv, a.rv, 2);
    struct ssl_bn_sync nosum = {.sum = NULL, .ctx = NULL};
    b.sync = &nosum;
    assert_int_equal(bn_forward(&a), 0);
    assert_int_equal(bn_forward(&b), 0);
    assert_int_equal(bn_backward(&a), 0);
    assert_int_equal(bn_backward(&b), 0);
    double ref[24];
    for (int i = 0; i < 24; i++) ref[i] = (double)a.y[i];
    check_close("bn sync->sum NULL y", b.y, ref, NULL, 24, 0.0);
    for (int i = 0; i < 24; i++) ref[i] = (double)a.dx[i];
    check_close("bn sync->sum NULL dx", b.dx, ref, NULL, 24, 0.0);
    printf("  syncbn sync->sum NULL: ok\n");
    bn_free(&a);
    bn_free(&b);
}

/* A failing sum (an MPI error) is reported, not ignored. */
static void test_batchnorm_sync_error(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "batchnorm_sync_error");
    struct bn_ctx b;
    bn_alloc(&b, SSL_BN_ROW_MAJOR, 3, 4, 1, true, true, 1e-5, 0.1);
    bn_fill(&b, &r);
    assert_int_equal(bn_forward(&b), 0);
    int n_calls = 0;
    struct ssl_bn_sync bad = {.sum = failing_sync_sum, .ctx = &n_calls};
    b.sync = &bad;
    assert_int_not_equal(ssl_batchnorm_backward(b.dx, b.dgamma, b.dbeta, b.r, b.x, b.saved,
                                                b.gamma, &b.d, true, &bad, b.scratch),
                         0);
    assert_true(n_calls >= 1);
    n_calls = 0;
    assert_int_not_equal(ssl_batchnorm_forward(b.y, b.saved, b.rm, b.rv, &b.nb, b.x, b.gamma,
                                               b.beta, &b.d, true, &bad, b.scratch),
                         0);
    assert_true(n_calls >= 1);
    printf("  syncbn failing sum: reported by forward and backward\n");
    bn_free(&b);
}

/* ------------------------------------------------------------------------------------------
 * group ZCA whitening (Shuffled-DBN): y[:, perm[j]] = (Xc S^-1/2)[:, j] per group of columns
 * ------------------------------------------------------------------------------------------ */

/* Cyclic Jacobi rotations (Golub & Van Loan 8.5): a (g, g) symmetric is overwritten, the
 * eigenvalues go to l, the eigenvectors to the columns of v (g, g). An eigensolver of its
 * own, independent of the layer's LAPACK dsyevd. */
static void jacobi_eigen(double *a, double *v, double *l, int64_t g)
{
    double frob = 0.0;
    for (int64_t i = 0; i < g * g; i++) frob += a[i] * a[i];
    for (int64_t i = 0; i < g; i++)
        for (int64_t j = 0; j < g; j++) v[i * g + j] = i == j ? 1.0 : 0.0;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0;
        for (int64_t p = 0; p < g; p++)
            for (int64_t q = p + 1; q < g; q++) off += a[p * g + q] * a[p * g + q];
        if (off <= 1e-34 * frob) break;
        for (int64_t p = 0; p < g; p++)
            for (int64_t q = p + 1; q < g; q++) {
                double apq = a[p * g + q];
                if (apq == 0.0) continue;
                double theta = (a[q * g + q] - a[p * g + p]) / (2.0 * apq);
                double t = (theta >= 0.0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), sn = t * c;
                for (int64_t k = 0; k < g; k++) { /* A J */
                    double akp = a[k * g + p], akq = a[k * g + q];
                    a[k * g + p] = c * akp - sn * akq;
                    a[k * g + q] = sn * akp + c * akq;
                }
                for (int64_t k = 0; k < g; k++) { /* J^T (A J) */
                    double apk = a[p * g + k], aqk = a[q * g + k];
                    a[p * g + k] = c * apk - sn * aqk;
                    a[q * g + k] = sn * apk + c * aqk;
                }
                for (int64_t k = 0; k < g; k++) { /* V J */
                    double vkp = v[k * g + p], vkq = v[k * g + q];
                    v[k * g + p] = c * vkp - sn * vkq;
                    v[k * g + q] = sn * vkp + c * vkq;
                }
            }
    }
    for (int64_t i = 0; i < g; i++) l[i] = a[i * g + i];
}

/* The whitening written out from its definition, in fp64, on double inputs; also returns
 * per output the sum of |terms| times the covariance's condition number (the error bound's
 * scale) when ys is not NULL. Returns the largest condition number of the groups. */
static double ref_whiten(double *y, double *ys, const double *x, const int64_t *perm, int64_t n,
                         int64_t d, int64_t g, double eps)
{
    double *xc = malloc((size_t)(n * g) * sizeof *xc), *s = malloc((size_t)(g * g) * sizeof *s);
    double *s0 = malloc((size_t)(g * g) * sizeof *s0), *v = malloc((size_t)(g * g) * sizeof *v);
    double *w = malloc((size_t)(g * g) * sizeof *w), *l = malloc((size_t)g * sizeof *l);
    assert_true(xc && s && s0 && v && w && l);
    double worst_cond = 0.0;
    for (int64_t c0 = 0; c0 < d; c0 += g) {
        for (int64_t j = 0; j < g; j++) {
            int64_t col = perm ? perm[c0 + j] : c0 + j;
            double mean = 0.0;
            for (int64_t r = 0; r < n; r++) mean += x[r * d + col];
            mean /= (double)n;
            for (int64_t r = 0; r < n; r++) xc[r * g + j] = x[r * d + col] - mean;
        }
        for (int64_t i = 0; i < g; i++)
            for (int64_t j = 0; j < g; j++) {
                double acc = 0.0;
                for (int64_t r = 0; r < n; r++) acc += xc[r * g + i] * xc[r * g + j];
                s[i * g + j] = acc / (double)n + (i == j ? eps : 0.0); /* biased, + eps I */
            }
        memcpy(s0, s, (size_t)(g * g) * sizeof *s);
        jacobi_eigen(s, v, l, g);
        double lmin = l[0], lmax = l[0];
        for (int64_t k = 0; k < g; k++) lmin = fmin(lmin, l[k]), lmax = fmax(lmax, l[k]);
        assert_true(lmin > 0.0);
        worst_cond = fmax(worst_cond, lmax / lmin);
        /* The solver's own check: V diag(l) V^T must give S back. */
        for (int64_t i = 0; i < g; i++)
            for (int64_t j = 0; j < g; j++) {
                double acc = 0.0;
                for (int64_t k = 0; k < g; k++) acc += v[i * g + k] * l[k] * v[j * g + k];
                assert_true(fabs(acc - s0[i * g + j]) <= 1e-12 * lmax);
            }
        for (int64_t i = 0; i < g; i++)
            for (int64_t j = 0; j < g; j++) {
                double acc = 0.0;
                for (int64_t k = 0; k < g; k++) acc += v[i * g + k] * v[j * g + k] / sqrt(l[k]);
                w[i * g + j] = acc;
            }
        for (int64_t r = 0; r < n; r++)
            for (int64_t j = 0; j < g; j++) {
                double acc = 0.0, a = 0.0;
                for (int64_t k = 0; k < g; k++) {
                    acc += xc[r * g + k] * w[k * g + j];
                    a += fabs(xc[r * g + k] * w[k * g + j]);
                }
                int64_t col = perm ? perm[c0 + j] : c0 + j;
                y[r * d + col] = acc;
                /* rounding of S (n terms), of its eigenvectors (amplified by the condition
                 * number) and of the product (g terms) */
                if (ys) ys[r * d + col] = a * (lmax / lmin + (double)(n + g));
            }
    }
    free(xc), free(s), free(s0), free(v), free(w), free(l);
    return worst_cond;
}

struct whiten_case {
    const char *name;
    int64_t n, d, group;
    bool perm;
    double eps;
};

static const struct whiten_case WHITEN_CASES[] = {
    {"whiten n12 d6 g3 perm eps1e-3", 12, 6, 3, true, 1e-3},
    {"whiten n10 d4 g4 eps0", 10, 4, 4, false, 0.0},
    {"whiten n9 d8 g2 perm eps1e-5", 9, 8, 2, true, 1e-5},
    {"whiten n7 d5 g1 perm eps1e-5", 7, 5, 1, true, 1e-5},
    {"whiten n16 d8 g8 perm eps0", 16, 8, 8, true, 0.0},
};

struct whiten_ctx {
    int64_t n, d, group, n_saved, n_scratch;
    double eps;
    int64_t *perm; /* (d) or NULL */
    ssl_real *x, *y, *r, *dx;
    double *saved, *scratch;
    bool nan;
};

static void whiten_setup(struct whiten_ctx *c, const struct whiten_case *k, struct ssl_rng *r)
{
    memset(c, 0, sizeof *c);
    c->n = k->n, c->d = k->d, c->group = k->group, c->eps = k->eps;
    c->n_saved = ssl_whiten_saved_elems(k->n, k->d, k->group);
    c->n_scratch = ssl_whiten_scratch_elems(k->n, k->d, k->group);
    assert_true(c->n_saved >= 0 && c->n_scratch >= 0);
    c->x = ralloc(k->n * k->d), c->y = ralloc(k->n * k->d), c->r = ralloc(k->n * k->d);
    c->dx = ralloc(k->n * k->d);
    c->saved = dalloc(c->n_saved), c->scratch = dalloc(c->n_scratch);
    /* Correlated features with a common offset: x = 0.5 + z A, A = I + 0.25/sqrt(d) N(0, 1): well
     * conditioned (||A - I|| ~ 0.5 < 1), because the finite differences' rounding error grows
     * with cond(S) (u cond(S) |L| / h): these checks are about the gradient, not about
     * conditioning. */
    double *z = malloc((size_t)(k->n * k->d) * sizeof *z);
    double *a = malloc((size_t)(k->d * k->d) * sizeof *a);
    assert_true(z && a);
    gc_fill_normal(r, z, k->n * k->d, 0.0, 1.0);
    gc_fill_normal(r, a, k->d * k->d, 0.0, 0.25 / sqrt((double)k->d));
    for (int64_t i = 0; i < k->d; i++) a[i * k->d + i] += 1.0;
    for (int64_t i = 0; i < k->n; i++)
        for (int64_t j = 0; j < k->d; j++) {
            double acc = 0.5;
            for (int64_t m = 0; m < k->d; m++) acc += z[i * k->d + m] * a[m * k->d + j];
            c->x[i * k->d + j] = (ssl_real)acc;
        }
    free(z), free(a);
    rfill(r, c->r, k->n * k->d, 0.0, 1.0);
    if (k->perm) {
        c->perm = malloc((size_t)k->d * sizeof *c->perm);
        assert_non_null(c->perm);
        for (int64_t j = 0; j < k->d; j++) c->perm[j] = j;
        for (int64_t j = k->d - 1; j > 0; j--) { /* Fisher-Yates */
            int64_t i = (int64_t)ssl_rng_below(r, (uint64_t)(j + 1)), t = c->perm[i];
            c->perm[i] = c->perm[j], c->perm[j] = t;
        }
    }
}

static void whiten_free(struct whiten_ctx *c)
{
    free(c->x), free(c->y), free(c->r), free(c->dx), free(c->saved), free(c->scratch);
    free(c->perm);
}

static int whiten_forward(struct whiten_ctx *c)
{
    rpoison(c->y, c->n * c->d, c->nan);
    dpoison(c->saved, c->n_saved, c->nan);
    dpoison(c->scratch, c->n_scratch, c->nan);
    int rc = ssl_whiten_forward(c->y, c->saved, c->x, c->perm, c->n, c->d, c->group, c->eps,
                                c->scratch);
    rguard(c->y, c->n * c->d, "whiten y");
    dguard(c->saved, c->n_saved, "whiten saved");
    dguard(c->scratch, c->n_scratch, "whiten scratch (forward)");
    return rc;
}

static int whiten_backward(struct whiten_ctx *c)
{
    dpoison(c->scratch, c->n_scratch, c->nan);
    int rc = ssl_whiten_backward(c->dx, c->r, c->x, c->saved, c->perm, c->n, c->d, c->group,
                                 c->eps, c->scratch);
    rguard(c->dx, c->n * c->d, "whiten dx");
    dguard(c->scratch, c->n_scratch, "whiten scratch (backward)");
    return rc;
}

/* Output against the Jacobi reference; backward (into a pre-filled dx) against central
 * differences of the reference (fp64, error ~1e-9, far below either tolerance). */
static void whiten_reference_case(struct whiten_ctx *c, const char *name)
{
    const int64_t nx = c->n * c->d;
    double *xd = dalloc(nx), *ry = dalloc(nx), *rys = dalloc(nx), *yp = dalloc(nx);
    double *ym = dalloc(nx), *rdx = dalloc(nx), *rdxs = dalloc(nx);
    for (int64_t i = 0; i < nx; i++) xd[i] = (double)c->x[i];
    double cond = ref_whiten(ry, rys, xd, c->perm, c->n, c->d, c->group, c->eps);
    assert_int_equal(whiten_forward(c), 0);
    char what[200];
    snprintf(what, sizeof what, "%s forward y (cond %.1f)", name, cond);
    check_close(what, c->y, ry, rys, nx, REF_REL);

    double gmax = 0.0;
    for (int64_t i = 0; i < nx; i++) {
        double x0 = xd[i], h = 1e-6 * fmax(fabs(x0), 1.0);
        xd[i] = x0 + h;
        ref_whiten(yp, NULL, xd, c->perm, c->n, c->d, c->group, c->eps);
        xd[i] = x0 - h;
        ref_whiten(ym, NULL, xd, c->perm, c->n, c->d, c->group, c->eps);
        xd[i] = x0;
        double acc = 0.0;
        for (int64_t k = 0; k < nx; k++) acc += (double)c->r[k] * (yp[k] - ym[k]);
        rdx[i] = acc / ((x0 + h) - (x0 - h));
        gmax = fmax(gmax, fabs(rdx[i]));
    }
    /* Bound: the finite differences' own error (~1e-9 of the largest gradient) plus the
     * gradcheck's relative 1e-5 (fp64), or the float rounding of the result (fp32). */
    const double rel = fmax(1e-5, REF_REL);
    for (int64_t i = 0; i < nx; i++) c->dx[i] = (ssl_real)(0.25 * (double)(i % 7) - 0.75);
    add_prefill(rdx, NULL, c->dx, nx);
    for (int64_t i = 0; i < nx; i++)
        rdxs[i] = 1e-6 * gmax + rel * (fabs(rdx[i]) + fabs((double)c->dx[i]));
    assert_int_equal(whiten_backward(c), 0);
    snprintf(what, sizeof what, "%s backward dx (accumulated)", name);
    check_close(what, c->dx, rdx, rdxs, nx, 1.0);
    free(xd), free(ry), free(rys), free(yp), free(ym), free(rdx), free(rdxs);
}

static void test_whiten_reference(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "whiten_reference");
    for (size_t i = 0; i < sizeof WHITEN_CASES / sizeof WHITEN_CASES[0]; i++) {
        struct whiten_ctx c;
        whiten_setup(&c, &WHITEN_CASES[i], &r);
        whiten_reference_case(&c, WHITEN_CASES[i].name);
        if (c.group == 1) {
            /* One feature per group: plain standardisation (x - mean) / sqrt(var + eps). */
            double *want = dalloc(c.n * c.d), *scale = dalloc(c.n * c.d);
            for (int64_t j = 0; j < c.d; j++) {
                double mean = 0.0, var = 0.0;
                for (int64_t k = 0; k < c.n; k++) mean += (double)c.x[k * c.d + j];
                mean /= (double)c.n;
                for (int64_t k = 0; k < c.n; k++) {
                    double u = (double)c.x[k * c.d + j] - mean;
                    var += u * u;
                }
                var /= (double)c.n;
                for (int64_t k = 0; k < c.n; k++) {
                    want[k * c.d + j] = ((double)c.x[k * c.d + j] - mean) / sqrt(var + c.eps);
                    scale[k * c.d + j] =
                        (fabs((double)c.x[k * c.d + j]) + fabs(mean)) / sqrt(var + c.eps) * 8.0;
                }
            }
            check_close("whiten group 1 = standardisation", c.y, want, scale, c.n * c.d, REF_REL);
            free(want), free(scale);
        }
        printf("  reference %s: ok\n", WHITEN_CASES[i].name);
        whiten_free(&c);
    }
    /* Larger: the projector's width, groups of 16. */
    static const struct whiten_case big = {"whiten n64 d32 g16 perm eps0", 64, 32, 16, true, 0.0};
    struct whiten_ctx c;
    whiten_setup(&c, &big, &r);
    whiten_reference_case(&c, big.name);
    printf("  reference %s: ok\n", big.name);
    whiten_free(&c);
}

/* Inputs already white: S = I exactly up to rounding, all eigenvalues equal, the case where
 * eigen-backward formulas with 1 / (l_i - l_j) break down. Columns orthonormal and orthogonal
 * to the ones vector, scaled by sqrt(n). */
static void make_white(ssl_real *x, int64_t n, int64_t d, struct ssl_rng *r)
{
    double *q = malloc((size_t)(n * (d + 1)) * sizeof *q);
    assert_non_null(q);
    for (int64_t i = 0; i < n; i++) q[i * (d + 1)] = 1.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 1; j <= d; j++) q[i * (d + 1) + j] = ssl_rng_normal(r);
    for (int64_t j = 0; j <= d; j++) { /* modified Gram-Schmidt, twice */
        for (int pass = 0; pass < 2; pass++)
            for (int64_t k = 0; k < j; k++) {
                double dot = 0.0;
                for (int64_t i = 0; i < n; i++) dot += q[i * (d + 1) + j] * q[i * (d + 1) + k];
                for (int64_t i = 0; i < n; i++) q[i * (d + 1) + j] -= dot * q[i * (d + 1) + k];
            }
        double nrm = 0.0;
        for (int64_t i = 0; i < n; i++) nrm += q[i * (d + 1) + j] * q[i * (d + 1) + j];
        for (int64_t i = 0; i < n; i++) q[i * (d + 1) + j] /= sqrt(nrm);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            x[i * d + j] = (ssl_real)(sqrt((double)n) * q[i * (d + 1) + j + 1] + 0.25);
    free(q);
}

static void test_whiten_special(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "whiten_special");
    /* White input: y = x - mean (W = I). */
    {
        static const struct whiten_case k = {"whiten white input", 10, 4, 4, false, 0.0};
        struct whiten_ctx c;
        whiten_setup(&c, &k, &r);
        make_white(c.x, c.n, c.d, &r);
        assert_int_equal(whiten_forward(&c), 0);
        double *want = dalloc(c.n * c.d), *scale = dalloc(c.n * c.d);
        for (int64_t i = 0; i < c.n * c.d; i++) {
            want[i] = (double)c.x[i] - 0.25;
            scale[i] = 64.0 * (fabs((double)c.x[i]) + 1.0);
        }
#ifdef SSL_F64
        check_close("whiten of white input is centring", c.y, want, scale, c.n * c.d, REF_REL);
#else
        /* The float input is white only to float precision: S = I + O(1e-7). */
        check_close("whiten of white input is centring", c.y, want, scale, c.n * c.d, 3e-6);
#endif
        free(want), free(scale);
        whiten_free(&c);
    }
    /* Singular covariance with eps = 0: a constant feature, and fewer samples than the group
     * (rank n - 1 after centring). header: SSL_E_NONFINITE. With eps > 0 it is regular. */
    {
        static const struct whiten_case k = {"whiten constant feature", 8, 4, 2, false, 0.0};
        struct whiten_ctx c;
        whiten_setup(&c, &k, &r);
        for (int64_t i = 0; i < c.n; i++) c.x[i * c.d + 2] = (ssl_real)1.5;
        int rc = whiten_forward(&c);
        if (rc != SSL_E_NONFINITE)
            fail_msg("whiten of a constant feature with eps 0 returned %d, want SSL_E_NONFINITE",
                     rc);
        c.eps = 1e-3;
        assert_int_equal(whiten_forward(&c), 0);
        for (int64_t i = 0; i < c.n * c.d; i++) assert_true(isfinite((double)c.y[i]));
        for (int64_t i = 0; i < c.n; i++) assert_true(c.y[i * c.d + 2] == 0);
        whiten_free(&c);
    }
    {
        static const struct whiten_case k = {"whiten n3 < group 4", 3, 8, 4, true, 0.0};
        struct whiten_ctx c;
        whiten_setup(&c, &k, &r);
        int rc = whiten_forward(&c);
        if (rc != SSL_E_NONFINITE)
            fail_msg("whiten of 3 samples in groups of 4 with eps 0 returned %d, want "
                     "SSL_E_NONFINITE",
                     rc);
        whiten_free(&c);
    }
    printf("  white input, singular covariances: ok\n");
}

/* ------------------------------------------------------------------------------------------
 * Contract: forward writes its outputs without reading them; scratch is not an input
 * ------------------------------------------------------------------------------------------ */

/* got must equal want exactly (the same computation from differently pre-filled buffers);
 * prints the first difference and returns the number of differing elements. */
static int expect_same(const char *what, const ssl_real *got, const ssl_real *want, int64_t n)
{
    int64_t n_bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (!(got[i] == want[i]) && n_bad++ == 0) first = i;
    if (n_bad)
        printf("  FAIL %s: %" PRId64 " of %" PRId64 " elements differ; [%" PRId64 "] is % .12e "
               "with outputs/scratch pre-filled with NaN, % .12e with them pre-filled with %g\n",
               what, n_bad, n, first, (double)got[first], (double)want[first], JUNK);
    return n_bad ? 1 : 0;
}

static int expect_same_d(const char *what, const double *got, const double *want, int64_t n)
{
    int64_t n_bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (!(got[i] == want[i]) && n_bad++ == 0) first = i;
    if (n_bad)
        printf("  FAIL %s: %" PRId64 " of %" PRId64 " elements differ; [%" PRId64 "] is % .12e "
               "with NaN pre-fill, % .12e without\n",
               what, n_bad, n, first, got[first], want[first]);
    return n_bad ? 1 : 0;
}

static void test_outputs_not_read(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "outputs_not_read");
    int n_fail = 0;
    const int64_t n = 4, c = 3, hw = 5, nx = n * c * hw;
    ssl_real *x = ralloc(nx), *x2 = ralloc(nx), *w = ralloc(nx), *b = ralloc(nx);
    ssl_real *want = ralloc(nx), *got = ralloc(nx), *want2 = ralloc(nx), *got2 = ralloc(nx);
    rfill(&r, x, nx, 0.0, 1.0);
    rfill(&r, x2, nx, 0.0, 1.0);
    rfill(&r, w, nx, 0.0, 0.5);
    rfill(&r, b, nx, 0.0, 0.5);

    /* linear (n, c*hw=15) -> (n, 3), with and without bias */
    for (int bias = 0; bias < 2; bias++) {
        rpoison(want, n * 3, false);
        ssl_linear_forward(want, x, w, bias ? b : NULL, n, c * hw, 3);
        rpoison(got, n * 3, true);
        ssl_linear_forward(got, x, w, bias ? b : NULL, n, c * hw, 3);
        n_fail += expect_same(bias ? "linear forward y" : "linear forward y (no bias)", got,
                              want, n * 3);
    }
    /* relu, add, avgpool, flatten, l2norm, nchw_to_cnhw */
    rpoison(want, nx, false), ssl_relu_forward(want, x, nx);
    rpoison(got, nx, true), ssl_relu_forward(got, x, nx);
    n_fail += expect_same("relu forward y", got, want, nx);
    rpoison(want, nx, false), ssl_add_forward(want, x, x2, nx);
    rpoison(got, nx, true), ssl_add_forward(got, x, x2, nx);
    n_fail += expect_same("add forward y", got, want, nx);
    rpoison(want, n * c, false), ssl_avgpool_forward(want, x, c, n, hw);
    rpoison(got, n * c, true), ssl_avgpool_forward(got, x, c, n, hw);
    n_fail += expect_same("avgpool forward y", got, want, n * c);
    rpoison(want, nx, false), ssl_flatten_forward(want, x, c, n, hw);
    rpoison(got, nx, true), ssl_flatten_forward(got, x, c, n, hw);
    n_fail += expect_same("flatten forward y", got, want, nx);
    rpoison(want, nx, false), rpoison(want2, n, false);
    ssl_l2norm_forward(want, want2, x, n, c * hw, 1e-12);
    rpoison(got, nx, true), rpoison(got2, n, true);
    ssl_l2norm_forward(got, got2, x, n, c * hw, 1e-12);
    n_fail += expect_same("l2norm forward y", got, want, nx);
    n_fail += expect_same("l2norm forward norms", got2, want2, n);
    rpoison(want, nx, false), ssl_nchw_to_cnhw(want, x, n, c, hw);
    rpoison(got, nx, true), ssl_nchw_to_cnhw(got, x, n, c, hw);
    n_fail += expect_same("nchw_to_cnhw y", got, want, nx);
    printf("  linear, relu, add, avgpool, flatten, l2norm, nchw_to_cnhw: checked\n");

    /* conv2d: output and scratch, forward and backward */
    static const struct conv_case cases[] = {
        {"conv 3x3 s1 p1", 2, 3, 6, 6, 4, 3, 1, 1, 0, true},
        {"conv 3x3 s2 p1 nobias chunk1", 3, 2, 7, 5, 3, 3, 2, 1, 1, false},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct conv_ctx cv;
        conv_setup(&cv, &cases[k], &r);
        ssl_real *y0 = ralloc(cv.ny), *dx0 = ralloc(cv.nx), *dw0 = ralloc(cv.nw);
        ssl_real *db0 = ralloc(cv.nb);
        char what[160];
        for (int pass = 0; pass < 2; pass++) {
            cv.nan = pass == 1;
            conv_forward(&cv);
            rpoison(cv.scratch, cv.n_scratch, cv.nan);
            memset(cv.dx, 0, (size_t)cv.nx * sizeof *cv.dx);
            memset(cv.dw, 0, (size_t)cv.nw * sizeof *cv.dw);
            memset(cv.db, 0, (size_t)cv.nb * sizeof *cv.db);
            ssl_conv2d_backward(cv.dx, cv.dw, cv.bias ? cv.db : NULL, cv.scratch, cv.r, cv.x,
                                cv.w, &cv.d);
            if (pass == 0) {
                rcopy(y0, cv.y, cv.ny), rcopy(dx0, cv.dx, cv.nx), rcopy(dw0, cv.dw, cv.nw);
                rcopy(db0, cv.db, cv.nb);
                continue;
            }
            snprintf(what, sizeof what, "%s forward y", cv.name);
            n_fail += expect_same(what, cv.y, y0, cv.ny);
            snprintf(what, sizeof what, "%s backward dx (NaN scratch)", cv.name);
            n_fail += expect_same(what, cv.dx, dx0, cv.nx);
            snprintf(what, sizeof what, "%s backward dw (NaN scratch)", cv.name);
            n_fail += expect_same(what, cv.dw, dw0, cv.nw);
            snprintf(what, sizeof what, "%s backward db (NaN scratch)", cv.name);
            n_fail += expect_same(what, cv.db, db0, cv.nb);
        }
        printf("  %s: checked\n", cv.name);
        free(y0), free(dx0), free(dw0), free(db0);
        conv_free(&cv);
    }

    /* batchnorm: y, saved and scratch, forward and backward, train and eval, 2d and 1d */
    for (int k = 0; k < 4; k++) {
        struct bn_ctx bn;
        bool train = k < 2;
        enum ssl_bn_layout layout = k % 2 ? SSL_BN_ROW_MAJOR : SSL_BN_CHANNEL_MAJOR;
        bn_alloc(&bn, layout, 3, 4, layout == SSL_BN_ROW_MAJOR ? 1 : 5, true, train, 1e-5, 0.1);
        bn_fill(&bn, &r);
        int64_t nbx = bn.d.c * bn.d.m;
        ssl_real *y0 = ralloc(nbx), *dx0 = ralloc(nbx);
        double *saved0 = dalloc(2 * bn.d.c);
        char name[80], what[160];
        snprintf(name, sizeof name, "bn%s %s", layout == SSL_BN_ROW_MAJOR ? "1d" : "2d",
                 train ? "train" : "eval");
        for (int pass = 0; pass < 2; pass++) {
            bn.nan = pass == 1;
            rcopy(bn.rm, bn.rm0, bn.d.c);
            rcopy(bn.rv, bn.rv0, bn.d.c);
            assert_int_equal(bn_forward(&bn), 0);
            memset(bn.dx, 0, (size_t)nbx * sizeof *bn.dx);
            assert_int_equal(bn_backward(&bn), 0);
            if (pass == 0) {
                rcopy(y0, bn.y, nbx), rcopy(dx0, bn.dx, nbx);
                memcpy(saved0, bn.saved, (size_t)(2 * bn.d.c) * sizeof *saved0);
                continue;
            }
            snprintf(what, sizeof what, "%s forward y", name);
            n_fail += expect_same(what, bn.y, y0, nbx);
            snprintf(what, sizeof what, "%s forward saved", name);
            n_fail += expect_same_d(what, bn.saved, saved0, 2 * bn.d.c);
            snprintf(what, sizeof what, "%s backward dx (NaN scratch)", name);
            n_fail += expect_same(what, bn.dx, dx0, nbx);
        }
        printf("  %s: checked\n", name);
        free(y0), free(dx0), free(saved0);
        bn_free(&bn);
    }
    /* whiten: y, saved and scratch */
    {
        struct whiten_ctx wc;
        whiten_setup(&wc, &WHITEN_CASES[0], &r);
        int64_t nwx = wc.n * wc.d;
        ssl_real *y0 = ralloc(nwx), *dx0 = ralloc(nwx);
        double *saved0 = dalloc(wc.n_saved);
        for (int pass = 0; pass < 2; pass++) {
            wc.nan = pass == 1;
            assert_int_equal(whiten_forward(&wc), 0);
            memset(wc.dx, 0, (size_t)nwx * sizeof *wc.dx);
            assert_int_equal(whiten_backward(&wc), 0);
            if (pass == 0) {
                rcopy(y0, wc.y, nwx), rcopy(dx0, wc.dx, nwx);
                memcpy(saved0, wc.saved, (size_t)wc.n_saved * sizeof *saved0);
                continue;
            }
            n_fail += expect_same("whiten forward y", wc.y, y0, nwx);
            n_fail += expect_same_d("whiten forward saved", wc.saved, saved0, wc.n_saved);
            n_fail += expect_same("whiten backward dx (NaN scratch)", wc.dx, dx0, nwx);
        }
        printf("  whiten: checked\n");
        free(y0), free(dx0), free(saved0);
        whiten_free(&wc);
    }
    free(x), free(x2), free(w), free(b), free(want), free(got), free(want2), free(got2);
    if (n_fail)
        fail_msg("%d results depend on what their output or scratch buffer held before "
                 "(layers.h: forward writes its outputs)",
                 n_fail);
}

/* ------------------------------------------------------------------------------------------
 * Contract: a NULL gradient is skipped, for the layers whose only gradient is dx too
 * ------------------------------------------------------------------------------------------ */

struct null_call {
    const char *name;
    int64_t n, c, hw;
    const ssl_real *dy, *y;
    struct whiten_ctx *wc; /* after a forward */
};

static void call_relu_null(const struct null_call *a)
{
    ssl_relu_backward(NULL, a->dy, a->y, a->n * a->c * a->hw);
}
static void call_avgpool_null(const struct null_call *a)
{
    ssl_avgpool_backward(NULL, a->dy, a->c, a->n, a->hw);
}
static void call_flatten_null(const struct null_call *a)
{
    ssl_flatten_backward(NULL, a->dy, a->c, a->n, a->hw);
}
static void call_l2norm_null(const struct null_call *a)
{
    ssl_l2norm_backward(NULL, a->dy, a->y, a->y, a->n, a->c * a->hw, 1e-12);
}
static void call_add_null(const struct null_call *a)
{
    ssl_add_backward(NULL, NULL, a->dy, a->n * a->c * a->hw);
}
static void call_whiten_null(const struct null_call *a)
{
    struct whiten_ctx *c = a->wc;
    (void)ssl_whiten_backward(NULL, c->r, c->x, c->saved, c->perm, c->n, c->d, c->group, c->eps,
                              c->scratch);
}

/* Runs fn in a child process: true if it returned normally (no crash). */
static bool survives(void (*fn)(const struct null_call *), const struct null_call *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* cmocka's handlers would resume the test runner in the child: crash for real */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        signal(SIGILL, SIG_DFL);
        signal(SIGFPE, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        fn(arg);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void test_null_dx_skipped(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "null_dx_skipped");
    const int64_t n = 3, c = 2, hw = 4, nx = n * c * hw;
    ssl_real *dy = ralloc(nx), *y = ralloc(nx);
    rfill(&r, dy, nx, 0.0, 1.0);
    for (int64_t i = 0; i < nx; i++) y[i] = (ssl_real)(0.5 + ssl_rng_uniform(&r));
    struct whiten_ctx wc;
    whiten_setup(&wc, &WHITEN_CASES[0], &r);
    assert_int_equal(whiten_forward(&wc), 0);
    struct null_call arg = {"", n, c, hw, dy, y, &wc};
    static const struct {
        const char *name;
        void (*fn)(const struct null_call *);
    } calls[] = {
        {"ssl_relu_backward(dx=NULL)", call_relu_null},
        {"ssl_avgpool_backward(dx=NULL)", call_avgpool_null},
        {"ssl_flatten_backward(dx=NULL)", call_flatten_null},
        {"ssl_l2norm_backward(dx=NULL)", call_l2norm_null},
        {"ssl_add_backward(da=NULL, db=NULL)", call_add_null},
        {"ssl_whiten_backward(dx=NULL)", call_whiten_null},
    };
    int n_crashed = 0;
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        bool ok = survives(calls[i].fn, &arg);
        printf("  %s: %s\n", calls[i].name, ok ? "skipped, ok" : "FAIL (crashed)");
        n_crashed += !ok;
    }
    free(dy), free(y);
    whiten_free(&wc);
    if (n_crashed)
        fail_msg("%d backward(s) crash on a NULL gradient (layers.h: a NULL gradient pointer "
                 "means \"not needed\" and is skipped)",
                 n_crashed);
}

#ifdef SSL_TEST_GRADCHECK
/* ------------------------------------------------------------------------------------------
 * Finite differences (fp64 core only: ssl_real is double here)
 * ------------------------------------------------------------------------------------------ */

/* got against want to rel * |want_i| (the same computation, another code path). */
static void check_rel(const char *what, const ssl_real *got, const double *want, int64_t n,
                      double rel)
{
    double *scale = malloc((size_t)(n > 0 ? n : 1) * sizeof *scale);
    assert_non_null(scale);
    for (int64_t i = 0; i < n; i++) scale[i] = fabs(want[i]);
    check_close(what, got, want, scale, n, rel);
    free(scale);
}

static void expect_grad_ok(const struct gc_problem *p, struct ssl_rng *r)
{
    struct gc_tol tol = GC_TOL_DEFAULT;
    int bad = gc_check(p, &tol);
    bad += gc_check_accumulates(p, r);
    bad += gc_check_null_grads(p);
    if (bad) fail_msg("%s: %d gradient elements wrong", p->name, bad);
}

/* ---- linear ---- */

struct lin_ctx {
    int64_t n, in, out;
    double *x, *w, *b, *y, *r, *dx, *dw, *db;
    bool bias;
};

static double lin_loss(void *vc)
{
    struct lin_ctx *c = vc;
    rpoison(c->y, c->n * c->out, false);
    ssl_linear_forward(c->y, c->x, c->w, c->bias ? c->b : NULL, c->n, c->in, c->out);
    return gc_dot(c->r, c->y, c->n * c->out);
}

static void lin_backward(void *vc)
{
    struct lin_ctx *c = vc;
    ssl_linear_backward(c->dx, c->dw, c->bias ? c->db : NULL, c->r, c->x, c->w, c->n, c->in,
                        c->out);
}

static void test_grad_linear(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "grad_linear");
    for (size_t i = 0; i < sizeof LINEAR_CASES / sizeof LINEAR_CASES[0]; i++) {
        const struct linear_case *k = &LINEAR_CASES[i];
        struct lin_ctx c = {.n = k->n, .in = k->in, .out = k->out, .bias = k->bias};
        c.x = ralloc(k->n * k->in), c.w = ralloc(k->out * k->in), c.b = ralloc(k->out);
        c.y = ralloc(k->n * k->out), c.r = ralloc(k->n * k->out);
        c.dx = ralloc(k->n * k->in), c.dw = ralloc(k->out * k->in), c.db = ralloc(k->out);
        gc_fill_normal(&r, c.x, k->n * k->in, 0.0, 1.0);
        gc_fill_normal(&r, c.w, k->out * k->in, 0.0, 1.0 / sqrt((double)k->in));
        gc_fill_normal(&r, c.b, k->out, 0.0, 0.5);
        gc_fill_normal(&r, c.r, k->n * k->out, 0.0, 1.0);
        struct gc_param params[] = {
            {"x", c.x, c.dx, k->n * k->in, &c.dx},
            {"w", c.w, c.dw, k->out * k->in, &c.dw},
            {"b", c.b, c.db, k->out, &c.db},
        };
        struct gc_problem p = {k->name, lin_loss, lin_backward, &c, params, k->bias ? 3 : 2};
        expect_grad_ok(&p, &r);
        free(c.x), free(c.w), free(c.b), free(c.y), free(c.r), free(c.dx), free(c.dw);
        free(c.db);
    }
}

/* ---- conv2d ---- */

static double conv_loss(void *vc)
{
    struct conv_ctx *c = vc;
    conv_forward(c);
    return gc_dot(c->r, c->y, c->ny);
}

static void conv_backward(void *vc)
{
    struct conv_ctx *c = vc;
    rpoison(c->scratch, c->n_scratch, c->nan);
    ssl_conv2d_backward(c->dx, c->dw, c->bias ? c->db : NULL, c->scratch, c->r, c->x, c->w, &c->d);
    rguard(c->scratch, c->n_scratch, "conv2d scratch (backward)");
}

static void test_grad_conv2d(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "grad_conv2d");
    for (size_t i = 0; i < sizeof CONV_CASES / sizeof CONV_CASES[0]; i++) {
        struct conv_ctx c;
        conv_setup(&c, &CONV_CASES[i], &r);
        struct gc_param params[] = {
            {"x", c.x, c.dx, c.nx, &c.dx},
            {"w", c.w, c.dw, c.nw, &c.dw},
            {"b", c.b, c.db, c.nb, &c.db},
        };
        struct gc_problem p = {c.name, conv_loss, conv_backward, &c, params, c.bias ? 3 : 2};
        expect_grad_ok(&p, &r);
        conv_free(&c);
    }
}

/* ---- batchnorm ---- */

static double bn_loss(void *vc)
{
    struct bn_ctx *b = vc;
    rcopy(b->rm, b->rm0, b->d.c); /* every evaluation from the same running statistics */
    rcopy(b->rv, b->rv0, b->d.c);
    assert_int_equal(bn_forward(b), 0);
    return gc_dot(b->r, b->y, b->d.c * b->d.m);
}

static void bn_backward_closure(void *vc)
{
    assert_int_equal(bn_backward(vc), 0);
}

static void grad_bn_case(struct ssl_rng *r, const struct bn_case *k,
                         const struct ssl_bn_sync *sync, const char *name)
{
    struct bn_ctx b;
    bn_alloc(&b, k->layout, k->c, k->n, k->hw, k->affine, k->train, k->eps, k->momentum);
    bn_fill(&b, r);
    b.sync = sync;
    struct gc_param params[] = {
        {"x", b.x, b.dx, b.d.c * b.d.m, NULL},
        {"gamma", b.gamma, b.dgamma, b.d.c, NULL},
        {"beta", b.beta, b.dbeta, b.d.c, NULL},
    };
    struct gc_problem p = {name, bn_loss, bn_backward_closure, &b, params, k->affine ? 3 : 1};
    expect_grad_ok(&p, r);
    bn_free(&b);
}

/* A NULL gradient among dx, dgamma, dbeta is skipped and changes nothing else. */
static void bn_null_grads_case(struct ssl_rng *r, const struct bn_case *k)
{
    struct bn_ctx b;
    bn_alloc(&b, k->layout, k->c, k->n, k->hw, true, k->train, k->eps, k->momentum);
    bn_fill(&b, r);
    const int64_t nx = b.d.c * b.d.m, c = b.d.c;
    double *fdx = dalloc(nx), *fdg = dalloc(c), *fdb = dalloc(c);
    assert_int_equal(bn_forward(&b), 0);
    assert_int_equal(bn_backward(&b), 0);
    memcpy(fdx, b.dx, (size_t)nx * sizeof *fdx);
    memcpy(fdg, b.dgamma, (size_t)c * sizeof *fdg);
    memcpy(fdb, b.dbeta, (size_t)c * sizeof *fdb);
    for (int mask = 0; mask < 8; mask++) { /* bit set: that gradient is NULL */
        memset(b.dx, 0, (size_t)nx * sizeof *b.dx);
        memset(b.dgamma, 0, (size_t)c * sizeof *b.dgamma);
        memset(b.dbeta, 0, (size_t)c * sizeof *b.dbeta);
        assert_int_equal(ssl_batchnorm_backward(mask & 1 ? NULL : b.dx, mask & 2 ? NULL : b.dgamma,
                                                mask & 4 ? NULL : b.dbeta, b.r, b.x, b.saved,
                                                b.gamma, &b.d, b.train, NULL, b.scratch),
                         0);
        char what[160];
        snprintf(what, sizeof what, "%s null-grads mask %d dx", k->name, mask);
        if (!(mask & 1)) check_rel(what, b.dx, fdx, nx, 1e-12);
        snprintf(what, sizeof what, "%s null-grads mask %d dgamma", k->name, mask);
        if (!(mask & 2)) check_rel(what, b.dgamma, fdg, c, 1e-12);
        snprintf(what, sizeof what, "%s null-grads mask %d dbeta", k->name, mask);
        if (!(mask & 4)) check_rel(what, b.dbeta, fdb, c, 1e-12);
    }
    printf("  null-grads %s: ok\n", k->name);
    free(fdx), free(fdg), free(fdb);
    bn_free(&b);
}

static void test_grad_batchnorm(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "grad_batchnorm");
    for (size_t i = 0; i < sizeof BN_CASES / sizeof BN_CASES[0]; i++) {
        grad_bn_case(&r, &BN_CASES[i], NULL, BN_CASES[i].name);
        bn_null_grads_case(&r, &BN_CASES[i]);
    }
    /* Through the sync hook: P identical ranks give the local gradients. */
    struct scale_sync ss = {.factor = 3.0};
    struct ssl_bn_sync sync = {.sum = scale_sync_sum, .ctx = &ss};
    grad_bn_case(&r, &BN_CASES[0], &sync, "bn2d train affine sync x3");
    grad_bn_case(&r, &BN_CASES[6], &sync, "bn1d train affine sync x3");
}

/* ---- relu, avgpool, flatten, add, l2norm ---- */

struct pw_ctx {
    int64_t c, n, hw, d; /* relu/add: n elements; pool/flatten: (c, n, hw); l2norm: (n, d) */
    double eps;
    double *x, *x2, *y, *r, *dx, *dx2, *norms;
};

static double relu_loss(void *vc)
{
    struct pw_ctx *c = vc;
    rpoison(c->y, c->n, false);
    ssl_relu_forward(c->y, c->x, c->n);
    return gc_dot(c->r, c->y, c->n);
}

static void relu_backward(void *vc)
{
    struct pw_ctx *c = vc;
    ssl_relu_backward(c->dx, c->r, c->y, c->n);
}

static double add_loss(void *vc)
{
    struct pw_ctx *c = vc;
    rpoison(c->y, c->n, false);
    ssl_add_forward(c->y, c->x, c->x2, c->n);
    return gc_dot(c->r, c->y, c->n);
}

static void add_backward(void *vc)
{
    struct pw_ctx *c = vc;
    ssl_add_backward(c->dx, c->dx2, c->r, c->n);
}

static double avgpool_loss(void *vc)
{
    struct pw_ctx *c = vc;
    rpoison(c->y, c->n * c->c, false);
    ssl_avgpool_forward(c->y, c->x, c->c, c->n, c->hw);
    return gc_dot(c->r, c->y, c->n * c->c);
}

static void avgpool_backward(void *vc)
{
    struct pw_ctx *c = vc;
    ssl_avgpool_backward(c->dx, c->r, c->c, c->n, c->hw);
}

static double flatten_loss(void *vc)
{
    struct pw_ctx *c = vc;
    rpoison(c->y, c->n * c->c * c->hw, false);
    ssl_flatten_forward(c->y, c->x, c->c, c->n, c->hw);
    return gc_dot(c->r, c->y, c->n * c->c * c->hw);
}

static void flatten_backward(void *vc)
{
    struct pw_ctx *c = vc;
    ssl_flatten_backward(c->dx, c->r, c->c, c->n, c->hw);
}

static double l2norm_loss(void *vc)
{
    struct pw_ctx *c = vc;
    rpoison(c->y, c->n * c->d, false);
    rpoison(c->norms, c->n, false);
    ssl_l2norm_forward(c->y, c->norms, c->x, c->n, c->d, c->eps);
    return gc_dot(c->r, c->y, c->n * c->d);
}

static void l2norm_backward(void *vc)
{
    struct pw_ctx *c = vc;
    ssl_l2norm_backward(c->dx, c->r, c->y, c->norms, c->n, c->d, c->eps);
}

static void pw_alloc(struct pw_ctx *c, int64_t n_in, int64_t n_out)
{
    c->x = ralloc(n_in), c->x2 = ralloc(n_in), c->dx = ralloc(n_in), c->dx2 = ralloc(n_in);
    c->y = ralloc(n_out), c->r = ralloc(n_out), c->norms = ralloc(n_out);
}

static void pw_free(struct pw_ctx *c)
{
    free(c->x), free(c->x2), free(c->dx), free(c->dx2), free(c->y), free(c->r), free(c->norms);
}

static void test_grad_pointwise(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "grad_pointwise");
    {
        /* relu: inputs at least 0.1 away from the kink at 0 (h is 1e-6). */
        struct pw_ctx c = {.n = 40};
        pw_alloc(&c, c.n, c.n);
        gc_fill_normal(&r, c.x, c.n, 0.0, 1.0);
        for (int64_t i = 0; i < c.n; i++)
            if (fabs(c.x[i]) < 0.1) c.x[i] += c.x[i] < 0.0 ? -0.2 : 0.2;
        gc_fill_normal(&r, c.r, c.n, 0.0, 1.0);
        struct gc_param params[] = {{"x", c.x, c.dx, c.n, NULL}};
        struct gc_problem p = {"relu n40", relu_loss, relu_backward, &c, params, 1};
        expect_grad_ok(&p, &r);
        pw_free(&c);
    }
    {
        struct pw_ctx c = {.n = 30};
        pw_alloc(&c, c.n, c.n);
        gc_fill_normal(&r, c.x, c.n, 0.0, 1.0);
        gc_fill_normal(&r, c.x2, c.n, 0.0, 1.0);
        gc_fill_normal(&r, c.r, c.n, 0.0, 1.0);
        struct gc_param params[] = {{"a", c.x, c.dx, c.n, &c.dx}, {"b", c.x2, c.dx2, c.n, &c.dx2}};
        struct gc_problem p = {"add n30", add_loss, add_backward, &c, params, 2};
        expect_grad_ok(&p, &r);
        pw_free(&c);
    }
    static const int64_t shapes[][3] = {{3, 2, 6}, {4, 3, 1}, {2, 5, 9}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        struct pw_ctx c = {.c = shapes[s][0], .n = shapes[s][1], .hw = shapes[s][2]};
        int64_t nx = c.c * c.n * c.hw;
        pw_alloc(&c, nx, nx);
        gc_fill_normal(&r, c.x, nx, 0.0, 1.0);
        gc_fill_normal(&r, c.r, nx, 0.0, 1.0);
        char name[96];
        struct gc_param params[] = {{"x", c.x, c.dx, nx, NULL}};
        snprintf(name, sizeof name, "avgpool c%" PRId64 " n%" PRId64 " hw%" PRId64, c.c, c.n,
                 c.hw);
        struct gc_problem p = {name, avgpool_loss, avgpool_backward, &c, params, 1};
        expect_grad_ok(&p, &r);
        snprintf(name, sizeof name, "flatten c%" PRId64 " n%" PRId64 " hw%" PRId64, c.c, c.n,
                 c.hw);
        struct gc_problem q = {name, flatten_loss, flatten_backward, &c, params, 1};
        expect_grad_ok(&q, &r);
        pw_free(&c);
    }
    {
        /* l2norm at the production eps: every row well above it. */
        struct pw_ctx c = {.n = 4, .d = 6, .eps = 1e-12};
        pw_alloc(&c, c.n * c.d, c.n * c.d);
        gc_fill_normal(&r, c.x, c.n * c.d, 0.0, 1.0);
        gc_fill_normal(&r, c.r, c.n * c.d, 0.0, 1.0);
        struct gc_param params[] = {{"x", c.x, c.dx, c.n * c.d, NULL}};
        struct gc_problem p = {"l2norm n4 d6 eps1e-12", l2norm_loss, l2norm_backward, &c, params,
                               1};
        expect_grad_ok(&p, &r);
        pw_free(&c);
    }
    {
        /* l2norm with rows below eps (norm 0.2 < eps 0.5: y = x / eps) and rows above it
         * (norm 1.5), both far from the kink at ||x|| = eps compared to h. */
        struct pw_ctx c = {.n = 5, .d = 4, .eps = 0.5};
        pw_alloc(&c, c.n * c.d, c.n * c.d);
        gc_fill_normal(&r, c.x, c.n * c.d, 0.0, 1.0);
        for (int64_t i = 0; i < c.n; i++) scale_row(c.x + i * c.d, c.d, i % 2 ? 0.2 : 1.5);
        gc_fill_normal(&r, c.r, c.n * c.d, 0.0, 1.0);
        struct gc_param params[] = {{"x", c.x, c.dx, c.n * c.d, NULL}};
        struct gc_problem p = {"l2norm n5 d4 eps0.5 tiny rows", l2norm_loss, l2norm_backward, &c,
                               params, 1};
        expect_grad_ok(&p, &r);
        pw_free(&c);
    }
}

/* ---- whiten ---- */

static double whiten_loss(void *vc)
{
    struct whiten_ctx *c = vc;
    assert_int_equal(whiten_forward(c), 0);
    return gc_dot(c->r, c->y, c->n * c->d);
}

static void whiten_backward_closure(void *vc)
{
    assert_int_equal(whiten_backward(vc), 0);
}

static void test_grad_whiten(void **state)
{
    (void)state;
    struct ssl_rng r;
    gc_rng_begin(&r, "grad_whiten");
    for (size_t i = 0; i <= sizeof WHITEN_CASES / sizeof WHITEN_CASES[0]; i++) {
        static const struct whiten_case white = {"whiten white input (equal eigenvalues)", 10, 4,
                                                 4, false, 0.0};
        const struct whiten_case *k =
            i < sizeof WHITEN_CASES / sizeof WHITEN_CASES[0] ? &WHITEN_CASES[i] : &white;
        struct whiten_ctx c;
        whiten_setup(&c, k, &r);
        if (k == &white) make_white(c.x, c.n, c.d, &r);
        double *y = dalloc(c.n * c.d);
        printf("  %s: cond(S) %.1f\n", k->name,
               ref_whiten(y, NULL, c.x, c.perm, c.n, c.d, c.group, c.eps));
        free(y);
        struct gc_param params[] = {{"x", c.x, c.dx, c.n * c.d, &c.dx}};
        struct gc_problem p = {k->name, whiten_loss, whiten_backward_closure, &c, params, 1};
        expect_grad_ok(&p, &r);
        whiten_free(&c);
    }
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_reference),
        cmocka_unit_test(test_conv2d_dims),
        cmocka_unit_test(test_conv2d_reference),
        cmocka_unit_test(test_relu_add_reference),
        cmocka_unit_test(test_pool_flatten_reference),
        cmocka_unit_test(test_l2norm_reference),
        cmocka_unit_test(test_batchnorm_reference),
        cmocka_unit_test(test_batchnorm_sync_scaled),
        cmocka_unit_test(test_batchnorm_sync_ranks),
        cmocka_unit_test(test_batchnorm_sync_error),
        cmocka_unit_test(test_whiten_reference),
        cmocka_unit_test(test_whiten_special),
        cmocka_unit_test(test_outputs_not_read),
        cmocka_unit_test(test_null_dx_skipped),
#ifdef SSL_TEST_GRADCHECK
        cmocka_unit_test(test_grad_linear),
        cmocka_unit_test(test_grad_conv2d),
        cmocka_unit_test(test_grad_batchnorm),
        cmocka_unit_test(test_grad_pointwise),
        cmocka_unit_test(test_grad_whiten),
#endif
    };
    printf("test_layers (%s core)\n", SSL_REAL_NAME);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
