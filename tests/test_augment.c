/* test_augment.c: the augmentations (src/augment.c) against direct computations on small
 * images: identities of each op at its neutral setting, an independent bilinear resize and
 * Gaussian blur in double, solarize and normalisation semantics, the HSV round trip, the
 * keyed determinism of views (batch slicing, order, thread count) and the distribution of
 * sampled crops. Random test inputs come from the SSL_RNG_TEST stream of a printed seed
 * (override with SSL_TEST_SEED). */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "augment.h"
#include "augment_internal.h"
#include "rng.h"

static uint64_t test_seed = 20240611u;

static void *xalloc(size_t n_bytes)
{
    void *p = calloc(n_bytes > 0 ? n_bytes : 1, 1);
    assert_non_null(p);
    return p;
}

static float *falloc(int64_t n)
{
    return xalloc((size_t)n * sizeof(float));
}

static uint8_t *random_image(int64_t c, int64_t h, int64_t w, uint32_t which)
{
    struct ssl_rng rng;
    ssl_rng_init(&rng, test_seed, SSL_RNG_TEST, which, 0, 0);
    uint8_t *img = xalloc((size_t)(c * h * w));
    for (int64_t i = 0; i < c * h * w; i++) img[i] = (uint8_t)ssl_rng_below(&rng, 256);
    return img;
}

/* Every op off, whole-image crop, identity normalisation. */
static struct ssl_aug_recipe identity_recipe(int64_t out_size)
{
    return (struct ssl_aug_recipe){
        .out_size = out_size,
        .scale_min = 1.0, .scale_max = 1.0, .ratio_min = 1.0, .ratio_max = 1.0,
        .blur_sigma_min = 1.0, .blur_sigma_max = 1.0,
        .solarize_threshold = 0.5,
        .mean = {0.0, 0.0, 0.0}, .std = {1.0, 1.0, 1.0},
    };
}

static struct ssl_aug_recipe simclr_recipe(int64_t out_size)
{
    return (struct ssl_aug_recipe){
        .out_size = out_size,
        .scale_min = 0.2, .scale_max = 1.0, .ratio_min = 3.0 / 4.0, .ratio_max = 4.0 / 3.0,
        .flip_p = 0.5,
        .jitter_p = 0.8, .brightness = 0.4, .contrast = 0.4, .saturation = 0.4, .hue = 0.1,
        .gray_p = 0.2,
        .blur_p = 0.5, .blur_sigma_min = 0.1, .blur_sigma_max = 2.0,
        .solarize_p = 0.2, .solarize_threshold = 0.5,
        .mean = {0.4914, 0.4822, 0.4465}, .std = {0.247, 0.243, 0.261},
    };
}

/* One view with the library's own stream. */
static float *run_view(const uint8_t *img, int64_t c, int64_t h, int64_t w,
                       const struct ssl_aug_recipe *r, uint32_t epoch, uint32_t index,
                       uint32_t view)
{
    int64_t o = r->out_size;
    float *out = falloc(c * o * o), *scratch = falloc(ssl_augment_scratch_elems(c, h, w, r));
    ssl_augment_view(out, img, c, h, w, r, test_seed, epoch, index, view, scratch);
    free(scratch);
    return out;
}

static float to01(uint8_t v)
{
    return (float)v * (1.0f / 255.0f);
}

/* ------------------------------------------------------------------------------------------
 * Geometry: identity, flip, bilinear resize
 * ------------------------------------------------------------------------------------------ */

static void test_identity(void **state)
{
    (void)state;
    for (int64_t c = 1; c <= 3; c += 2) {
        int64_t n = 9;
        uint8_t *img = random_image(c, n, n, 1);
        struct ssl_aug_recipe r = identity_recipe(n);
        for (uint32_t v = 0; v < 5; v++) {
            float *out = run_view(img, c, n, n, &r, 0, v, v);
            for (int64_t i = 0; i < c * n * n; i++) assert_true(out[i] == to01(img[i]));
            free(out);
        }
        free(img);
    }
}

