/* test_checkpoint_mpi.c: collective checkpoint writes and reads at any rank count.
 *
 *   test_checkpoint_mpi write DIR   steps 10, 20, 30 with keep 2 (a stale .tmp waiting), then
 *                                   failures that must reach every rank with one message
 *   test_checkpoint_mpi read DIR    find_resumable, open, read every entry, attributes, a wrong
 *                                   shape, and the fallback on a truncated copy
 *
 * ctest runs `write` at np 1 and 2 and `read` at other rank counts (1, 3) on those files.
 * Values come from a formula per (entry, element). Ranks other than 0 pass garbage (or NULL)
 * data to the writer: the file must hold rank 0's copy. Every rank checks; failures are summed
 * with MPI_Allreduce and every rank exits non-zero if any rank failed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>
#include <zlib.h>

#include "checkpoint.h"
#include "mpi_test_util.h"

enum { N_ENTRIES = 7 };

static const struct ssl_ckpt_entry g_shape[N_ENTRIES] = {
    {"model/backbone.conv1.weight", SSL_CKPT_F32, 4, {4, 3, 3, 3}, NULL},
    {"model/backbone.bn1.running_mean", SSL_CKPT_F64, 1, {4}, NULL},
    {"model/backbone.bn1.num_batches_tracked", SSL_CKPT_I64, 0, {0}, NULL},
    {"state/rng.counters", SSL_CKPT_U64, 2, {3, 2}, NULL},
    {"state/sampler.epoch", SSL_CKPT_I32, 1, {1}, NULL},
    {"state/queue", SSL_CKPT_U8, 3, {5, 2, 7}, NULL},
    {"optim/momentum", SSL_CKPT_F32, 2, {1000, 33}, NULL},
};

static int64_t count_of(const struct ssl_ckpt_entry *e)
{
    int64_t n = 1;
    for (int i = 0; i < e->rank; ++i) n *= e->dims[i];
    return n;
}

static void *make_values(int e, const struct ssl_ckpt_entry *en)
{
    int64_t n = count_of(en);
    void *buf = calloc((size_t)n + 1, 8);
    if (buf == NULL) abort();
    for (int64_t k = 0; k < n; ++k) switch (en->type) {
        case SSL_CKPT_F32: ((float *)buf)[k] = (float)k * 0.125f - (float)e; break;
        case SSL_CKPT_F64: ((double *)buf)[k] = (double)k / 7.0 - e; break;
        case SSL_CKPT_I64: ((int64_t *)buf)[k] = INT64_C(-1099511627776) - k - e; break;
        case SSL_CKPT_U64: ((uint64_t *)buf)[k] = UINT64_MAX - (uint64_t)(k * 977 + e); break;
        case SSL_CKPT_I32: ((int32_t *)buf)[k] = -7 - (int32_t)(k + e); break;
        case SSL_CKPT_U8: ((uint8_t *)buf)[k] = (uint8_t)(k * 29 + e); break;
        }
    return buf;
}

static const char *g_config = "method: simclr\ndata:\n  batch: 512\n";

/* Rank 0 holds the values; other ranks garbage, and NULL for entry 0. */
static void make_entries(struct ssl_ckpt_entry *e)
{
    for (int i = 0; i < N_ENTRIES; ++i) {
        e[i] = g_shape[i];
        void *v = make_values(i, &g_shape[i]);
        if (g_rank != 0) memset(v, 0xa5, (size_t)count_of(&g_shape[i]) * ssl_ckpt_type_size(g_shape[i].type));
        e[i].data = v;
    }
    if (g_rank != 0) {
        free((void *)e[0].data);
        e[0].data = NULL;
    }
}

static void free_entries(struct ssl_ckpt_entry *e)
{
    for (int i = 0; i < N_ENTRIES; ++i) free((void *)e[i].data);
}

