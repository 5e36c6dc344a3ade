/* dataset_cifar.c: CIFAR-10 and CIFAR-100 in the binary format of the dataset's authors.
 *
 * A file is a sequence of fixed-size records: CIFAR-10 has 1 label byte, CIFAR-100 a coarse
 * then a fine label byte, then 3072 pixel bytes (3x32x32, the R, G and B planes, each
 * row-major), i.e. already (C, H, W). CIFAR-10 train is data_batch_1.bin .. data_batch_5.bin
 * (all five required, in that order), test is test_batch.bin; CIFAR-100 is train.bin and
 * test.bin. Every file must be a non-empty whole number of records with every label in range
 * (for CIFAR-100 both label bytes are checked, whichever one is used).
 * Invariant after open: images (count, 3, 32, 32) and labels (count) are fully valid. */
#include "dataset_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_C 3
#define CIFAR_H 32
#define CIFAR_W 32
#define CIFAR_IMAGE_BYTES (CIFAR_C * CIFAR_H * CIFAR_W)
#define CIFAR_MAX_FILES 5

/* What a split looks like on disk. */
struct cifar_layout {
    const char *files[CIFAR_MAX_FILES];
    int n_files;
    int n_label_bytes;  /* 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine) */
    int use_label_byte; /* which label byte becomes the label */
    int64_t n_classes;
};

static struct cifar_layout cifar_layout(const struct ssl_dataset_open_args *a)
{
    static const char *const c10_train[] = {"data_batch_1.bin", "data_batch_2.bin",
                                            "data_batch_3.bin", "data_batch_4.bin",
                                            "data_batch_5.bin"};
    struct cifar_layout l = {{NULL}, 1, 1, 0, 10};
    if (a->kind == SSL_DATASET_CIFAR10) {
        if (a->split == SSL_SPLIT_TRAIN) {
            l.n_files = CIFAR_MAX_FILES;
            memcpy(l.files, c10_train, sizeof c10_train);
        } else {
            l.files[0] = "test_batch.bin";
        }
        return l;
    }
    l.files[0] = a->split == SSL_SPLIT_TRAIN ? "train.bin" : "test.bin";
    l.n_label_bytes = 2;
    l.use_label_byte = a->cifar100_labels == SSL_CIFAR100_COARSE ? 0 : 1;
    l.n_classes = a->cifar100_labels == SSL_CIFAR100_COARSE ? 20 : 100;
    return l;
}

/* Class counts of each label byte: CIFAR-10's one label; CIFAR-100's coarse, then fine. */
static int64_t label_byte_classes(const struct cifar_layout *l, int b)
{
    if (l->n_label_bytes == 1) return 10;
    return b == 0 ? 20 : 100;
}

