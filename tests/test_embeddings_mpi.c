/* test_embeddings_mpi.c: collective embedding dumps (io/embeddings.c) at any rank count.
 *
 *   test_embeddings_mpi write DIR   DIR/emb-npP.h5: each rank writes its block of rows (sizes
 *                                   differ; rank 1 of 3 has none), rank 0 reads the file back
 *                                   (one process, default driver) and compares every value,
 *                                   label, index and attribute; then an all-empty dump
 *   test_embeddings_mpi fail DIR    calls that must fail with the same status and the same
 *                                   one-line message on every rank: a missing directory, widths
 *                                   or attributes differing between ranks, missing data, a
 *                                   foreign format attribute, a duplicate name, and an HDF5-level
 *                                   create failure that must leave an existing dump intact
 *
 * Values come from a formula of the global row g and column c (tests/check_embeddings_h5py.py
 * recomputes them). Every rank checks; failures are summed with MPI_Allreduce and every rank
 * exits non-zero if any rank failed. HDF5's error printing must stay off (ctest fails on
 * "HDF5-DIAG" in the output) and be restored after each call. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <mpi.h>
#include <zlib.h>

#include "embeddings.h"
#include "mpi_test_util.h"

enum { DH = 1000, DZ = 7 };

/* Rows of rank r of P: different sizes, rank 1 empty from P = 3 on. */
static int64_t rows_of(int r, int P)
{
    return P >= 3 && r == 1 ? 0 : 300 + 37 * r;
}

/* Exact in float32: the h5py check recomputes the same numbers. */
static float h_val(int64_t g, int64_t c) { return (float)((g * 31 + c * 17) % 1009) / 64.0f - 7.0f; }
static float z_val(int64_t g, int64_t c) { return (float)((g * (2 * c + 3) + 5 * c) % 97 - 48) / 8.0f; }
static int64_t label_val(int64_t g) { return g % 10; }
static int64_t index_val(int64_t g) { return ((int64_t)1 << 40) + (g * 7919) % 100003; }

/* This rank's block, from global row g0 on; the arrays are malloc'd. */
static struct ssl_emb_block make_block(int64_t g0, int64_t rows)
{
    float *h = malloc((size_t)(rows * DH + 1) * sizeof *h), *z = malloc((size_t)(rows * DZ + 1) * sizeof *z);
    int64_t *labels = malloc((size_t)(rows + 1) * sizeof *labels), *index = malloc((size_t)(rows + 1) * sizeof *index);
    if (!h || !z || !labels || !index) abort();
    for (int64_t i = 0; i < rows; ++i) {
        for (int64_t c = 0; c < DH; ++c) h[i * DH + c] = h_val(g0 + i, c);
        for (int64_t c = 0; c < DZ; ++c) z[i * DZ + c] = z_val(g0 + i, c);
        labels[i] = label_val(g0 + i);
        index[i] = index_val(g0 + i);
    }
    return (struct ssl_emb_block){h, z, labels, index, rows, DH, DZ};
}

static void free_block(struct ssl_emb_block *b)
{
    free((void *)b->h);
    free((void *)b->z);
    free((void *)b->labels);
    free((void *)b->index);
}

static const char CONFIG[] = "model:\n  name: r\xc3\xa9snet18\nloss: {name: vicreg}\n";

/* The caller's attributes; format is passed too (allowed with the library's value). */
static int make_attrs(struct ssl_emb_attr *a, int64_t step)
{
    const struct ssl_emb_attr list[] = {
        {.name = "format", .str = SSL_EMB_FORMAT, .is_string = true},
        {.name = "method", .str = "vicreg", .is_string = true},
        {.name = "step", .i64 = step},
        {.name = "epoch", .i64 = -3},
        {.name = "split", .str = "test", .is_string = true},
        {.name = "config", .str = CONFIG, .is_string = true},
        {.name = "git_revision", .str = "0123abc-dirty", .is_string = true},
        {.name = "dataset", .str = "fashion-mnist", .is_string = true},
        {.name = "note", .str = "", .is_string = true},
        {.name = "big", .i64 = -((int64_t)1 << 40) - 5},
    };
    int n = (int)(sizeof list / sizeof *list);
    memcpy(a, list, sizeof list);
    return n;
}

