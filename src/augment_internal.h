/* augment_internal.h: the pieces of augment.c exposed to its tests (tests/test_augment.c) and
 * nothing else. A view is computed in two steps: its random parameters are sampled from the
 * view's stream (ssl_augment_sample_params, a fixed number of draws in a fixed order), then
 * applied deterministically (ssl_augment_apply). Tests build parameters by hand to check one op
 * at a time. */
#ifndef SSL_AUGMENT_INTERNAL_H
#define SSL_AUGMENT_INTERNAL_H

#include <stdint.h>

#include "augment.h"
#include "rng.h"

enum ssl_aug_jitter_op {
    SSL_AUG_JITTER_BRIGHTNESS = 0,
    SSL_AUG_JITTER_CONTRAST = 1,
    SSL_AUG_JITTER_SATURATION = 2,
    SSL_AUG_JITTER_HUE = 3,
};

/* The outcome of every random choice of one view. */
struct ssl_aug_params {
    int64_t crop_top, crop_left, crop_h, crop_w; /* in input pixels */
    int flip;
    int jitter;                 /* apply color jitter at all */
    int jitter_order[4];        /* a permutation of enum ssl_aug_jitter_op */
    int jitter_on[4];           /* op enabled: its recipe range is non-zero (torchvision None) */
    float brightness, contrast, saturation, hue; /* factors; hue shift in turns */
    int gray;
    int blur;
    float blur_sigma;
    int solarize;
};

/* RandomResizedCrop.get_params on an (h, w) image: always draws 10 attempts (4 numbers each)
 * so the stream position afterwards does not depend on which attempt was accepted. */
void ssl_augment_sample_crop(struct ssl_rng *rng, int64_t h, int64_t w,
                             const struct ssl_aug_recipe *r, int64_t *top, int64_t *left,
                             int64_t *crop_h, int64_t *crop_w);

/* All parameters of one view, in the fixed draw order documented in augment.c. */
void ssl_augment_sample_params(struct ssl_aug_params *p, struct ssl_rng *rng, int64_t h,
                               int64_t w, const struct ssl_aug_recipe *r);

/* out (c, out_size, out_size) from img (c, h, w) with the given parameters; r supplies
 * out_size, the solarize threshold and the normalisation. */
void ssl_augment_apply(float *out, const uint8_t *img, int64_t c, int64_t h, int64_t w,
                       const struct ssl_aug_recipe *r, const struct ssl_aug_params *p,
                       float *scratch);

/* The blur kernel for sigma on an out_size image: writes 2*radius+1 weights summing to 1 into
 * k (at least out_size floats) and returns the radius. */
int64_t ssl_augment_blur_kernel(float *k, float sigma, int64_t out_size);

/* torchvision's _rgb2hsv / _hsv2rgb on one pixel; h in [0, 1) turns. */
void ssl_augment_rgb_to_hsv(float r, float g, float b, float *h, float *s, float *v);
void ssl_augment_hsv_to_rgb(float h, float s, float v, float *r, float *g, float *b);

#endif
