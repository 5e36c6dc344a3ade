/* gradcheck.c: the fp64 finite-difference checker (see gradcheck.h for the contract). */
#include "gradcheck.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tolerance of the exact-algebra checks (accumulation, NULL skipping): only the rounding of
 * one extra addition, or of a different but equivalent evaluation order, is allowed. */
static const double GC_REL_SAME = 1e-12;

uint64_t gc_seed(void)
{
    const char *s = getenv("SSL_TEST_SEED");
    if (s == NULL || *s == '\0') return GC_DEFAULT_SEED;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
        fprintf(stderr, "SSL_TEST_SEED='%s' is not an unsigned integer\n", s);
        abort();
    }
    return (uint64_t)v;
}

/* FNV-1a: a stable stream word per test name. */
static uint32_t gc_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (uint32_t)(unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

void gc_rng_begin(struct ssl_rng *r, const char *test_name)
{
    uint64_t seed = gc_seed();
    printf("[%s] seed %" PRIu64 "%s\n", test_name, seed,
           seed == GC_DEFAULT_SEED ? " (override with SSL_TEST_SEED)" : " (from SSL_TEST_SEED)");
    fflush(stdout);
    ssl_rng_init(r, seed, SSL_RNG_TEST, gc_hash(test_name), 0, 0);
}

void gc_fill_normal(struct ssl_rng *r, double *x, int64_t n, double mean, double std)
{
    for (int64_t i = 0; i < n; i++) x[i] = mean + std * ssl_rng_normal(r);
}

double gc_dot(const double *r, const double *out, int64_t n)
{
    double sum = 0.0, comp = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double term = r[i] * out[i];
        double t = sum + term;
        if (fabs(sum) >= fabs(term))
            comp += (sum - t) + term;
        else
            comp += (term - t) + sum;
        sum = t;
    }
    return sum + comp;
}

static double *gc_alloc(int64_t n)
{
    double *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    if (p == NULL) {
        fprintf(stderr, "gradcheck: out of memory (%" PRId64 " doubles)\n", n);
        abort();
    }
    return p;
}

static void gc_zero_grads(const struct gc_problem *p)
{
    for (int j = 0; j < p->n_params; j++)
        memset(p->params[j].grad, 0, (size_t)p->params[j].n * sizeof(double));
}

/* One zero-initialised backward at the unperturbed point: the analytic gradients, copied. */
static double **gc_analytic(const struct gc_problem *p)
{
    double **g = malloc((size_t)p->n_params * sizeof *g + 1);
    if (g == NULL) abort();
    gc_zero_grads(p);
    (void)p->loss(p->ctx);
    p->backward(p->ctx);
    for (int j = 0; j < p->n_params; j++) {
        g[j] = gc_alloc(p->params[j].n);
        memcpy(g[j], p->params[j].grad, (size_t)p->params[j].n * sizeof(double));
    }
    return g;
}

static void gc_free_grads(const struct gc_problem *p, double **g)
{
    for (int j = 0; j < p->n_params; j++) free(g[j]);
    free(g);
}

/* Compares got against want element by element with |got - want| <= rel * scale_i, where
 * scale_i = |want_i| + |extra_i| (extra may be NULL) plus the smallest normal; prints the worst
 * element when something differs. Returns the number of differing elements. */
static int gc_compare_same(const char *what, const char *name, const double *got,
                           const double *want, const double *extra, int64_t n)
{
    int n_bad = 0;
    int64_t worst = -1;
    double worst_ratio = -1.0;
    for (int64_t i = 0; i < n; i++) {
        double scale = fabs(want[i]) + (extra ? fabs(extra[i]) : 0.0);
        double bound = GC_REL_SAME * scale + 1e-300;
        double err = fabs(got[i] - want[i]);
        bool ok = err <= bound;
        double ratio = ok ? err / bound : HUGE_VAL;
        if (!ok) n_bad++;
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            worst = i;
        }
    }
    if (n_bad) {
        printf("  FAIL %s %s: %d of %" PRId64 " elements differ; worst [%" PRId64
               "] got % .15e want % .15e\n",
               what, name, n_bad, n, worst, got[worst], want[worst]);
    }
    return n_bad;
}

int gc_check(const struct gc_problem *p, const struct gc_tol *tol)
{
    double **analytic = gc_analytic(p);
    int n_bad_total = 0;
    for (int j = 0; j < p->n_params; j++) {
        const struct gc_param *q = &p->params[j];
        int n_bad = 0;
        int64_t worst = -1;
        double worst_ratio = -1.0, worst_num = 0.0;
        double max_abs = 0.0;
        for (int64_t i = 0; i < q->n; i++) {
            double x0 = q->x[i];
            double h = tol->h_rel * fmax(fabs(x0), 1.0);
            double xp = x0 + h, xm = x0 - h;
            q->x[i] = xp;
            double lp = p->loss(p->ctx);
            q->x[i] = xm;
            double lm = p->loss(p->ctx);
            q->x[i] = x0;
            double num = (lp - lm) / (xp - xm); /* the step actually taken */
            double a = analytic[j][i];
            double err = fabs(a - num);
            double bound = tol->atol + tol->rtol * fmax(fabs(a), fabs(num));
            bool ok = err <= bound; /* false for NaN */
            double ratio = ok ? err / bound : HUGE_VAL;
            if (!ok) n_bad++;
            if (ratio > worst_ratio) {
                worst_ratio = ratio;
                worst = i;
                worst_num = num;
            }
            if (fabs(a) > max_abs) max_abs = fabs(a);
        }
        if (q->n > 0) {
            double a = analytic[j][worst];
            printf("  gradcheck %s %-6s n=%-5" PRId64 " max|g| %.2e  worst [%" PRId64
                   "] analytic % .12e numeric % .12e |diff| %.2e  %s\n",
                   p->name, q->name, q->n, max_abs, worst, a, worst_num, fabs(a - worst_num),
                   n_bad ? "FAIL" : "ok");
            if (n_bad)
                printf("  FAIL %s %s: %d of %" PRId64
                       " elements out of |a-n| <= %.0e + %.0e*max(|a|,|n|)\n",
                       p->name, q->name, n_bad, q->n, tol->atol, tol->rtol);
        }
        n_bad_total += n_bad;
    }
    (void)p->loss(p->ctx); /* leave the saved state of the unperturbed point behind */
    gc_free_grads(p, analytic);
    fflush(stdout);
    return n_bad_total;
}

