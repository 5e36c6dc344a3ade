/* h5_matrix.c: 2-D float datasets in, with every HDF5 call checked and HDF5's own error
 * printing silenced in favour of one line of ours. The one-process and the collective reader
 * share the checks (shape_of, check_finite), so both reject the same files with the same
 * messages. */
#include "h5_matrix.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HDF5 prints its error stack by default; our messages replace it. */
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

bool ssl_h5_has(const char *path, const char *dataset)
{
    h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return false;
    bool has = H5Lexists(f, dataset, H5P_DEFAULT) > 0 && H5Oexists_by_name(f, dataset, H5P_DEFAULT) > 0;
    H5Fclose(f);
    return has;
}

/* The dims of the open dataset d, checked: 2-D, non-empty, floating point. */
static enum ssl_status shape_of(hid_t d, const char *path, const char *dataset, hsize_t dims[2],
                                struct ssl_error *err)
{
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    enum ssl_status rc = SSL_OK;
    dims[0] = dims[1] = 0;
    if (space < 0 || type < 0) rc = ssl_error_set(err, SSL_E_DATA, "%s: %s: cannot read its shape", path, dataset);
    else if (H5Tget_class(type) != H5T_FLOAT)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: %s must hold floating-point numbers (float32 or float64)", path, dataset);
    else if (H5Sget_simple_extent_ndims(space) != 2)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: %s must be 2-D (N, D), found rank %d", path, dataset,
                           H5Sget_simple_extent_ndims(space));
    else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0 || dims[0] == 0 || dims[1] == 0)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: %s is empty", path, dataset);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    return rc;
}

/* data (rows, cols) holds rows row0.. of the dataset: the first non-finite value, named by its
 * row in the whole dataset, is an error. */
static enum ssl_status check_finite(const double *data, int64_t rows, int64_t cols, int64_t row0,
                                    const char *path, const char *dataset, struct ssl_error *err)
{
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(data[i]))
            return ssl_error_set(err, SSL_E_DATA, "%s: %s[%lld, %lld] is not finite", path, dataset,
                                 (long long)(row0 + i / cols), (long long)(i % cols));
    return SSL_OK;
}

static enum ssl_status read_open(hid_t d, const char *path, const char *dataset, double **data,
                                 int64_t *rows, int64_t *cols, struct ssl_error *err)
{
    hsize_t dims[2];
    enum ssl_status rc = shape_of(d, path, dataset, dims, err);
    if (!rc) {
        *data = malloc((size_t)(dims[0] * dims[1]) * sizeof **data);
        if (*data == NULL) rc = ssl_error_set(err, SSL_E_OTHER, "%s: %s: out of memory", path, dataset);
    }
    if (!rc && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: %s: read failed (truncated file?)", path, dataset);
    if (!rc) rc = check_finite(*data, (int64_t)dims[0], (int64_t)dims[1], 0, path, dataset, err);
    if (rc) {
        free(*data);
        *data = NULL;
    }
    *rows = (int64_t)dims[0];
    *cols = (int64_t)dims[1];
    return rc;
}

/* Before any open: a missing file (SSL_E_USAGE) or one that is not HDF5 (SSL_E_DATA). */
static enum ssl_status precheck_file(const char *path, struct ssl_error *err)
{
    FILE *probe = fopen(path, "rb");
    if (probe == NULL) return ssl_error_set(err, SSL_E_USAGE, "%s: cannot open", path);
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) return ssl_error_set(err, SSL_E_DATA, "%s: not an HDF5 file", path);
    return SSL_OK;
}

enum ssl_status ssl_h5_read_matrix(const char *path, const char *dataset, double **data,
                                   int64_t *rows, int64_t *cols, struct ssl_error *err)
{
    h5_quiet();
    *data = NULL;
    enum ssl_status rc = precheck_file(path, err);
    if (rc) return rc;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return ssl_error_set(err, SSL_E_DATA, "%s: cannot open as HDF5 (truncated?)", path);
    if (H5Lexists(f, dataset, H5P_DEFAULT) <= 0) {
        rc = ssl_error_set(err, SSL_E_DATA, "%s: no dataset %s", path, dataset);
    } else {
        hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
        rc = d < 0 ? ssl_error_set(err, SSL_E_DATA, "%s: %s is not a dataset", path, dataset)
                   : read_open(d, path, dataset, data, rows, cols, err);
        if (d >= 0) H5Dclose(d);
    }
    H5Fclose(f);
    return rc;
}

