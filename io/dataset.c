/* dataset.c: the format-independent half of io/dataset.h: argument checks, dispatch by kind
 * to the formats' open functions (dataset_idx.c, dataset_cifar.c, dataset_hdf5.c), the index
 * range check before every read, and the kind names.
 *
 * Invariant: a format's read is only ever called with indices in [0, count), so formats do not
 * check them again. */
#include "dataset_impl.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Indexed by enum ssl_dataset_kind; the names used in job files and on the command line. */
static const char *const kind_names[] = {
    [SSL_DATASET_FASHION_MNIST] = "fashion_mnist",
    [SSL_DATASET_CIFAR10] = "cifar10",
    [SSL_DATASET_CIFAR100] = "cifar100",
    [SSL_DATASET_HDF5] = "hdf5",
};
enum { N_KINDS = sizeof kind_names / sizeof kind_names[0] };

int ssl_dataset_kind_from_name(const char *name)
{
    if (name == NULL) return -1;
    for (int k = 0; k < N_KINDS; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    return -1;
}

const char *ssl_dataset_kind_name(enum ssl_dataset_kind kind)
{
    /* The enum may hold any int (a corrupt config), so range-check instead of trusting it. */
    if ((int)kind < 0 || (int)kind >= N_KINDS) return "unknown";
    return kind_names[kind];
}

/* Rejects arguments no format could use, so each format only checks its own files. */
static enum ssl_status check_open_args(struct ssl_dataset **ds,
                                       const struct ssl_dataset_open_args *a,
                                       struct ssl_error *err)
{
    if (ds == NULL || a == NULL)
        return ssl_error_set(err, SSL_E_USAGE, "ssl_dataset_open: ds and args must not be NULL");
    if ((int)a->kind < 0 || (int)a->kind >= N_KINDS)
        return ssl_error_set(err, SSL_E_USAGE, "ssl_dataset_open: unknown dataset kind %d",
                             (int)a->kind);
    if (a->split != SSL_SPLIT_TRAIN && a->split != SSL_SPLIT_TEST)
        return ssl_error_set(err, SSL_E_USAGE, "ssl_dataset_open: unknown split %d", (int)a->split);
    if (a->kind == SSL_DATASET_CIFAR100 && a->cifar100_labels != SSL_CIFAR100_FINE &&
        a->cifar100_labels != SSL_CIFAR100_COARSE)
        return ssl_error_set(err, SSL_E_USAGE, "ssl_dataset_open: unknown cifar100 label set %d",
                             (int)a->cifar100_labels);
    return SSL_OK;
}

enum ssl_status ssl_dataset_open(struct ssl_dataset **ds, const struct ssl_dataset_open_args *args,
                                 struct ssl_error *err)
{
    if (ds != NULL) *ds = NULL; /* a failed open leaves NULL, whatever the reason */
    enum ssl_status st = check_open_args(ds, args, err);
    if (st != SSL_OK) return st;
    switch (args->kind) {
    case SSL_DATASET_FASHION_MNIST: st = ssl_dataset_open_idx(ds, args, err); break;
    case SSL_DATASET_CIFAR10:
    case SSL_DATASET_CIFAR100: st = ssl_dataset_open_cifar(ds, args, err); break;
    case SSL_DATASET_HDF5: st = ssl_dataset_open_hdf5(ds, args, err); break;
    }
    /* A format that fails must leave nothing behind; one that succeeds must be usable. */
    if (st != SSL_OK) {
        SSL_CHECK(*ds == NULL);
        return st;
    }
    SSL_CHECK(*ds != NULL && (*ds)->read != NULL && (*ds)->close != NULL);
    return SSL_OK;
}

const struct ssl_dataset_info *ssl_dataset_info(const struct ssl_dataset *ds)
{
    SSL_CHECK(ds != NULL);
    return &ds->info;
}

/* Returns the position of the first index outside [0, count), or -1 if all are inside. */
static int64_t first_bad_index(const int64_t *indices, int64_t n, int64_t count)
{
    for (int64_t i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= count) return i;
    return -1;
}

enum ssl_status ssl_dataset_read(struct ssl_dataset *ds, const int64_t *indices, int64_t n,
                                 uint8_t *images, int64_t *labels, struct ssl_error *err)
{
    if (ds == NULL || n < 0 || (n > 0 && (indices == NULL || images == NULL)))
        return ssl_error_set(err, SSL_E_USAGE,
                             "ssl_dataset_read: bad arguments (ds %p, n %lld, indices %p, images %p)",
                             (void *)ds, (long long)n, (const void *)indices, (void *)images);
    int64_t bad = first_bad_index(indices, n, ds->info.count);
    if (bad < 0) return ds->read(ds, indices, n, images, labels, err);
    /* The HDF5 read is collective: this rank still takes part, with nothing to read, so the
     * ranks whose indices are fine do not wait forever. Its own error is already recorded. */
    struct ssl_error ignored = {0};
    enum ssl_status st = ssl_error_set(
        err, SSL_E_USAGE, "%s: index %lld (position %lld of %lld) is outside [0, %lld)",
        ds->info.source, (long long)indices[bad], (long long)bad, (long long)n,
        (long long)ds->info.count);
    ds->read(ds, NULL, 0, NULL, NULL, &ignored);
    return st;
}

void ssl_dataset_close(struct ssl_dataset *ds)
{
    if (ds != NULL) ds->close(ds);
}

/* ---- the in-memory formats' shared read and close ---- */

static enum ssl_status memory_read(struct ssl_dataset *ds, const int64_t *indices, int64_t n,
                                   uint8_t *images, int64_t *labels, struct ssl_error *err)
{
    (void)err; /* in memory and checked at open: nothing can fail */
    const struct ssl_memory_dataset *m = ds->state;
    size_t image_bytes = (size_t)(ds->info.channels * ds->info.height * ds->info.width);
    for (int64_t i = 0; i < n; i++) {
        size_t k = (size_t)indices[i];
        memcpy(images + (size_t)i * image_bytes, m->images + k * image_bytes, image_bytes);
        if (labels != NULL) labels[i] = m->labels[k];
    }
    return SSL_OK;
}

static void memory_close(struct ssl_dataset *ds)
{
    struct ssl_memory_dataset *m = ds->state;
    free(m->images);
    free(m->labels);
    free(m);
}

struct ssl_memory_dataset *ssl_memory_dataset_new(void)
{
    struct ssl_memory_dataset *m = calloc(1, sizeof *m);
    SSL_CHECK(m != NULL);
    m->ds.state = m;
    m->ds.read = memory_read;
    m->ds.close = memory_close;
    return m;
}
