/* dataset_impl.h: what every dataset format provides behind struct ssl_dataset (private to
 * io/dataset*.c). A format's open function fills the info and the two operations. */
#ifndef SSL_DATASET_IMPL_H
#define SSL_DATASET_IMPL_H

#include "dataset.h"

struct ssl_dataset {
    struct ssl_dataset_info info;
    /* reads already-validated indices (all in [0, count)) */
    enum ssl_status (*read)(struct ssl_dataset *ds, const int64_t *indices, int64_t n,
                            uint8_t *images, int64_t *labels, struct ssl_error *err);
    void (*close)(struct ssl_dataset *ds); /* frees the format's state and ds itself */
    void *state;                            /* the format's own data */
};

/* The in-memory formats (IDX, CIFAR): the whole split held as images (count, C, H, W) and
 * uint8 labels, read and closed by the shared functions of dataset.c. ds comes first, so the
 * handle and its data are one allocation. */
struct ssl_memory_dataset {
    struct ssl_dataset ds;
    uint8_t *images, *labels; /* owned */
};
/* A zeroed in-memory dataset with its read and close set (ds.state points at it). */
struct ssl_memory_dataset *ssl_memory_dataset_new(void);

/* The formats' open functions (dataset_idx.c, dataset_cifar.c, dataset_hdf5.c). */
enum ssl_status ssl_dataset_open_idx(struct ssl_dataset **ds, const struct ssl_dataset_open_args *a,
                                     struct ssl_error *err);
enum ssl_status ssl_dataset_open_cifar(struct ssl_dataset **ds, const struct ssl_dataset_open_args *a,
                                       struct ssl_error *err);
enum ssl_status ssl_dataset_open_hdf5(struct ssl_dataset **ds, const struct ssl_dataset_open_args *a,
                                      struct ssl_error *err);

#endif
