/* dataset_hdf5.c: the ssltrain HDF5 image format, read in parallel through MPI-IO and written
 * by one process.
 *
 * Layout: `/images` uint8 (N, C, H, W), `/labels` int32 or int64 (N); the test split lives in
 * `/test/images` and `/test/labels`. An optional integer root attribute `n_classes` bounds the
 * labels; without it the class count is max label + 1.
 *
 * Invariants after a successful open: the file is open with the MPI-IO driver on a duplicate
 * of the caller's communicator, every label lies in [0, n_classes) and is held in memory (labels
 * are small, so label reads cost nothing), and every rank of the communicator holds the same
 * info. Every fallible step ends with an agreement (MPI_Allreduce over the communicator) so all
 * ranks return the same status and the same one-line message naming the file.
 *
 * Collective: ssl_dataset_open_hdf5, the read function and the close function are collective
 * over args->comm (H5Fopen, H5Dread with H5FD_MPIO_COLLECTIVE, H5Fclose). The writer is not
 * collective: one process writes with the default (sec2) driver. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "dataset_impl.h"
#include "h5_util.h"

struct h5_state {
    MPI_Comm comm;   /* a duplicate of the caller's: our agreements never match theirs */
    hid_t file;
    hid_t images;    /* (N, C, H, W) uint8 */
    hid_t dxpl;      /* collective transfer */
    int64_t *labels; /* (N) */
};

/* ---------------------------------------------------------------------------------------- */
/* Open and validate (local steps; the caller agrees after each).                          */

/* Collective: H5Fopen with the MPI-IO driver, read-only. */
static enum ssl_status open_file(struct h5_state *s, const char *path, struct ssl_error *err)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return ssl_h5_fail(err, SSL_E_OTHER, path, "H5Pcreate");
    if (H5Pset_fapl_mpio(fapl, s->comm, MPI_INFO_NULL) < 0) {
        H5Pclose(fapl);
        return ssl_h5_fail(err, SSL_E_OTHER, path, "H5Pset_fapl_mpio");
    }
    s->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (s->file < 0) return ssl_h5_fail(err, SSL_E_DATA, path, "cannot open as HDF5");
    return SSL_OK;
}

static void describe_type(hid_t type, char *buf, size_t n)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t bits = H5Tget_size(type) * 8;
    if (cls == H5T_INTEGER)
        snprintf(buf, n, "%s %zu-bit integer",
                 H5Tget_sign(type) == H5T_SGN_NONE ? "unsigned" : "signed", bits);
    else if (cls == H5T_FLOAT)
        snprintf(buf, n, "%zu-bit float", bits);
    else
        snprintf(buf, n, "a non-numeric type (class %d)", (int)cls);
}

/* Opens dataset `name`, checks its element type (integer of one of the allowed sizes and the
 * given signedness) and rank, and returns its dims. */
struct dset_rule {
    const char *name;
    H5T_sign_t sign;
    size_t size_a, size_b; /* allowed element sizes in bytes */
    const char *type_text; /* for the message */
    int rank;
};

static enum ssl_status open_dataset(hid_t file, const char *path, const struct dset_rule *r,
                                    hid_t *dset, hsize_t *dims, struct ssl_error *err)
{
    if (!ssl_h5_link_exists(file, r->name))
        return ssl_error_set(err, SSL_E_DATA, "%s: missing dataset %s", path, r->name);
    *dset = H5Dopen2(file, r->name, H5P_DEFAULT);
    if (*dset < 0) return ssl_h5_fail(err, SSL_E_DATA, path, r->name);
    hid_t type = H5Dget_type(*dset);
    if (type < 0) return ssl_h5_fail(err, SSL_E_DATA, path, r->name);
    size_t size = H5Tget_size(type);
    bool ok = H5Tget_class(type) == H5T_INTEGER && H5Tget_sign(type) == r->sign &&
              (size == r->size_a || size == r->size_b);
    char found[96];
    describe_type(type, found, sizeof found);
    H5Tclose(type);
    if (!ok)
        return ssl_error_set(err, SSL_E_DATA, "%s: %s must hold %s, found %s", path, r->name,
                             r->type_text, found);
    hid_t space = H5Dget_space(*dset);
    if (space < 0) return ssl_h5_fail(err, SSL_E_DATA, path, r->name);
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank == r->rank) H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    if (rank != r->rank)
        return ssl_error_set(err, SSL_E_DATA, "%s: %s must have rank %d, found rank %d", path,
                             r->name, r->rank, rank);
    return SSL_OK;
}

