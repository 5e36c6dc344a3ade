/* augment.c: the SSL augmentations of augment.h, with torchvision's semantics.
 *
 * Per view: RandomResizedCrop (bilinear, half-pixel centres, align_corners=False, no
 * antialias) -> horizontal flip -> ColorJitter inside RandomApply(p = jitter_p) -> random
 * grayscale -> Gaussian blur -> solarize -> normalise. The image is taken to [0, 1] by x/255
 * (interpolation runs on the raw 0..255 values and the result is scaled once, which is the same
 * linear map up to rounding). An op with probability p is applied when its uniform u < p.
 *
 * Draw order of a view's stream (seed, SSL_RNG_AUGMENT, epoch, sample index, view); every
 * number is drawn whatever the outcomes, the channel count and the recipe, so the position of
 * each op's draws is fixed:
 *   crop      10 attempts x (scale u, log-ratio u, top below(), left below())
 *   flip      u
 *   jitter    apply u; permutation: below(4), below(3), below(2) (Fisher-Yates from the end);
 *             brightness u, contrast u, saturation u, hue u
 *   grayscale u
 *   blur      apply u, sigma u
 *   solarize  u
 * ssl_rng_below draws two words and rejects with probability < n / 2^64 only.
 *
 * Blur kernel size rule: radius = ceil(3 sigma), clamped to (out_size - 1) / 2 so the kernel
 * (2 radius + 1 taps) is never larger than the image and reflect padding stays one reflection
 * deep. Taps exp(-x^2 / (2 sigma^2)) at integer offsets, normalised to sum 1 (torchvision's
 * _get_gaussian_kernel1d), applied separably (rows then columns) with reflect padding
 * (index -1 -> 1, n -> n - 2) as torchvision's GaussianBlur. For 224-pixel images and sigma
 * <= 2 this keeps 13 of BYOL's 23 taps; the dropped tails weigh < 0.3 %. For 32-pixel images it
 * is a true Gaussian of the sampled sigma (SimCLR's 0.1 * size rule would give 3 taps).
 *
 * Colour ops follow torchvision.transforms.functional on float tensors: brightness
 * clamp(b x), contrast clamp(c x + (1 - c) mean(gray)), saturation clamp(s x + (1 - s) gray),
 * hue via RGB -> HSV -> RGB with h = (h + shift) mod 1; gray = 0.299 R + 0.587 G + 0.114 B.
 * A jitter op whose recipe range is 0 is skipped (torchvision stores None), so such a recipe
 * is bitwise the identity. Single-channel images skip saturation, hue and grayscale.
 *
 * No allocation: the working image is `out` itself; scratch holds one blur plane and the
 * kernel. */
#include "augment.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

#include "augment_internal.h"
#include "check.h"
#include "rng.h"

#define SSL_AUG_CROP_ATTEMPTS 10

static const float ssl_aug_gray_w[3] = {0.299f, 0.587f, 0.114f};

static float clamp01(float x)
{
    return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
}

/* ------------------------------------------------------------------------------------------
 * Sampling
 * ------------------------------------------------------------------------------------------ */

void ssl_augment_sample_crop(struct ssl_rng *rng, int64_t h, int64_t w,
                             const struct ssl_aug_recipe *r, int64_t *top, int64_t *left,
                             int64_t *crop_h, int64_t *crop_w)
{
    double area = (double)h * (double)w;
    double log_rmin = log(r->ratio_min), log_rmax = log(r->ratio_max);
    int found = 0;
    for (int attempt = 0; attempt < SSL_AUG_CROP_ATTEMPTS; attempt++) {
        double scale = r->scale_min + (r->scale_max - r->scale_min) * ssl_rng_uniform(rng);
        double ratio = exp(log_rmin + (log_rmax - log_rmin) * ssl_rng_uniform(rng));
        double target = area * scale;
        /* Python's round(): half to even, which nearbyint does in the default mode. */
        int64_t cw = (int64_t)nearbyint(sqrt(target * ratio));
        int64_t ch = (int64_t)nearbyint(sqrt(target / ratio));
        int ok = !found && cw > 0 && cw <= w && ch > 0 && ch <= h;
        int64_t i = (int64_t)ssl_rng_below(rng, ok ? (uint64_t)(h - ch + 1) : 1u);
        int64_t j = (int64_t)ssl_rng_below(rng, ok ? (uint64_t)(w - cw + 1) : 1u);
        if (ok) {
            *top = i;
            *left = j;
            *crop_h = ch;
            *crop_w = cw;
            found = 1;
        }
    }
    if (found) return;
    /* torchvision's fallback: the central crop of the whole image clamped to the ratio range. */
    double in_ratio = (double)w / (double)h;
    int64_t cw = w, ch = h;
    if (in_ratio < r->ratio_min) {
        ch = (int64_t)nearbyint((double)cw / r->ratio_min);
    } else if (in_ratio > r->ratio_max) {
        cw = (int64_t)nearbyint((double)ch * r->ratio_max);
    }
    if (ch < 1) ch = 1;
    if (cw < 1) cw = 1;
    if (ch > h) ch = h;
    if (cw > w) cw = w;
    *top = (h - ch) / 2;
    *left = (w - cw) / 2;
    *crop_h = ch;
    *crop_w = cw;
}