static void test_flip(void **state)
{
    (void)state;
    int64_t c = 3, n = 8;
    uint8_t *img = random_image(c, n, n, 2);
    struct ssl_aug_recipe r = identity_recipe(n);
    r.flip_p = 1.0;
    float *out = run_view(img, c, n, n, &r, 0, 0, 0);
    for (int64_t k = 0; k < c; k++)
        for (int64_t y = 0; y < n; y++)
            for (int64_t x = 0; x < n; x++)
                assert_true(out[(k * n + y) * n + x] == to01(img[(k * n + y) * n + n - 1 - x]));
    /* Flipping the flipped image (as bytes) gives the original back. */
    uint8_t *flipped = xalloc((size_t)(c * n * n));
    for (int64_t i = 0; i < c * n * n; i++) flipped[i] = (uint8_t)lrintf(out[i] * 255.0f);
    float *back = run_view(flipped, c, n, n, &r, 0, 0, 0);
    for (int64_t i = 0; i < c * n * n; i++) assert_true(back[i] == to01(img[i]));
    free(back);
    free(flipped);
    free(out);
    free(img);
}

/* PyTorch's bilinear (align_corners=False) written again in double. */
static double ref_bilinear(const uint8_t *plane, int64_t h, int64_t w, int64_t o, int64_t oy,
                           int64_t ox)
{
    double fy = ((double)oy + 0.5) * (double)h / (double)o - 0.5;
    double fx = ((double)ox + 0.5) * (double)w / (double)o - 0.5;
    fy = fy < 0.0 ? 0.0 : fy;
    fx = fx < 0.0 ? 0.0 : fx;
    int64_t y0 = (int64_t)floor(fy), x0 = (int64_t)floor(fx);
    int64_t y1 = y0 + 1 < h ? y0 + 1 : h - 1, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
    double ly = fy - (double)y0, lx = fx - (double)x0;
    double top = (1.0 - lx) * plane[y0 * w + x0] + lx * plane[y0 * w + x1];
    double bot = (1.0 - lx) * plane[y1 * w + x0] + lx * plane[y1 * w + x1];
    return ((1.0 - ly) * top + ly * bot) / 255.0;
}

static void test_resize(void **state)
{
    (void)state;
    int64_t c = 3, n = 7, outs[] = {3, 5, 11, 16};
    uint8_t *img = random_image(c, n, n, 3);
    for (size_t t = 0; t < sizeof outs / sizeof outs[0]; t++) {
        int64_t o = outs[t];
        struct ssl_aug_recipe r = identity_recipe(o);
        float *out = run_view(img, c, n, n, &r, 0, 0, 0);
        for (int64_t k = 0; k < c; k++)
            for (int64_t y = 0; y < o; y++)
                for (int64_t x = 0; x < o; x++) {
                    double ref = ref_bilinear(img + k * n * n, n, n, o, y, x);
                    assert_true(fabs((double)out[(k * o + y) * o + x] - ref) < 1e-5);
                }
        free(out);
    }
    free(img);
}

/* An explicit crop through ssl_augment_apply against the reference on the cropped bytes. */
static void test_crop_window(void **state)
{
    (void)state;
    int64_t c = 1, h = 10, w = 12, o = 6;
    uint8_t *img = random_image(c, h, w, 4);
    struct ssl_aug_recipe r = identity_recipe(o);
    struct ssl_aug_params p = {.crop_top = 2, .crop_left = 3, .crop_h = 5, .crop_w = 8};
    uint8_t sub[5 * 8];
    for (int64_t y = 0; y < 5; y++)
        for (int64_t x = 0; x < 8; x++) sub[y * 8 + x] = img[(2 + y) * w + 3 + x];
    float *out = falloc(o * o), *scratch = falloc(ssl_augment_scratch_elems(c, h, w, &r));
    ssl_augment_apply(out, img, c, h, w, &r, &p, scratch);
    for (int64_t y = 0; y < o; y++)
        for (int64_t x = 0; x < o; x++)
            assert_true(fabs((double)out[y * o + x] - ref_bilinear(sub, 5, 8, o, y, x)) < 1e-5);
    free(scratch);
    free(out);
    free(img);
}

/* ------------------------------------------------------------------------------------------
 * Colour
 * ------------------------------------------------------------------------------------------ */

/* Jitter always applied with every range 0 (hue 0 included) is bitwise the identity. */
static void test_jitter_zero_ranges(void **state)
{
    (void)state;
    for (int64_t c = 1; c <= 3; c += 2) {
        int64_t n = 9;
        uint8_t *img = random_image(c, n, n, 5);
        struct ssl_aug_recipe r = identity_recipe(n);
        r.jitter_p = 1.0;
        for (uint32_t v = 0; v < 4; v++) {
            float *out = run_view(img, c, n, n, &r, 1, v, v);
            for (int64_t i = 0; i < c * n * n; i++) assert_true(out[i] == to01(img[i]));
            free(out);
        }
        free(img);
    }
}