static int64_t offset_of(int rank, int size)
{
    int64_t off = 0;
    for (int r = 0; r < rank; ++r) off += rows_of(r, size);
    return off;
}

/* H5Eget_auto2 as it was before a call must be what it is after. */
static void check_h5_auto(H5E_auto2_t before_func, void *before_data)
{
    H5E_auto2_t f;
    void *d;
    H5Eget_auto2(H5E_DEFAULT, &f, &d);
    CHECK(f == before_func && d == before_data);
}

static void compare_attrs(const struct ssl_emb_data *d, const struct ssl_emb_attr *want, int n)
{
    CHECK(d->n_attrs == n + 1); /* + format_version */
    for (int i = 0; i < n; ++i) {
        const struct ssl_emb_attr *a = ssl_emb_find_attr(d, want[i].name);
        CHECK(a != NULL);
        if (a == NULL) continue;
        CHECK(a->is_string == want[i].is_string);
        if (a->is_string && want[i].is_string) CHECK(strcmp(a->str, want[i].str) == 0);
        else CHECK(a->i64 == want[i].i64);
    }
    const struct ssl_emb_attr *v = ssl_emb_find_attr(d, "format_version");
    CHECK(v != NULL && !v->is_string && v->i64 == SSL_EMB_FORMAT_VERSION);
    for (int i = 1; i < d->n_attrs; ++i) CHECK(strcmp(d->attrs[i - 1].name, d->attrs[i].name) < 0);
}

/* Rank 0: the whole file against the formula. */
static void compare_file(const char *path, int64_t n, const struct ssl_emb_attr *attrs, int n_attrs)
{
    struct ssl_emb_data d;
    struct ssl_error err = {SSL_OK, ""};
    enum ssl_status st = ssl_emb_read(path, &d, &err);
    if (st != SSL_OK) fprintf(stderr, "read: %s\n", err.msg);
    CHECK(st == SSL_OK);
    if (st != SSL_OK) return;
    CHECK(d.rows == n && d.dh == DH && d.dz == DZ);
    int64_t bad = 0;
    for (int64_t g = 0; g < d.rows && d.rows == n; ++g) {
        for (int64_t c = 0; c < DH; ++c) bad += d.h[g * DH + c] != h_val(g, c);
        for (int64_t c = 0; c < DZ; ++c) bad += d.z[g * DZ + c] != z_val(g, c);
        bad += d.labels[g] != label_val(g);
        bad += d.index[g] != index_val(g);
    }
    if (bad) fprintf(stderr, "%s: %lld values differ\n", path, (long long)bad);
    CHECK(bad == 0);
    compare_attrs(&d, attrs, n_attrs);
    ssl_emb_free(&d);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void write_and_check(const char *dir)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/emb-np%d.h5", dir, g_size);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int64_t n = offset_of(g_size, g_size);
    struct ssl_emb_block b = make_block(offset_of(g_rank, g_size), rows_of(g_rank, g_size));
    struct ssl_emb_attr attrs[16];
    int n_attrs = make_attrs(attrs, 1234);
    struct ssl_comm comm = {MPI_COMM_WORLD, g_rank, g_size};
    struct ssl_error err = {SSL_OK, ""};
    H5E_auto2_t func;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    enum ssl_status st = ssl_emb_write(path, &b, attrs, n_attrs, &comm, &err);
    if (st != SSL_OK) fprintf(stderr, "[rank %d] write: %s\n", g_rank, err.msg);
    CHECK(st == SSL_OK);
    check_h5_auto(func, data);
    free_block(&b);
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(exists(path) && !exists(tmp));
    if (g_rank == 0) compare_file(path, n, attrs, n_attrs);
    check_h5_auto(func, data);
}

