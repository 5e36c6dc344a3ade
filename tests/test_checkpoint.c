/* test_checkpoint.c: io/checkpoint.c on one process (an MPI singleton: the MPI-IO driver needs
 * MPI_Init).
 *
 * Values come from a formula per (entry, element), regenerated for every comparison, so a read
 * is checked against what was meant to be written, not against the writer's own buffers. The
 * file layout is checked with the raw HDF5 C API (groups, link names with dots, file types,
 * attributes), and the directory with stat/readlink. Corruption is made by hand: truncation,
 * flipped bytes inside a dataset's data (located with H5Dget_offset), a changed format_version,
 * a file copied to another step's name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>
#include <mpi.h>

#include "checkpoint.h"

static char g_root[64];

enum { N_ENTRIES = 8 };

/* Every type and rank 0..4, names with dots, a zero-size array, a dataset in the root group. */
static const struct ssl_ckpt_entry g_shape[N_ENTRIES] = {
    {"model/backbone.conv1.weight", SSL_CKPT_F32, 4, {3, 2, 3, 3}, NULL},
    {"model/backbone.bn1.running_var", SSL_CKPT_F64, 1, {5}, NULL},
    {"model/backbone.bn1.num_batches_tracked", SSL_CKPT_I64, 0, {0}, NULL},
    {"optim/sgd/step.count", SSL_CKPT_U64, 1, {4}, NULL},
    {"state/rng.positions", SSL_CKPT_I32, 2, {2, 3}, NULL},
    {"state/queue", SSL_CKPT_U8, 3, {2, 3, 4}, NULL},
    {"state/empty", SSL_CKPT_F32, 2, {0, 5}, NULL},
    {"ema.decay", SSL_CKPT_F64, 0, {0}, NULL},
};

static int64_t count_of(const struct ssl_ckpt_entry *e)
{
    int64_t n = 1;
    for (int i = 0; i < e->rank; ++i) n *= e->dims[i];
    return n;
}

/* The value of element k of entry e, in e's type, written to dst. */
static void value_at(int e, const struct ssl_ckpt_entry *en, int64_t k, void *dst)
{
    switch (en->type) {
    case SSL_CKPT_F32: ((float *)dst)[k] = (float)k * 0.25f - (float)e; break;
    case SSL_CKPT_F64: ((double *)dst)[k] = (double)k / 3.0 + e + 1e-300; break;
    case SSL_CKPT_I64: ((int64_t *)dst)[k] = INT64_MIN + 12345 + k * 1000003 + e; break;
    case SSL_CKPT_U64: ((uint64_t *)dst)[k] = UINT64_MAX - (uint64_t)(k * 12345 + e); break;
    case SSL_CKPT_I32: ((int32_t *)dst)[k] = -(int32_t)(k * 3 + e) - 100000; break;
    case SSL_CKPT_U8: ((uint8_t *)dst)[k] = (uint8_t)((k * 37 + e) % 256); break;
    }
}

static void *make_values(int e, const struct ssl_ckpt_entry *en)
{
    int64_t n = count_of(en);
    void *buf = calloc((size_t)n + 1, 8);
    assert_non_null(buf);
    for (int64_t k = 0; k < n; ++k) value_at(e, en, k, buf);
    return buf;
}

/* The test content: entries with data, attributes, group descriptions. Free with free_content. */
struct content {
    struct ssl_ckpt_entry e[N_ENTRIES];
    struct ssl_ckpt_attr a[5];
    struct ssl_ckpt_group g[3];
    struct ssl_ckpt_content c;
};

static const char *g_config = "method: vicreg\noptim:\n  lr: 0.3\n  name: \"lars\"\n";

