/* test_hdf5_dataset.c: the HDF5 image dataset, reader and writer, on one process.
 *
 * Files are written with the raw HDF5 C API (an independent writer), so the reader is checked
 * against data it did not produce: exact bytes from a formula, labels, shapes, n_classes from
 * the attribute and from max + 1. Every kind of broken file must give SSL_E_DATA and one line
 * naming the file and the reason. The writer is checked by a round trip from an in-test fake
 * dataset and by h5dump. Calls the format functions directly (ssl_dataset_open_hdf5, ds->read,
 * ds->close) so it does not depend on the dispatcher in io/dataset.c. MPI is initialised
 * because the MPI-IO driver needs it; the program runs as a singleton. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>
#include <mpi.h>

#include "dataset_impl.h"

static char g_dir[64];

static uint8_t pixel(int64_t i, int64_t c, int64_t h, int64_t w)
{
    return (uint8_t)((i * 131 + c * 17 + h * 5 + w * 3 + 7) % 251);
}

/* What the raw writer puts in a file; fields select the breakage under test. */
struct spec {
    int64_t n, c, h, w;
    int64_t n_labels;       /* labels length (normally n) */
    hid_t img_type;         /* file type of the images */
    hid_t lbl_type;         /* file type of the labels */
    int img_rank;           /* 4, or 3 to break it */
    int64_t n_classes_attr; /* 0: no attribute */
    int64_t label_mod;      /* label i = i % label_mod */
    int64_t bad_label_at;   /* -1: none; else labels[at] = bad_label */
    int64_t bad_label;
    int write_images, write_labels;
    const char *prefix;     /* "" or "/test" */
};

static struct spec good_spec(void)
{
    return (struct spec){.n = 10, .c = 2, .h = 3, .w = 4, .n_labels = 10,
                         .img_type = H5T_STD_U8LE, .lbl_type = H5T_STD_I32LE, .img_rank = 4,
                         .n_classes_attr = 0, .label_mod = 3, .bad_label_at = -1,
                         .write_images = 1, .write_labels = 1, .prefix = ""};
}

static void path_for(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
}