/* No rows anywhere: a valid, empty (contiguous) dump that keeps its widths. */
static void write_empty(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/emb-empty-np%d.h5", dir, g_size);
    struct ssl_emb_block b = {NULL, NULL, NULL, NULL, 0, DH, DZ};
    struct ssl_emb_attr attrs[16];
    int n_attrs = make_attrs(attrs, 7);
    struct ssl_comm comm = {MPI_COMM_WORLD, g_rank, g_size};
    struct ssl_error err = {SSL_OK, ""};
    enum ssl_status st = ssl_emb_write(path, &b, attrs, n_attrs, &comm, &err);
    if (st != SSL_OK) fprintf(stderr, "[rank %d] write empty: %s\n", g_rank, err.msg);
    CHECK(st == SSL_OK);
    if (g_rank != 0 || st != SSL_OK) return;
    struct ssl_emb_data d;
    st = ssl_emb_read(path, &d, &err);
    CHECK(st == SSL_OK && d.rows == 0 && d.dh == DH && d.dz == DZ);
    if (st == SSL_OK) compare_attrs(&d, attrs, n_attrs);
    ssl_emb_free(&d);
}

/* ---------------------------------------------------------------------------------------- */
/* Failures                                                                                 */

/* The call failed with `code` on every rank, with one identical message containing `match`. */
static void expect_failure(const char *what, enum ssl_status st, const struct ssl_error *err,
                           enum ssl_status code, const char *match)
{
    int mine[2] = {(int)st, -(int)st}, all[2];
    MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    uint32_t crc = (uint32_t)crc32_z(0, (const unsigned char *)err->msg, strlen(err->msg));
    int64_t h[2] = {crc, -(int64_t)crc}, hall[2];
    MPI_Allreduce(h, hall, 2, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    bool ok = st == code && all[0] == -all[1] && hall[0] == -hall[1] && err->code == code &&
              strstr(err->msg, match) != NULL && strchr(err->msg, '\n') == NULL;
    if (!ok)
        fprintf(stderr, "[rank %d/%d] %s: status %d (want %d), message \"%s\" (want \"%s\")\n", g_rank,
                g_size, what, (int)st, (int)code, err->msg, match);
    CHECK(ok);
    if (g_rank == 0 && ok) printf("  %s: %s\n", what, err->msg);
}

static enum ssl_status try_write(const char *path, const struct ssl_emb_block *b,
                                 const struct ssl_emb_attr *attrs, int n_attrs, struct ssl_error *err)
{
    struct ssl_comm comm = {MPI_COMM_WORLD, g_rank, g_size};
    H5E_auto2_t func;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    *err = (struct ssl_error){SSL_OK, ""};
    enum ssl_status st = ssl_emb_write(path, b, attrs, n_attrs, &comm, err);
    check_h5_auto(func, data);
    return st;
}

static void fail_missing_dir(const char *dir, const struct ssl_emb_block *b,
                             const struct ssl_emb_attr *attrs, int n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/no-such-dir/emb.h5", dir);
    struct ssl_error err;
    enum ssl_status st = try_write(path, b, attrs, n, &err);
    expect_failure("missing directory", st, &err, SSL_E_OTHER, path);
    CHECK(!exists(path));
}

static void fail_bad_calls(const char *dir, const struct ssl_emb_block *b,
                           const struct ssl_emb_attr *attrs, int n)
{
    char path[4096], prefix[64];
    snprintf(path, sizeof path, "%s/bad.h5", dir);
    snprintf(prefix, sizeof prefix, "[rank %d/%d] ", g_size - 1, g_size);
    struct ssl_error err;
    struct ssl_emb_block nodata = *b;
    if (g_rank == g_size - 1) nodata.h = NULL;
    enum ssl_status st = try_write(path, &nodata, attrs, n, &err);
    expect_failure("missing data on the last rank", st, &err, SSL_E_USAGE, g_size > 1 ? prefix : path);
    struct ssl_emb_attr bad[16];
    memcpy(bad, attrs, (size_t)n * sizeof *attrs);
    bad[0].str = "numpy";
    st = try_write(path, b, bad, n, &err);
    expect_failure("foreign format", st, &err, SSL_E_USAGE, "attribute format is written by the library");
    memcpy(bad, attrs, (size_t)n * sizeof *attrs);
    bad[2].name = "method";
    st = try_write(path, b, bad, n, &err);
    expect_failure("duplicate attribute", st, &err, SSL_E_USAGE, "attribute method is given twice");
    if (g_size > 1) {
        struct ssl_emb_block wide = *b;
        if (g_rank == g_size - 1) wide.dh = DH + 1;
        st = try_write(path, &wide, attrs, n, &err);
        expect_failure("dh differs", st, &err, SSL_E_USAGE, "ranks disagree on the widths");
        memcpy(bad, attrs, (size_t)n * sizeof *attrs);
        bad[2].i64 = g_rank; /* step */
        st = try_write(path, b, bad, n, &err);
        expect_failure("attributes differ", st, &err, SSL_E_USAGE, "other attributes");
    }
    CHECK(!exists(path));
}

/* An existing dump survives a failed rewrite: here HDF5 itself cannot create the .tmp (a
 * directory has its name), which also checks that the .tmp is not removed when it is not ours. */
static void fail_keeps_old(const char *dir, const struct ssl_emb_block *b, struct ssl_emb_attr *attrs, int n)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/keep.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    struct ssl_error err;
    attrs[2].i64 = 1; /* step */
    enum ssl_status st = try_write(path, b, attrs, n, &err);
    CHECK(st == SSL_OK);
    if (g_rank == 0) CHECK(mkdir(tmp, 0777) == 0);
    MPI_Barrier(MPI_COMM_WORLD);
    attrs[2].i64 = 2;
    st = try_write(path, b, attrs, n, &err);
    expect_failure("HDF5 cannot create", st, &err, SSL_E_OTHER, tmp);
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank != 0) return;
    struct stat sb;
    CHECK(stat(tmp, &sb) == 0 && S_ISDIR(sb.st_mode));
    rmdir(tmp);
    struct ssl_emb_data d;
    err = (struct ssl_error){SSL_OK, ""};
    st = ssl_emb_read(path, &d, &err);
    const struct ssl_emb_attr *step = st == SSL_OK ? ssl_emb_find_attr(&d, "step") : NULL;
    CHECK(step != NULL && step->i64 == 1);
    ssl_emb_free(&d);
}

