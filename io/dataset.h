/* dataset.h: image datasets behind one interface: count, shape, label count, and reading a
 * list of indices into a uint8 batch.
 *
 * Formats: Fashion-MNIST IDX (gzip, the Debian package dataset-fashion-mnist), CIFAR-10/100
 * binary, and the generic HDF5 image format of ssltrain (`/images` uint8 (N, C, H, W),
 * `/labels` int32 or int64 (N), optional `/test/images`, `/test/labels`).
 * Malformed input (wrong magic, truncated file, shapes or label counts that do not match, a
 * missing dataset, a label out of range) is SSL_E_DATA with one line naming the file and what
 * is wrong; nothing is read partially.
 *
 * Collective: ssl_dataset_open and ssl_dataset_read are collective over `comm` for the HDF5
 * format (MPI-IO driver; every rank calls read the same number of times, each with its own
 * index list, which may be empty). The in-memory formats ignore comm. */
#ifndef SSL_DATASET_H
#define SSL_DATASET_H

#include <stdint.h>

#include <mpi.h>

#include "check.h"

enum ssl_dataset_kind {
    SSL_DATASET_FASHION_MNIST,
    SSL_DATASET_CIFAR10,
    SSL_DATASET_CIFAR100,
    SSL_DATASET_HDF5,
};
enum ssl_split { SSL_SPLIT_TRAIN, SSL_SPLIT_TEST };
enum ssl_cifar100_labels { SSL_CIFAR100_FINE, SSL_CIFAR100_COARSE };

struct ssl_dataset_info {
    int64_t count;                    /* samples in the split */
    int64_t channels, height, width;  /* every image has this shape, stored (C, H, W) */
    int64_t n_classes;                /* labels lie in [0, n_classes) */
    char source[512];                 /* the file or directory, for messages */
};

struct ssl_dataset_open_args {
    enum ssl_dataset_kind kind;
    const char *path; /* fashion-mnist: directory (default /usr/share/datasets/fashion-mnist);
                         cifar: directory with the .bin files; hdf5: the file */
    enum ssl_split split;
    enum ssl_cifar100_labels cifar100_labels;
    MPI_Comm comm;    /* hdf5 only; MPI_COMM_SELF for one process */
};

struct ssl_dataset; /* opaque */

enum ssl_status ssl_dataset_open(struct ssl_dataset **ds, const struct ssl_dataset_open_args *args,
                                 struct ssl_error *err);
const struct ssl_dataset_info *ssl_dataset_info(const struct ssl_dataset *ds);
/* images (n, C, H, W) uint8 and labels (n) for the given indices (any order, repeats allowed);
 * an index outside [0, count) is SSL_E_USAGE. labels may be NULL. */
enum ssl_status ssl_dataset_read(struct ssl_dataset *ds, const int64_t *indices, int64_t n,
                                 uint8_t *images, int64_t *labels, struct ssl_error *err);
void ssl_dataset_close(struct ssl_dataset *ds);

/* "fashion_mnist", "cifar10", "cifar100", "hdf5" (the data.dataset choices) <-> kind; returns -1 for an unknown name. */
int ssl_dataset_kind_from_name(const char *name);
const char *ssl_dataset_kind_name(enum ssl_dataset_kind kind);

/* Writes the ssltrain HDF5 image format: train split from `train` and, if `test` is not NULL,
 * the test split, with self-describing attributes (source, class count, layout "NCHW").
 * Written atomically (a .tmp file renamed into place). Not collective: one process writes. */
enum ssl_status ssl_dataset_write_hdf5(const char *path, struct ssl_dataset *train,
                                       struct ssl_dataset *test, struct ssl_error *err);

#endif