static float factor_range(struct ssl_rng *rng, double amount)
{
    double lo = 1.0 - amount > 0.0 ? 1.0 - amount : 0.0, hi = 1.0 + amount;
    return (float)(lo + (hi - lo) * ssl_rng_uniform(rng));
}

void ssl_augment_sample_params(struct ssl_aug_params *p, struct ssl_rng *rng, int64_t h,
                               int64_t w, const struct ssl_aug_recipe *r)
{
    *p = (struct ssl_aug_params){0};
    ssl_augment_sample_crop(rng, h, w, r, &p->crop_top, &p->crop_left, &p->crop_h, &p->crop_w);
    p->flip = ssl_rng_uniform(rng) < r->flip_p;

    p->jitter = ssl_rng_uniform(rng) < r->jitter_p;
    for (int k = 0; k < 4; k++) p->jitter_order[k] = k;
    for (int k = 3; k > 0; k--) {
        int j = (int)ssl_rng_below(rng, (uint64_t)(k + 1));
        int t = p->jitter_order[k];
        p->jitter_order[k] = p->jitter_order[j];
        p->jitter_order[j] = t;
    }
    p->brightness = factor_range(rng, r->brightness);
    p->contrast = factor_range(rng, r->contrast);
    p->saturation = factor_range(rng, r->saturation);
    p->hue = (float)(-r->hue + 2.0 * r->hue * ssl_rng_uniform(rng));
    p->jitter_on[SSL_AUG_JITTER_BRIGHTNESS] = r->brightness != 0.0;
    p->jitter_on[SSL_AUG_JITTER_CONTRAST] = r->contrast != 0.0;
    p->jitter_on[SSL_AUG_JITTER_SATURATION] = r->saturation != 0.0;
    p->jitter_on[SSL_AUG_JITTER_HUE] = r->hue != 0.0;

    p->gray = ssl_rng_uniform(rng) < r->gray_p;
    p->blur = ssl_rng_uniform(rng) < r->blur_p;
    p->blur_sigma = (float)(r->blur_sigma_min +
                            (r->blur_sigma_max - r->blur_sigma_min) * ssl_rng_uniform(rng));
    p->solarize = ssl_rng_uniform(rng) < r->solarize_p;
}

/* ------------------------------------------------------------------------------------------
 * The ops, on out (c, o, o) in place
 * ------------------------------------------------------------------------------------------ */

/* Bilinear resize of the crop to (c, o, o), PyTorch's upsample_bilinear2d with
 * align_corners=False: source = (dst + 0.5) * in / out - 0.5, clamped at 0. */
