/* h5_matrix.h: reading 2-D float matrices in HDF5 files written by h5py-like tools (float32 or
 * float64 datasets of shape (N, D)), for the offline tools (`ssltrain analyze`, `ssltrain
 * loss`). Two APIs over the same checks (2-D, non-empty, floating point, finite values):
 *   - one process (ssl_h5_has, ssl_h5_read_matrix): the default file driver, no MPI call;
 *   - collective (struct ssl_h5_reader): the file opened with the MPI-IO driver over a
 *     communicator, each rank reading its own block of rows with a collective hyperslab read
 *     (H5FD_MPIO_COLLECTIVE). Every collective function ends with ssl_h5_agree, so every rank
 *     returns the same status and holds the same message.
 * Errors are one line naming the file and the dataset (SSL_E_DATA; SSL_E_USAGE for a missing
 * file). */
#ifndef SSL_H5_MATRIX_H
#define SSL_H5_MATRIX_H

#include <stdbool.h>
#include <stdint.h>

#include <mpi.h>

#include "check.h"
#include "h5_util.h" /* ssl_h5_agree */

/* Whether `dataset` exists in the file (false too when the file cannot be opened). */
bool ssl_h5_has(const char *path, const char *dataset);
/* *data (rows, cols) row-major doubles, malloc'd (the caller frees it). The dataset must be
 * 2-D, non-empty, of a floating-point type, and hold only finite values. */
enum ssl_status ssl_h5_read_matrix(const char *path, const char *dataset, double **data,
                                   int64_t *rows, int64_t *cols, struct ssl_error *err);

/* ---- collective ---------------------------------------------------------------------------- */

/* An HDF5 file open for collective reads (MPI-IO driver) over a communicator. */
struct ssl_h5_reader;

/* Collective: opens path read-only over comm (which must outlive the reader). A missing file
 * is SSL_E_USAGE, a file that is not HDF5 SSL_E_DATA; *r is NULL on failure. */
enum ssl_status ssl_h5_reader_open(struct ssl_h5_reader **r, const char *path, MPI_Comm comm,
                                   struct ssl_error *err);
/* Not collective (the same answer on every rank): whether `dataset` exists. */
bool ssl_h5_reader_has(const struct ssl_h5_reader *r, const char *dataset);
/* Collective: the shape of a 2-D, non-empty, floating-point dataset. */
enum ssl_status ssl_h5_reader_shape(const struct ssl_h5_reader *r, const char *dataset,
                                    int64_t *rows, int64_t *cols, struct ssl_error *err);
/* Collective: rows [row0, row0 + rows) of the dataset (each rank its own block; ranks may
 * overlap, and rows may be 0) into *data (rows, cols) row-major doubles, malloc'd (the caller
 * frees it; NULL on failure). Values must be finite; a message names the global row. */
enum ssl_status ssl_h5_reader_rows(const struct ssl_h5_reader *r, const char *dataset,
                                   int64_t row0, int64_t rows, double **data,
                                   struct ssl_error *err);
/* Collective: closes the file and frees r (NULL is fine, on every rank alike). */
void ssl_h5_reader_close(struct ssl_h5_reader *r);

#endif
