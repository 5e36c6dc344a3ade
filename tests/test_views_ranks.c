/* test_views_ranks.c: the augmented views a training step sees do not depend on the rank
 * count. For P = 1..4, every rank takes its sampler slice of each step and augments it with
 * ssl_augment_batch; the P slices put together must equal, bit for bit, the one-rank batch —
 * for every step of two epochs and for two views with different recipes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "augment.h"
#include "sampler.h"

enum { N = 40, B = 12, C = 3, S = 12, OUT = 10 };

static const struct ssl_aug_recipe RECIPES[2] = {
    {.out_size = OUT, .scale_min = 0.2, .scale_max = 1, .ratio_min = 0.75, .ratio_max = 4.0 / 3,
     .flip_p = 0.5, .jitter_p = 0.8, .brightness = 0.4, .contrast = 0.4, .saturation = 0.2,
     .hue = 0.1, .gray_p = 0.2, .blur_p = 1.0, .blur_sigma_min = 0.1, .blur_sigma_max = 2,
     .solarize_p = 0, .solarize_threshold = 0.5, .mean = {0.5, 0.5, 0.5}, .std = {0.25, 0.25, 0.25}},
    {.out_size = OUT, .scale_min = 0.2, .scale_max = 1, .ratio_min = 0.75, .ratio_max = 4.0 / 3,
     .flip_p = 0.5, .jitter_p = 0.8, .brightness = 0.4, .contrast = 0.4, .saturation = 0.2,
     .hue = 0.1, .gray_p = 0.2, .blur_p = 0.1, .blur_sigma_min = 0.1, .blur_sigma_max = 2,
     .solarize_p = 0.2, .solarize_threshold = 0.5, .mean = {0.5, 0.5, 0.5}, .std = {0.25, 0.25, 0.25}},
};

/* The views of `step` as rank `rank` of `size` computes them, into out (its slice). */
static void rank_views(float *out, const uint8_t *dataset, int rank, int size, int64_t epoch,
                       int64_t step, int view, float *scratch)
{
    struct ssl_sampler s;
    struct ssl_error err = {0};
    assert_int_equal(ssl_sampler_init(&s, N, B, rank, size, 99, &err), SSL_OK);
    ssl_sampler_set_epoch(&s, epoch);
    const int64_t *idx = ssl_sampler_local(&s, step);
    uint8_t local[B * C * S * S];
    for (int64_t i = 0; i < s.local_batch; i++) /* what the dataset read would return */
        memcpy(local + i * C * S * S, dataset + idx[i] * C * S * S, C * S * S);
    ssl_augment_batch(out, local, idx, s.local_batch, C, S, S, &RECIPES[view], 99, (uint32_t)epoch,
                      (uint32_t)view, scratch);
    ssl_sampler_free(&s);
}

static void test_views_invariant_to_rank_count(void **state)
{
    (void)state;
    uint8_t *dataset = malloc(N * C * S * S);
    for (int i = 0; i < N * C * S * S; i++) dataset[i] = (uint8_t)((i * 2654435761u) >> 24);
    int64_t per_image = C * OUT * OUT;
    int64_t per_thread = ssl_augment_scratch_elems(C, S, S, &RECIPES[0]);
    float *scratch = malloc((size_t)(omp_get_max_threads() * per_thread) * sizeof(float));
    float one[B * C * OUT * OUT], joined[B * C * OUT * OUT];
    for (int64_t epoch = 0; epoch < 2; epoch++)
        for (int64_t step = 0; step < N / B; step++)
            for (int view = 0; view < 2; view++) {
                rank_views(one, dataset, 0, 1, epoch, step, view, scratch);
                for (int p = 2; p <= 4; p++) {
                    if (B % p) continue;
                    for (int r = 0; r < p; r++)
                        rank_views(joined + r * (B / p) * per_image, dataset, r, p, epoch, step, view, scratch);
                    assert_memory_equal(joined, one, sizeof one);
                }
            }
    free(scratch);
    free(dataset);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_views_invariant_to_rank_count)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