/* ---- collective ---------------------------------------------------------------------------- */

struct ssl_h5_reader {
    MPI_Comm comm;
    hid_t file, dxpl; /* dxpl: collective transfer */
    char *path;
};

/* Collective H5Fopen with the MPI-IO driver and the collective transfer list. */
static enum ssl_status open_mpio(struct ssl_h5_reader *r, struct ssl_error *err)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    bool ok = fapl >= 0 && H5Pset_fapl_mpio(fapl, r->comm, MPI_INFO_NULL) >= 0;
    r->file = ok ? H5Fopen(r->path, H5F_ACC_RDONLY, fapl) : H5I_INVALID_HID;
    if (fapl >= 0) H5Pclose(fapl);
    if (r->file < 0) return ssl_error_set(err, SSL_E_DATA, "%s: cannot open as HDF5 (truncated?)", r->path);
    r->dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (r->dxpl < 0 || H5Pset_dxpl_mpio(r->dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        return ssl_error_set(err, SSL_E_OTHER, "%s: cannot set up collective reads", r->path);
    return SSL_OK;
}

enum ssl_status ssl_h5_reader_open(struct ssl_h5_reader **out, const char *path, MPI_Comm comm,
                                   struct ssl_error *err)
{
    h5_quiet();
    *out = NULL;
    /* every rank finds a missing or foreign file alike, before the collective open */
    enum ssl_status rc = ssl_h5_agree(comm, precheck_file(path, err), err);
    if (rc) return rc;
    struct ssl_h5_reader *r = calloc(1, sizeof *r);
    char *copy = r ? malloc(strlen(path) + 1) : NULL;
    if (copy == NULL) {
        free(r);
        return ssl_h5_agree(comm, ssl_error_set(err, SSL_E_OTHER, "%s: out of memory", path), err);
    }
    *r = (struct ssl_h5_reader){.comm = comm, .file = H5I_INVALID_HID, .dxpl = H5I_INVALID_HID,
                                .path = strcpy(copy, path)};
    rc = ssl_h5_agree(comm, open_mpio(r, err), err);
    if (rc) {
        ssl_h5_reader_close(r);
        return rc;
    }
    *out = r;
    return SSL_OK;
}

bool ssl_h5_reader_has(const struct ssl_h5_reader *r, const char *dataset)
{
    return H5Lexists(r->file, dataset, H5P_DEFAULT) > 0 &&
           H5Oexists_by_name(r->file, dataset, H5P_DEFAULT) > 0;
}

/* The dataset, open (the caller closes it), or an error naming it. */
static hid_t open_dataset(const struct ssl_h5_reader *r, const char *dataset, struct ssl_error *err)
{
    if (H5Lexists(r->file, dataset, H5P_DEFAULT) <= 0) {
        ssl_error_set(err, SSL_E_DATA, "%s: no dataset %s", r->path, dataset);
        return H5I_INVALID_HID;
    }
    hid_t d = H5Dopen2(r->file, dataset, H5P_DEFAULT);
    if (d < 0) ssl_error_set(err, SSL_E_DATA, "%s: %s is not a dataset", r->path, dataset);
    return d;
}

enum ssl_status ssl_h5_reader_shape(const struct ssl_h5_reader *r, const char *dataset,
                                    int64_t *rows, int64_t *cols, struct ssl_error *err)
{
    hsize_t dims[2] = {0, 0};
    hid_t d = open_dataset(r, dataset, err);
    enum ssl_status rc = d < 0 ? err->code : shape_of(d, r->path, dataset, dims, err);
    if (d >= 0) H5Dclose(d);
    *rows = (int64_t)dims[0];
    *cols = (int64_t)dims[1];
    return ssl_h5_agree(r->comm, rc, err);
}

/* Whether d holds native floats: a collective read then reads them as they are and widens
 * them itself, since HDF5 1.10 turns a read that converts types into independent I/O
 * (no_collective_cause H5D_MPIO_DATATYPE_CONVERSION). Other formats (native double, or any
 * other, which HDF5 converts) are read as double. */
static bool holds_native_float(hid_t d)
{
    hid_t type = H5Dget_type(d);
    hid_t native = type >= 0 ? H5Tget_native_type(type, H5T_DIR_DEFAULT) : H5I_INVALID_HID;
    bool yes = native >= 0 && H5Tequal(native, H5T_NATIVE_FLOAT) > 0;
    if (native >= 0) H5Tclose(native);
    if (type >= 0) H5Tclose(type);
    return yes;
}

/* count floats stored at the start of buf become doubles, in place, from the last: the bytes
 * of float j (4j..4j+3) are never those of a double already written (8i.. with i > j). */
static void widen_floats(double *buf, int64_t count)
{
    for (int64_t i = count - 1; i >= 0; i--) {
        float v;
        memcpy(&v, (const char *)buf + (size_t)i * sizeof v, sizeof v);
        buf[i] = (double)v;
    }
}

/* Collective H5Dread of rows [row0, row0 + rows) of d (cols columns) into buf, as doubles. A
 * rank whose selection failed, or that reads nothing, still takes part with empty selections
 * so no rank is left waiting in the collective. */
static enum ssl_status read_block(const struct ssl_h5_reader *r, hid_t d, const char *dataset,
                                  int64_t row0, int64_t rows, int64_t cols, double *buf,
                                  struct ssl_error *err)
{
    hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)rows, (hsize_t)cols};
    hsize_t mdims[2] = {rows > 0 ? (hsize_t)rows : 1, (hsize_t)cols};
    hid_t fspace = H5Dget_space(d), mspace = H5Screate_simple(2, mdims, NULL);
    bool as_float = holds_native_float(d);
    enum ssl_status rc = SSL_OK;
    if (fspace < 0 || mspace < 0 ||
        (rows > 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0))
        rc = ssl_error_set(err, SSL_E_OTHER, "%s: %s: cannot select rows %lld..%lld", r->path, dataset,
                           (long long)row0, (long long)(row0 + rows));
    if (rc || rows == 0) {
        if (fspace >= 0) H5Sselect_none(fspace);
        if (mspace >= 0) H5Sselect_none(mspace);
    }
    double dummy = 0.0;
    if (H5Dread(d, as_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE, mspace, fspace, r->dxpl,
                rc || rows == 0 ? &dummy : buf) < 0 && !rc)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: %s: read failed (truncated file?)", r->path, dataset);
    if (!rc && as_float) widen_floats(buf, rows * cols);
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return rc;
}

