/* dataset_idx.c: Fashion-MNIST in the IDX format, gzip-compressed (the Debian package
 * dataset-fashion-mnist installs it in /usr/share/datasets/fashion-mnist).
 *
 * A split is two files, <prefix>-images-idx3-ubyte.gz and <prefix>-labels-idx1-ubyte.gz with
 * prefix "train" or "t10k". IDX: a big-endian header (magic 0x00000803 = ubyte, 3 dims, then
 * the dims n, rows, cols; 0x00000801 and n for labels), then the bytes row-major.
 * Both files are decompressed into memory at open and checked completely: exact magic, exact
 * payload length (short and long files are both errors), equal counts, labels in [0, 10).
 * zlib's gzread passes non-gzip files through unchanged, so an uncompressed IDX file is
 * accepted too; anything else fails on the magic.
 * Invariant after open: images (count, 1, rows, cols) and labels (count) are fully valid. */
#include "dataset_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#define IDX_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned byte, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned byte, 1 dimension */
#define IDX_N_CLASSES 10
/* Larger images are surely a corrupt header; the bound also keeps rows * cols far from
 * overflowing before the multiplication by the count. */
#define IDX_MAX_SIDE 65536u

/* One opened gzip (or plain) file and its path, for messages. */
struct idx_file {
    gzFile gz;
    const char *path;
};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* zlib's message is "<path>: <reason>"; the caller names the path itself. */
static const char *zlib_reason(const char *zmsg, const char *path)
{
    size_t len = strlen(path);
    if (strncmp(zmsg, path, len) == 0 && strncmp(zmsg + len, ": ", 2) == 0) return zmsg + len + 2;
    return zmsg;
}

static enum ssl_status idx_open_file(struct idx_file *f, const char *path, struct ssl_error *err)
{
    f->path = path;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (f->gz == NULL)
        return ssl_error_set(err, SSL_E_DATA, "%s: cannot open: %s", path,
                             errno ? strerror(errno) : "out of memory");
    /* Bigger than the 8 KiB default: the train images are 47 MB decompressed. */
    gzbuffer(f->gz, 1u << 17);
    return SSL_OK;
}

/* Reads up to n_bytes; *got is how many arrived (fewer only at the end of the file). A damaged
 * or cut-off gzip stream is an error, not a short read. */
static enum ssl_status idx_read_bytes(struct idx_file *f, uint8_t *buf, size_t n_bytes,
                                      size_t *got, struct ssl_error *err)
{
    *got = 0;
    while (*got < n_bytes) {
        size_t want = n_bytes - *got;
        if (want > (1u << 30)) want = 1u << 30; /* gzread takes an unsigned and returns an int */
        int r = gzread(f->gz, buf + *got, (unsigned)want);
        int zerr = Z_OK;
        const char *zmsg = gzerror(f->gz, &zerr);
        if (r < 0 || (zerr != Z_OK && zerr != Z_STREAM_END))
            return ssl_error_set(err, SSL_E_DATA, "%s: %s: %s", f->path,
                                 zerr == Z_ERRNO ? "cannot read" : "bad gzip data",
                                 zlib_reason(zmsg, f->path));
        if (r == 0) break;
        *got += (size_t)r;
    }
    return SSL_OK;
}

/* Reads exactly n_bytes of payload into a buffer that grows as data arrives (so a corrupt
 * header that promises terabytes costs nothing), then demands the end of the file.
 * `what` describes the promised payload for the messages, e.g. "60000 images of 28x28". */