/* Each jitter op alone, with a chosen factor, against its formula. */
static void test_jitter_ops(void **state)
{
    (void)state;
    int64_t c = 3, n = 5, plane = n * n;
    uint8_t *img = random_image(c, n, n, 6);
    struct ssl_aug_recipe r = identity_recipe(n);
    float *out = falloc(c * plane), *scratch = falloc(ssl_augment_scratch_elems(c, n, n, &r));
    struct ssl_aug_params base = {.crop_h = n, .crop_w = n, .jitter = 1,
                                  .jitter_order = {0, 1, 2, 3}};
    double gray_mean = 0.0;
    for (int64_t i = 0; i < plane; i++)
        gray_mean += 0.299 * (double)to01(img[i]) + 0.587 * (double)to01(img[plane + i]) +
                     0.114 * (double)to01(img[2 * plane + i]);
    gray_mean /= (double)plane;

    for (int op = 0; op < 3; op++) {
        struct ssl_aug_params p = base;
        p.jitter_on[op] = 1;
        p.brightness = 1.7f;
        p.contrast = 0.3f;
        p.saturation = 1.6f;
        ssl_augment_apply(out, img, c, n, n, &r, &p, scratch);
        for (int64_t i = 0; i < plane; i++) {
            double x[3], g = 0.0;
            for (int k = 0; k < 3; k++) x[k] = to01(img[k * plane + i]);
            g = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2];
            for (int k = 0; k < 3; k++) {
                double e = op == 0 ? 1.7 * x[k]
                           : op == 1 ? 0.3 * x[k] + 0.7 * gray_mean
                                     : 1.6 * x[k] - 0.6 * g;
                e = e < 0.0 ? 0.0 : (e > 1.0 ? 1.0 : e);
                assert_true(fabs((double)out[k * plane + i] - e) < 1e-5);
            }
        }
    }
    free(scratch);
    free(out);
    free(img);
}

static void test_hsv(void **state)
{
    (void)state;
    struct ssl_rng rng;
    ssl_rng_init(&rng, test_seed, SSL_RNG_TEST, 7, 0, 0);
    for (int t = 0; t < 100000; t++) {
        float rgb[3], h, s, v, back[3];
        for (int k = 0; k < 3; k++) rgb[k] = (float)ssl_rng_uniform(&rng);
        if (t % 7 == 0) rgb[t % 3] = rgb[(t + 1) % 3]; /* ties between the maxima */
        if (t % 11 == 0) rgb[0] = rgb[1] = rgb[2];     /* grays */
        ssl_augment_rgb_to_hsv(rgb[0], rgb[1], rgb[2], &h, &s, &v);
        assert_true(h >= 0.0f && h < 1.0f && s >= 0.0f && s <= 1.0f);
        ssl_augment_hsv_to_rgb(h, s, v, &back[0], &back[1], &back[2]);
        for (int k = 0; k < 3; k++) assert_true(fabsf(back[k] - rgb[k]) < 1e-5f);
    }
    /* A third of a turn maps the primaries onto each other: red -> green -> blue. */
    float h, s, v, r, g, b;
    ssl_augment_rgb_to_hsv(1.0f, 0.0f, 0.0f, &h, &s, &v);
    ssl_augment_hsv_to_rgb(h + 1.0f / 3.0f, s, v, &r, &g, &b);
    assert_true(fabsf(r) < 1e-6f && fabsf(g - 1.0f) < 1e-6f && fabsf(b) < 1e-6f);
    ssl_augment_rgb_to_hsv(0.0f, 1.0f, 0.0f, &h, &s, &v);
    ssl_augment_hsv_to_rgb(h + 1.0f / 3.0f, s, v, &r, &g, &b);
    assert_true(fabsf(r) < 1e-6f && fabsf(g) < 1e-6f && fabsf(b - 1.0f) < 1e-6f);
}