/* Checks one file's size before anything is allocated; *n_records is its record count. */
static enum ssl_status cifar_stat_file(const char *path, size_t record_bytes,
                                       int64_t *n_records, struct ssl_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ssl_error_set(err, SSL_E_DATA, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return ssl_error_set(err, SSL_E_DATA, "%s: not a regular file", path);
    int64_t size = (int64_t)sb.st_size;
    if (size == 0) return ssl_error_set(err, SSL_E_DATA, "%s: empty file", path);
    if (size % (int64_t)record_bytes != 0)
        return ssl_error_set(err, SSL_E_DATA,
                             "%s: size %lld bytes is not a multiple of the %zu-byte record "
                             "(%lld whole records, %lld bytes left over)",
                             path, (long long)size, record_bytes,
                             (long long)(size / (int64_t)record_bytes),
                             (long long)(size % (int64_t)record_bytes));
    *n_records = size / (int64_t)record_bytes;
    return SSL_OK;
}

/* Reads n_records records of path into images/labels (already sized), checking the labels.
 * A short read means the file changed since it was measured. */
static enum ssl_status cifar_read_file(const char *path, const struct cifar_layout *l,
                                       int64_t n_records, uint8_t *images, uint8_t *labels,
                                       struct ssl_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return ssl_error_set(err, SSL_E_DATA, "%s: cannot open: %s", path, strerror(errno));
    size_t record_bytes = (size_t)l->n_label_bytes + CIFAR_IMAGE_BYTES;
    uint8_t record[2 + CIFAR_IMAGE_BYTES];
    enum ssl_status st = SSL_OK;
    for (int64_t r = 0; r < n_records && st == SSL_OK; r++) {
        if (fread(record, 1, record_bytes, f) != record_bytes) {
            st = ssl_error_set(err, SSL_E_DATA, "%s: read failed at record %lld: %s", path,
                               (long long)r, ferror(f) ? strerror(errno) : "file shrank");
            break;
        }
        for (int b = 0; b < l->n_label_bytes && st == SSL_OK; b++)
            if (record[b] >= label_byte_classes(l, b))
                st = ssl_error_set(
                    err, SSL_E_DATA, "%s: record %lld: %slabel %u is outside [0, %lld)", path,
                    (long long)r, l->n_label_bytes == 1 ? "" : (b == 0 ? "coarse " : "fine "),
                    (unsigned)record[b], (long long)label_byte_classes(l, b));
        labels[r] = record[l->use_label_byte];
        memcpy(images + (size_t)r * CIFAR_IMAGE_BYTES, record + l->n_label_bytes,
               CIFAR_IMAGE_BYTES);
    }
    fclose(f);
    return st;
}

/* Measures every file of the split (so a missing fifth batch fails before anything is read),
 * then reads them one after the other into one allocation. */
static enum ssl_status cifar_load(struct ssl_dataset *d, const struct cifar_layout *l,
                                  struct ssl_error *err)
{
    char paths[CIFAR_MAX_FILES][sizeof d->info.source + 32];
    int64_t n_records[CIFAR_MAX_FILES] = {0}, count = 0;
    size_t record_bytes = (size_t)l->n_label_bytes + CIFAR_IMAGE_BYTES;
    for (int i = 0; i < l->n_files; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", d->info.source, l->files[i]);
        enum ssl_status st = cifar_stat_file(paths[i], record_bytes, &n_records[i], err);
        if (st != SSL_OK) return st;
        count += n_records[i];
    }
    struct ssl_memory_dataset *s = d->state;
    s->images = malloc((size_t)count * CIFAR_IMAGE_BYTES);
    s->labels = malloc((size_t)count);
    SSL_CHECK(s->images != NULL && s->labels != NULL);
    int64_t first = 0;
    for (int i = 0; i < l->n_files; i++) {
        enum ssl_status st =
            cifar_read_file(paths[i], l, n_records[i],
                            s->images + (size_t)first * CIFAR_IMAGE_BYTES, s->labels + first, err);
        if (st != SSL_OK) return st;
        first += n_records[i];
    }
    d->info.count = count;
    return SSL_OK;
}

enum ssl_status ssl_dataset_open_cifar(struct ssl_dataset **ds, const struct ssl_dataset_open_args *a,
                                       struct ssl_error *err)
{
    const char *name = ssl_dataset_kind_name(a->kind);
    if (a->path == NULL || a->path[0] == '\0')
        return ssl_error_set(err, SSL_E_USAGE, "%s: no path given (the directory with the .bin "
                             "files)", name);
    struct ssl_dataset *d = &ssl_memory_dataset_new()->ds;
    enum ssl_status st = SSL_OK;
    if (snprintf(d->info.source, sizeof d->info.source, "%s", a->path) >=
        (int)sizeof d->info.source)
        st = ssl_error_set(err, SSL_E_USAGE, "%.64s...: %s directory path is too long", a->path,
                           name);
    struct cifar_layout l = cifar_layout(a);
    if (st == SSL_OK) st = cifar_load(d, &l, err);
    if (st != SSL_OK) {
        d->close(d);
        return st;
    }
    d->info.channels = CIFAR_C;
    d->info.height = CIFAR_H;
    d->info.width = CIFAR_W;
    d->info.n_classes = l.n_classes;
    *ds = d;
    return SSL_OK;
}