static enum ssl_status idx_read_payload(struct idx_file *f, size_t n_bytes, const char *what,
                                        uint8_t **out, struct ssl_error *err)
{
    size_t cap = n_bytes < (1u << 20) ? n_bytes : (1u << 20), have = 0;
    uint8_t *buf = malloc(cap);
    SSL_CHECK(buf != NULL);
    for (;;) {
        size_t got = 0;
        enum ssl_status st = idx_read_bytes(f, buf + have, cap - have, &got, err);
        if (st != SSL_OK) {
            free(buf);
            return st;
        }
        have += got;
        if (have < cap || cap == n_bytes) break;
        cap = cap > n_bytes / 2 ? n_bytes : 2 * cap;
        uint8_t *grown = realloc(buf, cap);
        SSL_CHECK(grown != NULL);
        buf = grown;
    }
    if (have < n_bytes) {
        free(buf);
        return ssl_error_set(err, SSL_E_DATA,
                             "%s: truncated: header says %s (%zu bytes), file has %zu bytes",
                             f->path, what, n_bytes, have);
    }
    /* Trailing bytes mean the header and the data disagree: refuse rather than guess. */
    uint8_t extra[4096];
    size_t n_extra = 0, got = 0;
    do {
        enum ssl_status st = idx_read_bytes(f, extra, sizeof extra, &got, err);
        if (st != SSL_OK) {
            free(buf);
            return st;
        }
        n_extra += got;
    } while (got == sizeof extra);
    if (n_extra > 0) {
        free(buf);
        return ssl_error_set(err, SSL_E_DATA,
                             "%s: %zu extra bytes after the data: header says %s (%zu bytes)",
                             f->path, n_extra, what, n_bytes);
    }
    *out = buf;
    return SSL_OK;
}

/* Reads the header_bytes-long header; an empty or short file is reported as such. */
static enum ssl_status idx_read_header(struct idx_file *f, uint8_t *hdr, size_t header_bytes,
                                       uint32_t magic, struct ssl_error *err)
{
    size_t got = 0;
    enum ssl_status st = idx_read_bytes(f, hdr, header_bytes, &got, err);
    if (st != SSL_OK) return st;
    if (got == 0) return ssl_error_set(err, SSL_E_DATA, "%s: empty file", f->path);
    if (got >= 4 && be32(hdr) != magic)
        return ssl_error_set(err, SSL_E_DATA,
                             "%s: wrong magic 0x%08x (expected 0x%08x): not an IDX %s file",
                             f->path, be32(hdr), magic,
                             magic == IDX_MAGIC_IMAGES ? "image" : "label");
    if (got < header_bytes)
        return ssl_error_set(err, SSL_E_DATA, "%s: truncated: %zu bytes, the IDX header is %zu",
                             f->path, got, header_bytes);
    return SSL_OK;
}

/* The image file: header n, rows, cols, then n * rows * cols bytes. */
static enum ssl_status idx_load_images(const char *path, struct ssl_dataset_info *info,
                                       uint8_t **images, struct ssl_error *err)
{
    struct idx_file f;
    enum ssl_status st = idx_open_file(&f, path, err);
    if (st != SSL_OK) return st;
    uint8_t hdr[16] = {0};
    st = idx_read_header(&f, hdr, sizeof hdr, IDX_MAGIC_IMAGES, err);
    uint32_t n = be32(hdr + 4), rows = be32(hdr + 8), cols = be32(hdr + 12);
    if (st == SSL_OK && (n == 0 || rows == 0 || cols == 0 || rows > IDX_MAX_SIDE ||
                         cols > IDX_MAX_SIDE))
        st = ssl_error_set(err, SSL_E_DATA,
                           "%s: bad header: %u images of %ux%u (need 1 or more images, sides in 1..%u)",
                           path, n, rows, cols, IDX_MAX_SIDE);
    if (st == SSL_OK) {
        char what[96];
        snprintf(what, sizeof what, "%u images of %ux%u", n, rows, cols);
        /* n < 2^32 and rows * cols <= 2^32, so the product fits 64 bits. */
        uint64_t n_bytes = (uint64_t)n * rows * cols;
        if (n_bytes > SIZE_MAX)
            st = ssl_error_set(err, SSL_E_DATA, "%s: header says %s, too large for memory", path,
                               what);
        else
            st = idx_read_payload(&f, (size_t)n_bytes, what, images, err);
    }
    gzclose(f.gz);
    if (st != SSL_OK) return st;
    info->count = n;
    info->channels = 1;
    info->height = rows;
    info->width = cols;
    return SSL_OK;
}