/* The checks before the read (no agreement): the shape, the asked-for rows, the buffer. */
static enum ssl_status prepare_rows(const struct ssl_h5_reader *r, hid_t d, const char *dataset,
                                    int64_t row0, int64_t rows, int64_t *cols, double **data,
                                    struct ssl_error *err)
{
    hsize_t dims[2] = {0, 0};
    enum ssl_status rc = shape_of(d, r->path, dataset, dims, err);
    *cols = (int64_t)dims[1];
    if (!rc && (row0 < 0 || rows < 0 || row0 + rows > (int64_t)dims[0]))
        rc = ssl_error_set(err, SSL_E_OTHER, "%s: %s has %lld rows; rows %lld..%lld asked for", r->path,
                           dataset, (long long)dims[0], (long long)row0, (long long)(row0 + rows));
    if (!rc) {
        *data = malloc((size_t)(rows > 0 ? rows * *cols : 1) * sizeof **data);
        if (*data == NULL) rc = ssl_error_set(err, SSL_E_OTHER, "%s: %s: out of memory", r->path, dataset);
    }
    return rc;
}

enum ssl_status ssl_h5_reader_rows(const struct ssl_h5_reader *r, const char *dataset,
                                   int64_t row0, int64_t rows, double **data,
                                   struct ssl_error *err)
{
    *data = NULL;
    int64_t cols = 0;
    /* everything that can fail before the collective read is agreed first, so every rank
     * either enters H5Dread or none does */
    hid_t d = open_dataset(r, dataset, err);
    enum ssl_status rc = d < 0 ? err->code : prepare_rows(r, d, dataset, row0, rows, &cols, data, err);
    rc = ssl_h5_agree(r->comm, rc, err);
    if (!rc) {
        rc = read_block(r, d, dataset, row0, rows, cols, *data, err);
        if (!rc) rc = check_finite(*data, rows, cols, row0, r->path, dataset, err);
        rc = ssl_h5_agree(r->comm, rc, err);
    }
    if (d >= 0) H5Dclose(d);
    if (rc) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

void ssl_h5_reader_close(struct ssl_h5_reader *r)
{
    if (r == NULL) return;
    if (r->dxpl >= 0) H5Pclose(r->dxpl);
    if (r->file >= 0) H5Fclose(r->file);
    free(r->path);
    free(r);
}
