/* test_sampler.c: the epoch permutation and the rank slices. The global batches must be the
 * same whatever the rank count: the concatenation of the P rank slices of a step equals the
 * 1-rank batch of that step, for P = 1..4; each epoch is a permutation; epochs differ; the
 * last incomplete batch is dropped; a batch not divisible by P is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sampler.h"

static void test_slices_invariant_to_rank_count(void **state)
{
    (void)state;
    enum { N = 103, B = 12 };
    struct ssl_sampler one;
    struct ssl_error err = {0};
    assert_int_equal(ssl_sampler_init(&one, N, B, 0, 1, 42, &err), SSL_OK);
    assert_int_equal(one.steps_per_epoch, N / B); /* 8 full batches, 7 samples dropped */
    for (int64_t epoch = 0; epoch < 3; epoch++) {
        ssl_sampler_set_epoch(&one, epoch);
        for (int p = 1; p <= 4; p++) {
            if (B % p) continue;
            for (int64_t step = 0; step < one.steps_per_epoch; step++) {
                int64_t joined[B];
                for (int r = 0; r < p; r++) {
                    struct ssl_sampler s;
                    assert_int_equal(ssl_sampler_init(&s, N, B, r, p, 42, &err), SSL_OK);
                    ssl_sampler_set_epoch(&s, epoch);
                    memcpy(joined + r * (B / p), ssl_sampler_local(&s, step), (B / p) * sizeof(int64_t));
                    ssl_sampler_free(&s);
                }
                assert_memory_equal(joined, ssl_sampler_local(&one, step), sizeof joined);
            }
        }
    }
    ssl_sampler_free(&one);
}

static void test_epoch_is_permutation_and_epochs_differ(void **state)
{
    (void)state;
    enum { N = 1000 };
    struct ssl_sampler s;
    struct ssl_error err = {0};
    assert_int_equal(ssl_sampler_init(&s, N, 10, 0, 1, 7, &err), SSL_OK);
    ssl_sampler_set_epoch(&s, 0);
    int64_t first[N];
    memcpy(first, s.perm, sizeof first);
    int seen[N] = {0}, fixed = 0;
    for (int i = 0; i < N; i++) {
        seen[first[i]]++;
        fixed += first[i] == i;
    }
    for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
    assert_true(fixed < 10); /* a shuffle, not the identity (expected 1 fixed point) */
    ssl_sampler_set_epoch(&s, 1);
    int same = 0;
    for (int i = 0; i < N; i++) same += s.perm[i] == first[i];
    assert_true(same < 10);
    ssl_sampler_set_epoch(&s, 0); /* and epoch 0 again is epoch 0 */
    assert_memory_equal(s.perm, first, sizeof first);
    ssl_sampler_free(&s);
}

static void test_refuses_bad_batch(void **state)
{
    (void)state;
    struct ssl_sampler s;
    struct ssl_error err = {0};
    assert_int_equal(ssl_sampler_init(&s, 100, 10, 0, 3, 1, &err), SSL_E_USAGE);
    assert_non_null(strstr(err.msg, "not divisible by the 3 ranks"));
    struct ssl_error err2 = {0};
    assert_int_equal(ssl_sampler_init(&s, 100, 128, 0, 1, 1, &err2), SSL_E_USAGE);
    assert_non_null(strstr(err2.msg, "larger than the dataset"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slices_invariant_to_rank_count),
        cmocka_unit_test(test_epoch_is_permutation_and_epochs_differ),
        cmocka_unit_test(test_refuses_bad_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
