/* cmd_data.c: convert, the augmentation grid, and augmentation throughput. */
#include "cmd_data.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "augment.h"
#include "data_config.h"
#include "dataset.h"
#include "png_grid.h"
#include "rng.h"
#include "sampler.h"

enum ssl_status ssl_cmd_convert(const struct ssl_config *cfg, const struct ssl_comm *comm,
                                const char *out, const struct ssl_logger *lg, struct ssl_error *err)
{
    if (comm->rank != 0) return SSL_OK;
    struct ssl_dataset_open_args args;
    struct ssl_dataset *train = NULL, *test = NULL;
    ssl_dataset_args_from_config(&args, cfg, SSL_SPLIT_TRAIN, MPI_COMM_SELF);
    enum ssl_status rc = ssl_dataset_open(&train, &args, err);
    if (!rc) {
        args.split = SSL_SPLIT_TEST;
        struct ssl_error test_err = {0};
        /* an HDF5 source may have no test split; the other formats always do */
        if (ssl_dataset_open(&test, &args, &test_err) != SSL_OK) {
            if (args.kind != SSL_DATASET_HDF5) rc = ssl_error_set(err, test_err.code, "%s", test_err.msg);
            test = NULL;
        }
    }
    if (!rc) rc = ssl_dataset_write_hdf5(out, train, test, err);
    if (!rc) {
        const struct ssl_dataset_info *ti = ssl_dataset_info(train);
        ssl_log(lg, SSL_LOG_INFO, "convert: %s -> %s: %lld train%s images of %lldx%lldx%lld, %lld classes",
                ti->source, out, (long long)ti->count, test ? " + test" : "", (long long)ti->channels,
                (long long)ti->height, (long long)ti->width, (long long)ti->n_classes);
    }
    if (test) ssl_dataset_close(test);
    if (train) ssl_dataset_close(train);
    return rc;
}

/* Undo the normalisation so a view can be looked at. */
static void denormalise(float *img, int64_t c, int64_t hw, const struct ssl_aug_recipe *r)
{
    for (int64_t k = 0; k < c; k++)
        for (int64_t i = 0; i < hw; i++)
            img[k * hw + i] = (float)((double)img[k * hw + i] * r->std[k] + r->mean[k]);
}

struct grid_job {
    struct ssl_dataset *ds;
    struct ssl_aug_recipe recipes[SSL_MAX_VIEWS];
    int n_views;
    int64_t cell, count;
    uint8_t *images;
    float *view, *scratch;
};

static void grid_fill(struct ssl_png_grid *g, const struct grid_job *j, const int64_t *indices,
                      uint64_t seed)
{
    const struct ssl_dataset_info *di = ssl_dataset_info(j->ds);
    int64_t c = di->channels, h = di->height, w = di->width;
    for (int64_t s = 0; s < j->count; s++) {
        const uint8_t *img = j->images + s * c * h * w;
        for (int64_t i = 0; i < c * h * w; i++) j->view[i] = (float)img[i] / 255.0f;
        ssl_png_grid_put(g, s, 0, j->view, c, h, w);
        for (int v = 0; v < j->n_views; v++) {
            const struct ssl_aug_recipe *r = &j->recipes[v];
            ssl_augment_view(j->view, img, c, h, w, r, seed, 0, (uint32_t)indices[s], (uint32_t)v, j->scratch);
            denormalise(j->view, c, r->out_size * r->out_size, r);
            ssl_png_grid_put(g, s, 1 + v, j->view, c, r->out_size, r->out_size);
        }
    }
}

static enum ssl_status grid_prepare(struct grid_job *j, const struct ssl_config *cfg,
                                    enum ssl_dataset_kind kind, struct ssl_error *err)
{
    const struct ssl_dataset_info *di = ssl_dataset_info(j->ds);
    enum ssl_status rc = ssl_aug_recipes_from_config(j->recipes, &j->n_views, cfg, di, kind, err);
    if (rc) return rc;
    j->cell = di->height > di->width ? di->height : di->width;
    int64_t scratch = 0;
    for (int v = 0; v < j->n_views; v++) {
        if (j->recipes[v].out_size > j->cell) j->cell = j->recipes[v].out_size;
        int64_t s = ssl_augment_scratch_elems(di->channels, di->height, di->width, &j->recipes[v]);
        if (s > scratch) scratch = s;
    }
    j->images = malloc((size_t)(j->count * di->channels * di->height * di->width));
    j->view = malloc((size_t)(di->channels * j->cell * j->cell) * sizeof(float));
    j->scratch = malloc((size_t)(scratch + 1) * sizeof(float));
    if (!j->images || !j->view || !j->scratch) return ssl_error_set(err, SSL_E_OTHER, "out of memory");
    return SSL_OK;
}

