/* h5_util.c: the HDF5 helpers shared by checkpoint.c, embeddings.c, dataset_hdf5.c and
 * h5_matrix.c (h5_util.h has the contracts). Every HDF5 identifier opened here is closed here. */
#include "h5_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ssl_h5_quiet_begin(struct ssl_h5_quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void ssl_h5_quiet_end(const struct ssl_h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

struct h5_walk {
    char desc[256];
    bool found;
};

/* Keeps the innermost (most specific) description, the one that says what went wrong. */
static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)n;
    struct h5_walk *w = data;
    if (!w->found && e->desc != NULL) {
        snprintf(w->desc, sizeof w->desc, "%s", e->desc);
        w->found = true;
    }
    return 0;
}

enum ssl_status ssl_h5_fail(struct ssl_error *err, enum ssl_status code, const char *path,
                            const char *what)
{
    struct h5_walk w = {.found = false};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, &w);
    return ssl_error_set(err, code, "%s: %s: %s", path, what, w.found ? w.desc : "HDF5 error");
}

enum ssl_status ssl_h5_write_string_attr(hid_t loc, const char *name, const char *value,
                                         const char *path, struct ssl_error *err)
{
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    bool ok = type >= 0 && space >= 0 && H5Tset_size(type, H5T_VARIABLE) >= 0 &&
              H5Tset_cset(type, H5T_CSET_UTF8) >= 0;
    if (ok) ok = (attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0;
    if (ok) ok = H5Awrite(attr, type, &value) >= 0;
    if (attr >= 0) ok = H5Aclose(attr) >= 0 && ok;
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return ok ? SSL_OK : ssl_h5_fail(err, SSL_E_OTHER, path, name);
}

enum ssl_status ssl_h5_write_int_attr(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                                      const void *value, const char *path, struct ssl_error *err)
{
    hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    bool ok = space >= 0;
    if (ok) ok = (attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0;
    if (ok) ok = H5Awrite(attr, mem_type, value) >= 0;
    if (attr >= 0) ok = H5Aclose(attr) >= 0 && ok;
    if (space >= 0) H5Sclose(space);
    return ok ? SSL_OK : ssl_h5_fail(err, SSL_E_OTHER, path, name);
}

enum ssl_status ssl_h5_write_i64_attr(hid_t loc, const char *name, int64_t value, const char *path,
                                      struct ssl_error *err)
{
    return ssl_h5_write_int_attr(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, path, err);
}

bool ssl_h5_read_i64_attr(hid_t attr, int64_t *value)
{
    hid_t type = H5Aget_type(attr), space = H5Aget_space(attr);
    bool ok = type >= 0 && space >= 0 && H5Tget_class(type) == H5T_INTEGER &&
              H5Sget_simple_extent_npoints(space) == 1;
    if (ok) ok = H5Aread(attr, H5T_NATIVE_INT64, value) >= 0;
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    return ok;
}

enum ssl_status ssl_h5_check_file(const char *path, const char *what, struct ssl_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return ssl_error_set(err, SSL_E_DATA, "%s: cannot open: %s", path, strerror(errno));
    fclose(f);
    htri_t is = H5Fis_hdf5(path);
    if (is < 0) return ssl_h5_fail(err, SSL_E_DATA, path, what);
    if (is == 0) return ssl_error_set(err, SSL_E_DATA, "%s: not an HDF5 file", path);
    return SSL_OK;
}

bool ssl_h5_link_exists(hid_t loc, const char *name)
{
    char *buf = strdup(name);
    SSL_CHECK(buf != NULL);
    bool exists = false;
    /* "/a/b": the root itself is not a link, so the first prefix checked is "/a" */
    for (char *p = buf + (buf[0] == '/');; ++p) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0) break;
        if (saved == '\0') {
            exists = true;
            break;
        }
        *p = saved;
    }
    free(buf);
    return exists;
}

hid_t ssl_h5_mpio_fapl(MPI_Comm comm)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    if (H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0 || H5Pset_all_coll_metadata_ops(fapl, 1) < 0 ||
        H5Pset_coll_metadata_write(fapl, 1) < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

enum ssl_status ssl_h5_fsync_path(const char *path, int flags, struct ssl_error *err)
{
    int fd = open(path, flags);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return ssl_error_set(err, SSL_E_OTHER, "%s: fsync: %s", path, strerror(e));
    }
    close(fd);
    return SSL_OK;
}

/* ssl_h5_agree and ssl_h5_agree_plain: name_rank says whether the message gets the prefix. */
static enum ssl_status agree(MPI_Comm comm, enum ssl_status st, struct ssl_error *err, bool name_rank)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    /* max over ranks of {succeeded, -rank if failed}: whether any rank succeeded, and the
     * lowest failing rank, in one reduction */
    int mine[2] = {st == SSL_OK, st != SSL_OK ? -rank : -size}, all[2] = {0, 0};
    MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, comm);
    int first = -all[1];
    if (first == size) return SSL_OK;
    int code = (int)st;
    char msg[sizeof err->msg];
    if (rank == first) { /* the prefix, then as much of the message as fits */
        bool prefix = name_rank && all[0] && size > 1;
        int used = prefix ? snprintf(msg, sizeof msg, "[rank %d/%d] ", rank, size) : 0;
        size_t at = (size_t)used, len = strnlen(err->msg, sizeof msg - 1 - at);
        memcpy(msg + at, err->msg, len);
        msg[at + len] = '\0';
    }
    MPI_Bcast(&code, 1, MPI_INT, first, comm);
    MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, comm);
    /* overwrite: a rank's own (later) error must not win over the agreed one */
    err->code = (enum ssl_status)code;
    memcpy(err->msg, msg, sizeof msg);
    return err->code;
}

enum ssl_status ssl_h5_agree(MPI_Comm comm, enum ssl_status st, struct ssl_error *err)
{
    return agree(comm, st, err, true);
}

enum ssl_status ssl_h5_agree_plain(MPI_Comm comm, enum ssl_status st, struct ssl_error *err)
{
    return agree(comm, st, err, false);
}
