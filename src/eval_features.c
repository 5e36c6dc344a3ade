/* eval_features.c: eval-mode features of dataset images (eval_features.h). */
#include "eval_features.h"

#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "rng.h"

struct ssl_aug_recipe ssl_plain_recipe(const struct ssl_aug_recipe *r)
{
    struct ssl_aug_recipe p = *r;
    /* a full-image crop at ratio 1 is the resize to out_size; every other op is off */
    p.scale_min = p.scale_max = 1.0;
    p.ratio_min = p.ratio_max = 1.0;
    p.flip_p = p.jitter_p = p.gray_p = p.blur_p = p.solarize_p = 0.0;
    return p;
}

void ssl_features_free(struct ssl_features *f)
{
    free(f->h);
    free(f->z);
    free(f->labels);
    free(f->index);
    memset(f, 0, sizeof *f);
}

static enum ssl_status features_alloc(struct ssl_features *f, int64_t n, int64_t dh, int64_t dz,
                                      struct ssl_error *err)
{
    size_t rows = n > 0 ? (size_t)n : 1;
    *f = (struct ssl_features){.n = n, .dh = dh, .dz = dz};
    f->h = malloc(rows * (size_t)dh * sizeof *f->h);
    f->z = malloc(rows * (size_t)dz * sizeof *f->z);
    f->labels = malloc(rows * sizeof *f->labels);
    f->index = malloc(rows * sizeof *f->index);
    if (!f->h || !f->z || !f->labels || !f->index)
        return ssl_error_set(err, SSL_E_OTHER, "out of memory for %lld feature rows", (long long)n);
    return SSL_OK;
}

/* Scratch of one chunk: images, the view, augmentation scratch for every thread. */
struct chunk {
    uint8_t *images;
    float *x;
    float *scratch;
    int64_t *idx, *labels;
};

static enum ssl_status chunk_alloc(struct chunk *c, int64_t b, const struct ssl_dataset_info *in,
                                   const struct ssl_aug_recipe *plain, struct ssl_error *err)
{
    int64_t img = in->channels * in->height * in->width;
    int64_t view = in->channels * plain->out_size * plain->out_size;
    int64_t scr = ssl_augment_scratch_elems(in->channels, in->height, in->width, plain) *
                  omp_get_max_threads();
    c->images = malloc((size_t)(b * img));
    c->x = malloc((size_t)(b * view) * sizeof *c->x);
    c->scratch = malloc((size_t)scr * sizeof *c->scratch);
    c->idx = malloc((size_t)b * sizeof *c->idx);
    c->labels = malloc((size_t)b * sizeof *c->labels);
    if (!c->images || !c->x || !c->scratch || !c->idx || !c->labels)
        return ssl_error_set(err, SSL_E_OTHER, "out of memory for the feature chunk");
    return SSL_OK;
}

static void chunk_free(struct chunk *c)
{
    free(c->images);
    free(c->x);
    free(c->scratch);
    free(c->idx);
    free(c->labels);
}

/* Rows [first, first + count) of the index list through the model into out. */
static enum ssl_status one_chunk(struct ssl_features *out, struct chunk *c, struct ssl_model *m,
                                 struct ssl_dataset *ds, const struct ssl_aug_recipe *plain,
                                 uint64_t seed, uint32_t view,
                                 const int64_t *indices, int64_t n, int64_t first, int64_t count,
                                 struct ssl_error *err)
{
    const struct ssl_dataset_info *in = ssl_dataset_info(ds);
    int64_t b = m->net.batch;
    /* the last chunk is padded with the list's first rows: BatchNorm rows are independent in
     * eval mode, and distinct rows keep a batch-statistics layer (Shuffled-DBN's whitening)
     * well-posed where repeated rows would make its covariance singular */
    for (int64_t i = 0; i < b; i++) c->idx[i] = count > 0 ? indices[(first + i) % n] : 0;
    enum ssl_status rc = ssl_dataset_read(ds, c->idx, count > 0 ? b : 0, c->images, c->labels, err);
    if (rc || count == 0) return rc;
    ssl_augment_batch(c->x, c->images, c->idx, b, in->channels, in->height, in->width, plain, seed,
                      0, view, c->scratch);
    if (ssl_model_forward(m, 0, c->x, false) != 0)
        return ssl_error_set(err, SSL_E_NONFINITE, "eval forward of %lld rows failed (a batch-"
                             "statistics layer on too few distinct rows?)", (long long)count);
    const ssl_real *h = ssl_model_features(m, 0), *z = ssl_model_projection(m, 0);
    for (int64_t i = 0; i < count; i++) {
        for (int64_t k = 0; k < out->dh; k++) out->h[(first + i) * out->dh + k] = (float)h[i * out->dh + k];
        for (int64_t k = 0; k < out->dz; k++) out->z[(first + i) * out->dz + k] = (float)z[i * out->dz + k];
        out->labels[first + i] = c->labels[i];
        out->index[first + i] = c->idx[i];
    }
    return SSL_OK;
}

enum ssl_status ssl_features_extract(struct ssl_features *out, struct ssl_model *m,
                                     struct ssl_dataset *ds, const struct ssl_aug_recipe *plain,
                                     uint64_t seed, uint32_t view,
                                     const int64_t *indices, int64_t n,
                                     const struct ssl_comm *comm, struct ssl_error *err)
{
    int64_t b = m->net.batch, chunks = (n + b - 1) / b, max_chunks = chunks;
    /* the HDF5 reader is collective: every rank reads as many times as the busiest one */
    MPI_Allreduce(&chunks, &max_chunks, 1, MPI_INT64_T, MPI_MAX, comm->world);
    struct chunk c = {0};
    enum ssl_status rc = features_alloc(out, n, m->feature_dim, m->projection_dim, err);
    if (!rc) rc = chunk_alloc(&c, b, ssl_dataset_info(ds), plain, err);
    for (int64_t k = 0; k < max_chunks && !rc; k++) {
        int64_t first = k * b, count = first < n ? (n - first < b ? n - first : b) : 0;
        rc = one_chunk(out, &c, m, ds, plain, seed, view, indices, n, first < n ? first : 0,
                       count, err);
    }
    chunk_free(&c);
    int bad = rc != SSL_OK, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm->world);
    if (any && !rc) rc = ssl_error_set(err, SSL_E_OTHER, "feature extraction failed on another rank");
    return rc;
}

int64_t *ssl_eval_subset(int64_t *n_local, int64_t total, int64_t count, uint64_t seed,
                         uint32_t what, const struct ssl_comm *comm)
{
    int64_t *all = malloc((size_t)(total > 0 ? total : 1) * sizeof *all);
    if (all == NULL) return NULL;
    for (int64_t i = 0; i < total; i++) all[i] = i;
    if (count > 0 && count < total) {
        struct ssl_rng r;
        ssl_rng_init(&r, seed, SSL_RNG_EVAL, what, 0, 0);
        for (int64_t i = total - 1; i > 0; i--) {
            int64_t j = (int64_t)ssl_rng_below(&r, (uint64_t)i + 1), t = all[i];
            all[i] = all[j];
            all[j] = t;
        }
    } else {
        count = total;
    }
    /* contiguous blocks, the first count % P ranks one row more */
    int64_t P = comm->size, r = comm->rank, base = count / P, extra = count % P;
    int64_t first = r * base + (r < extra ? r : extra), n = base + (r < extra ? 1 : 0);
    memmove(all, all + first, (size_t)n * sizeof *all);
    *n_local = n;
    return all;
}