static void test_hue_op(void **state)
{
    (void)state;
    int64_t c = 3, n = 6, plane = n * n;
    uint8_t *img = random_image(c, n, n, 8);
    struct ssl_aug_recipe r = identity_recipe(n);
    float *out = falloc(c * plane), *scratch = falloc(ssl_augment_scratch_elems(c, n, n, &r));
    /* Hue enabled with a zero shift: the HSV round trip, within 1e-5. */
    struct ssl_aug_params p = {.crop_h = n, .crop_w = n, .jitter = 1,
                               .jitter_order = {3, 2, 1, 0}, .jitter_on = {0, 0, 0, 1}};
    ssl_augment_apply(out, img, c, n, n, &r, &p, scratch);
    for (int64_t i = 0; i < c * plane; i++) assert_true(fabsf(out[i] - to01(img[i])) < 1e-5f);
    /* A full turn is also the identity, and a negative shift wraps. */
    p.hue = -0.25f;
    ssl_augment_apply(out, img, c, n, n, &r, &p, scratch);
    for (int64_t i = 0; i < plane; i++) {
        float h0, s0, v0, h1, s1, v1;
        ssl_augment_rgb_to_hsv(to01(img[i]), to01(img[plane + i]), to01(img[2 * plane + i]), &h0,
                               &s0, &v0);
        ssl_augment_rgb_to_hsv(out[i], out[plane + i], out[2 * plane + i], &h1, &s1, &v1);
        float dh = fabsf(h1 - (h0 - 0.25f < 0.0f ? h0 + 0.75f : h0 - 0.25f));
        if (s0 > 1e-3f) assert_true(fminf(dh, 1.0f - dh) < 1e-4f);
        assert_true(fabsf(v1 - v0) < 1e-5f);
    }
    free(scratch);
    free(out);
    free(img);
}

static void test_grayscale(void **state)
{
    (void)state;
    int64_t c = 3, n = 7, plane = n * n;
    uint8_t *img = random_image(c, n, n, 9);
    struct ssl_aug_recipe r = identity_recipe(n);
    r.gray_p = 1.0;
    float *out = run_view(img, c, n, n, &r, 0, 0, 0);
    for (int64_t i = 0; i < plane; i++) {
        double g = 0.299 * (double)to01(img[i]) + 0.587 * (double)to01(img[plane + i]) +
                   0.114 * (double)to01(img[2 * plane + i]);
        for (int k = 0; k < 3; k++) assert_true(fabs((double)out[k * plane + i] - g) < 1e-6);
    }
    free(out);
    /* A gray image is unchanged. */
    for (int64_t i = 0; i < plane; i++) img[plane + i] = img[2 * plane + i] = img[i];
    out = run_view(img, c, n, n, &r, 0, 0, 0);
    for (int64_t i = 0; i < c * plane; i++) assert_true(fabsf(out[i] - to01(img[i])) < 1e-6f);
    free(out);
    /* Single channel: grayscale is skipped. */
    out = run_view(img, 1, n, n, &r, 0, 0, 0);
    for (int64_t i = 0; i < plane; i++) assert_true(out[i] == to01(img[i]));
    free(out);
    free(img);
}

/* ------------------------------------------------------------------------------------------
 * Blur, solarize, normalisation
 * ------------------------------------------------------------------------------------------ */

static void test_blur_kernel(void **state)
{
    (void)state;
    float k[64];
    float sigmas[] = {0.1f, 0.5f, 1.0f, 1.7f, 2.0f, 5.0f};
    int64_t sizes[] = {1, 2, 5, 8, 32, 64};
    for (size_t a = 0; a < sizeof sigmas / sizeof sigmas[0]; a++)
        for (size_t b = 0; b < sizeof sizes / sizeof sizes[0]; b++) {
            int64_t radius = ssl_augment_blur_kernel(k, sigmas[a], sizes[b]);
            int64_t want = (int64_t)ceil(3.0 * (double)sigmas[a]);
            if (want > (sizes[b] - 1) / 2) want = (sizes[b] - 1) / 2;
            assert_int_equal(radius, want);
            double sum = 0.0;
            for (int64_t j = 0; j <= 2 * radius; j++) {
                sum += (double)k[j];
                assert_true(k[j] == k[2 * radius - j]); /* symmetric */
                if (j > 0 && j <= radius) assert_true(k[j] >= k[j - 1]);
            }
            assert_true(fabs(sum - 1.0) < 1e-6);
        }
}