static void raw_write_images(hid_t file, const struct spec *sp)
{
    char name[64];
    snprintf(name, sizeof name, "%s/images", sp->prefix);
    hsize_t dims[4] = {(hsize_t)sp->n, (hsize_t)sp->c, (hsize_t)sp->h, (hsize_t)sp->w};
    if (sp->img_rank == 3) dims[2] *= dims[3];
    hid_t space = H5Screate_simple(sp->img_rank, dims, NULL);
    hid_t d = H5Dcreate2(file, name, sp->img_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    size_t n_elems = (size_t)(sp->n * sp->c * sp->h * sp->w);
    uint8_t *buf = malloc(n_elems + 1); /* (n, c, h, w); + 1: n may be 0 */
    assert_non_null(buf);
    size_t k = 0;
    for (int64_t i = 0; i < sp->n; ++i)
        for (int64_t c = 0; c < sp->c; ++c)
            for (int64_t y = 0; y < sp->h; ++y)
                for (int64_t x = 0; x < sp->w; ++x) buf[k++] = pixel(i, c, y, x);
    assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    free(buf);
    H5Dclose(d);
    H5Sclose(space);
}

static void raw_write_labels(hid_t file, const struct spec *sp)
{
    char name[64];
    snprintf(name, sizeof name, "%s/labels", sp->prefix);
    hsize_t dims[1] = {(hsize_t)sp->n_labels};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(file, name, sp->lbl_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    int64_t *l = malloc((size_t)(sp->n_labels + 1) * sizeof *l);
    assert_non_null(l);
    for (int64_t i = 0; i < sp->n_labels; ++i) l[i] = i % sp->label_mod;
    if (sp->bad_label_at >= 0) l[sp->bad_label_at] = sp->bad_label;
    assert_true(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, l) >= 0);
    free(l);
    H5Dclose(d);
    H5Sclose(space);
}

static void raw_write(const char *path, const struct spec *sp)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    if (sp->prefix[0] != '\0') {
        hid_t g = H5Gcreate2(f, sp->prefix, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(g >= 0);
        H5Gclose(g);
    }
    if (sp->write_images) raw_write_images(f, sp);
    if (sp->write_labels) raw_write_labels(f, sp);
    if (sp->n_classes_attr > 0) {
        hid_t s = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, "n_classes", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(a >= 0);
        assert_true(H5Awrite(a, H5T_NATIVE_INT64, &sp->n_classes_attr) >= 0);
        H5Aclose(a);
        H5Sclose(s);
    }
    H5Fclose(f);
}

static enum ssl_status open_h5(const char *path, enum ssl_split split, struct ssl_dataset **ds,
                               struct ssl_error *err)
{
    struct ssl_dataset_open_args a = {.kind = SSL_DATASET_HDF5, .path = path, .split = split,
                                      .comm = MPI_COMM_SELF};
    *err = (struct ssl_error){.code = SSL_OK};
    return ssl_dataset_open_hdf5(ds, &a, err);
}

/* Reads `indices` and compares every byte and label with the formula. */
static void check_read(struct ssl_dataset *ds, const int64_t *indices, int64_t n, int64_t mod)
{
    const struct ssl_dataset_info *in = &ds->info;
    int64_t img = in->channels * in->height * in->width;
    uint8_t *buf = malloc((size_t)((n > 0 ? n : 1) * img));
    int64_t labels[64];
    assert_non_null(buf);
    assert_true(n <= 64);
    struct ssl_error err = {.code = SSL_OK};
    assert_int_equal(ds->read(ds, indices, n, buf, labels, &err), SSL_OK);
    for (int64_t k = 0; k < n; ++k) {
        assert_int_equal(labels[k], indices[k] % mod);
        for (int64_t c = 0; c < in->channels; ++c)
            for (int64_t y = 0; y < in->height; ++y)
                for (int64_t x = 0; x < in->width; ++x)
                    assert_int_equal(buf[((k * in->channels + c) * in->height + y) * in->width + x],
                                     pixel(indices[k], c, y, x));
    }
    free(buf);
}

static void test_read_train(void **state)
{
    (void)state;
    char path[128];
    path_for(path, sizeof path, "good.h5");
    struct spec sp = good_spec();
    sp.n_classes_attr = 7;
    raw_write(path, &sp);
    struct ssl_dataset *ds = NULL;
    struct ssl_error err;
    assert_int_equal(open_h5(path, SSL_SPLIT_TRAIN, &ds, &err), SSL_OK);
    assert_int_equal(ds->info.count, 10);
    assert_int_equal(ds->info.channels, 2);
    assert_int_equal(ds->info.height, 3);
    assert_int_equal(ds->info.width, 4);
    assert_int_equal(ds->info.n_classes, 7);
    assert_string_equal(ds->info.source, path);
    const int64_t sorted[] = {1, 2, 3, 5, 9};
    const int64_t mixed[] = {7, 2, 2, 9, 0, 7, 8, 1, 2};
    const int64_t all[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    const int64_t one[] = {4};
    check_read(ds, sorted, 5, 3);
    check_read(ds, mixed, 9, 3);
    check_read(ds, all, 10, 3);
    check_read(ds, one, 1, 3);
    check_read(ds, NULL, 0, 3);
    ds->close(ds);
}

static void test_n_classes_from_max(void **state)
{
    (void)state;
    char path[128];
    path_for(path, sizeof path, "max.h5");
    struct spec sp = good_spec();
    sp.lbl_type = H5T_STD_I64LE;
    sp.label_mod = 4; /* labels 0..3 -> 4 classes */
    raw_write(path, &sp);
    struct ssl_dataset *ds = NULL;
    struct ssl_error err;
    assert_int_equal(open_h5(path, SSL_SPLIT_TRAIN, &ds, &err), SSL_OK);
    assert_int_equal(ds->info.n_classes, 4);
    const int64_t idx[] = {9, 3, 3, 0};
    check_read(ds, idx, 4, 4);
    ds->close(ds);
}

static void test_read_test_split(void **state)
{
    (void)state;
    char path[128];
    path_for(path, sizeof path, "split.h5");
    struct spec sp = good_spec();
    sp.prefix = "/test";
    sp.n = sp.n_labels = 6;
    sp.c = 1;
    raw_write(path, &sp);
    struct ssl_dataset *ds = NULL;
    struct ssl_error err;
    assert_int_equal(open_h5(path, SSL_SPLIT_TEST, &ds, &err), SSL_OK);
    assert_int_equal(ds->info.count, 6);
    assert_int_equal(ds->info.channels, 1);
    const int64_t idx[] = {5, 0, 5};
    check_read(ds, idx, 3, 3);
    ds->close(ds);
    /* that file has no train split */
    assert_int_equal(open_h5(path, SSL_SPLIT_TRAIN, &ds, &err), SSL_E_DATA);
    assert_null(ds);
    assert_non_null(strstr(err.msg, "missing dataset /images"));
}

/* Opens `path` and expects SSL_E_DATA with the file name and `reason` in one line. */
static void expect_broken(const char *path, enum ssl_split split, const char *reason)
{
    struct ssl_dataset *ds = (struct ssl_dataset *)&ds; /* must be reset to NULL */
    struct ssl_error err;
    enum ssl_status st = open_h5(path, split, &ds, &err);
    print_message("%s -> %s\n", path, err.msg);
    assert_int_equal(st, SSL_E_DATA);
    assert_null(ds);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, reason));
    assert_null(strchr(err.msg, '\n'));
}

