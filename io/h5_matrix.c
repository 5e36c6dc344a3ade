/* h5_matrix.c: 2-D float datasets in, with every HDF5 call checked and HDF5's own error
 * printing silenced in favour of one line of ours. */
#include "h5_matrix.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

static enum ssl_status read_open(hid_t d, const char *path, const char *dataset, double **data,
                                 int64_t *rows, int64_t *cols, struct ssl_error *err)
{
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    enum ssl_status rc = SSL_OK;
    hsize_t dims[2] = {0, 0};
    if (space < 0 || type < 0) rc = ssl_error_set(err, SSL_E_DATA, "%s: %s: cannot read its shape", path, dataset);
    else if (H5Tget_class(type) != H5T_FLOAT)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: %s must hold floating-point numbers (float32 or float64)", path, dataset);
    else if (H5Sget_simple_extent_ndims(space) != 2)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: %s must be 2-D (N, D), found rank %d", path, dataset,
                           H5Sget_simple_extent_ndims(space));
    else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0 || dims[0] == 0 || dims[1] == 0)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: %s is empty", path, dataset);
    if (!rc) {
        *data = malloc((size_t)(dims[0] * dims[1]) * sizeof **data);
        if (*data == NULL) rc = ssl_error_set(err, SSL_E_OTHER, "%s: %s: out of memory", path, dataset);
    }
    if (!rc && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: %s: read failed (truncated file?)", path, dataset);
    for (hsize_t i = 0; !rc && i < dims[0] * dims[1]; i++)
        if (!isfinite((*data)[i]))
            rc = ssl_error_set(err, SSL_E_DATA, "%s: %s[%llu, %llu] is not finite", path, dataset,
                               (unsigned long long)(i / dims[1]), (unsigned long long)(i % dims[1]));
    if (rc) {
        free(*data);
        *data = NULL;
    }
    *rows = (int64_t)dims[0];
    *cols = (int64_t)dims[1];
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    return rc;
}

enum ssl_status ssl_h5_read_matrix(const char *path, const char *dataset, double **data,
                                   int64_t *rows, int64_t *cols, struct ssl_error *err)
{
    h5_quiet();
    *data = NULL;
    FILE *probe = fopen(path, "rb");
    if (probe == NULL) return ssl_error_set(err, SSL_E_USAGE, "%s: cannot open", path);
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) return ssl_error_set(err, SSL_E_DATA, "%s: not an HDF5 file", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return ssl_error_set(err, SSL_E_DATA, "%s: cannot open as HDF5 (truncated?)", path);
    enum ssl_status rc;
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
