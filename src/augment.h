/* augment.h: the SSL augmentations, one view of one image at a time, keyed randomness.
 *
 * A view is: random resized crop (scale and ratio ranges, bilinear, to out_size x out_size),
 * horizontal flip, color jitter (brightness, contrast, saturation, hue, in a random order as
 * torchvision's ColorJitter), random grayscale, Gaussian blur (sigma range), solarization,
 * then normalisation by per-channel mean/std. Each op has its probability. Single-channel
 * images skip the colour-only ops (saturation, hue, grayscale) — they still draw their random
 * numbers, so a recipe's stream does not depend on the channel count.
 *
 * Randomness: a view draws only from the stream (seed, SSL_RNG_AUGMENT, epoch, sample index,
 * view), so the views of a sample are identical whatever the rank count, the batch slicing,
 * the order of processing and the thread count. */
#ifndef SSL_AUGMENT_H
#define SSL_AUGMENT_H

#include <stdint.h>

struct ssl_aug_recipe {
    int64_t out_size;                   /* output height = width */
    double scale_min, scale_max;        /* crop area as a fraction of the image */
    double ratio_min, ratio_max;        /* crop aspect ratio (w/h), sampled log-uniformly */
    double flip_p;
    double jitter_p;                    /* probability of applying color jitter at all */
    double brightness, contrast, saturation, hue; /* torchvision's ranges: factor in
                                                     [max(0,1-b), 1+b]; hue shift in [-h, h] */
    double gray_p;
    double blur_p, blur_sigma_min, blur_sigma_max; /* kernel size: see augment.c */
    double solarize_p, solarize_threshold;         /* pixels >= threshold (in [0,1]) invert */
    double mean[3], std[3];             /* normalisation of the [0,1] image per channel */
};

/* Scratch floats ssl_augment_view needs for an input of (c, h, w) and the recipe's output. */
int64_t ssl_augment_scratch_elems(int64_t c, int64_t h, int64_t w, const struct ssl_aug_recipe *r);

/* out (c, out_size, out_size) float, normalised; img (c, h, w) uint8. */
void ssl_augment_view(float *out, const uint8_t *img, int64_t c, int64_t h, int64_t w,
                      const struct ssl_aug_recipe *r, uint64_t seed, uint32_t epoch,
                      uint32_t sample_index, uint32_t view, float *scratch);

/* A batch of one view: out (n, c, out, out) NCHW from images (n, c, h, w) whose dataset
 * indices are `indices`; OpenMP over the images, results independent of the thread count.
 * scratch: n_threads * ssl_augment_scratch_elems floats (n_threads = omp_get_max_threads()). */
void ssl_augment_batch(float *out, const uint8_t *images, const int64_t *indices, int64_t n,
                       int64_t c, int64_t h, int64_t w, const struct ssl_aug_recipe *r,
                       uint64_t seed, uint32_t epoch, uint32_t view, float *scratch);

#endif