static void crop_resize(float *out, const uint8_t *img, int64_t c, int64_t h, int64_t w,
                        int64_t o, const struct ssl_aug_params *p)
{
    int64_t plane = o * o, ch = p->crop_h, cw = p->crop_w;
    float sy = (float)ch / (float)o, sx = (float)cw / (float)o;
    const float to01 = 1.0f / 255.0f;
    for (int64_t oy = 0; oy < o; oy++) {
        float fy = ((float)oy + 0.5f) * sy - 0.5f;
        if (fy < 0.0f) fy = 0.0f;
        int64_t y0 = (int64_t)fy, y1 = y0 + (y0 < ch - 1 ? 1 : 0);
        float ly = fy - (float)y0, hy = 1.0f - ly;
        for (int64_t ox = 0; ox < o; ox++) {
            float fx = ((float)ox + 0.5f) * sx - 0.5f;
            if (fx < 0.0f) fx = 0.0f;
            int64_t x0 = (int64_t)fx, x1 = x0 + (x0 < cw - 1 ? 1 : 0);
            float lx = fx - (float)x0, hx = 1.0f - lx;
            for (int64_t k = 0; k < c; k++) {
                const uint8_t *base = img + k * h * w + p->crop_top * w + p->crop_left;
                const uint8_t *r0 = base + y0 * w, *r1 = base + y1 * w;
                float v = hy * (hx * (float)r0[x0] + lx * (float)r0[x1]) +
                          ly * (hx * (float)r1[x0] + lx * (float)r1[x1]);
                out[k * plane + oy * o + ox] = v * to01;
            }
        }
    }
}