/* The label file: header n, then n bytes, each a class in [0, 10). */
static enum ssl_status idx_load_labels(const char *path, int64_t *count, uint8_t **labels,
                                       struct ssl_error *err)
{
    struct idx_file f;
    enum ssl_status st = idx_open_file(&f, path, err);
    if (st != SSL_OK) return st;
    uint8_t hdr[8] = {0};
    st = idx_read_header(&f, hdr, sizeof hdr, IDX_MAGIC_LABELS, err);
    uint32_t n = be32(hdr + 4);
    if (st == SSL_OK && n == 0)
        st = ssl_error_set(err, SSL_E_DATA, "%s: bad header: 0 labels", path);
    if (st == SSL_OK) {
        char what[64];
        snprintf(what, sizeof what, "%u labels", n);
        st = idx_read_payload(&f, n, what, labels, err);
    }
    gzclose(f.gz);
    if (st != SSL_OK) return st;
    for (uint32_t i = 0; i < n; i++) {
        if ((*labels)[i] >= IDX_N_CLASSES) {
            st = ssl_error_set(err, SSL_E_DATA, "%s: label %u at index %u is outside [0, %d)",
                               path, (unsigned)(*labels)[i], i, IDX_N_CLASSES);
            free(*labels);
            *labels = NULL;
            return st;
        }
    }
    *count = n;
    return SSL_OK;
}


/* "<dir>/<prefix>-<kind>-idx<d>-ubyte.gz"; a path that does not fit is a usage error. */
static enum ssl_status idx_path(char *out, size_t size, const char *dir, const char *prefix,
                                const char *rest, struct ssl_error *err)
{
    int len = snprintf(out, size, "%s/%s-%s", dir, prefix, rest);
    if (len < 0 || (size_t)len >= size)
        return ssl_error_set(err, SSL_E_USAGE, "%s: fashion-mnist directory path is too long",
                             dir);
    return SSL_OK;
}

enum ssl_status ssl_dataset_open_idx(struct ssl_dataset **ds, const struct ssl_dataset_open_args *a,
                                     struct ssl_error *err)
{
    const char *dir = a->path != NULL && a->path[0] != '\0' ? a->path : IDX_DEFAULT_DIR;
    const char *prefix = a->split == SSL_SPLIT_TRAIN ? "train" : "t10k";
    struct ssl_memory_dataset *s = ssl_memory_dataset_new();
    struct ssl_dataset *d = &s->ds;
    char images_path[sizeof d->info.source + 32], labels_path[sizeof images_path];
    enum ssl_status st = SSL_OK;
    if (snprintf(d->info.source, sizeof d->info.source, "%s", dir) >= (int)sizeof d->info.source)
        st = ssl_error_set(err, SSL_E_USAGE, "%.64s...: fashion-mnist directory path is too long",
                           dir);
    if (st == SSL_OK)
        st = idx_path(images_path, sizeof images_path, dir, prefix, "images-idx3-ubyte.gz", err);
    if (st == SSL_OK)
        st = idx_path(labels_path, sizeof labels_path, dir, prefix, "labels-idx1-ubyte.gz", err);
    if (st == SSL_OK) st = idx_load_images(images_path, &d->info, &s->images, err);
    int64_t n_labels = 0;
    if (st == SSL_OK) st = idx_load_labels(labels_path, &n_labels, &s->labels, err);
    if (st == SSL_OK && n_labels != d->info.count)
        st = ssl_error_set(err, SSL_E_DATA, "%s: %lld labels, but %s has %lld images",
                           labels_path, (long long)n_labels, images_path,
                           (long long)d->info.count);
    if (st != SSL_OK) {
        d->close(d);
        return st;
    }
    d->info.n_classes = IDX_N_CLASSES;
    *ds = d;
    return SSL_OK;
}