/* The same message on every rank (a CRC of it compared with MPI_Allreduce). */
static int same_message(const char *msg)
{
    int64_t h = (int64_t)crc32(0, (const unsigned char *)msg, (uInt)strlen(msg)), v[2] = {h, -h}, r[2];
    MPI_Allreduce(v, r, 2, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    return r[0] == -r[1];
}

static int exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static void step_path(char *buf, size_t n, const char *dir, int64_t step)
{
    if (snprintf(buf, n, "%s/step-%08lld.h5", dir, (long long)step) >= (int)n) abort();
}

static void run(const char *cmd)
{
    if (system(cmd) != 0) {
        fprintf(stderr, "[rank %d] failed: %s\n", g_rank, cmd);
        ++g_fails;
    }
}

static void write_mode(const char *dir, const struct ssl_comm *comm)
{
    char cmd[4200], path[4200];
    if (g_rank == 0) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && echo x > '%s/step-00000005.h5.tmp'",
                 dir, dir, dir);
        run(cmd);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    struct ssl_ckpt_entry e[N_ENTRIES];
    make_entries(e);
    struct ssl_ckpt_attr a[3] = {{"config", SSL_CKPT_ATTR_STRING, g_config, 0},
                                 {"method", SSL_CKPT_ATTR_STRING, "simclr", 0},
                                 {"epoch", SSL_CKPT_ATTR_INT64, NULL, 0}};
    struct ssl_ckpt_group g[1] = {{"model", "the online network (torch state_dict names)"}};
    struct ssl_ckpt_content c = {e, N_ENTRIES, a, 3, g, 1};
    for (int64_t step = 10; step <= 30; step += 10) {
        struct ssl_error err = {SSL_OK, ""};
        a[2].i64 = step / 10;
        enum ssl_status st = ssl_ckpt_write(dir, step, &c, 2, comm, &err);
        if (st != SSL_OK) fprintf(stderr, "[rank %d] write: %s\n", g_rank, err.msg);
        CHECK(st == SSL_OK);
        /* every rank returns after the file is complete under its final name */
        step_path(path, sizeof path, dir, step);
        err = (struct ssl_error){SSL_OK, ""};
        CHECK(ssl_ckpt_validate(path, &err) == SSL_OK);
    }
    step_path(path, sizeof path, dir, 10);
    CHECK(!exists(path));
    step_path(path, sizeof path, dir, 20);
    CHECK(exists(path));
    snprintf(path, sizeof path, "%s/step-00000005.h5.tmp", dir);
    CHECK(!exists(path));
    snprintf(path, sizeof path, "%s/latest.h5", dir);
    char target[64] = "";
    ssize_t n = readlink(path, target, sizeof target - 1);
    CHECK(n > 0 && strcmp(target, "step-00000030.h5") == 0);

    /* a failure on rank 0 only (no data) reaches every rank */
    const void *saved = e[1].data;
    if (g_rank == 0) e[1].data = NULL;
    struct ssl_error err = {SSL_OK, ""};
    CHECK(ssl_ckpt_write(dir, 40, &c, 2, comm, &err) == SSL_E_USAGE);
    CHECK(same_message(err.msg));
    e[1].data = saved;
    /* arguments that differ between ranks: an error on every rank, not a hang */
    if (g_size > 1) {
        if (g_rank == g_size - 1) e[6].dims[1] = 32;
        err = (struct ssl_error){SSL_OK, ""};
        CHECK(ssl_ckpt_write(dir, 40, &c, 2, comm, &err) == SSL_E_OTHER);
        CHECK(same_message(err.msg));
        if (g_rank == 0) printf("differing ranks: %s\n", err.msg);
        e[6].dims[1] = 33;
    }
    step_path(path, sizeof path, dir, 40);
    CHECK(!exists(path));
    free_entries(e);
}

