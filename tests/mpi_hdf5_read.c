/* mpi_hdf5_read.c: collective reads of the HDF5 image dataset at any rank count.
 *
 * Rank 0 writes a small file with the raw HDF5 C API (chunked + shuffle + deflate, so the
 * collective read goes through the filter pipeline), then, after a barrier, every rank opens
 * it and reads its own index list: rank 1 reads nothing (it must still take part in the
 * collective H5Dread), the others unsorted lists with repeats, of different lengths per rank,
 * several times. Every byte and label is checked against the formula. A broken file must give
 * every rank the same SSL_E_DATA and the same message. Failures are summed with MPI_Allreduce;
 * every rank exits non-zero if any rank failed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>
#include <mpi.h>

#include "dataset_impl.h"

enum { N = 37, C = 3, H = 5, W = 4, N_CLASSES = 6 };

static uint8_t pixel(int64_t i, int64_t j)
{
    return (uint8_t)((i * 97 + j * 11 + 5) % 253);
}

static int64_t label(int64_t i)
{
    return (i * 5 + 1) % N_CLASSES;
}

/* Rank 0 only: an independent writer (no ssltrain code involved). */
static int write_file(const char *path)
{
    hsize_t dims[4] = {N, C, H, W}, chunk[4] = {4, C, H, W}, ldims[1] = {N};
    static uint8_t img[N * C * H * W];
    int64_t lab[N];
    for (int64_t i = 0; i < N; ++i) {
        lab[i] = label(i);
        for (int64_t j = 0; j < C * H * W; ++j) img[i * C * H * W + j] = pixel(i, j);
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t s4 = H5Screate_simple(4, dims, NULL), s1 = H5Screate_simple(1, ldims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = f >= 0 && s4 >= 0 && s1 >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 4, chunk) >= 0 &&
             H5Pset_shuffle(dcpl) >= 0 && H5Pset_deflate(dcpl, 4) >= 0;
    hid_t di = ok ? H5Dcreate2(f, "/images", H5T_STD_U8LE, s4, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    hid_t dl = ok ? H5Dcreate2(f, "/labels", H5T_STD_I32LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = di >= 0 && dl >= 0 &&
         H5Dwrite(di, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, img) >= 0 &&
         H5Dwrite(dl, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab) >= 0;
    if (di >= 0) H5Dclose(di);
    if (dl >= 0) H5Dclose(dl);
    H5Pclose(dcpl), H5Sclose(s4), H5Sclose(s1);
    if (f >= 0) ok = H5Fclose(f) >= 0 && ok;
    return ok ? 0 : 1;
}

/* Rank r's list for round t: empty on rank 1; otherwise unsorted with repeats. */
static int64_t make_indices(int rank, int round, int64_t *idx)
{
    if (rank == 1) return 0;
    int64_t n = 3 + (rank * 5 + round * 7) % 17;
    for (int64_t k = 0; k < n; ++k) idx[k] = (k * 13 + rank * 7 + round * 3) % N;
    idx[n] = idx[0]; /* a repeat */
    idx[n + 1] = N - 1;
    return n + 2;
}

static int check_batch(int rank, const int64_t *idx, int64_t n, const uint8_t *img,
                       const int64_t *lab)
{
    int fails = 0;
    for (int64_t k = 0; k < n; ++k) {
        if (lab[k] != label(idx[k])) ++fails;
        for (int64_t j = 0; j < C * H * W; ++j)
            if (img[k * C * H * W + j] != pixel(idx[k], j)) ++fails;
    }
    if (fails) fprintf(stderr, "rank %d: %d mismatches\n", rank, fails);
    return fails;
}

static int read_rounds(const char *path, int rank)
{
    struct ssl_dataset_open_args a = {.kind = SSL_DATASET_HDF5, .path = path,
                                      .split = SSL_SPLIT_TRAIN, .comm = MPI_COMM_WORLD};
    struct ssl_error err = {.code = SSL_OK};
    struct ssl_dataset *ds = NULL;
    if (ssl_dataset_open_hdf5(&ds, &a, &err) != SSL_OK) {
        fprintf(stderr, "rank %d: open failed: %s\n", rank, err.msg);
        return 1;
    }
    int fails = ds->info.count != N || ds->info.channels != C || ds->info.n_classes != N_CLASSES;
    static uint8_t img[64 * C * H * W];
    int64_t idx[64], lab[64];
    for (int round = 0; round < 4; ++round) {
        int64_t n = make_indices(rank, round, idx);
        if (ds->read(ds, idx, n, img, lab, &err) != SSL_OK) {
            fprintf(stderr, "rank %d: read failed: %s\n", rank, err.msg);
            ++fails;
            break; /* every rank got the same status, so all leave the loop together */
        }
        fails += check_batch(rank, idx, n, img, lab);
    }
    ds->close(ds);
    return fails;
}

/* A text file: every rank must fail alike, with the same message. */
static int broken_file(const char *path, int rank)
{
    if (rank == 0) {
        FILE *f = fopen(path, "w");
        if (f == NULL) return 1;
        fputs("not hdf5\n", f);
        fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    struct ssl_dataset_open_args a = {.kind = SSL_DATASET_HDF5, .path = path,
                                      .split = SSL_SPLIT_TRAIN, .comm = MPI_COMM_WORLD};
    struct ssl_error err = {.code = SSL_OK};
    struct ssl_dataset *ds = NULL;
    enum ssl_status st = ssl_dataset_open_hdf5(&ds, &a, &err);
    char first[sizeof err.msg];
    memcpy(first, err.msg, sizeof first);
    MPI_Bcast(first, (int)sizeof first, MPI_CHAR, 0, MPI_COMM_WORLD);
    int fails = st != SSL_E_DATA || ds != NULL || strstr(err.msg, path) == NULL ||
                strcmp(first, err.msg) != 0;
    if (fails) fprintf(stderr, "rank %d: broken file gave %d: %s\n", rank, (int)st, err.msg);
    return fails;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    /* per rank count, so the np 1/2/3 tests may run at the same time */
    char path[256], bad[256];
    snprintf(path, sizeof path, "mpi_hdf5_read_np%d.h5", size);
    snprintf(bad, sizeof bad, "mpi_hdf5_read_np%d.txt", size);
    int fails = rank == 0 ? write_file(path) : 0;
    MPI_Bcast(&fails, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (fails == 0) {
        fails += read_rounds(path, rank);
        fails += broken_file(bad, rank);
    }
    int total = 0;
    MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("mpi_hdf5_read np=%d: %s (%d failures)\n", size, total ? "FAILED" : "passed", total);
        remove(path);
        remove(bad);
    }
    MPI_Finalize();
    return total ? 1 : 0;
}