static void flip_rows(float *x, int64_t c, int64_t o)
{
    for (int64_t row = 0; row < c * o; row++) {
        float *a = x + row * o;
        for (int64_t i = 0, j = o - 1; i < j; i++, j--) {
            float t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
    }
}

static void brightness(float *x, int64_t n, float b)
{
    for (int64_t i = 0; i < n; i++) x[i] = clamp01(b * x[i]);
}

static void contrast(float *x, int64_t c, int64_t plane, float f)
{
    double sum = 0.0;
    if (c == 3) {
        for (int64_t i = 0; i < plane; i++)
            sum += (double)(ssl_aug_gray_w[0] * x[i] + ssl_aug_gray_w[1] * x[plane + i] +
                            ssl_aug_gray_w[2] * x[2 * plane + i]);
    } else {
        for (int64_t i = 0; i < plane; i++) sum += (double)x[i];
    }
    float mean = (float)(sum / (double)plane), m = (1.0f - f) * mean;
    for (int64_t i = 0; i < c * plane; i++) x[i] = clamp01(f * x[i] + m);
}

static void saturation(float *x, int64_t plane, float f)
{
    float *r = x, *g = x + plane, *b = x + 2 * plane;
    for (int64_t i = 0; i < plane; i++) {
        float gray = ssl_aug_gray_w[0] * r[i] + ssl_aug_gray_w[1] * g[i] +
                     ssl_aug_gray_w[2] * b[i];
        float m = (1.0f - f) * gray;
        r[i] = clamp01(f * r[i] + m);
        g[i] = clamp01(f * g[i] + m);
        b[i] = clamp01(f * b[i] + m);
    }
}

/* torchvision's _rgb2hsv / _hsv2rgb for one pixel, written with selects instead of branches so
 * the hue loop vectorises. */
static inline void rgb_to_hsv_px(float r, float g, float b, float *h, float *s, float *v)
{
    /* plain compares, not fmaxf (whose NaN rules block vectorisation); inputs are finite */
    float mgb = g > b ? g : b, ngb = g < b ? g : b;
    float maxc = r > mgb ? r : mgb, minc = r < ngb ? r : ngb;
    int eq = maxc == minc;
    float cr = maxc - minc, div = eq ? 1.0f : cr;
    float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
    /* torchvision's masked sum hr + hg + hb: exactly one mask is 1 */
    float mr = (float)(maxc == r), mg = (float)((maxc == g) & (maxc != r)),
          mb = (float)((maxc != g) & (maxc != r));
    float hh = mr * (bc - gc) + mg * (2.0f + rc - bc) + mb * (4.0f + gc - rc);
    /* fmod(hh / 6 + 1, 1), written for turns in [5/6, 11/6] without floorf (which does not
     * vectorise); turns - 1 is exact there */
    float turns = hh / 6.0f + 1.0f;
    *h = turns >= 1.0f ? turns - 1.0f : turns;
    *s = cr / (eq ? 1.0f : maxc);
    *v = maxc;
}

static inline void hsv_to_rgb_px(float h, float s, float v, float *r, float *g, float *b)
{
    /* h in [0, 1]: truncation is floor; sector 6 (h = 1) is torchvision's i % 6 = 0 */
    float sector = (float)(int32_t)(h * 6.0f), f = h * 6.0f - sector;
    sector = sector >= 6.0f ? sector - 6.0f : sector;
    float p = clamp01(v * (1.0f - s)), q = clamp01(v * (1.0f - s * f)),
          t = clamp01(v * (1.0f - s * (1.0f - f)));
    /* r = [v q p p t v], g = [t v v q p p], b = [p p t v v q] by sector, as masked sums
     * (exactly one mask is 1, so each channel is one of v, q, p, t exactly) */
    float m0 = (float)(sector == 0.0f), m1 = (float)(sector == 1.0f),
          m2 = (float)(sector == 2.0f), m3 = (float)(sector == 3.0f),
          m4 = (float)(sector == 4.0f), m5 = (float)(sector == 5.0f);
    *r = (m0 + m5) * v + m1 * q + (m2 + m3) * p + m4 * t;
    *g = (m1 + m2) * v + m0 * t + m3 * q + (m4 + m5) * p;
    *b = (m3 + m4) * v + m2 * t + m5 * q + (m0 + m1) * p;
}

void ssl_augment_rgb_to_hsv(float r, float g, float b, float *h, float *s, float *v)
{
    rgb_to_hsv_px(r, g, b, h, s, v);
}

void ssl_augment_hsv_to_rgb(float h, float s, float v, float *r, float *g, float *b)
{
    hsv_to_rgb_px(h - floorf(h), s, v, r, g, b);
}

static void hue(float *x, int64_t plane, float shift)
{
    float *r = x, *g = x + plane, *b = x + 2 * plane;
    for (int64_t i = 0; i < plane; i++) {
        float hh, s, v, ro, go, bo;
        rgb_to_hsv_px(r[i], g[i], b[i], &hh, &s, &v);
        hh += shift; /* (h + shift) mod 1 for |shift| <= 0.5 (checked in ssl_augment_view) */
        hh = hh < 0.0f ? hh + 1.0f : (hh >= 1.0f ? hh - 1.0f : hh);
        hsv_to_rgb_px(hh, s, v, &ro, &go, &bo);
        r[i] = ro;
        g[i] = go;
        b[i] = bo;
    }
}

static void grayscale(float *x, int64_t plane)
{
    for (int64_t i = 0; i < plane; i++) {
        float gray = ssl_aug_gray_w[0] * x[i] + ssl_aug_gray_w[1] * x[plane + i] +
                     ssl_aug_gray_w[2] * x[2 * plane + i];
        x[i] = x[plane + i] = x[2 * plane + i] = gray;
    }
}

int64_t ssl_augment_blur_kernel(float *k, float sigma, int64_t out_size)
{
    int64_t radius = (int64_t)ceilf(3.0f * sigma), max_radius = (out_size - 1) / 2;
    if (radius > max_radius) radius = max_radius;
    if (radius < 0) radius = 0;
    float sum = 0.0f;
    for (int64_t j = -radius; j <= radius; j++) {
        float t = (float)j / sigma;
        k[j + radius] = expf(-0.5f * t * t);
        sum += k[j + radius];
    }
    for (int64_t j = 0; j <= 2 * radius; j++) k[j] /= sum;
    return radius;
}

static int64_t reflect(int64_t i, int64_t n)
{
    return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
}

/* One plane (o, o) in place through tmp (o, o): rows, then columns; reflect padding. */
static void blur_plane(float *x, float *tmp, const float *k, int64_t radius, int64_t o)
{
    int64_t taps = 2 * radius + 1;
    for (int64_t y = 0; y < o; y++) {
        const float *src = x + y * o;
        float *dst = tmp + y * o;
        for (int64_t i = 0; i < o; i++) dst[i] = 0.0f;
        for (int64_t j = 0; j < taps; j++) {
            float kj = k[j];
            int64_t off = j - radius;
            for (int64_t i = 0; i < radius; i++) dst[i] += kj * src[reflect(i + off, o)];
            for (int64_t i = radius; i < o - radius; i++) dst[i] += kj * src[i + off];
            for (int64_t i = o - radius; i < o; i++) dst[i] += kj * src[reflect(i + off, o)];
        }
    }
    for (int64_t y = 0; y < o; y++) {
        float *dst = x + y * o;
        for (int64_t i = 0; i < o; i++) dst[i] = 0.0f;
        for (int64_t j = 0; j < taps; j++) {
            float kj = k[j];
            const float *src = tmp + reflect(y + j - radius, o) * o;
            for (int64_t i = 0; i < o; i++) dst[i] += kj * src[i];
        }
    }
}

static void solarize(float *x, int64_t n, float threshold)
{
    for (int64_t i = 0; i < n; i++) x[i] = x[i] >= threshold ? 1.0f - x[i] : x[i];
}

void ssl_augment_apply(float *out, const uint8_t *img, int64_t c, int64_t h, int64_t w,
                       const struct ssl_aug_recipe *r, const struct ssl_aug_params *p,
                       float *scratch)
{
    int64_t o = r->out_size, plane = o * o, n = c * plane;
    crop_resize(out, img, c, h, w, o, p);
    if (p->flip) flip_rows(out, c, o);
    if (p->jitter) {
        for (int k = 0; k < 4; k++) {
            int op = p->jitter_order[k];
            if (!p->jitter_on[op]) continue;
            switch (op) {
            case SSL_AUG_JITTER_BRIGHTNESS: brightness(out, n, p->brightness); break;
            case SSL_AUG_JITTER_CONTRAST: contrast(out, c, plane, p->contrast); break;
            case SSL_AUG_JITTER_SATURATION:
                if (c == 3) saturation(out, plane, p->saturation);
                break;
            default:
                if (c == 3) hue(out, plane, p->hue);
                break;
            }
        }
    }
    if (p->gray && c == 3) grayscale(out, plane);
    if (p->blur) {
        float *tmp = scratch, *kernel = scratch + plane; /* (o, o), (o) */
        int64_t radius = ssl_augment_blur_kernel(kernel, p->blur_sigma, o);
        if (radius > 0)
            for (int64_t k = 0; k < c; k++) blur_plane(out + k * plane, tmp, kernel, radius, o);
    }
    if (p->solarize) solarize(out, n, (float)r->solarize_threshold);
    for (int64_t k = 0; k < c; k++) {
        float m = (float)r->mean[k], s = (float)r->std[k], *x = out + k * plane;
        for (int64_t i = 0; i < plane; i++) x[i] = (x[i] - m) / s;
    }
}

/* ------------------------------------------------------------------------------------------
 * Public entry points
 * ------------------------------------------------------------------------------------------ */

int64_t ssl_augment_scratch_elems(int64_t c, int64_t h, int64_t w, const struct ssl_aug_recipe *r)
{
    (void)c;
    (void)h;
    (void)w;
    return r->out_size * r->out_size + r->out_size; /* blur plane + kernel */
}

void ssl_augment_view(float *out, const uint8_t *img, int64_t c, int64_t h, int64_t w,
                      const struct ssl_aug_recipe *r, uint64_t seed, uint32_t epoch,
                      uint32_t sample_index, uint32_t view, float *scratch)
{
    SSL_CHECK((c == 1 || c == 3) && h > 0 && w > 0 && r->out_size > 0);
    SSL_CHECK(r->hue >= 0.0 && r->hue <= 0.5);
    struct ssl_rng rng;
    struct ssl_aug_params p;
    ssl_rng_init(&rng, seed, SSL_RNG_AUGMENT, epoch, sample_index, view);
    ssl_augment_sample_params(&p, &rng, h, w, r);
    ssl_augment_apply(out, img, c, h, w, r, &p, scratch);
}

void ssl_augment_batch(float *out, const uint8_t *images, const int64_t *indices, int64_t n,
                       int64_t c, int64_t h, int64_t w, const struct ssl_aug_recipe *r,
                       uint64_t seed, uint32_t epoch, uint32_t view, float *scratch)
{
    SSL_CHECK((c == 1 || c == 3) && h > 0 && w > 0 && r->out_size > 0 && n >= 0);
    for (int64_t i = 0; i < n; i++)
        SSL_CHECKF(indices[i] >= 0 && indices[i] <= UINT32_MAX,
                   "sample index %lld does not fit the augmentation stream",
                   (long long)indices[i]);
    int64_t per_thread = ssl_augment_scratch_elems(c, h, w, r);
    int64_t in_elems = c * h * w, out_elems = c * r->out_size * r->out_size;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float *s = scratch + (int64_t)omp_get_thread_num() * per_thread;
        ssl_augment_view(out + i * out_elems, images + i * in_elems, c, h, w, r, seed, epoch,
                         (uint32_t)indices[i], view, s);
    }
}
