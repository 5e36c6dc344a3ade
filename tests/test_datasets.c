/* test_datasets.c: the in-memory dataset formats (io/dataset.c, io/dataset_idx.c,
 * io/dataset_cifar.c): Fashion-MNIST IDX gzip and CIFAR-10/100 binary.
 *
 * Every input is written at test time into its own subdirectory of a mkdtemp directory, with
 * pixels and labels from a formula, so each read can be checked byte for byte against the
 * formula rather than against the reader. Each broken-file case asserts SSL_E_DATA and a
 * one-line message naming the file and the reason. The real Fashion-MNIST package is checked
 * against an independent decompression with zlib (skipped when it is not installed).
 * No MPI calls: these formats ignore comm, and MPI_COMM_SELF is a constant in Open MPI. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "dataset.h"

#define REAL_FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define CIFAR_IMAGE_BYTES 3072

struct fixture {
    char dir[64];   /* the mkdtemp directory */
    char sub[128];  /* the current test's subdirectory */
    char path[256]; /* scratch for file paths */
    int n_subs;
};

static int group_setup(void **state)
{
    static struct fixture fx;
    snprintf(fx.dir, sizeof fx.dir, "/tmp/test_datasets.XXXXXX");
    if (mkdtemp(fx.dir) == NULL) return -1;
    *state = &fx;
    return 0;
}

/* Removes dir and everything below it (what a failed test left behind too). */
static int rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    return rmdir(dir);
}

static int group_teardown(void **state)
{
    struct fixture *fx = *state;
    return rm_tree(fx->dir);
}

/* A fresh empty subdirectory for one case; returns its path. */
static const char *new_sub(struct fixture *fx)
{
    snprintf(fx->sub, sizeof fx->sub, "%s/case%d", fx->dir, fx->n_subs++);
    assert_int_equal(mkdir(fx->sub, 0700), 0);
    return fx->sub;
}

static const char *sub_path(struct fixture *fx, const char *name)
{
    snprintf(fx->path, sizeof fx->path, "%s/%s", fx->sub, name);
    return fx->path;
}