/* The root attribute `n_classes`, or 0 when absent. */
static enum ssl_status read_n_classes_attr(hid_t file, const char *path, int64_t *n_classes,
                                           struct ssl_error *err)
{
    *n_classes = 0;
    htri_t has = H5Aexists(file, "n_classes");
    if (has < 0) return ssl_h5_fail(err, SSL_E_DATA, path, "attribute n_classes");
    if (has == 0) return SSL_OK;
    hid_t attr = H5Aopen(file, "n_classes", H5P_DEFAULT);
    if (attr < 0) return ssl_h5_fail(err, SSL_E_DATA, path, "attribute n_classes");
    bool ok = ssl_h5_read_i64_attr(attr, n_classes);
    H5Aclose(attr);
    if (!ok || *n_classes < 1)
        return ssl_error_set(err, SSL_E_DATA,
                             "%s: root attribute n_classes must be one positive integer", path);
    return SSL_OK;
}

/* Reads every label (independent I/O: each rank holds its own copy) and checks the range. */
static enum ssl_status load_labels(struct h5_state *s, hid_t dset, const char *path,
                                   const char *name, int64_t count, int64_t *n_classes,
                                   struct ssl_error *err)
{
    int64_t bound = 0;
    enum ssl_status st = read_n_classes_attr(s->file, path, &bound, err);
    if (st != SSL_OK) return st;
    s->labels = malloc((size_t)count * sizeof *s->labels);
    SSL_CHECK(s->labels != NULL);
    if (H5Dread(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->labels) < 0)
        return ssl_h5_fail(err, SSL_E_DATA, path, name);
    int64_t max = -1;
    for (int64_t i = 0; i < count; ++i) {
        int64_t l = s->labels[i];
        if (l < 0)
            return ssl_error_set(err, SSL_E_DATA, "%s: %s[%lld] = %lld is a negative label", path,
                                 name, (long long)i, (long long)l);
        if (bound > 0 && l >= bound)
            return ssl_error_set(err, SSL_E_DATA,
                                 "%s: %s[%lld] = %lld is out of range: the root attribute "
                                 "n_classes is %lld",
                                 path, name, (long long)i, (long long)l, (long long)bound);
        if (l > max) max = l;
    }
    *n_classes = bound > 0 ? bound : max + 1;
    return SSL_OK;
}