/* Reading: a missing file and a file that is not a dump. */
static void fail_reads(const char *dir)
{
    if (g_rank != 0) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/missing.h5", dir);
    struct ssl_emb_data d;
    struct ssl_error err = {SSL_OK, ""};
    CHECK(ssl_emb_read(path, &d, &err) == SSL_E_USAGE && strstr(err.msg, path) != NULL);
    snprintf(path, sizeof path, "%s/foreign.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    H5Fclose(f);
    err = (struct ssl_error){SSL_OK, ""};
    CHECK(ssl_emb_read(path, &d, &err) == SSL_E_DATA && strstr(err.msg, "not an embedding dump") != NULL);
    printf("  read errors: %s\n", err.msg);
    ssl_emb_free(&d);
}

static void run_failures(const char *dir)
{
    struct ssl_emb_block b = make_block(0, g_size >= 3 && g_rank == 1 ? 0 : 3);
    struct ssl_emb_attr attrs[16];
    int n = make_attrs(attrs, 1234);
    fail_missing_dir(dir, &b, attrs, n);
    fail_bad_calls(dir, &b, attrs, n);
    fail_keeps_old(dir, &b, attrs, n);
    fail_reads(dir);
    free_block(&b);
}

/* mkdir -p (existing components are fine). */
static void make_dirs(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1;; ++p) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        mkdir(buf, 0777);
        if (saved == '\0') return;
        *p = saved;
    }
}

int main(int argc, char **argv)
{
    mpi_test_init(&argc, &argv);
    if (argc != 3 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "fail") != 0)) {
        if (g_rank == 0) fprintf(stderr, "usage: test_embeddings_mpi write|fail DIR\n");
        MPI_Finalize();
        return 2;
    }
    const char *dir = argv[2];
    if (g_rank == 0) make_dirs(dir);
    MPI_Barrier(MPI_COMM_WORLD);
    if (strcmp(argv[1], "write") == 0) {
        write_and_check(dir);
        write_empty(dir);
    } else {
        run_failures(dir);
    }
    return mpi_test_finish("test_embeddings_mpi", argv[1]);
}
