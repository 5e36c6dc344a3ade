/* test_convert_roundtrip.c: `ssltrain convert` output (argv[3]) read back through the HDF5
 * loader equals the source dataset (kind argv[1], e.g. fashion_mnist or cifar10, in directory
 * argv[2]) read through its own loader, byte for byte, for every image and label of both splits. Two independent
 * readers of two formats must agree. Exit 0 on equality, 1 with the first difference. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

static int compare_split(enum ssl_dataset_kind kind, const char *dir, const char *h5, enum ssl_split split)
{
    struct ssl_dataset_open_args a = {.kind = kind, .path = dir, .split = split,
                                      .comm = MPI_COMM_SELF};
    struct ssl_dataset_open_args b = {.kind = SSL_DATASET_HDF5, .path = h5, .split = split,
                                      .comm = MPI_COMM_SELF};
    struct ssl_dataset *src = NULL, *dst = NULL;
    struct ssl_error err = {0};
    if (ssl_dataset_open(&src, &a, &err) || ssl_dataset_open(&dst, &b, &err)) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 1;
    }
    const struct ssl_dataset_info *si = ssl_dataset_info(src), *di = ssl_dataset_info(dst);
    if (si->count != di->count || si->channels != di->channels || si->height != di->height ||
        si->width != di->width || si->n_classes != di->n_classes) {
        fprintf(stderr, "split %d: shapes differ\n", (int)split);
        return 1;
    }
    enum { BLOCK = 5000 };
    int64_t per = si->channels * si->height * si->width, idx[BLOCK], la[BLOCK], lb[BLOCK];
    uint8_t *ia = malloc((size_t)(BLOCK * per)), *ib = malloc((size_t)(BLOCK * per));
    int bad = 0;
    for (int64_t start = 0; start < si->count && !bad; start += BLOCK) {
        int64_t n = si->count - start < BLOCK ? si->count - start : BLOCK;
        for (int64_t i = 0; i < n; i++) idx[i] = start + i;
        if (ssl_dataset_read(src, idx, n, ia, la, &err) || ssl_dataset_read(dst, idx, n, ib, lb, &err)) {
            fprintf(stderr, "read: %s\n", err.msg);
            bad = 1;
        } else if (memcmp(ia, ib, (size_t)(n * per)) || memcmp(la, lb, (size_t)n * sizeof *la)) {
            fprintf(stderr, "split %d: samples %lld..%lld differ\n", (int)split, (long long)start,
                    (long long)(start + n - 1));
            bad = 1;
        }
    }
    printf("split %s: %lld samples of %lldx%lldx%lld identical: %s\n", split ? "test" : "train",
           (long long)si->count, (long long)si->channels, (long long)si->height, (long long)si->width,
           bad ? "no" : "yes");
    free(ia);
    free(ib);
    ssl_dataset_close(src);
    ssl_dataset_close(dst);
    return bad;
}

int main(int argc, char **argv)
{
    int kind = argc == 4 ? ssl_dataset_kind_from_name(argv[1]) : -1;
    if (kind < 0) {
        fprintf(stderr, "usage: %s KIND DIR CONVERTED.h5\n", argv[0]);
        return 2;
    }
    MPI_Init(&argc, &argv);
    int bad = compare_split((enum ssl_dataset_kind)kind, argv[2], argv[3], SSL_SPLIT_TRAIN) +
              compare_split((enum ssl_dataset_kind)kind, argv[2], argv[3], SSL_SPLIT_TEST);
    MPI_Finalize();
    return bad ? 1 : 0;
}
