/* data_config.c: dataset arguments and augmentation recipes from the config table. */
#include "data_config.h"

#include <math.h>
#include <string.h>

void ssl_dataset_args_from_config(struct ssl_dataset_open_args *args, const struct ssl_config *cfg,
                                  enum ssl_split split, MPI_Comm comm)
{
    int kind = ssl_dataset_kind_from_name(ssl_config_str(cfg, "data.dataset"));
    SSL_CHECKF(kind >= 0, "data.dataset '%s' has no reader", ssl_config_str(cfg, "data.dataset"));
    *args = (struct ssl_dataset_open_args){
        .kind = (enum ssl_dataset_kind)kind,
        .path = ssl_config_str(cfg, "data.path"),
        .split = split,
        .cifar100_labels = strcmp(ssl_config_str(cfg, "data.cifar100_labels"), "coarse") == 0
                               ? SSL_CIFAR100_COARSE
                               : SSL_CIFAR100_FINE,
        .comm = comm,
    };
}

/* The usual per-channel statistics of each dataset's training images on [0, 1]. */
static void dataset_stats(enum ssl_dataset_kind kind, double mean[3], double std[3])
{
    static const double fmnist[2][3] = {{0.2860, 0.2860, 0.2860}, {0.3530, 0.3530, 0.3530}};
    static const double cifar10[2][3] = {{0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}};
    static const double cifar100[2][3] = {{0.5071, 0.4865, 0.4409}, {0.2673, 0.2564, 0.2762}};
    static const double generic[2][3] = {{0.5, 0.5, 0.5}, {0.25, 0.25, 0.25}};
    const double(*s)[3] = kind == SSL_DATASET_FASHION_MNIST ? fmnist
                          : kind == SSL_DATASET_CIFAR10     ? cifar10
                          : kind == SSL_DATASET_CIFAR100    ? cifar100
                                                            : generic;
    memcpy(mean, s[0], sizeof s[0]);
    memcpy(std, s[1], sizeof s[1]);
}

static enum ssl_status normalisation(struct ssl_aug_recipe *r, const struct ssl_config *cfg,
                                     int64_t channels, enum ssl_dataset_kind kind,
                                     struct ssl_error *err)
{
    const char *mode = ssl_config_str(cfg, "aug.normalize");
    if (strcmp(mode, "auto") == 0) {
        dataset_stats(kind, r->mean, r->std);
        return SSL_OK;
    }
    for (int c = 0; c < 3; c++) {
        bool custom = strcmp(mode, "custom") == 0;
        r->mean[c] = custom ? ssl_config_float_at(cfg, "aug.mean", c) : 0.0;
        r->std[c] = custom ? ssl_config_float_at(cfg, "aug.std", c) : 1.0;
    }
    for (int k = 0; k < 2; k++) {
        const char *key = k ? "aug.std" : "aug.mean";
        int n = ssl_config_list_length(cfg, key);
        if (n != 1 && n != channels)
            return ssl_error_set(err, SSL_E_USAGE, "%s: %d values for %lld channels (give 1 or %lld)",
                                 key, n, (long long)channels, (long long)channels);
    }
    return SSL_OK;
}

static enum ssl_status check_lengths(const struct ssl_config *cfg, int n_views, struct ssl_error *err)
{
    for (int i = 0; i < ssl_config_n_keys; i++) {
        const struct ssl_key_spec *k = &ssl_config_keys[i];
        if (k->type != SSL_KEY_FLOAT_LIST || strncmp(k->key, "aug.", 4) != 0) continue;
        if (strcmp(k->key, "aug.mean") == 0 || strcmp(k->key, "aug.std") == 0) continue;
        int n = ssl_config_list_length(cfg, k->key);
        if (n > n_views)
            return ssl_error_set(err, SSL_E_USAGE, "%s: %d values for aug.views=%d", k->key, n, n_views);
    }
    return SSL_OK;
}

static enum ssl_status one_recipe(struct ssl_aug_recipe *r, const struct ssl_config *cfg, int v,
                                  const struct ssl_dataset_info *info, struct ssl_error *err)
{
    double size = ssl_config_float_at(cfg, "aug.size", v);
    if (size != floor(size))
        return ssl_error_set(err, SSL_E_USAGE, "aug.size: %g is not a whole number of pixels", size);
    r->out_size = size > 0 ? (int64_t)size : info->height;
    r->scale_min = ssl_config_float_at(cfg, "aug.crop.scale_min", v);
    r->scale_max = ssl_config_float_at(cfg, "aug.crop.scale_max", v);
    r->ratio_min = ssl_config_float_at(cfg, "aug.crop.ratio_min", v);
    r->ratio_max = ssl_config_float_at(cfg, "aug.crop.ratio_max", v);
    r->flip_p = ssl_config_float_at(cfg, "aug.flip_p", v);
    r->jitter_p = ssl_config_float_at(cfg, "aug.jitter.p", v);
    r->brightness = ssl_config_float_at(cfg, "aug.jitter.brightness", v);
    r->contrast = ssl_config_float_at(cfg, "aug.jitter.contrast", v);
    r->saturation = ssl_config_float_at(cfg, "aug.jitter.saturation", v);
    r->hue = ssl_config_float_at(cfg, "aug.jitter.hue", v);
    r->gray_p = ssl_config_float_at(cfg, "aug.gray_p", v);
    r->blur_p = ssl_config_float_at(cfg, "aug.blur.p", v);
    r->blur_sigma_min = ssl_config_float_at(cfg, "aug.blur.sigma_min", v);
    r->blur_sigma_max = ssl_config_float_at(cfg, "aug.blur.sigma_max", v);
    r->solarize_p = ssl_config_float_at(cfg, "aug.solarize.p", v);
    r->solarize_threshold = ssl_config_float_at(cfg, "aug.solarize.threshold", v);
    const char *bad = r->scale_min > r->scale_max           ? "aug.crop.scale_min > aug.crop.scale_max"
                      : r->ratio_min > r->ratio_max         ? "aug.crop.ratio_min > aug.crop.ratio_max"
                      : r->blur_sigma_min > r->blur_sigma_max ? "aug.blur.sigma_min > aug.blur.sigma_max"
                      : r->scale_max <= 0                   ? "aug.crop.scale_max must be > 0"
                                                            : NULL;
    if (bad) return ssl_error_set(err, SSL_E_USAGE, "view %d: %s", v, bad);
    return SSL_OK;
}

enum ssl_status ssl_aug_recipes_from_config(struct ssl_aug_recipe *recipes, int *n_views,
                                            const struct ssl_config *cfg,
                                            const struct ssl_dataset_info *info,
                                            enum ssl_dataset_kind kind, struct ssl_error *err)
{
    int n = (int)ssl_config_int(cfg, "aug.views");
    enum ssl_status rc = check_lengths(cfg, n, err);
    for (int v = 0; v < n && !rc; v++) {
        memset(&recipes[v], 0, sizeof recipes[v]);
        rc = one_recipe(&recipes[v], cfg, v, info, err);
        if (!rc) rc = normalisation(&recipes[v], cfg, info->channels, kind, err);
    }
    *n_views = n;
    return rc;
}