static void make_content(struct content *t)
{
    for (int i = 0; i < N_ENTRIES; ++i) {
        t->e[i] = g_shape[i];
        t->e[i].data = make_values(i, &g_shape[i]);
    }
    t->a[0] = (struct ssl_ckpt_attr){"config", SSL_CKPT_ATTR_STRING, g_config, 0};
    t->a[1] = (struct ssl_ckpt_attr){"git_revision", SSL_CKPT_ATTR_STRING, "0123abcd-dirty", 0};
    t->a[2] = (struct ssl_ckpt_attr){"method", SSL_CKPT_ATTR_STRING, "vicreg", 0};
    t->a[3] = (struct ssl_ckpt_attr){"epoch", SSL_CKPT_ATTR_INT64, NULL, -3};
    t->a[4] = (struct ssl_ckpt_attr){"big", SSL_CKPT_ATTR_INT64, NULL, INT64_MAX - 1};
    t->g[0] = (struct ssl_ckpt_group){"model", "online network: backbone and projector"};
    t->g[1] = (struct ssl_ckpt_group){"optim/sgd", "SGD momentum buffers"};
    t->g[2] = (struct ssl_ckpt_group){"extra/nothing", "an empty group"};
    t->c = (struct ssl_ckpt_content){t->e, N_ENTRIES, t->a, 5, t->g, 3};
}

static void free_content(struct content *t)
{
    for (int i = 0; i < N_ENTRIES; ++i) free((void *)t->e[i].data);
}

static void dir_for(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_root, name);
}

static void step_path(char *buf, size_t n, const char *dir, int64_t step)
{
    snprintf(buf, n, "%s/step-%08lld.h5", dir, (long long)step);
}

static bool exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static void write_steps(const char *dir, int64_t first, int64_t last, int keep)
{
    struct content t;
    make_content(&t);
    for (int64_t s = first; s <= last; ++s) {
        struct ssl_error err = {SSL_OK, ""};
        enum ssl_status st = ssl_ckpt_write(dir, s, &t.c, keep, NULL, &err);
        if (st != SSL_OK) fprintf(stderr, "write: %s\n", err.msg);
        assert_int_equal(st, SSL_OK);
    }
    free_content(&t);
}

static void truncate_half(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
}

/* Flips bytes in the middle of a dataset's data (its offset found with the raw HDF5 API). */
static void flip_data(const char *path, const char *dataset)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
    assert_true(d >= 0);
    haddr_t off = H5Dget_offset(d);
    hsize_t size = H5Dget_storage_size(d);
    assert_true(off != HADDR_UNDEF && size > 8);
    H5Dclose(d);
    H5Fclose(f);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, (long)(off + size / 2), SEEK_SET), 0);
    unsigned char b[2];
    assert_int_equal(fread(b, 1, 2, fp), 2);
    b[0] ^= 0x5a, b[1] ^= 0x01;
    assert_int_equal(fseek(fp, (long)(off + size / 2), SEEK_SET), 0);
    assert_int_equal(fwrite(b, 1, 2, fp), 2);
    fclose(fp);
}

static struct ssl_ckpt_found find(const char *dir, enum ssl_status expect, struct ssl_error *err)
{
    struct ssl_ckpt_found out;
    *err = (struct ssl_error){SSL_OK, ""};
    enum ssl_status st = ssl_ckpt_find_resumable(dir, NULL, &out, err);
    if (st != expect) fprintf(stderr, "find_resumable(%s): %d %s\n", dir, (int)st, err->msg);
    assert_int_equal(st, expect);
    return out;
}

/* ---------------------------------------------------------------------------------------- */