static void broken(const char *name, const struct spec *sp, enum ssl_split split,
                   const char *reason)
{
    char path[128];
    path_for(path, sizeof path, name);
    raw_write(path, sp);
    expect_broken(path, split, reason);
}

static void test_broken_files(void **state)
{
    (void)state;
    char path[128];
    path_for(path, sizeof path, "text.h5");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not an HDF5 file, just some text\n", f);
    fclose(f);
    expect_broken(path, SSL_SPLIT_TRAIN, "not an HDF5 file");
    path_for(path, sizeof path, "does-not-exist.h5");
    expect_broken(path, SSL_SPLIT_TRAIN, "No such file");

    struct spec sp = good_spec();
    sp.write_images = 0;
    broken("no-images.h5", &sp, SSL_SPLIT_TRAIN, "missing dataset /images");
    sp = good_spec();
    sp.write_labels = 0;
    broken("no-labels.h5", &sp, SSL_SPLIT_TRAIN, "missing dataset /labels");
    sp = good_spec();
    sp.img_type = H5T_IEEE_F32LE;
    broken("float.h5", &sp, SSL_SPLIT_TRAIN, "/images must hold 8-bit unsigned integers, found 32-bit float");
    sp = good_spec();
    sp.lbl_type = H5T_STD_U8LE;
    broken("u8-labels.h5", &sp, SSL_SPLIT_TRAIN, "/labels must hold 32- or 64-bit signed");
    sp = good_spec();
    sp.img_rank = 3;
    broken("rank3.h5", &sp, SSL_SPLIT_TRAIN, "/images must have rank 4, found rank 3");
    sp = good_spec();
    sp.n_labels = 9;
    broken("mismatch.h5", &sp, SSL_SPLIT_TRAIN, "/images has 10 images but /labels has 9 labels");
    sp = good_spec();
    sp.n_classes_attr = 3;
    sp.bad_label_at = 6;
    sp.bad_label = 3;
    broken("range.h5", &sp, SSL_SPLIT_TRAIN, "/labels[6] = 3 is out of range: the root attribute n_classes is 3");
    sp = good_spec();
    sp.bad_label_at = 4;
    sp.bad_label = -2;
    broken("negative.h5", &sp, SSL_SPLIT_TRAIN, "/labels[4] = -2 is a negative label");
    sp = good_spec();
    broken("no-test.h5", &sp, SSL_SPLIT_TEST, "missing dataset /test/images");
    sp = good_spec();
    sp.n = sp.n_labels = 0;
    broken("empty.h5", &sp, SSL_SPLIT_TRAIN, "/images is empty");
}