int gc_check_accumulates(const struct gc_problem *p, struct ssl_rng *r)
{
    double **g0 = gc_analytic(p);
    double **pre = malloc((size_t)p->n_params * sizeof *pre + 1);
    double *want = NULL;
    if (pre == NULL) abort();
    for (int j = 0; j < p->n_params; j++) {
        pre[j] = gc_alloc(p->params[j].n);
        gc_fill_normal(r, pre[j], p->params[j].n, 0.0, 1.0);
        memcpy(p->params[j].grad, pre[j], (size_t)p->params[j].n * sizeof(double));
    }
    (void)p->loss(p->ctx);
    p->backward(p->ctx);
    int n_bad = 0;
    for (int j = 0; j < p->n_params; j++) {
        const struct gc_param *q = &p->params[j];
        want = gc_alloc(q->n);
        for (int64_t i = 0; i < q->n; i++) want[i] = pre[j][i] + g0[j][i];
        int bad = gc_compare_same(p->name, q->name, q->grad, want, g0[j], q->n);
        if (bad) printf("  FAIL %s %s: backward does not accumulate (prefill + gradient)\n",
                        p->name, q->name);
        n_bad += bad;
        free(want);
    }
    printf("  accumulate %s: %s\n", p->name, n_bad ? "FAIL" : "ok");
    gc_free_grads(p, pre);
    gc_free_grads(p, g0);
    fflush(stdout);
    return n_bad;
}

int gc_check_null_grads(const struct gc_problem *p)
{
    double **full = gc_analytic(p);
    int n_bad = 0, n_slots = 0;
    for (int j = 0; j < p->n_params; j++) {
        double **slot = p->params[j].grad_slot;
        if (slot == NULL) continue;
        n_slots++;
        double *kept = *slot;
        *slot = NULL;
        gc_zero_grads(p);
        (void)p->loss(p->ctx);
        p->backward(p->ctx);
        *slot = kept;
        for (int k = 0; k < p->n_params; k++) {
            if (k == j) continue;
            char what[160];
            snprintf(what, sizeof what, "%s (d%s NULL)", p->name, p->params[j].name);
            n_bad += gc_compare_same(what, p->params[k].name, p->params[k].grad, full[k], NULL,
                                     p->params[k].n);
        }
    }
    /* Every gradient NULL: nothing to do, and nothing may crash. */
    double **kept_all = malloc((size_t)p->n_params * sizeof *kept_all + 1);
    if (kept_all == NULL) abort();
    for (int j = 0; j < p->n_params; j++) {
        double **slot = p->params[j].grad_slot;
        kept_all[j] = slot ? *slot : NULL;
        if (slot) *slot = NULL;
    }
    if (n_slots) {
        (void)p->loss(p->ctx);
        p->backward(p->ctx);
    }
    for (int j = 0; j < p->n_params; j++)
        if (p->params[j].grad_slot) *p->params[j].grad_slot = kept_all[j];
    free(kept_all);
    (void)p->loss(p->ctx);
    printf("  null-grads %s: %s (%d slots)\n", p->name, n_bad ? "FAIL" : "ok", n_slots);
    gc_free_grads(p, full);
    fflush(stdout);
    return n_bad;
}

void gc_fill_mixed(struct ssl_rng *r, double *x, int64_t n, int64_t d, double offset_std)
{
    double *z = malloc((size_t)(n * d) * sizeof *z), *m = malloc((size_t)(d * d) * sizeof *m);
    double *off = malloc((size_t)d * sizeof *off);
    if (z == NULL || m == NULL || off == NULL) abort();
    gc_fill_normal(r, z, n * d, 0.0, 1.0);
    gc_fill_normal(r, m, d * d, 0.0, 0.5 / sqrt((double)d));
    gc_fill_normal(r, off, d, 0.0, offset_std);
    for (int64_t i = 0; i < d; i++) m[i * d + i] += 1.0;
    for (int64_t a = 0; a < n; a++)
        for (int64_t j = 0; j < d; j++) {
            double s = off[j];
            for (int64_t k = 0; k < d; k++) s += z[a * d + k] * m[k * d + j];
            x[a * d + j] = s;
        }
    free(z);
    free(m);
    free(off);
}