static void read_entries(struct ssl_ckpt *ck)
{
    CHECK(ssl_ckpt_count(ck) == N_ENTRIES);
    for (int i = 0; i < N_ENTRIES; ++i) {
        struct ssl_error err = {SSL_OK, ""};
        size_t n_bytes = (size_t)count_of(&g_shape[i]) * ssl_ckpt_type_size(g_shape[i].type);
        void *want = make_values(i, &g_shape[i]), *got = calloc(n_bytes + 1, 1);
        enum ssl_status st = ssl_ckpt_read(ck, &g_shape[i], got, &err);
        if (st != SSL_OK) fprintf(stderr, "[rank %d] read: %s\n", g_rank, err.msg);
        CHECK(st == SSL_OK && memcmp(got, want, n_bytes) == 0);
        free(got);
        free(want);
    }
}

static void read_attrs(struct ssl_ckpt *ck)
{
    struct ssl_error err = {SSL_OK, ""};
    char *s = NULL;
    int64_t v = 0;
    CHECK(ssl_ckpt_attr_string(ck, "config", &s, &err) == SSL_OK && strcmp(s, g_config) == 0);
    free(s);
    CHECK(ssl_ckpt_attr_int64(ck, "step", &v, &err) == SSL_OK && v == 30);
    CHECK(ssl_ckpt_attr_int64(ck, "epoch", &v, &err) == SSL_OK && v == 3);
    struct ssl_ckpt_entry w = g_shape[6];
    w.dims[0] = 33, w.dims[1] = 1000;
    float *buf = malloc(33000 * sizeof *buf);
    CHECK(ssl_ckpt_read(ck, &w, buf, &err) == SSL_E_DATA);
    CHECK(strstr(err.msg, "dataset optim/momentum has shape (1000, 33), expected (33, 1000)") != NULL);
    CHECK(same_message(err.msg));
    free(buf);
}

static void read_mode(const char *dir, const struct ssl_comm *comm)
{
    struct ssl_ckpt_found out;
    struct ssl_error err = {SSL_OK, ""};
    char path[4200];
    CHECK(ssl_ckpt_find_resumable(dir, comm, &out, &err) == SSL_OK);
    step_path(path, sizeof path, dir, 30);
    CHECK(out.found && out.step == 30 && out.n_rejected == 0 && strcmp(out.path, path) == 0);
    struct ssl_ckpt *ck = NULL;
    CHECK(ssl_ckpt_open(&ck, out.path, comm, &err) == SSL_OK);
    if (ck != NULL) {
        read_entries(ck);
        read_attrs(ck);
        ssl_ckpt_close(ck);
    }

    /* a truncated newest file: every rank falls back to step 20 with the same warning */
    char copy[4200], cmd[9000];
    if (snprintf(copy, sizeof copy, "%s-truncated-np%d", dir, g_size) >= (int)sizeof copy) abort();
    if (g_rank == 0) {
        if (snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s' && truncate -s 2000 '%s/step-00000030.h5'",
                     copy, dir, copy, copy) >= (int)sizeof cmd)
            abort();
        run(cmd);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    err = (struct ssl_error){SSL_OK, ""};
    CHECK(ssl_ckpt_find_resumable(copy, comm, &out, &err) == SSL_OK);
    CHECK(out.found && out.step == 20 && out.n_rejected == 1);
    CHECK(strstr(out.warning, "step-00000030.h5") != NULL && same_message(out.warning));
    if (g_rank == 0) printf("fallback warning: %s\n", out.warning);
    err = (struct ssl_error){SSL_OK, ""};
    step_path(path, sizeof path, copy, 30);
    CHECK(ssl_ckpt_open(&ck, path, comm, &err) == SSL_E_DATA && ck == NULL && same_message(err.msg));
}

int main(int argc, char **argv)
{
    mpi_test_init(&argc, &argv);
    if (argc != 3 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "read") != 0)) {
        if (g_rank == 0) fprintf(stderr, "usage: %s write|read DIR\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    struct ssl_comm comm = {MPI_COMM_WORLD, g_rank, g_size};
    if (strcmp(argv[1], "write") == 0) write_mode(argv[2], &comm);
    else read_mode(argv[2], &comm);
    return mpi_test_finish("test_checkpoint_mpi", argv[1]);
}