/* Validates shapes and types, loads the labels and fills info (local, no collectives). */
static enum ssl_status validate(struct h5_state *s, const char *path, enum ssl_split split,
                                struct ssl_dataset_info *info, struct ssl_error *err)
{
    bool test = split == SSL_SPLIT_TEST;
    const struct dset_rule img_rule = {test ? "/test/images" : "/images", H5T_SGN_NONE, 1, 1,
                                       "8-bit unsigned integers", 4};
    const struct dset_rule lbl_rule = {test ? "/test/labels" : "/labels", H5T_SGN_2, 4, 8,
                                       "32- or 64-bit signed integers", 1};
    hsize_t idims[4] = {0}, ldims[1] = {0};
    hid_t labels = H5I_INVALID_HID;
    enum ssl_status st = open_dataset(s->file, path, &img_rule, &s->images, idims, err);
    if (st == SSL_OK) st = open_dataset(s->file, path, &lbl_rule, &labels, ldims, err);
    if (st == SSL_OK && idims[0] != ldims[0])
        st = ssl_error_set(err, SSL_E_DATA, "%s: %s has %llu images but %s has %llu labels", path,
                           img_rule.name, (unsigned long long)idims[0], lbl_rule.name,
                           (unsigned long long)ldims[0]);
    if (st == SSL_OK && (idims[0] == 0 || idims[1] == 0 || idims[2] == 0 || idims[3] == 0))
        st = ssl_error_set(err, SSL_E_DATA, "%s: %s is empty (%llu, %llu, %llu, %llu)", path,
                           img_rule.name, (unsigned long long)idims[0],
                           (unsigned long long)idims[1], (unsigned long long)idims[2],
                           (unsigned long long)idims[3]);
    if (st == SSL_OK && idims[0] > (hsize_t)INT64_MAX / 8)
        st = ssl_error_set(err, SSL_E_DATA, "%s: %s is too large", path, img_rule.name);
    if (st == SSL_OK) {
        info->count = (int64_t)idims[0];
        info->channels = (int64_t)idims[1];
        info->height = (int64_t)idims[2];
        info->width = (int64_t)idims[3];
        st = load_labels(s, labels, path, lbl_rule.name, info->count, &info->n_classes, err);
    }
    if (labels >= 0) H5Dclose(labels);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Read.                                                                                    */

struct slot {
    int64_t index; /* into the dataset */
    int64_t pos;   /* into the caller's batch */
};

static int slot_cmp(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;
    if (x->index != y->index) return x->index < y->index ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Selects the union of runs of consecutive indices in `sorted` (strictly increasing, n > 0) as
 * (len, C, H, W) blocks. */
static herr_t select_runs(hid_t fspace, const int64_t *sorted, int64_t n, const hsize_t *chw)
{
    H5S_seloper_t op = H5S_SELECT_SET;
    for (int64_t a = 0; a < n;) {
        int64_t b = a + 1;
        while (b < n && sorted[b] == sorted[b - 1] + 1) ++b;
        hsize_t start[4] = {(hsize_t)sorted[a], 0, 0, 0};
        hsize_t count[4] = {(hsize_t)(b - a), chw[0], chw[1], chw[2]};
        if (H5Sselect_hyperslab(fspace, op, start, NULL, count, NULL) < 0) return -1;
        op = H5S_SELECT_OR;
        a = b;
    }
    return 0;
}

/* Collective: reads the images `sorted` (strictly increasing, n >= 0) into buf (n, C, H, W)
 * in that order. Every rank calls H5Dread, a rank with nothing to read (or whose selection
 * failed) with empty selections, so no rank is left waiting in the collective. */
static enum ssl_status read_sorted(struct ssl_dataset *ds, const int64_t *sorted, int64_t n,
                                   uint8_t *buf, struct ssl_error *err)
{
    struct h5_state *s = ds->state;
    const hsize_t chw[3] = {(hsize_t)ds->info.channels, (hsize_t)ds->info.height,
                            (hsize_t)ds->info.width};
    hsize_t n_bytes = (hsize_t)n * chw[0] * chw[1] * chw[2];
    hsize_t mdims[1] = {n_bytes > 0 ? n_bytes : 1};
    hid_t fspace = H5Dget_space(s->images), mspace = H5Screate_simple(1, mdims, NULL);
    enum ssl_status st = SSL_OK;
    if (fspace < 0 || mspace < 0) st = ssl_h5_fail(err, SSL_E_OTHER, ds->info.source, "dataspace");
    if (st == SSL_OK && n > 0 && select_runs(fspace, sorted, n, chw) < 0)
        st = ssl_h5_fail(err, SSL_E_OTHER, ds->info.source, "selecting images");
    if (st != SSL_OK || n == 0) {
        if (fspace >= 0) H5Sselect_none(fspace);
        if (mspace >= 0) H5Sselect_none(mspace);
    }
    uint8_t dummy = 0;
    if (H5Dread(s->images, H5T_NATIVE_UINT8, mspace, fspace, s->dxpl,
                n > 0 && st == SSL_OK ? (void *)buf : (void *)&dummy) < 0)
        st = ssl_h5_fail(err, SSL_E_DATA, ds->info.source, "reading images");
    if (fspace >= 0) H5Sclose(fspace);
    if (mspace >= 0) H5Sclose(mspace);
    return st;
}

static bool strictly_increasing(const int64_t *x, int64_t n)
{
    for (int64_t i = 1; i < n; ++i)
        if (x[i] <= x[i - 1]) return false;
    return true;
}

/* Unsorted or repeated indices: HDF5 returns a hyperslab union in file order, so the distinct
 * indices are read sorted into a temporary buffer and copied to the caller's positions.
 * Allocation: this path allocates the slot list and the temporary buffer per call (freed
 * before returning); sorted batches, the common case for sequential passes, allocate nothing. */
static enum ssl_status read_permuted(struct ssl_dataset *ds, const int64_t *indices, int64_t n,
                                     uint8_t *images, struct ssl_error *err)
{
    size_t img_bytes = (size_t)(ds->info.channels * ds->info.height * ds->info.width);
    struct slot *slots = malloc((size_t)n * sizeof *slots);
    int64_t *uniq = malloc((size_t)n * sizeof *uniq);
    SSL_CHECK(slots != NULL && uniq != NULL);
    for (int64_t i = 0; i < n; ++i) slots[i] = (struct slot){indices[i], i};
    qsort(slots, (size_t)n, sizeof *slots, slot_cmp);
    int64_t n_uniq = 0;
    for (int64_t i = 0; i < n; ++i)
        if (n_uniq == 0 || uniq[n_uniq - 1] != slots[i].index) uniq[n_uniq++] = slots[i].index;
    uint8_t *tmp = malloc((size_t)n_uniq * img_bytes); /* (n_uniq, C, H, W) */
    SSL_CHECK(tmp != NULL);
    enum ssl_status st = read_sorted(ds, uniq, n_uniq, tmp, err);
    if (st == SSL_OK) {
        int64_t u = -1;
        for (int64_t i = 0; i < n; ++i) {
            if (i == 0 || slots[i].index != slots[i - 1].index) ++u;
            memcpy(images + (size_t)slots[i].pos * img_bytes, tmp + (size_t)u * img_bytes,
                   img_bytes);
        }
    }
    free(tmp);
    free(uniq);
    free(slots);
    return st;
}

/* Collective over the dataset's communicator; every rank returns the same status. */
static enum ssl_status h5_read(struct ssl_dataset *ds, const int64_t *indices, int64_t n,
                               uint8_t *images, int64_t *labels, struct ssl_error *err)
{
    struct h5_state *s = ds->state;
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    enum ssl_status st = strictly_increasing(indices, n)
                             ? read_sorted(ds, indices, n, images, err)
                             : read_permuted(ds, indices, n, images, err);
    ssl_h5_quiet_end(&q);
    st = ssl_h5_agree_plain(s->comm, st, err);
    if (st == SSL_OK && labels != NULL)
        for (int64_t i = 0; i < n; ++i) labels[i] = s->labels[indices[i]];
    return st;
}

/* Collective: H5Fclose and MPI_Comm_free. */
static void h5_release(struct h5_state *s)
{
    if (s->images >= 0) H5Dclose(s->images);
    if (s->dxpl >= 0) H5Pclose(s->dxpl);
    if (s->file >= 0) H5Fclose(s->file);
    if (s->comm != MPI_COMM_NULL) MPI_Comm_free(&s->comm);
    free(s->labels);
    free(s);
}

static void h5_close(struct ssl_dataset *ds)
{
    h5_release(ds->state);
    free(ds);
}

static enum ssl_status make_dxpl(struct h5_state *s, const char *path, struct ssl_error *err)
{
    s->dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (s->dxpl < 0 || H5Pset_dxpl_mpio(s->dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        return ssl_h5_fail(err, SSL_E_OTHER, path, "collective transfer property list");
    return SSL_OK;
}

/* Collective over a->comm. Each step is followed by an agreement, so ranks only enter the next
 * collective (H5Fopen, H5Fclose) together. */
enum ssl_status ssl_dataset_open_hdf5(struct ssl_dataset **ds, const struct ssl_dataset_open_args *a,
                                      struct ssl_error *err)
{
    *ds = NULL;
    struct h5_state *s = calloc(1, sizeof *s);
    struct ssl_dataset *d = calloc(1, sizeof *d);
    SSL_CHECK(s != NULL && d != NULL);
    *s = (struct h5_state){MPI_COMM_NULL, H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID, NULL};
    snprintf(d->info.source, sizeof d->info.source, "%s", a->path);
    MPI_Comm_dup(a->comm, &s->comm);
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    /* a missing or non-HDF5 file is found by every rank alike without touching MPI-IO, so no
     * rank is left alone inside the collective open */
    enum ssl_status st = ssl_h5_agree_plain(s->comm, ssl_h5_check_file(a->path, "cannot open", err), err);
    if (st == SSL_OK) st = ssl_h5_agree_plain(s->comm, open_file(s, a->path, err), err);
    if (st == SSL_OK) st = make_dxpl(s, a->path, err);
    if (st == SSL_OK) st = validate(s, a->path, a->split, &d->info, err);
    st = ssl_h5_agree_plain(s->comm, st, err);
    ssl_h5_quiet_end(&q);
    if (st != SSL_OK) {
        h5_release(s);
        free(d);
        return st;
    }
    d->read = h5_read;
    d->close = h5_close;
    d->state = s;
    *ds = d;
    return SSL_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Write (one process, sec2 driver).                                                        */

/* Images per copy block: 4096, fewer for large images so a block stays within 64 MiB. */
static int64_t copy_block(int64_t img_bytes)
{
    int64_t b = ((int64_t)64 << 20) / img_bytes;
    return b < 1 ? 1 : b > 4096 ? 4096 : b;
}

/* Images per chunk: about 256 KiB, so a random read decompresses little beyond what it needs
 * and a chunk fits HDF5's default 1 MiB chunk cache. */
static hsize_t chunk_images(int64_t img_bytes, int64_t count)
{
    int64_t k = ((int64_t)256 << 10) / img_bytes;
    if (k < 1) k = 1;
    return (hsize_t)(k < count ? k : count);
}

/* Chunked (k, C, H, W) with shuffle and deflate 4: images compress well and a chunk is the
 * unit of a random read. */
static hid_t create_images(hid_t file, const char *name, const struct ssl_dataset_info *in)
{
    hsize_t dims[4] = {(hsize_t)in->count, (hsize_t)in->channels, (hsize_t)in->height,
                       (hsize_t)in->width};
    int64_t img_bytes = in->channels * in->height * in->width;
    hsize_t chunk[4] = {chunk_images(img_bytes, in->count), dims[1], dims[2], dims[3]};
    hid_t space = H5Screate_simple(4, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t dset = H5I_INVALID_HID;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 4, chunk) >= 0 && H5Pset_shuffle(dcpl) >= 0 &&
        H5Pset_deflate(dcpl, 4) >= 0)
        dset = H5Dcreate2(file, name, H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return dset;
}

static hid_t create_labels(hid_t file, const char *name, int64_t count)
{
    hsize_t dims[1] = {(hsize_t)count};
    hid_t space = H5Screate_simple(1, dims, NULL), dset = H5I_INVALID_HID;
    if (space >= 0)
        dset = H5Dcreate2(file, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (space >= 0) H5Sclose(space);
    return dset;
}

/* Writes rows [start, start + n) of a dataset whose rows are `row` elements of `mem_type`. */
static herr_t write_rows(hid_t dset, hid_t mem_type, int64_t start, int64_t n, int rank,
                         const hsize_t *row, const void *buf)
{
    hsize_t off[4] = {(hsize_t)start, 0, 0, 0}, count[4] = {(hsize_t)n, 1, 1, 1};
    for (int i = 1; i < rank; ++i) count[i] = row[i - 1];
    hid_t fspace = H5Dget_space(dset), mspace = H5Screate_simple(rank, count, NULL);
    herr_t rc = -1;
    if (fspace >= 0 && mspace >= 0 &&
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, count, NULL) >= 0)
        rc = H5Dwrite(dset, mem_type, mspace, fspace, H5P_DEFAULT, buf);
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return rc;
}

/* Streams a split from src in blocks through its read function (the source is trusted to be
 * a valid dataset; its labels are still checked against its own n_classes). */
static enum ssl_status copy_split(hid_t img, hid_t lbl, struct ssl_dataset *src, const char *path,
                                  struct ssl_error *err)
{
    const struct ssl_dataset_info *in = &src->info;
    int64_t img_bytes = in->channels * in->height * in->width, block = copy_block(img_bytes);
    const hsize_t chw[3] = {(hsize_t)in->channels, (hsize_t)in->height, (hsize_t)in->width};
    int64_t *idx = malloc((size_t)block * sizeof *idx), *labels = malloc((size_t)block * sizeof *labels);
    uint8_t *buf = malloc((size_t)(block * img_bytes)); /* (block, C, H, W) */
    SSL_CHECK(idx != NULL && labels != NULL && buf != NULL);
    enum ssl_status st = SSL_OK;
    for (int64_t start = 0; start < in->count && st == SSL_OK; start += block) {
        int64_t n = in->count - start < block ? in->count - start : block;
        for (int64_t i = 0; i < n; ++i) idx[i] = start + i;
        st = src->read(src, idx, n, buf, labels, err);
        for (int64_t i = 0; i < n && st == SSL_OK; ++i)
            if (labels[i] < 0 || labels[i] >= in->n_classes)
                st = ssl_error_set(err, SSL_E_DATA, "%s: label %lld of sample %lld is outside [0, %lld)",
                                   in->source, (long long)labels[i], (long long)(start + i),
                                   (long long)in->n_classes);
        if (st == SSL_OK && write_rows(img, H5T_NATIVE_UINT8, start, n, 4, chw, buf) < 0)
            st = ssl_h5_fail(err, SSL_E_OTHER, path, "writing images");
        if (st == SSL_OK && write_rows(lbl, H5T_NATIVE_INT64, start, n, 1, chw, labels) < 0)
            st = ssl_h5_fail(err, SSL_E_OTHER, path, "writing labels");
    }
    free(buf);
    free(labels);
    free(idx);
    return st;
}

static enum ssl_status write_split(hid_t file, const char *img_name, const char *lbl_name,
                                   struct ssl_dataset *src, const char *path, struct ssl_error *err)
{
    hid_t img = create_images(file, img_name, &src->info);
    hid_t lbl = img >= 0 ? create_labels(file, lbl_name, src->info.count) : H5I_INVALID_HID;
    enum ssl_status st = SSL_OK;
    if (img < 0 || lbl < 0) st = ssl_h5_fail(err, SSL_E_OTHER, path, "creating the datasets");
    if (st == SSL_OK) st = copy_split(img, lbl, src, path, err);
    if (st == SSL_OK) st = ssl_h5_write_string_attr(img, "dims", "N C H W", path, err);
    if (lbl >= 0 && H5Dclose(lbl) < 0) st = ssl_h5_fail(err, SSL_E_OTHER, path, lbl_name);
    if (img >= 0 && H5Dclose(img) < 0) st = ssl_h5_fail(err, SSL_E_OTHER, path, img_name);
    return st;
}

static enum ssl_status write_root_attrs(hid_t file, const struct ssl_dataset_info *train,
                                        const struct ssl_dataset_info *test, const char *path,
                                        struct ssl_error *err)
{
    int64_t n_classes = train->n_classes;
    if (test != NULL && test->n_classes > n_classes) n_classes = test->n_classes;
    enum ssl_status st = ssl_h5_write_string_attr(file, "format", "ssltrain-images", path, err);
    if (st == SSL_OK)
        st = ssl_h5_write_int_attr(file, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT64,
                                   &(int64_t){1}, path, err);
    if (st == SSL_OK) st = ssl_h5_write_i64_attr(file, "n_classes", n_classes, path, err);
    if (st == SSL_OK) st = ssl_h5_write_string_attr(file, "layout", "NCHW", path, err);
    if (st == SSL_OK) st = ssl_h5_write_string_attr(file, "source", train->source, path, err);
    return st;
}

static enum ssl_status check_sources(const char *path, const struct ssl_dataset *train,
                                     const struct ssl_dataset *test, struct ssl_error *err)
{
    if (train == NULL) return ssl_error_set(err, SSL_E_USAGE, "%s: no train split to write", path);
    const struct ssl_dataset_info *a = &train->info;
    if (a->count < 1 || a->channels < 1 || a->height < 1 || a->width < 1 || a->n_classes < 1)
        return ssl_error_set(err, SSL_E_DATA, "%s: train split from %s is empty", path, a->source);
    if (test == NULL) return SSL_OK;
    const struct ssl_dataset_info *b = &test->info;
    if (b->count < 1 || b->channels != a->channels || b->height != a->height ||
        b->width != a->width || b->n_classes < 1)
        return ssl_error_set(err, SSL_E_DATA,
                             "%s: test split from %s (%lld images of %lldx%lldx%lld) does not match "
                             "the train split (%lldx%lldx%lld)",
                             path, b->source, (long long)b->count, (long long)b->channels,
                             (long long)b->height, (long long)b->width, (long long)a->channels,
                             (long long)a->height, (long long)a->width);
    return SSL_OK;
}

static enum ssl_status write_file(hid_t file, struct ssl_dataset *train, struct ssl_dataset *test,
                                  const char *path, struct ssl_error *err)
{
    enum ssl_status st = write_split(file, "/images", "/labels", train, path, err);
    if (st == SSL_OK && test != NULL) {
        hid_t g = H5Gcreate2(file, "/test", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0 || H5Gclose(g) < 0) st = ssl_h5_fail(err, SSL_E_OTHER, path, "creating /test");
        if (st == SSL_OK) st = write_split(file, "/test/images", "/test/labels", test, path, err);
    }
    if (st == SSL_OK)
        st = write_root_attrs(file, &train->info, test != NULL ? &test->info : NULL, path, err);
    return st;
}

/* The data reach the disk before the name does, so a crash never leaves a half file named
 * `path`. */
static enum ssl_status publish(const char *tmp, const char *path, struct ssl_error *err)
{
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        if (fd >= 0) close(fd);
        return ssl_error_set(err, SSL_E_OTHER, "%s: fsync: %s", tmp, strerror(errno));
    }
    close(fd);
    if (rename(tmp, path) != 0)
        return ssl_error_set(err, SSL_E_OTHER, "%s: rename to %s: %s", tmp, path, strerror(errno));
    return SSL_OK;
}

/* Not collective: one process writes (the sources' read functions must not be collective over
 * more than this process either). */
enum ssl_status ssl_dataset_write_hdf5(const char *path, struct ssl_dataset *train,
                                       struct ssl_dataset *test, struct ssl_error *err)
{
    enum ssl_status st = check_sources(path, train, test, err);
    if (st != SSL_OK) return st;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return ssl_error_set(err, SSL_E_USAGE, "%s: path too long", path);
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) st = ssl_h5_fail(err, SSL_E_OTHER, tmp, "cannot create");
    if (st == SSL_OK) st = write_file(file, train, test, tmp, err);
    if (file >= 0 && H5Fclose(file) < 0 && st == SSL_OK) st = ssl_h5_fail(err, SSL_E_OTHER, tmp, "close");
    ssl_h5_quiet_end(&q);
    if (st == SSL_OK) st = publish(tmp, path, err);
    if (st != SSL_OK) remove(tmp);
    return st;
}