static void check_raw_layout(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t g = H5Gopen2(f, "model", H5P_DEFAULT); /* a real group holding a link with dots */
    assert_true(g >= 0);
    assert_true(H5Lexists(g, "backbone.conv1.weight", H5P_DEFAULT) > 0);
    hid_t d = H5Dopen2(g, "backbone.conv1.weight", H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t t = H5Dget_type(d);
    assert_true(H5Tequal(t, H5T_IEEE_F32LE) > 0);
    H5Tclose(t);
    H5Dclose(d);
    H5Gclose(g);
    d = H5Dopen2(f, "optim/sgd/step.count", H5P_DEFAULT);
    t = H5Dget_type(d);
    assert_true(H5Tequal(t, H5T_STD_U64LE) > 0);
    H5Tclose(t);
    H5Dclose(d);
    assert_true(H5Aexists_by_name(f, "extra/nothing", "description", H5P_DEFAULT) > 0);
    assert_true(H5Aexists_by_name(f, "model", "description", H5P_DEFAULT) > 0);
    assert_true(H5Aexists_by_name(f, "state", "description", H5P_DEFAULT) == 0);
    assert_true(H5Aexists_by_name(f, "state/queue", "crc32", H5P_DEFAULT) > 0);
    int32_t version = 0;
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    assert_true(a >= 0 && H5Aread(a, H5T_NATIVE_INT32, &version) >= 0);
    assert_int_equal(version, 1);
    H5Aclose(a);
    H5Fclose(f);
}

static void check_attrs(struct ssl_ckpt *ck, int64_t step)
{
    struct ssl_error err = {SSL_OK, ""};
    char *s = NULL;
    int64_t v = 0;
    assert_int_equal(ssl_ckpt_attr_string(ck, "format", &s, &err), SSL_OK);
    assert_string_equal(s, "ssltrain-checkpoint");
    free(s);
    assert_int_equal(ssl_ckpt_attr_string(ck, "config", &s, &err), SSL_OK);
    assert_string_equal(s, g_config);
    free(s);
    assert_int_equal(ssl_ckpt_attr_string(ck, "git_revision", &s, &err), SSL_OK);
    assert_string_equal(s, "0123abcd-dirty");
    free(s);
    assert_int_equal(ssl_ckpt_attr_string(ck, "method", &s, &err), SSL_OK);
    assert_string_equal(s, "vicreg");
    free(s);
    assert_int_equal(ssl_ckpt_attr_int64(ck, "format_version", &v, &err), SSL_OK);
    assert_int_equal(v, 1);
    assert_int_equal(ssl_ckpt_attr_int64(ck, "step", &v, &err), SSL_OK);
    assert_int_equal(v, step);
    assert_int_equal(ssl_ckpt_attr_int64(ck, "n_datasets", &v, &err), SSL_OK);
    assert_int_equal(v, N_ENTRIES);
    assert_int_equal(ssl_ckpt_attr_int64(ck, "epoch", &v, &err), SSL_OK);
    assert_int_equal(v, -3);
    assert_int_equal(ssl_ckpt_attr_int64(ck, "big", &v, &err), SSL_OK);
    assert_true(v == INT64_MAX - 1);
}

static void check_listing(const struct ssl_ckpt *ck)
{
    assert_int_equal(ssl_ckpt_count(ck), N_ENTRIES);
    for (int64_t i = 1; i < N_ENTRIES; ++i)
        assert_true(strcmp(ssl_ckpt_dataset(ck, i - 1)->name, ssl_ckpt_dataset(ck, i)->name) < 0);
    for (int i = 0; i < N_ENTRIES; ++i) {
        const struct ssl_ckpt_entry *e = ssl_ckpt_lookup(ck, g_shape[i].name);
        assert_non_null(e);
        assert_int_equal(e->type, g_shape[i].type);
        assert_int_equal(e->rank, g_shape[i].rank);
        for (int d = 0; d < e->rank; ++d) assert_int_equal(e->dims[d], g_shape[i].dims[d]);
    }
    assert_null(ssl_ckpt_lookup(ck, "model"));
}

static void read_all(struct ssl_ckpt *ck)
{
    for (int i = 0; i < N_ENTRIES; ++i) {
        struct ssl_error err = {SSL_OK, ""};
        void *want = make_values(i, &g_shape[i]);
        int64_t n = count_of(&g_shape[i]);
        void *got = calloc((size_t)n + 1, 8);
        assert_non_null(got);
        enum ssl_status st = ssl_ckpt_read(ck, &g_shape[i], got, &err);
        if (st != SSL_OK) fprintf(stderr, "read %s: %s\n", g_shape[i].name, err.msg);
        assert_int_equal(st, SSL_OK);
        assert_memory_equal(got, want, (size_t)n * ssl_ckpt_type_size(g_shape[i].type) + 1);
        free(got);
        free(want);
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    char dir[128], path[256];
    dir_for(dir, sizeof dir, "roundtrip/run/checkpoints"); /* created with its parents */
    write_steps(dir, 100, 100, 2);
    struct ssl_error err;
    struct ssl_ckpt_found out = find(dir, SSL_OK, &err);
    step_path(path, sizeof path, dir, 100);
    assert_true(out.found);
    assert_int_equal(out.step, 100);
    assert_string_equal(out.path, path);
    assert_int_equal(out.n_rejected, 0);
    check_raw_layout(path);
    struct ssl_ckpt *ck = NULL;
    assert_int_equal(ssl_ckpt_open(&ck, out.path, NULL, &err), SSL_OK);
    assert_string_equal(ssl_ckpt_file(ck), path);
    check_listing(ck);
    read_all(ck);
    check_attrs(ck, 100);
    ssl_ckpt_close(ck);
}

static int64_t count_files(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    long long n = -1;
    assert_int_equal(fscanf(p, "%lld", &n), 1);
    pclose(p);
    return n;
}

static void check_latest(const char *dir, int64_t step)
{
    char latest[256], target[256], want[64];
    snprintf(latest, sizeof latest, "%s/latest.h5", dir);
    struct stat sb;
    assert_int_equal(lstat(latest, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    ssize_t n = readlink(latest, target, sizeof target - 1);
    assert_true(n > 0);
    target[n] = '\0';
    snprintf(want, sizeof want, "step-%08lld.h5", (long long)step);
    assert_string_equal(target, want); /* relative: the run directory can move */
    assert_int_equal(stat(latest, &sb), 0);
}

static void test_keep_and_latest(void **state)
{
    (void)state;
    char dir[128], path[256];
    dir_for(dir, sizeof dir, "keep2");
    write_steps(dir, 1, 5, 2);
    for (int64_t s = 1; s <= 5; ++s) {
        step_path(path, sizeof path, dir, s);
        assert_int_equal(exists(path), s >= 4);
    }
    assert_int_equal(count_files(dir), 3); /* step-4, step-5, latest.h5: no .tmp left */
    check_latest(dir, 5);

    dir_for(dir, sizeof dir, "keepall");
    write_steps(dir, 1, 3, 0);
    for (int64_t s = 1; s <= 3; ++s) {
        step_path(path, sizeof path, dir, s);
        assert_true(exists(path));
    }
    check_latest(dir, 3);
    write_steps(dir, 123456789, 123456789, 0); /* more than 8 digits */
    step_path(path, sizeof path, dir, 123456789);
    assert_true(exists(path));
    check_latest(dir, 123456789);
}

static void touch(const char *dir, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("half a checkpoint", f);
    fclose(f);
}

static void test_stale_tmp_removed(void **state)
{
    (void)state;
    char dir[128], path[256];
    dir_for(dir, sizeof dir, "stale");
    assert_int_equal(mkdir(dir, 0777), 0);
    touch(dir, "step-00000007.h5.tmp");
    touch(dir, "latest.h5.tmp");
    touch(dir, "notes.tmp"); /* not ours: kept */
    write_steps(dir, 10, 10, 2);
    snprintf(path, sizeof path, "%s/step-00000007.h5.tmp", dir);
    assert_false(exists(path));
    snprintf(path, sizeof path, "%s/latest.h5.tmp", dir);
    assert_false(exists(path));
    snprintf(path, sizeof path, "%s/notes.tmp", dir);
    assert_true(exists(path));
    check_latest(dir, 10);
}

static void test_newer_renamed_aside(void **state)
{
    (void)state;
    char dir[128], path[256];
    dir_for(dir, sizeof dir, "aside");
    write_steps(dir, 10, 10, 0);
    write_steps(dir, 20, 20, 0);
    write_steps(dir, 15, 15, 0); /* a resume from 10: step 20 belongs to an abandoned run */
    snprintf(path, sizeof path, "%s/step-00000020.h5.stale", dir);
    assert_true(exists(path));
    step_path(path, sizeof path, dir, 20);
    assert_false(exists(path));
    check_latest(dir, 15);
    struct ssl_error err;
    struct ssl_ckpt_found out = find(dir, SSL_OK, &err);
    assert_int_equal(out.step, 15);
}

static void test_fallback_truncated(void **state)
{
    (void)state;
    char dir[128], bad[256];
    dir_for(dir, sizeof dir, "truncated");
    write_steps(dir, 1, 3, 0);
    step_path(bad, sizeof bad, dir, 3);
    truncate_half(bad);
    struct ssl_error err;
    struct ssl_ckpt_found out = find(dir, SSL_OK, &err);
    assert_true(out.found);
    assert_int_equal(out.step, 2);
    assert_int_equal(out.n_rejected, 1);
    printf("warning: %s\n", out.warning);
    assert_true(strncmp(out.warning, bad, strlen(bad)) == 0); /* starts with the bad file */
    assert_non_null(strstr(out.warning, "truncated"));
    assert_null(strchr(out.warning, '\n'));
}

static void test_fallback_flipped(void **state)
{
    (void)state;
    char dir[128], bad[256];
    dir_for(dir, sizeof dir, "flipped");
    write_steps(dir, 1, 3, 0);
    step_path(bad, sizeof bad, dir, 3);
    flip_data(bad, "model/backbone.conv1.weight");
    step_path(bad, sizeof bad, dir, 2);
    flip_data(bad, "state/queue");
    struct ssl_error err;
    struct ssl_ckpt_found out = find(dir, SSL_OK, &err);
    assert_int_equal(out.step, 1);
    assert_int_equal(out.n_rejected, 2);
    printf("warning: %s\n", out.warning);
    char line3[512], line2[512];
    step_path(bad, sizeof bad, dir, 3);
    snprintf(line3, sizeof line3, "%s: dataset model/backbone.conv1.weight: checksum mismatch", bad);
    step_path(bad, sizeof bad, dir, 2);
    snprintf(line2, sizeof line2, "\n%s: dataset state/queue: checksum mismatch", bad);
    assert_true(strncmp(out.warning, line3, strlen(line3)) == 0);
    assert_non_null(strstr(out.warning, line2));

    /* reading the damaged dataset directly is refused too */
    struct ssl_ckpt *ck = NULL;
    err = (struct ssl_error){SSL_OK, ""};
    assert_int_equal(ssl_ckpt_open(&ck, bad, NULL, &err), SSL_OK);
    uint8_t q[24];
    assert_int_equal(ssl_ckpt_read(ck, &g_shape[5], q, &err), SSL_E_DATA);
    assert_non_null(strstr(err.msg, "checksum mismatch"));
    ssl_ckpt_close(ck);
}

static void test_latest_deleted(void **state)
{
    (void)state;
    char dir[128], path[256];
    dir_for(dir, sizeof dir, "nolatest");
    write_steps(dir, 1, 2, 0);
    snprintf(path, sizeof path, "%s/latest.h5", dir);
    assert_int_equal(unlink(path), 0);
    struct ssl_error err;
    struct ssl_ckpt_found out = find(dir, SSL_OK, &err);
    assert_int_equal(out.step, 2);
    write_steps(dir, 3, 3, 0); /* the link comes back */
    check_latest(dir, 3);
}

static void test_none(void **state)
{
    (void)state;
    char dir[128];
    dir_for(dir, sizeof dir, "empty");
    assert_int_equal(mkdir(dir, 0777), 0);
    touch(dir, "notes.txt");
    struct ssl_error err;
    struct ssl_ckpt_found out = find(dir, SSL_OK, &err);
    assert_false(out.found);
    assert_int_equal(out.n_rejected, 0);
    assert_string_equal(out.path, "");
    dir_for(dir, sizeof dir, "does-not-exist");
    out = find(dir, SSL_OK, &err);
    assert_false(out.found);
}

static void test_all_corrupt(void **state)
{
    (void)state;
    char dir[128], bad[256];
    dir_for(dir, sizeof dir, "allbad");
    write_steps(dir, 4, 4, 0);
    step_path(bad, sizeof bad, dir, 4);
    truncate_half(bad);
    struct ssl_error err;
    struct ssl_ckpt_found out = find(dir, SSL_E_DATA, &err);
    assert_false(out.found);
    printf("error: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "none of the 1 checkpoints is valid"));
    assert_non_null(strstr(err.msg, bad));
}

static void test_bad_version_and_name(void **state)
{
    (void)state;
    char dir[128], path[256], copy[256], cmd[600];
    dir_for(dir, sizeof dir, "version");
    write_steps(dir, 1, 3, 0);
    step_path(path, sizeof path, dir, 3);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int32_t two = 2;
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_INT32, &two) >= 0);
    H5Aclose(a);
    H5Fclose(f);
    step_path(path, sizeof path, dir, 1);
    step_path(copy, sizeof copy, dir, 4); /* step 1's file under step 4's name */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, copy);
    assert_int_equal(system(cmd), 0);
    struct ssl_error err;
    struct ssl_ckpt_found out = find(dir, SSL_OK, &err);
    printf("warning: %s\n", out.warning);
    assert_int_equal(out.step, 2);
    assert_int_equal(out.n_rejected, 2);
    assert_non_null(strstr(out.warning, "step-00000004.h5: root attribute step is 1, the name says 4"));
    assert_non_null(strstr(out.warning, "step-00000003.h5: format_version 2, this program reads 1"));
}

static void test_read_errors(void **state)
{
    (void)state;
    char dir[128], path[256], want[512];
    dir_for(dir, sizeof dir, "readerr");
    float x[12] = {0};
    struct ssl_ckpt_entry e = {"model/x", SSL_CKPT_F32, 2, {3, 4}, x};
    struct ssl_ckpt_content c = {&e, 1, NULL, 0, NULL, 0};
    struct ssl_error err = {SSL_OK, ""};
    assert_int_equal(ssl_ckpt_write(dir, 100, &c, 0, NULL, &err), SSL_OK);
    step_path(path, sizeof path, dir, 100);
    struct ssl_ckpt *ck = NULL;
    assert_int_equal(ssl_ckpt_open(&ck, path, NULL, &err), SSL_OK);

    struct ssl_ckpt_entry w = {"model/x", SSL_CKPT_F32, 2, {4, 3}, NULL};
    assert_int_equal(ssl_ckpt_read(ck, &w, x, &err), SSL_E_DATA);
    snprintf(want, sizeof want, "%s: dataset model/x has shape (3, 4), expected (4, 3)", path);
    assert_string_equal(err.msg, want);

    err = (struct ssl_error){SSL_OK, ""};
    w = (struct ssl_ckpt_entry){"model/x", SSL_CKPT_F32, 1, {12}, NULL};
    assert_int_equal(ssl_ckpt_read(ck, &w, x, &err), SSL_E_DATA);
    snprintf(want, sizeof want, "%s: dataset model/x has shape (3, 4), expected (12)", path);
    assert_string_equal(err.msg, want);

    err = (struct ssl_error){SSL_OK, ""};
    w = (struct ssl_ckpt_entry){"model/x", SSL_CKPT_F64, 2, {3, 4}, NULL};
    assert_int_equal(ssl_ckpt_read(ck, &w, x, &err), SSL_E_DATA);
    snprintf(want, sizeof want, "%s: dataset model/x has type float32, expected float64", path);
    assert_string_equal(err.msg, want);

    err = (struct ssl_error){SSL_OK, ""};
    w = (struct ssl_ckpt_entry){"model/y", SSL_CKPT_F32, 2, {3, 4}, NULL};
    assert_int_equal(ssl_ckpt_read(ck, &w, x, &err), SSL_E_DATA);
    snprintf(want, sizeof want, "%s: no dataset model/y", path);
    assert_string_equal(err.msg, want);

    err = (struct ssl_error){SSL_OK, ""};
    int64_t v;
    assert_int_equal(ssl_ckpt_attr_int64(ck, "epoch", &v, &err), SSL_E_DATA);
    snprintf(want, sizeof want, "%s: no root attribute epoch", path);
    assert_string_equal(err.msg, want);
    err = (struct ssl_error){SSL_OK, ""};
    char *s = NULL;
    assert_int_equal(ssl_ckpt_attr_string(ck, "step", &s, &err), SSL_E_DATA);
    assert_null(s);
    ssl_ckpt_close(ck);

    /* not a checkpoint, not HDF5, missing */
    err = (struct ssl_error){SSL_OK, ""};
    touch(dir, "junk.h5");
    snprintf(path, sizeof path, "%s/junk.h5", dir);
    assert_int_equal(ssl_ckpt_open(&ck, path, NULL, &err), SSL_E_DATA);
    assert_null(ck);
    snprintf(want, sizeof want, "%s: not an HDF5 file", path);
    assert_string_equal(err.msg, want);
    err = (struct ssl_error){SSL_OK, ""};
    snprintf(path, sizeof path, "%s/missing.h5", dir);
    assert_int_equal(ssl_ckpt_open(&ck, path, NULL, &err), SSL_E_DATA);
    assert_true(strncmp(err.msg, path, strlen(path)) == 0);
}

/* SSL_E_USAGE, a message containing `what`, and no file. */
static void expect_usage(const char *dir, const struct ssl_ckpt_content *c, const char *what)
{
    struct ssl_error err = {SSL_OK, ""};
    assert_int_equal(ssl_ckpt_write(dir, 1, c, 0, NULL, &err), SSL_E_USAGE);
    printf("%s: %s\n", what, err.msg);
    assert_non_null(strstr(err.msg, what));
    char path[256];
    step_path(path, sizeof path, dir, 1);
    assert_false(exists(path));
}

static void test_bad_content(void **state)
{
    (void)state;
    char dir[128];
    dir_for(dir, sizeof dir, "badcontent");
    float x[2] = {1, 2};
    struct ssl_ckpt_entry e[2] = {{"a/b", SSL_CKPT_F32, 1, {2}, x}, {"a/c", SSL_CKPT_F32, 1, {2}, x}};
    struct ssl_ckpt_content c = {e, 2, NULL, 0, NULL, 0};
    const char *bad_names[] = {"/a/b", "a//b", "a/b/", "", "a/./b", "a/../b"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; ++i) {
        char quoted[32];
        snprintf(quoted, sizeof quoted, "bad dataset name \"%s\"", bad_names[i]);
        e[0].name = bad_names[i];
        expect_usage(dir, &c, quoted);
    }
    e[0].name = "a/c";
    expect_usage(dir, &c, "dataset a/c is given twice");
    e[0].name = "a";
    expect_usage(dir, &c, "a is a dataset, so it cannot be the group of a/c");
    e[0].name = "a/b";
    e[1].rank = 5;
    expect_usage(dir, &c, "dataset a/c: rank 5 is outside 0..4");
    e[1].rank = 1;
    e[1].data = NULL;
    expect_usage(dir, &c, "dataset a/c: no data on rank 0");
    e[1].data = x;
    struct ssl_ckpt_attr a = {"step", SSL_CKPT_ATTR_INT64, NULL, 7};
    c.attrs = &a, c.n_attrs = 1;
    expect_usage(dir, &c, "attribute step is reserved");
    c.n_attrs = 0;
    struct ssl_ckpt_group g = {"a/b", "a dataset is no group"};
    c.groups = &g, c.n_groups = 1;
    expect_usage(dir, &c, "group a/b is a dataset");
    g.name = "a/b/c";
    expect_usage(dir, &c, "a/b is a dataset, so it cannot be the group of a/b/c");
    c.n_groups = 0;
    struct ssl_error err = {SSL_OK, ""};
    assert_int_equal(ssl_ckpt_write(dir, -1, &c, 0, NULL, &err), SSL_E_USAGE);
}

static int g_printed;

static herr_t counting_printer(hid_t stack, void *data)
{
    (void)stack, (void)data;
    ++g_printed;
    return 0;
}

/* HDF5's automatic error printing is off inside the calls and restored afterwards. */
static void test_hdf5_quiet(void **state)
{
    (void)state;
    char dir[128], path[256];
    dir_for(dir, sizeof dir, "quiet");
    write_steps(dir, 1, 2, 0);
    step_path(path, sizeof path, dir, 2);
    truncate_half(path);
    H5E_auto2_t saved_func;
    void *saved_data;
    H5Eget_auto2(H5E_DEFAULT, &saved_func, &saved_data);
    H5Eset_auto2(H5E_DEFAULT, counting_printer, &g_printed);
    g_printed = 0;
    struct ssl_error err = {SSL_OK, ""};
    struct ssl_ckpt *ck = NULL;
    assert_int_equal(ssl_ckpt_open(&ck, path, NULL, &err), SSL_E_DATA);
    struct ssl_ckpt_found out = find(dir, SSL_OK, &err);
    assert_int_equal(out.step, 1);
    assert_int_equal(g_printed, 0);
    H5E_auto2_t func;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    assert_true(func == counting_printer && data == &g_printed);
    H5Eset_auto2(H5E_DEFAULT, saved_func, saved_data);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    snprintf(g_root, sizeof g_root, "/tmp/test_checkpoint.XXXXXX");
    if (mkdtemp(g_root) == NULL) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_keep_and_latest),
        cmocka_unit_test(test_stale_tmp_removed),
        cmocka_unit_test(test_newer_renamed_aside),
        cmocka_unit_test(test_fallback_truncated),
        cmocka_unit_test(test_fallback_flipped),
        cmocka_unit_test(test_latest_deleted),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_all_corrupt),
        cmocka_unit_test(test_bad_version_and_name),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_bad_content),
        cmocka_unit_test(test_hdf5_quiet),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (failed == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
    } else {
        fprintf(stderr, "files kept in %s\n", g_root);
    }
    MPI_Finalize();
    return failed ? 1 : 0;
}