static void write_plain(const char *path, const uint8_t *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n > 0) assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const uint8_t *bytes, size_t n)
{
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    if (n > 0) assert_int_equal(gzwrite(gz, bytes, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- Fashion-MNIST IDX ---------------------------------------------------------------- */

/* The known bytes: pixel p of image i of a split (seed differs per split). */
static uint8_t idx_pixel(int seed, int64_t i, int64_t p)
{
    return (uint8_t)(seed * 17 + i * 31 + p * 7 + 3);
}

static uint8_t idx_label(int seed, int64_t i)
{
    return (uint8_t)((seed + i * 3) % 10);
}

/* How one split's pair of files is written; zero fields mean "correct". */
struct idx_spec {
    uint32_t images_magic, labels_magic; /* 0: the right magic */
    int64_t n_images, n_labels;          /* counts in the headers */
    int64_t pixel_bytes_delta;           /* added to the exact pixel payload length */
    int64_t label_bytes_delta;           /* added to the exact label payload length */
    int64_t bad_label_at;                /* -1: none; else that label becomes 10 */
    int plain;                           /* write uncompressed */
    int no_images, no_labels;            /* leave a file out */
    int images_header_bytes;             /* 0: 16; else cut the file there (empty: -1) */
};

enum { ROWS = 4, COLS = 3 };

static void write_idx_images(const char *path, const struct idx_spec *s, int seed)
{
    int64_t n_pix = s->n_images * ROWS * COLS + s->pixel_bytes_delta;
    size_t n = 16 + (size_t)(n_pix > 0 ? n_pix : 0);
    uint8_t *buf = calloc(n, 1);
    assert_non_null(buf);
    put_be32(buf, s->images_magic ? s->images_magic : 0x00000803u);
    put_be32(buf + 4, (uint32_t)s->n_images);
    put_be32(buf + 8, ROWS);
    put_be32(buf + 12, COLS);
    for (size_t k = 16; k < n; k++) {
        int64_t q = (int64_t)k - 16;
        buf[k] = idx_pixel(seed, q / (ROWS * COLS), q % (ROWS * COLS));
    }
    if (s->images_header_bytes != 0) n = s->images_header_bytes < 0 ? 0 : (size_t)s->images_header_bytes;
    (s->plain ? write_plain : write_gz)(path, buf, n);
    free(buf);
}

static void write_idx_labels(const char *path, const struct idx_spec *s, int seed)
{
    int64_t n_lab = s->n_labels + s->label_bytes_delta;
    size_t n = 8 + (size_t)(n_lab > 0 ? n_lab : 0);
    uint8_t *buf = calloc(n, 1);
    assert_non_null(buf);
    put_be32(buf, s->labels_magic ? s->labels_magic : 0x00000801u);
    put_be32(buf + 4, (uint32_t)s->n_labels);
    for (size_t k = 8; k < n; k++) buf[k] = idx_label(seed, (int64_t)k - 8);
    if (s->bad_label_at >= 0) buf[8 + s->bad_label_at] = 10;
    (s->plain ? write_plain : write_gz)(path, buf, n);
    free(buf);
}

static void write_idx_split(struct fixture *fx, const char *prefix, const struct idx_spec *s,
                            int seed)
{
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", prefix);
    if (!s->no_images) write_idx_images(sub_path(fx, name), s, seed);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", prefix);
    if (!s->no_labels) write_idx_labels(sub_path(fx, name), s, seed);
}

static struct idx_spec idx_good(int64_t n)
{
    return (struct idx_spec){.n_images = n, .n_labels = n, .bad_label_at = -1};
}

static struct ssl_dataset_open_args args_for(enum ssl_dataset_kind kind, const char *path,
                                             enum ssl_split split)
{
    return (struct ssl_dataset_open_args){.kind = kind, .path = path, .split = split,
                                          .cifar100_labels = SSL_CIFAR100_FINE,
                                          .comm = MPI_COMM_SELF};
}

static struct ssl_dataset *open_ok(const struct ssl_dataset_open_args *a)
{
    struct ssl_dataset *ds = NULL;
    struct ssl_error err = {0};
    enum ssl_status st = ssl_dataset_open(&ds, a, &err);
    if (st != SSL_OK) print_error("unexpected error: %s\n", err.msg);
    assert_int_equal(st, SSL_OK);
    assert_non_null(ds);
    return ds;
}

/* Asserts open fails with code, one line, mentioning both substrings. */
static void open_fails(const struct ssl_dataset_open_args *a, enum ssl_status code,
                       const char *names, const char *reason)
{
    struct ssl_dataset *ds = (struct ssl_dataset *)&ds; /* must be reset to NULL */
    struct ssl_error err = {0};
    enum ssl_status st = ssl_dataset_open(&ds, a, &err);
    print_message("    -> %s\n", err.msg);
    assert_int_equal(st, code);
    assert_int_equal(err.code, code);
    assert_null(ds);
    assert_null(strchr(err.msg, '\n'));
    assert_non_null(strstr(err.msg, names));
    assert_non_null(strstr(err.msg, reason));
}

/* Reads indices and checks every byte and label against the formula of the split. */
static void check_idx_read(struct ssl_dataset *ds, int seed, const int64_t *idx, int64_t n)
{
    enum { PIX = ROWS * COLS };
    uint8_t images[16 * PIX];
    int64_t labels[16];
    assert_true(n <= 16);
    struct ssl_error err = {0};
    assert_int_equal(ssl_dataset_read(ds, idx, n, images, labels, &err), SSL_OK);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t p = 0; p < PIX; p++)
            assert_int_equal(images[i * PIX + p], idx_pixel(seed, idx[i], p));
        assert_int_equal(labels[i], idx_label(seed, idx[i]));
    }
}

static void test_idx_reads(void **state)
{
    struct fixture *fx = *state;
    const char *dir = new_sub(fx);
    struct idx_spec train = idx_good(5), test = idx_good(2);
    write_idx_split(fx, "train", &train, 1);
    write_idx_split(fx, "t10k", &test, 2);

    struct ssl_dataset_open_args a = args_for(SSL_DATASET_FASHION_MNIST, dir, SSL_SPLIT_TRAIN);
    struct ssl_dataset *ds = open_ok(&a);
    const struct ssl_dataset_info *info = ssl_dataset_info(ds);
    assert_int_equal(info->count, 5);
    assert_int_equal(info->channels, 1);
    assert_int_equal(info->height, ROWS);
    assert_int_equal(info->width, COLS);
    assert_int_equal(info->n_classes, 10);
    assert_string_equal(info->source, dir);
    const int64_t shuffled[] = {4, 0, 4, 2, 1, 3, 0};
    check_idx_read(ds, 1, shuffled, 7);
    /* labels may be NULL; n = 0 reads nothing */
    uint8_t one[ROWS * COLS];
    struct ssl_error err = {0};
    const int64_t three = 3;
    assert_int_equal(ssl_dataset_read(ds, &three, 1, one, NULL, &err), SSL_OK);
    assert_int_equal(one[5], idx_pixel(1, 3, 5));
    assert_int_equal(ssl_dataset_read(ds, NULL, 0, NULL, NULL, &err), SSL_OK);
    ssl_dataset_close(ds);

    a.split = SSL_SPLIT_TEST;
    ds = open_ok(&a);
    assert_int_equal(ssl_dataset_info(ds)->count, 2);
    const int64_t both[] = {1, 1, 0};
    check_idx_read(ds, 2, both, 3);
    ssl_dataset_close(ds);
}

/* zlib reads an uncompressed file transparently; the format is the same, so it is accepted. */
static void test_idx_plain_file_is_accepted(void **state)
{
    struct fixture *fx = *state;
    const char *dir = new_sub(fx);
    struct idx_spec s = idx_good(3);
    s.plain = 1;
    write_idx_split(fx, "train", &s, 5);
    struct ssl_dataset_open_args a = args_for(SSL_DATASET_FASHION_MNIST, dir, SSL_SPLIT_TRAIN);
    struct ssl_dataset *ds = open_ok(&a);
    const int64_t idx[] = {2, 0, 1};
    check_idx_read(ds, 5, idx, 3);
    ssl_dataset_close(ds);
}

struct idx_case {
    const char *what;
    struct idx_spec spec;
    const char *file;   /* expected in the message */
    const char *reason; /* expected in the message */
};

#define GOOD .n_images = 5, .n_labels = 5, .bad_label_at = -1
static const struct idx_case idx_cases[] = {
    {"wrong image magic", {GOOD, .images_magic = 0x00000804u}, "train-images-idx3-ubyte.gz",
     "wrong magic 0x00000804"},
    {"wrong label magic", {GOOD, .labels_magic = 0x00000803u}, "train-labels-idx1-ubyte.gz",
     "wrong magic 0x00000803"},
    {"truncated images", {GOOD, .pixel_bytes_delta = -10}, "train-images-idx3-ubyte.gz",
     "truncated: header says 5 images of 4x3 (60 bytes), file has 50 bytes"},
    {"truncated labels", {GOOD, .label_bytes_delta = -1}, "train-labels-idx1-ubyte.gz",
     "truncated: header says 5 labels (5 bytes), file has 4 bytes"},
    {"trailing image bytes", {GOOD, .pixel_bytes_delta = 7}, "train-images-idx3-ubyte.gz",
     "7 extra bytes"},
    {"trailing label bytes", {GOOD, .label_bytes_delta = 2}, "train-labels-idx1-ubyte.gz",
     "2 extra bytes"},
    {"label count", {.n_images = 5, .n_labels = 4, .bad_label_at = -1},
     "train-labels-idx1-ubyte.gz", "4 labels, but"},
    {"label 10", {.n_images = 5, .n_labels = 5, .bad_label_at = 2}, "train-labels-idx1-ubyte.gz",
     "label 10 at index 2 is outside [0, 10)"},
    {"no images file", {GOOD, .no_images = 1}, "train-images-idx3-ubyte.gz",
     "No such file or directory"},
    {"no labels file", {GOOD, .no_labels = 1}, "train-labels-idx1-ubyte.gz",
     "No such file or directory"},
    {"empty images file", {GOOD, .images_header_bytes = -1}, "train-images-idx3-ubyte.gz",
     "empty file"},
    {"cut header", {GOOD, .images_header_bytes = 10}, "train-images-idx3-ubyte.gz",
     "truncated: 10 bytes, the IDX header is 16"},
    {"zero images", {.n_images = 0, .n_labels = 0, .bad_label_at = -1},
     "train-images-idx3-ubyte.gz", "bad header: 0 images"},
};
#undef GOOD

static void test_idx_broken_files(void **state)
{
    struct fixture *fx = *state;
    for (size_t c = 0; c < sizeof idx_cases / sizeof idx_cases[0]; c++) {
        print_message("  case: %s\n", idx_cases[c].what);
        const char *dir = new_sub(fx);
        write_idx_split(fx, "train", &idx_cases[c].spec, 1);
        struct ssl_dataset_open_args a = args_for(SSL_DATASET_FASHION_MNIST, dir, SSL_SPLIT_TRAIN);
        open_fails(&a, SSL_E_DATA, idx_cases[c].file, idx_cases[c].reason);
    }
}

/* Files that are not IDX at all: random bytes, and a gzip stream cut in half. */
static void test_idx_not_idx(void **state)
{
    struct fixture *fx = *state;
    const char *dir = new_sub(fx);
    struct idx_spec s = idx_good(5);
    write_idx_split(fx, "train", &s, 1);
    uint8_t junk[200];
    for (size_t k = 0; k < sizeof junk; k++) junk[k] = (uint8_t)(k * 37 + 11);
    write_plain(sub_path(fx, "train-images-idx3-ubyte.gz"), junk, sizeof junk);
    struct ssl_dataset_open_args a = args_for(SSL_DATASET_FASHION_MNIST, dir, SSL_SPLIT_TRAIN);
    open_fails(&a, SSL_E_DATA, "train-images-idx3-ubyte.gz", "wrong magic");

    /* A real gzip file with its second half missing: zlib reports the cut. Large enough
     * that the cut is inside the deflate data, not inside the 10-byte gzip header. */
    dir = new_sub(fx);
    s = idx_good(400);
    write_idx_split(fx, "train", &s, 1);
    const char *path = sub_path(fx, "train-images-idx3-ubyte.gz");
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    a.path = dir;
    open_fails(&a, SSL_E_DATA, "train-images-idx3-ubyte.gz", "gzip");
}

/* ---- CIFAR -------------------------------------------------------------------------------- */

/* Pixel p of global record g (the R, G and B planes differ by the plane term). */
static uint8_t cifar_pixel(int64_t g, int64_t p)
{
    return (uint8_t)(g * 131 + p * 7 + (p / 1024) * 50);
}

/* Writes n records whose global indices start at first; labels from label(g). */
static void write_cifar(const char *path, int n_label_bytes, int64_t first, int64_t n,
                        uint8_t (*label)(int64_t g, int b), int64_t bad_at, int bad_byte,
                        uint8_t bad_value, int64_t extra_bytes)
{
    size_t rec = (size_t)n_label_bytes + CIFAR_IMAGE_BYTES;
    size_t total = rec * (size_t)n + (size_t)extra_bytes;
    uint8_t *buf = calloc(total + 1, 1);
    assert_non_null(buf);
    for (int64_t r = 0; r < n; r++) {
        uint8_t *p = buf + (size_t)r * rec;
        for (int b = 0; b < n_label_bytes; b++) p[b] = label(first + r, b);
        if (r == bad_at) p[bad_byte] = bad_value;
        for (int64_t q = 0; q < CIFAR_IMAGE_BYTES; q++)
            p[n_label_bytes + q] = cifar_pixel(first + r, q);
    }
    write_plain(path, buf, total);
    free(buf);
}

static uint8_t c10_label(int64_t g, int b)
{
    (void)b;
    return (uint8_t)((g * 7 + 1) % 10);
}

/* CIFAR-100: byte 0 coarse in [0, 20), byte 1 fine in [0, 100). */
static uint8_t c100_label(int64_t g, int b)
{
    return b == 0 ? (uint8_t)((g * 3 + 2) % 20) : (uint8_t)((g * 37 + 5) % 100);
}

/* CIFAR-10 train: data_batch_1..5 with these record counts (global indices run on). */
static const int64_t c10_batch_records[5] = {2, 1, 3, 1, 2};
enum { C10_TRAIN = 9, C10_TEST = 2, C10_TEST_FIRST = 100 };

static void write_c10(struct fixture *fx, int skip_batch)
{
    int64_t first = 0;
    for (int b = 0; b < 5; b++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", b + 1);
        if (b + 1 != skip_batch)
            write_cifar(sub_path(fx, name), 1, first, c10_batch_records[b], c10_label, -1, 0, 0,
                        0);
        first += c10_batch_records[b];
    }
    write_cifar(sub_path(fx, "test_batch.bin"), 1, C10_TEST_FIRST, C10_TEST, c10_label, -1, 0, 0,
                0);
}

/* Reads idx and checks bytes and labels; g0 is the global index of record 0 of the split. */
static void check_cifar_read(struct ssl_dataset *ds, int64_t g0, const int64_t *idx, int64_t n,
                             uint8_t (*label)(int64_t g, int b), int label_byte)
{
    uint8_t *images = malloc((size_t)n * CIFAR_IMAGE_BYTES);
    int64_t labels[32];
    assert_non_null(images);
    assert_true(n <= 32);
    struct ssl_error err = {0};
    assert_int_equal(ssl_dataset_read(ds, idx, n, images, labels, &err), SSL_OK);
    for (int64_t i = 0; i < n; i++) {
        int64_t g = g0 + idx[i];
        for (int64_t p = 0; p < CIFAR_IMAGE_BYTES; p++)
            if (images[i * CIFAR_IMAGE_BYTES + p] != cifar_pixel(g, p))
                fail_msg("image %lld (index %lld) pixel %lld: %u, expected %u", (long long)i,
                         (long long)idx[i], (long long)p, images[i * CIFAR_IMAGE_BYTES + p],
                         cifar_pixel(g, p));
        assert_int_equal(labels[i], label(g, label_byte));
    }
    free(images);
}

static void check_cifar_info(const struct ssl_dataset *ds, int64_t count, int64_t n_classes)
{
    const struct ssl_dataset_info *info = ssl_dataset_info(ds);
    assert_int_equal(info->count, count);
    assert_int_equal(info->channels, 3);
    assert_int_equal(info->height, 32);
    assert_int_equal(info->width, 32);
    assert_int_equal(info->n_classes, n_classes);
}

static void test_cifar10_reads(void **state)
{
    struct fixture *fx = *state;
    const char *dir = new_sub(fx);
    write_c10(fx, 0);
    struct ssl_dataset_open_args a = args_for(SSL_DATASET_CIFAR10, dir, SSL_SPLIT_TRAIN);
    struct ssl_dataset *ds = open_ok(&a);
    check_cifar_info(ds, C10_TRAIN, 10);
    assert_string_equal(ssl_dataset_info(ds)->source, dir);
    /* crosses every batch boundary, out of order, with repeats */
    const int64_t idx[] = {8, 0, 3, 2, 8, 6, 1, 7, 5, 4, 0};
    check_cifar_read(ds, 0, idx, 11, c10_label, 0);
    ssl_dataset_close(ds);

    a.split = SSL_SPLIT_TEST;
    ds = open_ok(&a);
    check_cifar_info(ds, C10_TEST, 10);
    const int64_t tidx[] = {1, 0, 1};
    check_cifar_read(ds, C10_TEST_FIRST, tidx, 3, c10_label, 0);
    ssl_dataset_close(ds);
}

static void test_cifar100_reads(void **state)
{
    struct fixture *fx = *state;
    const char *dir = new_sub(fx);
    write_cifar(sub_path(fx, "train.bin"), 2, 0, 5, c100_label, -1, 0, 0, 0);
    write_cifar(sub_path(fx, "test.bin"), 2, 50, 3, c100_label, -1, 0, 0, 0);
    const int64_t idx[] = {4, 1, 1, 0, 3, 2};
    struct ssl_dataset_open_args a = args_for(SSL_DATASET_CIFAR100, dir, SSL_SPLIT_TRAIN);
    struct ssl_dataset *ds = open_ok(&a);
    check_cifar_info(ds, 5, 100);
    check_cifar_read(ds, 0, idx, 6, c100_label, 1);
    ssl_dataset_close(ds);

    a.cifar100_labels = SSL_CIFAR100_COARSE;
    ds = open_ok(&a);
    check_cifar_info(ds, 5, 20);
    check_cifar_read(ds, 0, idx, 6, c100_label, 0);
    ssl_dataset_close(ds);

    a.split = SSL_SPLIT_TEST;
    ds = open_ok(&a);
    check_cifar_info(ds, 3, 20);
    const int64_t tidx[] = {2, 0, 2, 1};
    check_cifar_read(ds, 50, tidx, 4, c100_label, 0);
    ssl_dataset_close(ds);
}

static void test_cifar_broken_files(void **state)
{
    struct fixture *fx = *state;
    struct ssl_dataset_open_args a = args_for(SSL_DATASET_CIFAR10, NULL, SSL_SPLIT_TRAIN);

    print_message("  case: CIFAR-10 label 10\n");
    a.path = new_sub(fx);
    write_c10(fx, 0);
    write_cifar(sub_path(fx, "data_batch_2.bin"), 1, 2, 1, c10_label, 0, 0, 10, 0);
    open_fails(&a, SSL_E_DATA, "data_batch_2.bin", "record 0: label 10 is outside [0, 10)");

    print_message("  case: missing data_batch_3.bin\n");
    a.path = new_sub(fx);
    write_c10(fx, 3);
    open_fails(&a, SSL_E_DATA, "data_batch_3.bin", "No such file or directory");

    print_message("  case: size not a multiple of the record\n");
    a.path = new_sub(fx);
    write_c10(fx, 0);
    write_cifar(sub_path(fx, "data_batch_4.bin"), 1, 6, 1, c10_label, -1, 0, 0, 100);
    open_fails(&a, SSL_E_DATA, "data_batch_4.bin",
               "size 3173 bytes is not a multiple of the 3073-byte record");

    print_message("  case: empty test file\n");
    a.path = new_sub(fx);
    write_c10(fx, 0);
    write_plain(sub_path(fx, "test_batch.bin"), NULL, 0);
    a.split = SSL_SPLIT_TEST;
    open_fails(&a, SSL_E_DATA, "test_batch.bin", "empty file");

    a.kind = SSL_DATASET_CIFAR100;
    a.split = SSL_SPLIT_TRAIN;
    print_message("  case: CIFAR-100 fine label 100\n");
    a.path = new_sub(fx);
    write_cifar(sub_path(fx, "train.bin"), 2, 0, 4, c100_label, 3, 1, 100, 0);
    open_fails(&a, SSL_E_DATA, "train.bin", "record 3: fine label 100 is outside [0, 100)");
    print_message("  case: CIFAR-100 coarse label 20 (even when fine labels are used)\n");
    a.path = new_sub(fx);
    write_cifar(sub_path(fx, "train.bin"), 2, 0, 4, c100_label, 1, 0, 20, 0);
    open_fails(&a, SSL_E_DATA, "train.bin", "record 1: coarse label 20 is outside [0, 20)");
    print_message("  case: CIFAR-100 file of CIFAR-10 records\n");
    a.path = new_sub(fx);
    write_cifar(sub_path(fx, "test.bin"), 1, 0, 3, c10_label, -1, 0, 0, 0);
    a.split = SSL_SPLIT_TEST;
    open_fails(&a, SSL_E_DATA, "test.bin", "not a multiple of the 3074-byte record");
    print_message("  case: no path\n");
    a.path = NULL;
    open_fails(&a, SSL_E_USAGE, "cifar100", "no path");
}

/* ---- the dispatch ------------------------------------------------------------------------- */

static void test_kind_names(void **state)
{
    (void)state;
    const char *names[] = {"fashion_mnist", "cifar10", "cifar100", "hdf5"};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(ssl_dataset_kind_from_name(names[k]), k);
        assert_string_equal(ssl_dataset_kind_name((enum ssl_dataset_kind)k), names[k]);
    }
    assert_int_equal(ssl_dataset_kind_from_name("mnist"), -1);
    assert_int_equal(ssl_dataset_kind_from_name("CIFAR10"), -1);
    assert_int_equal(ssl_dataset_kind_from_name(""), -1);
    assert_int_equal(ssl_dataset_kind_from_name(NULL), -1);
    assert_string_equal(ssl_dataset_kind_name((enum ssl_dataset_kind)42), "unknown");
}