static void test_blur_constant(void **state)
{
    (void)state;
    int64_t c = 3, n = 12;
    uint8_t *img = xalloc((size_t)(c * n * n));
    memset(img, 173, (size_t)(c * n * n));
    struct ssl_aug_recipe r = identity_recipe(n);
    r.blur_p = 1.0;
    r.blur_sigma_min = 0.5;
    r.blur_sigma_max = 2.0;
    for (uint32_t v = 0; v < 8; v++) {
        float *out = run_view(img, c, n, n, &r, 0, v, 0);
        for (int64_t i = 0; i < c * n * n; i++) assert_true(fabsf(out[i] - to01(173)) < 1e-6f);
        free(out);
    }
    free(img);
}

/* The separable blur against a direct 2-D convolution with reflect padding, in double. */
static void test_blur_reference(void **state)
{
    (void)state;
    int64_t c = 1, n = 9;
    uint8_t *img = random_image(c, n, n, 10);
    struct ssl_aug_recipe r = identity_recipe(n);
    float *out = falloc(n * n), *scratch = falloc(ssl_augment_scratch_elems(c, n, n, &r));
    float sigmas[] = {0.6f, 1.3f, 2.0f};
    for (size_t t = 0; t < 3; t++) {
        struct ssl_aug_params p = {.crop_h = n, .crop_w = n, .blur = 1, .blur_sigma = sigmas[t]};
        ssl_augment_apply(out, img, c, n, n, &r, &p, scratch);
        double sigma = (double)sigmas[t];
        int64_t radius = (int64_t)ceil(3.0 * sigma);
        if (radius > (n - 1) / 2) radius = (n - 1) / 2;
        double kern[32], sum = 0.0;
        for (int64_t j = -radius; j <= radius; j++)
            sum += kern[j + radius] = exp(-0.5 * (double)(j * j) / (sigma * sigma));
        for (int64_t y = 0; y < n; y++)
            for (int64_t x = 0; x < n; x++) {
                double acc = 0.0;
                for (int64_t dy = -radius; dy <= radius; dy++)
                    for (int64_t dx = -radius; dx <= radius; dx++) {
                        int64_t yy = y + dy, xx = x + dx;
                        yy = yy < 0 ? -yy : (yy >= n ? 2 * n - 2 - yy : yy);
                        xx = xx < 0 ? -xx : (xx >= n ? 2 * n - 2 - xx : xx);
                        acc += kern[dy + radius] * kern[dx + radius] * img[yy * n + xx] / 255.0;
                    }
                assert_true(fabs((double)out[y * n + x] - acc / (sum * sum)) < 1e-5);
            }
    }
    free(scratch);
    free(out);
    free(img);
}

static void test_solarize(void **state)
{
    (void)state;
    int64_t n = 16;
    uint8_t *img = xalloc((size_t)(n * n));
    for (int64_t i = 0; i < n * n; i++) img[i] = (uint8_t)i;
    struct ssl_aug_recipe r = identity_recipe(n);
    r.solarize_p = 1.0;
    /* Threshold exactly at the value of byte 128: 128 inverts, 127 does not. */
    r.solarize_threshold = (double)to01(128);
    float *out = run_view(img, 1, n, n, &r, 0, 0, 0);
    for (int64_t i = 0; i < n * n; i++) {
        float x = to01(img[i]);
        assert_true(out[i] == (img[i] >= 128 ? 1.0f - x : x));
    }
    free(out);
    /* Just above it: 128 no longer inverts. */
    r.solarize_threshold = (double)nextafterf(to01(128), 2.0f);
    out = run_view(img, 1, n, n, &r, 0, 0, 0);
    assert_true(out[128] == to01(128) && out[129] == 1.0f - to01(129));
    free(out);
    free(img);
}

static void test_normalise(void **state)
{
    (void)state;
    int64_t c = 3, n = 6, plane = n * n;
    uint8_t *img = random_image(c, n, n, 11);
    struct ssl_aug_recipe r = identity_recipe(n);
    double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
    for (int k = 0; k < 3; k++) r.mean[k] = mean[k], r.std[k] = std[k];
    float *out = run_view(img, c, n, n, &r, 0, 0, 0);
    for (int64_t k = 0; k < c; k++)
        for (int64_t i = 0; i < plane; i++) {
            float e = (to01(img[k * plane + i]) - (float)mean[k]) / (float)std[k];
            assert_true(out[k * plane + i] == e);
            double d = ((double)img[k * plane + i] / 255.0 - mean[k]) / std[k];
            assert_true(fabs((double)out[k * plane + i] - d) < 1e-5);
        }
    free(out);
    free(img);
}

