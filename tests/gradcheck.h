/* gradcheck.h: an fp64 finite-difference gradient checker for layers, models and losses.
 *
 * A problem is two closures over one context: `loss` runs a forward pass and returns a scalar
 * L = sum_i r_i * out_i (r a fixed random projection, so that every output element enters the
 * loss with its own weight), and `backward` runs the backward pass with dL/dout = r,
 * ACCUMULATING (STYLE.md 1) into the gradient buffers listed as the problem's parameters.
 * Invariants the checker relies on and keeps:
 *   - `backward` is only ever called right after `loss` at the unperturbed point, so whatever
 *     the forward saves for the backward is current;
 *   - every perturbed value is restored bit for bit, and the last call is `loss` at the
 *     unperturbed point, so the context is left as it was found.
 * Everything here is double: the checks run against the fp64 core (ssl_core_f64, ssl_real =
 * double), so callers pass their ssl_real buffers directly.
 *
 * Random data come from the project's RNG (src/rng.h), purpose SSL_RNG_TEST, with a fixed seed
 * printed at the start of each test and overridable by the environment variable SSL_TEST_SEED;
 * each test draws from its own stream (keyed by a hash of its name), so a test's data do not
 * depend on which other tests ran before it. */
#ifndef SSL_TEST_GRADCHECK_H
#define SSL_TEST_GRADCHECK_H

#include <stdint.h>

#include "rng.h"

#define GC_DEFAULT_SEED UINT64_C(20261123)

/* Tolerances of the comparison |a - n| <= atol + rtol * max(|a|, |n|) and the relative step
 * h = h_rel * max(|x|, 1) of the central differences. */
struct gc_tol {
    double atol, rtol, h_rel;
};

/* The default, and why. With h = 1e-6 the central difference has a truncation error
 * ~ h^2 |L'''| / 6 ~ 1e-13 and a rounding error ~ u |L| / h ~ 1e-16 * 30 / 1e-6 ~ 3e-9 for the
 * O(30) losses of these tests (L is summed with compensation, so u |L| is the floor). Both are
 * far below atol = 1e-6, so a correct gradient never trips the check; the rtol = 1e-5 part
 * keeps it scale-free for gradients of O(10-100). A wrong gradient (a missing term, a
 * transposed index, a wrong scale) is off by O(1e-2 .. 1) of the gradient's size, 3 to 5
 * orders of magnitude above the bound. */
#define GC_TOL_DEFAULT ((struct gc_tol){.atol = 1e-6, .rtol = 1e-5, .h_rel = 1e-6})

struct gc_param {
    const char *name;
    double *x;          /* (n) values, perturbed in place and restored bit for bit */
    double *grad;       /* (n) where `backward` accumulates dL/dx */
    int64_t n;
    double **grad_slot; /* optional: the context field from which `backward` reads `grad`,
                         * so gc_check_null_grads can set it to NULL; NULL if none */
};

struct gc_problem {
    const char *name;
    double (*loss)(void *ctx);
    void (*backward)(void *ctx);
    void *ctx;
    struct gc_param *params;
    int n_params;
};

/* The seed: SSL_TEST_SEED if set (decimal or 0x-hex; anything else aborts), else
 * GC_DEFAULT_SEED. */
uint64_t gc_seed(void);
/* Prints "[test] seed N" and starts the test's own stream (seed, SSL_RNG_TEST, hash(test)). */
void gc_rng_begin(struct ssl_rng *r, const char *test_name);
/* x[i] = mean + std * N(0, 1). */
void gc_fill_normal(struct ssl_rng *r, double *x, int64_t n, double mean, double std);
/* Well-conditioned correlated data: x (n, d) = z (I + 0.5 M / sqrt(d)) + offset, z and M
 * standard normal, offset ~ N(0, offset_std) per column (covariance condition number stays
 * moderate, so finite differences through whitening are trustworthy). */
void gc_fill_mixed(struct ssl_rng *r, double *x, int64_t n, int64_t d, double offset_std);
/* sum_i r_i * out_i with compensated (Neumaier) summation, so that the loss's own rounding
 * does not swamp the finite differences. */
double gc_dot(const double *r, const double *out, int64_t n);

/* Analytic against central differences, element by element, for every parameter of the
 * problem; prints one line per parameter with its worst element (index, analytic, numeric)
 * and returns the number of elements out of tolerance (0: pass). */
int gc_check(const struct gc_problem *p, const struct gc_tol *tol);

/* Backward accumulates: with each gradient pre-filled with random values g0 the result must
 * be g0 + (the gradient computed into zeros), to rounding (1e-12 relative). Returns the
 * number of elements that differ. */
int gc_check_accumulates(const struct gc_problem *p, struct ssl_rng *r);

/* A NULL gradient is skipped and changes nothing else: for each parameter with a grad_slot,
 * sets it to NULL, runs backward, and checks the other gradients against the full run (to
 * 1e-12 relative); then runs backward with every slot NULL (must not crash). Returns the
 * number of elements that differ. */
int gc_check_null_grads(const struct gc_problem *p);

#endif