static void test_open_bad_args(void **state)
{
    (void)state;
    struct ssl_dataset_open_args a = args_for((enum ssl_dataset_kind)42, "/tmp", SSL_SPLIT_TRAIN);
    open_fails(&a, SSL_E_USAGE, "ssl_dataset_open", "unknown dataset kind 42");
    a = args_for(SSL_DATASET_CIFAR10, "/tmp", (enum ssl_split)7);
    open_fails(&a, SSL_E_USAGE, "ssl_dataset_open", "unknown split 7");
    struct ssl_dataset *ds = NULL;
    struct ssl_error err = {0};
    assert_int_equal(ssl_dataset_open(&ds, NULL, &err), SSL_E_USAGE);
    ssl_dataset_close(NULL); /* like free(NULL) */
}

/* An index outside [0, count) is a usage error naming it, and nothing is written. */
static void test_index_out_of_range(void **state)
{
    struct fixture *fx = *state;
    const char *dir = new_sub(fx);
    write_c10(fx, 0);
    struct ssl_dataset_open_args a = args_for(SSL_DATASET_CIFAR10, dir, SSL_SPLIT_TRAIN);
    struct ssl_dataset *ds = open_ok(&a);
    static uint8_t images[3 * CIFAR_IMAGE_BYTES];
    int64_t labels[3] = {-7, -7, -7};
    const int64_t bad[][3] = {{0, 9, 1}, {-1, 0, 1}, {0, 1, INT64_MAX}};
    const char *want[] = {"index 9 (position 1 of 3) is outside [0, 9)",
                          "index -1 (position 0 of 3) is outside [0, 9)",
                          "index 9223372036854775807 (position 2 of 3) is outside [0, 9)"};
    for (int c = 0; c < 3; c++) {
        memset(images, 0xAB, sizeof images);
        struct ssl_error err = {0};
        assert_int_equal(ssl_dataset_read(ds, bad[c], 3, images, labels, &err), SSL_E_USAGE);
        print_message("    -> %s\n", err.msg);
        assert_non_null(strstr(err.msg, dir));
        assert_non_null(strstr(err.msg, want[c]));
        for (size_t k = 0; k < sizeof images; k++) assert_int_equal(images[k], 0xAB);
        assert_int_equal(labels[0], -7);
    }
    struct ssl_error err = {0};
    assert_int_equal(ssl_dataset_read(ds, bad[0], -1, images, labels, &err), SSL_E_USAGE);
    ssl_dataset_close(ds);
}