/* ------------------------------------------------------------------------------------------
 * Keyed determinism
 * ------------------------------------------------------------------------------------------ */

static void test_batch_determinism(void **state)
{
    (void)state;
    int64_t n = 13, c = 3, h = 12, w = 10;
    struct ssl_aug_recipe r = simclr_recipe(8);
    int64_t o = r.out_size, out_elems = c * o * o, in_elems = c * h * w;
    uint8_t *images = random_image(n, c * h, w, 12);
    int64_t indices[13];
    for (int64_t i = 0; i < n; i++) indices[i] = 1000 + 7 * i;
    float *ref = falloc(n * out_elems), *got = falloc(n * out_elems);
    float *scratch = falloc(8 * ssl_augment_scratch_elems(c, h, w, &r));
    for (int64_t i = 0; i < n; i++) {
        ssl_augment_view(ref + i * out_elems, images + i * in_elems, c, h, w, &r, test_seed, 3,
                         (uint32_t)indices[i], 1, scratch);
    }
    int max_threads = omp_get_max_threads();
    int threads[] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(threads[t]);
        assert_true(omp_get_max_threads() <= 8);
        memset(got, 0, (size_t)(n * out_elems) * sizeof(float));
        ssl_augment_batch(got, images, indices, n, c, h, w, &r, test_seed, 3, 1, scratch);
        assert_memory_equal(got, ref, (size_t)(n * out_elems) * sizeof(float));
        /* A different slicing, processed last slice first. */
        memset(got, 0, (size_t)(n * out_elems) * sizeof(float));
        int64_t cuts[] = {0, 4, 5, 11, 13};
        for (int s = 3; s >= 0; s--) {
            int64_t a = cuts[s], m = cuts[s + 1] - cuts[s];
            ssl_augment_batch(got + a * out_elems, images + a * in_elems, indices + a, m, c, h,
                              w, &r, test_seed, 3, 1, scratch);
        }
        assert_memory_equal(got, ref, (size_t)(n * out_elems) * sizeof(float));
    }
    omp_set_num_threads(max_threads);
    free(scratch);
    free(got);
    free(ref);
    free(images);
}

static int differs(const float *a, const float *b, int64_t n)
{
    return memcmp(a, b, (size_t)n * sizeof(float)) != 0;
}

static void test_keys_differ(void **state)
{
    (void)state;
    int64_t c = 3, n = 16;
    uint8_t *img = random_image(c, n, n, 13);
    struct ssl_aug_recipe r = simclr_recipe(12);
    int64_t m = c * 12 * 12;
    float *a = run_view(img, c, n, n, &r, 2, 5, 0);
    float *same = run_view(img, c, n, n, &r, 2, 5, 0);
    float *view = run_view(img, c, n, n, &r, 2, 5, 1);
    float *epoch = run_view(img, c, n, n, &r, 3, 5, 0);
    float *index = run_view(img, c, n, n, &r, 2, 6, 0);
    assert_false(differs(a, same, m));
    assert_true(differs(a, view, m));
    assert_true(differs(a, epoch, m));
    assert_true(differs(a, index, m));
    free(a);
    free(same);
    free(view);
    free(epoch);
    free(index);
    free(img);
}

/* The stream does not depend on the channel count: a gray 3-channel image and its
 * 1-channel copy give the same views (up to the rounding of the gray weights). */
static void test_channel_alignment(void **state)
{
    (void)state;
    int64_t n = 14, plane = n * n;
    uint8_t *img3 = random_image(3, n, n, 14);
    for (int64_t i = 0; i < plane; i++) img3[plane + i] = img3[2 * plane + i] = img3[i];
    struct ssl_aug_recipe r = simclr_recipe(10);
    r.mean[1] = r.mean[2] = r.mean[0];
    r.std[1] = r.std[2] = r.std[0];
    for (uint32_t idx = 0; idx < 40; idx++) {
        float *a = run_view(img3, 3, n, n, &r, 0, idx, 0);
        float *b = run_view(img3, 1, n, n, &r, 0, idx, 0);
        for (int64_t k = 0; k < 3; k++)
            for (int64_t i = 0; i < 100; i++) assert_true(fabsf(a[k * 100 + i] - b[i]) < 1e-4f);
        free(a);
        free(b);
    }
    free(img3);
}

/* ------------------------------------------------------------------------------------------
 * Crop distribution
 * ------------------------------------------------------------------------------------------ */