/* Through the public interface (io/dataset.c): dispatch by kind, index checks. */
static void test_dispatcher(void **state)
{
    (void)state;
    char path[128];
    path_for(path, sizeof path, "dispatch.h5");
    struct spec sp = good_spec();
    raw_write(path, &sp);
    struct ssl_dataset_open_args a = {.kind = SSL_DATASET_HDF5, .path = path,
                                      .split = SSL_SPLIT_TRAIN, .comm = MPI_COMM_SELF};
    struct ssl_error err = {.code = SSL_OK};
    struct ssl_dataset *ds = NULL;
    assert_int_equal(ssl_dataset_open(&ds, &a, &err), SSL_OK);
    assert_int_equal(ssl_dataset_info(ds)->count, 10);
    const int64_t idx[] = {3, 1, 3};
    uint8_t img[3 * 24];
    int64_t lab[3];
    assert_int_equal(ssl_dataset_read(ds, idx, 3, img, lab, &err), SSL_OK);
    assert_int_equal(img[0], pixel(3, 0, 0, 0));
    assert_int_equal(img[24 + 23], pixel(1, 1, 2, 3));
    assert_int_equal(lab[1], 1);
    assert_int_equal(ssl_dataset_read(ds, NULL, 0, NULL, NULL, &err), SSL_OK);
    const int64_t bad[] = {2, 10};
    assert_int_equal(ssl_dataset_read(ds, bad, 2, img, lab, &err), SSL_E_USAGE);
    ssl_dataset_close(ds);
    path_for(path, sizeof path, "no-such.h5");
    err = (struct ssl_error){.code = SSL_OK};
    assert_int_equal(ssl_dataset_open(&ds, &a, &err), SSL_E_DATA);
    assert_null(ds);
}

/* ---- round trip through the writer, from a fake in-memory dataset -------------------- */

struct fake {
    int64_t salt;
    int calls;
};

static enum ssl_status fake_read(struct ssl_dataset *ds, const int64_t *indices, int64_t n,
                                 uint8_t *images, int64_t *labels, struct ssl_error *err)
{
    (void)err;
    struct fake *fk = ds->state;
    const struct ssl_dataset_info *in = &ds->info;
    int64_t img = in->channels * in->height * in->width;
    fk->calls++;
    for (int64_t k = 0; k < n; ++k) {
        for (int64_t j = 0; j < img; ++j)
            images[k * img + j] = (uint8_t)((indices[k] * 7 + j * 13 + fk->salt) % 256);
        if (labels != NULL) labels[k] = (indices[k] * 5 + fk->salt) % in->n_classes;
    }
    return SSL_OK;
}

static void fake_init(struct ssl_dataset *ds, struct fake *fk, int64_t count, int64_t n_classes,
                      int64_t salt, const char *source)
{
    *fk = (struct fake){.salt = salt};
    *ds = (struct ssl_dataset){.info = {.count = count, .channels = 3, .height = 32, .width = 32,
                                        .n_classes = n_classes},
                               .read = fake_read, .state = fk};
    snprintf(ds->info.source, sizeof ds->info.source, "%s", source);
}

/* Compares every image and label of the reopened split with the fake source. */
static void compare_split(const char *path, enum ssl_split split, struct ssl_dataset *src)
{
    struct ssl_dataset *ds = NULL;
    struct ssl_error err;
    assert_int_equal(open_h5(path, split, &ds, &err), SSL_OK);
    assert_int_equal(ds->info.count, src->info.count);
    assert_int_equal(ds->info.channels, 3);
    assert_int_equal(ds->info.height, 32);
    assert_int_equal(ds->info.width, 32);
    int64_t n = src->info.count, img = 3 * 32 * 32;
    int64_t *idx = malloc((size_t)n * sizeof *idx), *l1 = malloc((size_t)n * sizeof *l1),
            *l2 = malloc((size_t)n * sizeof *l2);
    uint8_t *a = malloc((size_t)(n * img)), *b = malloc((size_t)(n * img));
    assert_true(idx && l1 && l2 && a && b);
    for (int64_t i = 0; i < n; ++i) idx[i] = n - 1 - i; /* reversed: exercises the permutation */
    assert_int_equal(ds->read(ds, idx, n, a, l1, &err), SSL_OK);
    assert_int_equal(src->read(src, idx, n, b, l2, &err), SSL_OK);
    assert_memory_equal(a, b, (size_t)(n * img));
    assert_memory_equal(l1, l2, (size_t)n * sizeof *l1);
    ds->close(ds);
    free(idx), free(l1), free(l2), free(a), free(b);
}

static void check_string_attr(hid_t loc, const char *name, const char *want)
{
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t t = H5Aget_type(a);
    assert_true(H5Tis_variable_str(t) > 0);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(t)); /* the writer uses UTF-8; HDF5 won't convert from ASCII */
    char *got = NULL;
    assert_true(H5Aread(a, mt, &got) >= 0);
    assert_string_equal(got, want);
    H5free_memory(got);
    H5Tclose(mt), H5Tclose(t), H5Aclose(a);
}