/* ---- the installed Fashion-MNIST ------------------------------------------------------- */

/* Decompresses a whole .gz with zlib directly, independently of the reader. */
static uint8_t *gunzip_all(const char *path, size_t *n)
{
    gzFile gz = gzopen(path, "rb");
    assert_non_null(gz);
    size_t cap = 1 << 20, have = 0;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    for (int r; (r = gzread(gz, buf + have, (unsigned)(cap - have))) > 0;) {
        have += (size_t)r;
        if (have == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    assert_int_equal(gzclose(gz), Z_OK);
    *n = have;
    return buf;
}

static void check_real_split(const char *dir, enum ssl_split split, const char *prefix,
                             int64_t count)
{
    char path[256];
    size_t n_img = 0, n_lab = 0;
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", REAL_FMNIST_DIR, prefix);
    uint8_t *raw_images = gunzip_all(path, &n_img);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", REAL_FMNIST_DIR, prefix);
    uint8_t *raw_labels = gunzip_all(path, &n_lab);
    assert_int_equal(n_img, 16 + (size_t)count * 784);
    assert_int_equal(n_lab, 8 + (size_t)count);

    struct ssl_dataset_open_args a = args_for(SSL_DATASET_FASHION_MNIST, dir, split);
    struct ssl_dataset *ds = open_ok(&a);
    const struct ssl_dataset_info *info = ssl_dataset_info(ds);
    assert_int_equal(info->count, count);
    assert_int_equal(info->channels, 1);
    assert_int_equal(info->height, 28);
    assert_int_equal(info->width, 28);
    assert_int_equal(info->n_classes, 10);

    /* every label, read in chunks of 1000, against the raw label bytes; and the sums of all
     * pixels */
    enum { CHUNK = 1000 };
    int64_t idx[CHUNK], labels[CHUNK];
    static uint8_t images[CHUNK * 784];
    uint64_t label_sum = 0, raw_label_sum = 0, pixel_sum = 0, raw_pixel_sum = 0;
    for (int64_t first = 0; first < count; first += CHUNK) {
        for (int64_t i = 0; i < CHUNK; i++) idx[i] = first + i;
        struct ssl_error err = {0};
        assert_int_equal(ssl_dataset_read(ds, idx, CHUNK, images, labels, &err), SSL_OK);
        for (int64_t i = 0; i < CHUNK; i++) {
            label_sum += (uint64_t)labels[i];
            assert_int_equal(labels[i], raw_labels[8 + first + i]);
        }
        for (size_t k = 0; k < sizeof images; k++) pixel_sum += images[k];
    }
    for (int64_t i = 0; i < count; i++) raw_label_sum += raw_labels[8 + i];
    for (size_t k = 16; k < n_img; k++) raw_pixel_sum += raw_images[k];
    assert_int_equal(label_sum, raw_label_sum);
    assert_int_equal(pixel_sum, raw_pixel_sum);
    /* image 0 and the last image against the raw bytes at their offsets */
    const int64_t ends[2] = {count - 1, 0};
    struct ssl_error err = {0};
    assert_int_equal(ssl_dataset_read(ds, ends, 2, images, NULL, &err), SSL_OK);
    assert_memory_equal(images, raw_images + 16 + (size_t)(count - 1) * 784, 784);
    assert_memory_equal(images + 784, raw_images + 16, 784);
    ssl_dataset_close(ds);
    free(raw_images);
    free(raw_labels);
}

static void test_real_fashion_mnist(void **state)
{
    (void)state;
    struct stat sb;
    if (stat(REAL_FMNIST_DIR, &sb) != 0) {
        print_message("  %s is not installed (dataset-fashion-mnist)\n", REAL_FMNIST_DIR);
        skip();
    }
    check_real_split(REAL_FMNIST_DIR, SSL_SPLIT_TRAIN, "train", 60000);
    check_real_split(NULL, SSL_SPLIT_TEST, "t10k", 10000); /* NULL: the default directory */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_open_bad_args),
        cmocka_unit_test(test_idx_reads),
        cmocka_unit_test(test_idx_plain_file_is_accepted),
        cmocka_unit_test(test_idx_broken_files),
        cmocka_unit_test(test_idx_not_idx),
        cmocka_unit_test(test_cifar10_reads),
        cmocka_unit_test(test_cifar100_reads),
        cmocka_unit_test(test_cifar_broken_files),
        cmocka_unit_test(test_index_out_of_range),
        cmocka_unit_test(test_real_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