enum ssl_status ssl_cmd_augment(const struct ssl_config *cfg, const struct ssl_comm *comm,
                                const char *out, int64_t count, const struct ssl_logger *lg,
                                struct ssl_error *err)
{
    if (comm->rank != 0) return SSL_OK;
    struct ssl_dataset_open_args args;
    ssl_dataset_args_from_config(&args, cfg, SSL_SPLIT_TRAIN, MPI_COMM_SELF);
    struct grid_job j = {.count = count};
    struct ssl_sampler sampler = {0};
    struct ssl_png_grid g = {0};
    uint64_t seed = (uint64_t)ssl_config_int(cfg, "run.seed");
    enum ssl_status rc = ssl_dataset_open(&j.ds, &args, err);
    if (!rc && count > ssl_dataset_info(j.ds)->count)
        rc = ssl_error_set(err, SSL_E_USAGE, "--count %lld: %s has only %lld samples", (long long)count,
                           ssl_dataset_info(j.ds)->source, (long long)ssl_dataset_info(j.ds)->count);
    if (!rc) rc = ssl_sampler_init(&sampler, ssl_dataset_info(j.ds)->count, count, 0, 1, seed, err);
    if (!rc) rc = grid_prepare(&j, cfg, args.kind, err);
    if (!rc) {
        ssl_sampler_set_epoch(&sampler, 0); /* the samples of the run's first batch */
        rc = ssl_dataset_read(j.ds, ssl_sampler_local(&sampler, 0), count, j.images, NULL, err);
    }
    if (!rc) rc = ssl_png_grid_init(&g, count, 1 + j.n_views, j.cell, j.cell >= 64 ? 2 : 4, err);
    if (!rc) {
        grid_fill(&g, &j, ssl_sampler_local(&sampler, 0), seed);
        rc = ssl_png_grid_write(&g, out, err);
    }
    if (!rc)
        ssl_log(lg, SSL_LOG_INFO, "augment: %s: %lld samples (rows): original, then %d views (epoch 0)",
                out, (long long)count, j.n_views);
    ssl_png_grid_free(&g);
    ssl_sampler_free(&sampler);
    free(j.images);
    free(j.view);
    free(j.scratch);
    if (j.ds) ssl_dataset_close(j.ds);
    return rc;
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum ssl_status ssl_bench_augment(const struct ssl_config *cfg, double *per_core, struct ssl_error *err)
{
    int64_t c = ssl_config_int(cfg, "model.in_channels"), s = ssl_config_int(cfg, "model.image_size");
    struct ssl_dataset_info info = {.count = 1, .channels = c, .height = s, .width = s, .n_classes = 1};
    struct ssl_aug_recipe recipes[SSL_MAX_VIEWS];
    int n_views = 0;
    enum ssl_status rc = ssl_aug_recipes_from_config(recipes, &n_views, cfg, &info, SSL_DATASET_HDF5, err);
    if (rc) return rc;
    enum { N = 512 };
    int64_t out_max = 0, scratch = 0;
    for (int v = 0; v < n_views; v++) {
        if (recipes[v].out_size > out_max) out_max = recipes[v].out_size;
        int64_t e = ssl_augment_scratch_elems(c, s, s, &recipes[v]);
        if (e > scratch) scratch = e;
    }
    uint8_t *images = malloc((size_t)(N * c * s * s));
    float *out = malloc((size_t)(N * c * out_max * out_max) * sizeof(float));
    float *work = malloc((size_t)(scratch + 1) * sizeof(float));
    int64_t *indices = malloc(N * sizeof(int64_t));
    if (!images || !out || !work || !indices) rc = ssl_error_set(err, SSL_E_OTHER, "out of memory");
    if (!rc) {
        struct ssl_rng rng;
        ssl_rng_init(&rng, 1, SSL_RNG_BENCH, 7, 0, 0);
        for (int64_t i = 0; i < N * c * s * s; i++) images[i] = (uint8_t)ssl_rng_u32(&rng);
        for (int64_t i = 0; i < N; i++) indices[i] = i;
        int threads = omp_get_max_threads();
        omp_set_num_threads(1); /* per core */
        double t0 = seconds();
        int64_t done = 0;
        for (uint32_t epoch = 0; seconds() - t0 < 1.0 || epoch < 2; epoch++)
            for (int v = 0; v < n_views; v++, done += N)
                ssl_augment_batch(out, images, indices, N, c, s, s, &recipes[v], 1, epoch, (uint32_t)v, work);
        *per_core = (double)done / (seconds() - t0);
        omp_set_num_threads(threads);
    }
    free(images);
    free(out);
    free(work);
    free(indices);
    return rc;
}
