/* h5_matrix.h: reading and writing 2-D float matrices in HDF5 files written by h5py-like
 * tools (float32 or float64 datasets of shape (N, D)), for the offline tools (`ssltrain
 * analyze`, `ssltrain loss`). Not collective: one process, the default file driver. Errors
 * are one line naming the file and the dataset (SSL_E_DATA; SSL_E_USAGE for a missing file). */
#ifndef SSL_H5_MATRIX_H
#define SSL_H5_MATRIX_H

#include <stdbool.h>
#include <stdint.h>

#include "check.h"

/* Whether `dataset` exists in the file (false too when the file cannot be opened). */
bool ssl_h5_has(const char *path, const char *dataset);
/* *data (rows, cols) row-major doubles, malloc'd (the caller frees it). The dataset must be
 * 2-D, non-empty, of a floating-point type, and hold only finite values. */
enum ssl_status ssl_h5_read_matrix(const char *path, const char *dataset, double **data,
                                   int64_t *rows, int64_t *cols, struct ssl_error *err);

#endif