static void test_crop_distribution(void **state)
{
    (void)state;
    struct ssl_aug_recipe r = identity_recipe(32);
    r.scale_min = 0.2;
    r.scale_max = 0.6;
    r.ratio_min = 3.0 / 4.0;
    r.ratio_max = 4.0 / 3.0;
    int64_t h = 64, w = 64, n = 20000, below_mid = 0;
    double area = (double)(h * w), sum_scale = 0.0, sum_log_ratio = 0.0, sum_top = 0.0;
    for (int64_t t = 0; t < n; t++) {
        struct ssl_rng rng;
        ssl_rng_init(&rng, test_seed, SSL_RNG_AUGMENT, 0, (uint32_t)t, 0);
        int64_t top, left, ch, cw;
        ssl_augment_sample_crop(&rng, h, w, &r, &top, &left, &ch, &cw);
        assert_true(ch >= 1 && cw >= 1 && top >= 0 && left >= 0);
        assert_true(top + ch <= h && left + cw <= w);
        /* Rounding w and h moves the area by at most 0.5 (w + h) + 0.25. */
        double a = (double)(ch * cw), slack = 0.5 * (double)(ch + cw) + 0.25;
        assert_true(a >= r.scale_min * area - slack && a <= r.scale_max * area + slack);
        double ratio = (double)cw / (double)ch;
        assert_true(ratio >= (r.ratio_min * (double)ch - 1.0) / (double)ch &&
                    ratio <= (r.ratio_max * (double)ch + 1.0) / (double)ch);
        sum_scale += a / area;
        sum_log_ratio += log(ratio);
        if (ch < h) sum_top += (double)top / (double)(h - ch);
        below_mid += a / area < 0.4;
    }
    double mean_scale = sum_scale / (double)n;
    printf("crop: mean scale %.4f (expected 0.4), mean log ratio %.4f, mean top %.4f, "
           "below 0.4 %.4f\n",
           mean_scale, sum_log_ratio / (double)n, sum_top / (double)n,
           (double)below_mid / (double)n);
    assert_true(fabs(mean_scale - 0.4) < 0.02 * 0.4);
    assert_true(fabs(sum_log_ratio / (double)n) < 0.01);
    assert_true(fabs(sum_top / (double)n - 0.5) < 0.02);
    assert_true(fabs((double)below_mid / (double)n - 0.5) < 0.03);
}

/* No attempt fits a 4 x 64 strip with ratio 1 and scale >= 0.9: torchvision's fallback, the
 * central crop clamped to the ratio range. */
static void test_crop_fallback(void **state)
{
    (void)state;
    struct ssl_aug_recipe r = identity_recipe(4);
    r.scale_min = 0.9;
    for (uint32_t t = 0; t < 10; t++) {
        struct ssl_rng rng;
        ssl_rng_init(&rng, test_seed, SSL_RNG_AUGMENT, 0, t, 0);
        int64_t top, left, ch, cw;
        ssl_augment_sample_crop(&rng, 4, 64, &r, &top, &left, &ch, &cw);
        assert_true(top == 0 && left == 30 && ch == 4 && cw == 4);
        ssl_rng_init(&rng, test_seed, SSL_RNG_AUGMENT, 0, t, 0);
        ssl_augment_sample_crop(&rng, 64, 4, &r, &top, &left, &ch, &cw);
        assert_true(top == 30 && left == 0 && ch == 4 && cw == 4);
    }
}

int main(void)
{
    const char *env = getenv("SSL_TEST_SEED");
    if (env) test_seed = strtoull(env, NULL, 10);
    printf("test_augment: seed %llu (SSL_TEST_SEED)\n", (unsigned long long)test_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_flip),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_crop_window),
        cmocka_unit_test(test_jitter_zero_ranges),
        cmocka_unit_test(test_jitter_ops),
        cmocka_unit_test(test_hsv),
        cmocka_unit_test(test_hue_op),
        cmocka_unit_test(test_grayscale),
        cmocka_unit_test(test_blur_kernel),
        cmocka_unit_test(test_blur_constant),
        cmocka_unit_test(test_blur_reference),
        cmocka_unit_test(test_solarize),
        cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_batch_determinism),
        cmocka_unit_test(test_keys_differ),
        cmocka_unit_test(test_channel_alignment),
        cmocka_unit_test(test_crop_distribution),
        cmocka_unit_test(test_crop_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