static int64_t int_attr(hid_t loc, const char *name)
{
    int64_t v = -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Aread(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    return v;
}

static void check_attributes(const char *path, const char *source)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    check_string_attr(f, "format", "ssltrain-images");
    check_string_attr(f, "layout", "NCHW");
    check_string_attr(f, "source", source);
    assert_int_equal(int_attr(f, "format_version"), 1);
    assert_int_equal(int_attr(f, "n_classes"), 12);
    hid_t d = H5Dopen2(f, "/images", H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(d);
    assert_int_equal(H5Pget_layout(dcpl), H5D_CHUNKED);
    assert_int_equal(H5Pget_nfilters(dcpl), 2); /* shuffle, deflate */
    check_string_attr(d, "dims", "N C H W");
    H5Pclose(dcpl), H5Dclose(d);
    d = H5Dopen2(f, "/test/images", H5P_DEFAULT);
    check_string_attr(d, "dims", "N C H W");
    H5Dclose(d);
    d = H5Dopen2(f, "/labels", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    assert_true(H5Tequal(t, H5T_STD_I64LE) > 0);
    H5Tclose(t), H5Dclose(d), H5Fclose(f);
}

static void test_round_trip(void **state)
{
    (void)state;
    char path[128], tmp[160], cmd[400];
    path_for(path, sizeof path, "written.h5");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    struct ssl_dataset train, test;
    struct fake ftrain, ftest;
    /* 9000 train images: more than one 4096-image copy block, a partial last block */
    fake_init(&train, &ftrain, 9000, 10, 1, "/data/fake-train");
    fake_init(&test, &ftest, 50, 12, 99, "/data/fake-test");
    struct ssl_error err = {.code = SSL_OK};
    assert_int_equal(ssl_dataset_write_hdf5(path, &train, &test, &err), SSL_OK);
    assert_int_equal(ftrain.calls, 3);
    assert_int_not_equal(access(path, F_OK), -1);
    assert_int_equal(access(tmp, F_OK), -1);
    compare_split(path, SSL_SPLIT_TRAIN, &train);
    compare_split(path, SSL_SPLIT_TEST, &test);
    check_attributes(path, "/data/fake-train");
    if (access("/usr/bin/h5dump", X_OK) == 0) {
        snprintf(cmd, sizeof cmd, "/usr/bin/h5dump -H '%s' > /dev/null", path);
        assert_int_equal(system(cmd), 0);
    } else {
        print_message("h5dump not installed: check skipped\n");
    }
}

static enum ssl_status failing_read(struct ssl_dataset *ds, const int64_t *indices, int64_t n,
                                    uint8_t *images, int64_t *labels, struct ssl_error *err)
{
    (void)ds, (void)indices, (void)n, (void)images, (void)labels;
    return ssl_error_set(err, SSL_E_DATA, "fake: read failed");
}

/* A failing source leaves neither the file nor the tmp behind, and its error comes through. */
static void test_write_failure_cleans_up(void **state)
{
    (void)state;
    char path[128], tmp[160];
    path_for(path, sizeof path, "failed.h5");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    struct ssl_dataset train;
    struct fake ftrain;
    fake_init(&train, &ftrain, 20, 4, 0, "fake");
    train.read = failing_read;
    struct ssl_error err = {.code = SSL_OK};
    assert_int_equal(ssl_dataset_write_hdf5(path, &train, NULL, &err), SSL_E_DATA);
    assert_string_equal(err.msg, "fake: read failed");
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(tmp, F_OK), -1);
    /* and a train split alone round-trips */
    fake_init(&train, &ftrain, 20, 4, 3, "fake");
    err = (struct ssl_error){.code = SSL_OK};
    assert_int_equal(ssl_dataset_write_hdf5(path, &train, NULL, &err), SSL_OK);
    compare_split(path, SSL_SPLIT_TRAIN, &train);
    struct ssl_dataset *ds = NULL;
    assert_int_equal(open_h5(path, SSL_SPLIT_TEST, &ds, &err), SSL_E_DATA);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    snprintf(g_dir, sizeof g_dir, "/tmp/ssl_h5_test_XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_train),
        cmocka_unit_test(test_n_classes_from_max),
        cmocka_unit_test(test_read_test_split),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_dispatcher),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_write_failure_cleans_up),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (failed == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    }
    MPI_Finalize();
    return failed != 0;
}
