/* embeddings.c: embedding dumps in HDF5, written collectively and atomically with the MPI-IO
 * driver, read back by one process (embeddings.h has the contracts and the file layout).
 *
 * Invariants: a file with the final name was closed collectively, fsynced and renamed by rank
 * 0 after every rank's write succeeded. Every fallible phase of ssl_emb_write ends with
 * ssl_h5_agree(), so ranks enter the next HDF5 or MPI collective together (or none does) and all
 * return the same status and message. Every rank calls each HDF5 creation function with
 * identical arguments (checked up front: dh, dz, the attributes, the path); only the row
 * selection of the data writes differs between ranks. */
#include "embeddings.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <zlib.h>

#include "h5_util.h"

/* ~1 MiB chunks: large enough for fast slices and collective writes, small enough that
 * reading a few rows does not pull in much more. */
enum { CHUNK_BYTES = 1 << 20, MAX_WIDTH = 1 << 28 };

/* ---------------------------------------------------------------------------------------- */
/* Agreement between ranks                                                                  */

/* Collective over comm: rank 0's status and message on every rank, for what rank 0 alone
 * does for all (the directory check, the rename): its fault is nobody's rank in particular. */
static enum ssl_status from_root(MPI_Comm comm, enum ssl_status st, struct ssl_error *err)
{
    int code = (int)st;
    MPI_Bcast(&code, 1, MPI_INT, 0, comm);
    if (code == SSL_OK) return SSL_OK;
    char msg[sizeof err->msg];
    memcpy(msg, err->msg, sizeof msg);
    MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, 0, comm);
    err->code = (enum ssl_status)code;
    memcpy(err->msg, msg, sizeof msg);
    return err->code;
}

/* ---------------------------------------------------------------------------------------- */
/* Checking the call                                                                        */

static bool is_format_attr(const char *name)
{
    return strcmp(name, "format") == 0 || strcmp(name, "format_version") == 0;
}

/* The library writes format and format_version; a caller's copy must say the same. */
static enum ssl_status check_format_attr(const struct ssl_emb_attr *a, const char *path,
                                         struct ssl_error *err)
{
    bool same = strcmp(a->name, "format") == 0
                    ? a->is_string && strcmp(a->str, SSL_EMB_FORMAT) == 0
                    : !a->is_string && a->i64 == SSL_EMB_FORMAT_VERSION;
    if (same) return SSL_OK;
    return ssl_error_set(err, SSL_E_USAGE,
                         "%s: attribute %s is written by the library (format \"%s\", format_version "
                         "%d): leave it out or pass that value", path, a->name, SSL_EMB_FORMAT,
                         SSL_EMB_FORMAT_VERSION);
}

static enum ssl_status check_attrs(const struct ssl_emb_attr *attrs, int n, const char *path,
                                   struct ssl_error *err)
{
    if (n < 0 || (n > 0 && attrs == NULL))
        return ssl_error_set(err, SSL_E_USAGE, "%s: %d attributes but no array", path, n);
    for (int i = 0; i < n; ++i) {
        const struct ssl_emb_attr *a = &attrs[i];
        if (a->name == NULL || a->name[0] == '\0' || strchr(a->name, '/') != NULL)
            return ssl_error_set(err, SSL_E_USAGE, "%s: attribute %d: bad name \"%s\"", path, i,
                                 a->name != NULL ? a->name : "(null)");
        if (a->is_string && a->str == NULL)
            return ssl_error_set(err, SSL_E_USAGE, "%s: attribute %s: NULL string", path, a->name);
        for (int j = 0; j < i; ++j)
            if (strcmp(attrs[j].name, a->name) == 0)
                return ssl_error_set(err, SSL_E_USAGE, "%s: attribute %s is given twice", path, a->name);
        if (is_format_attr(a->name) && check_format_attr(a, path, err) != SSL_OK) return err->code;
    }
    return SSL_OK;
}

static enum ssl_status check_block(const struct ssl_emb_block *b, const char *path,
                                   struct ssl_error *err)
{
    if (b == NULL) return ssl_error_set(err, SSL_E_USAGE, "%s: no block of rows", path);
    if (b->rows < 0)
        return ssl_error_set(err, SSL_E_USAGE, "%s: negative row count %lld", path, (long long)b->rows);
    if (b->dh < 1 || b->dz < 1 || b->dh > MAX_WIDTH || b->dz > MAX_WIDTH)
        return ssl_error_set(err, SSL_E_USAGE, "%s: widths dh=%lld, dz=%lld must be in 1..%d", path,
                             (long long)b->dh, (long long)b->dz, MAX_WIDTH);
    if (b->rows > 0 && (b->h == NULL || b->z == NULL || b->labels == NULL || b->index == NULL))
        return ssl_error_set(err, SSL_E_USAGE, "%s: %lld rows but a NULL h, z, labels or index", path,
                             (long long)b->rows);
    return SSL_OK;
}

/* Local: the arguments are well-formed. */
static enum ssl_status check_call(const char *path, const struct ssl_emb_block *b,
                                  const struct ssl_emb_attr *attrs, int n_attrs, struct ssl_error *err)
{
    if (path == NULL || path[0] == '\0') return ssl_error_set(err, SSL_E_USAGE, "embeddings: no file name");
    enum ssl_status st = check_block(b, path, err);
    if (st == SSL_OK) st = check_attrs(attrs, n_attrs, path, err);
    return st;
}

static uint32_t crc_bytes(uint32_t crc, const void *p, size_t n)
{
    return (uint32_t)crc32_z(crc, (const unsigned char *)p, n);
}

/* A hash of what must be identical on every rank apart from the widths (checked with a
 * clearer message): the path and the attributes. */
static uint32_t call_hash(const char *path, const struct ssl_emb_attr *attrs, int n)
{
    uint32_t h = crc_bytes(0, path, strlen(path) + 1);
    for (int i = 0; i < n; ++i) {
        const struct ssl_emb_attr *a = &attrs[i];
        unsigned char kind = a->is_string;
        h = crc_bytes(crc_bytes(h, a->name, strlen(a->name) + 1), &kind, 1);
        h = a->is_string ? crc_bytes(h, a->str, strlen(a->str) + 1) : crc_bytes(h, &a->i64, sizeof a->i64);
    }
    return h;
}

/* The global layout: this rank's first row and the total. */
struct layout {
    int64_t offset, n, dh, dz;
};

/* Collective: gathers (rows, dh, dz, hash) of every rank; the checks run on identical data
 * everywhere, so every rank reaches the same verdict. */
static enum ssl_status gather_layout(MPI_Comm comm, const struct ssl_emb_block *b, uint32_t hash,
                                     const char *path, struct layout *lay, struct ssl_error *err)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int64_t mine[4] = {b->rows, b->dh, b->dz, (int64_t)hash};
    int64_t *all = malloc((size_t)size * sizeof mine);
    SSL_CHECK(all != NULL);
    MPI_Allgather(mine, 4, MPI_INT64_T, all, 4, MPI_INT64_T, comm);
    *lay = (struct layout){0, 0, all[1], all[2]};
    enum ssl_status st = SSL_OK;
    for (int r = 0; r < size && st == SSL_OK; ++r) {
        const int64_t *v = &all[4 * r];
        if (v[1] != lay->dh || v[2] != lay->dz)
            st = ssl_error_set(err, SSL_E_USAGE,
                               "%s: ranks disagree on the widths: rank 0 has dh=%lld, dz=%lld, rank %d "
                               "has dh=%lld, dz=%lld", path, (long long)lay->dh, (long long)lay->dz, r,
                               (long long)v[1], (long long)v[2]);
        else if (v[3] != all[3])
            st = ssl_error_set(err, SSL_E_USAGE, "%s: rank %d passed other attributes or another path than rank 0",
                               path, r);
        else if (v[0] > INT64_MAX / MAX_WIDTH - lay->n)
            st = ssl_error_set(err, SSL_E_USAGE, "%s: too many rows", path);
        if (r == rank) lay->offset = lay->n;
        lay->n += v[0];
    }
    free(all);
    return st;
}

/* The directory part of path ("." for a bare name), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(len + 2);
    SSL_CHECK(dir != NULL);
    if (len == 0) strcpy(dir, ".");
    else {
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    return dir;
}

/* Rank 0: the directory of path exists (a clearer message than the MPI-IO driver's). */
static enum ssl_status check_dir(const char *path, struct ssl_error *err)
{
    char *dir = dir_of(path);
    struct stat sb;
    enum ssl_status st = SSL_OK;
    if (stat(dir, &sb) != 0)
        st = ssl_error_set(err, SSL_E_OTHER, "%s: cannot write: directory %s: %s", path, dir, strerror(errno));
    else if (!S_ISDIR(sb.st_mode))
        st = ssl_error_set(err, SSL_E_OTHER, "%s: cannot write: %s is not a directory", path, dir);
    free(dir);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Writing                                                                                  */

struct wctx {
    MPI_Comm comm;
    const char *tmp; /* the file being written, for messages */
    hid_t file, dxpl;
    struct layout lay;
};

/* One of the four datasets: file and memory types, columns (0: 1-D), this rank's data. */
struct dspec {
    const char *name, *description;
    hid_t ftype, mtype;
    int64_t cols;
    const void *data;
};

/* Rows per chunk: about CHUNK_BYTES, at least 1, at most n. */
static hsize_t chunk_rows(int64_t n, int64_t row_bytes)
{
    int64_t r = CHUNK_BYTES / row_bytes;
    if (r < 1) r = 1;
    return (hsize_t)(r < n ? r : n);
}

/* Collective: the dataset, created with identical arguments on every rank. */
static hid_t create_dataset(const struct wctx *w, const struct dspec *s)
{
    int ndims = s->cols > 0 ? 2 : 1;
    hsize_t dims[2] = {(hsize_t)w->lay.n, (hsize_t)s->cols};
    hsize_t chunk[2] = {chunk_rows(w->lay.n, (int64_t)H5Tget_size(s->ftype) * (s->cols > 0 ? s->cols : 1)),
                        (hsize_t)s->cols};
    hid_t space = H5Screate_simple(ndims, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t dset = H5I_INVALID_HID;
    /* no fill: every element is written; an empty dataset stays contiguous (HDF5 cannot chunk
     * a fixed dimension of size 0) */
    bool ok = space >= 0 && dcpl >= 0 && H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0 &&
              (w->lay.n == 0 || H5Pset_chunk(dcpl, ndims, chunk) >= 0);
    if (ok) dset = H5Dcreate2(w->file, s->name, s->ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return dset;
}

/* Collective H5Dwrite of this rank's rows. A rank with no rows, or whose selection failed,
 * still takes part with empty selections so no rank is left waiting. */
static enum ssl_status write_rows(const struct wctx *w, hid_t dset, const struct dspec *s,
                                  int64_t rows, struct ssl_error *err)
{
    int ndims = s->cols > 0 ? 2 : 1;
    hsize_t start[2] = {(hsize_t)w->lay.offset, 0}, count[2] = {(hsize_t)rows, (hsize_t)s->cols};
    hsize_t mdims[2] = {rows > 0 ? (hsize_t)rows : 1, (hsize_t)s->cols};
    hid_t fspace = H5Dget_space(dset), mspace = H5Screate_simple(ndims, mdims, NULL);
    bool sel = fspace >= 0 && mspace >= 0 &&
               (rows == 0 || H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
    enum ssl_status st = sel ? SSL_OK : ssl_h5_fail(err, SSL_E_OTHER, w->tmp, s->name);
    if (!sel || rows == 0) {
        if (fspace >= 0) H5Sselect_none(fspace);
        if (mspace >= 0) H5Sselect_none(mspace);
    }
    static const int64_t none = 0; /* a valid buffer for an empty selection */
    const void *buf = sel && rows > 0 ? s->data : &none;
    if (H5Dwrite(dset, s->mtype, mspace, fspace, w->dxpl, buf) < 0 && st == SSL_OK)
        st = ssl_h5_fail(err, SSL_E_OTHER, w->tmp, s->name);
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return st;
}

/* Collective: create, write, describe; agreed after creating and after writing. */
static enum ssl_status write_dataset(const struct wctx *w, const struct dspec *s, int64_t rows,
                                     struct ssl_error *err)
{
    hid_t dset = create_dataset(w, s);
    enum ssl_status st = ssl_h5_agree(w->comm, dset < 0 ? ssl_h5_fail(err, SSL_E_OTHER, w->tmp, s->name) : SSL_OK, err);
    if (st == SSL_OK && w->lay.n > 0) st = write_rows(w, dset, s, rows, err);
    if (st == SSL_OK) st = ssl_h5_write_string_attr(dset, "description", s->description, w->tmp, err);
    if (dset >= 0 && H5Dclose(dset) < 0 && st == SSL_OK) st = ssl_h5_fail(err, SSL_E_OTHER, w->tmp, s->name);
    return ssl_h5_agree(w->comm, st, err);
}

static enum ssl_status write_root_attrs(const struct wctx *w, const struct ssl_emb_attr *attrs, int n,
                                        struct ssl_error *err)
{
    enum ssl_status st = ssl_h5_write_string_attr(w->file, "format", SSL_EMB_FORMAT, w->tmp, err);
    if (st == SSL_OK) st = ssl_h5_write_i64_attr(w->file, "format_version", SSL_EMB_FORMAT_VERSION, w->tmp, err);
    for (int i = 0; i < n && st == SSL_OK; ++i) {
        const struct ssl_emb_attr *a = &attrs[i];
        if (is_format_attr(a->name)) continue; /* checked equal to the library's, written above */
        st = a->is_string ? ssl_h5_write_string_attr(w->file, a->name, a->str, w->tmp, err)
                          : ssl_h5_write_i64_attr(w->file, a->name, a->i64, w->tmp, err);
    }
    return ssl_h5_agree(w->comm, st, err);
}

static enum ssl_status write_body(const struct wctx *w, const struct ssl_emb_block *b,
                                  const struct ssl_emb_attr *attrs, int n_attrs, struct ssl_error *err)
{
    const struct dspec specs[] = {
        {"h", "backbone features (N, dh) float32; row i is dataset sample index[i]", H5T_IEEE_F32LE,
         H5T_NATIVE_FLOAT, b->dh, b->h},
        {"z", "projector outputs (N, dz) float32; row i is dataset sample index[i]", H5T_IEEE_F32LE,
         H5T_NATIVE_FLOAT, b->dz, b->z},
        {"labels", "class label of each row (N) int64", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, b->labels},
        {"index", "dataset index of each row (N) int64: the sample's position in the split", H5T_STD_I64LE,
         H5T_NATIVE_INT64, 0, b->index},
    };
    enum ssl_status st = SSL_OK;
    for (size_t i = 0; i < sizeof specs / sizeof *specs && st == SSL_OK; ++i)
        st = write_dataset(w, &specs[i], b->rows, err);
    if (st == SSL_OK) st = write_root_attrs(w, attrs, n_attrs, err);
    return st;
}

/* Collective: creates the file and the collective transfer list; *created says whether this
 * rank's create succeeded (so rank 0 knows whether there is a .tmp to remove). */
static enum ssl_status open_tmp(struct wctx *w, bool *created, struct ssl_error *err)
{
    hid_t fapl = ssl_h5_mpio_fapl(w->comm);
    enum ssl_status st = SSL_OK;
    if (fapl < 0) st = ssl_h5_fail(err, SSL_E_OTHER, w->tmp, "MPI-IO file access");
    else if ((w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
        st = ssl_h5_fail(err, SSL_E_OTHER, w->tmp, "cannot create");
    if (fapl >= 0) H5Pclose(fapl);
    *created = w->file >= 0;
    w->dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (st == SSL_OK && (w->dxpl < 0 || H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE) < 0))
        st = ssl_h5_fail(err, SSL_E_OTHER, w->tmp, "collective transfer");
    return ssl_h5_agree(w->comm, st, err);
}

/* Collective: the whole file into tmp, flushed and closed; agreed. */
static enum ssl_status write_tmp(struct wctx *w, const struct ssl_emb_block *b,
                                 const struct ssl_emb_attr *attrs, int n_attrs, bool *created,
                                 struct ssl_error *err)
{
    enum ssl_status st = open_tmp(w, created, err);
    if (st == SSL_OK) st = write_body(w, b, attrs, n_attrs, err);
    if (w->dxpl >= 0) H5Pclose(w->dxpl);
    if (w->file >= 0) {
        if (st == SSL_OK && H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) st = ssl_h5_fail(err, SSL_E_OTHER, w->tmp, "flush");
        if (H5Fclose(w->file) < 0 && st == SSL_OK) st = ssl_h5_fail(err, SSL_E_OTHER, w->tmp, "close");
    }
    return ssl_h5_agree(w->comm, st, err);
}

/* Rank 0: data on disk before the name, the name on disk before we return. */
static enum ssl_status publish(const char *tmp, const char *path, struct ssl_error *err)
{
    enum ssl_status st = ssl_h5_fsync_path(tmp, O_RDONLY, err);
    if (st == SSL_OK && rename(tmp, path) != 0)
        st = ssl_error_set(err, SSL_E_OTHER, "%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
    if (st != SSL_OK) return st;
    char *dir = dir_of(path);
    st = ssl_h5_fsync_path(dir, O_RDONLY | O_DIRECTORY, err);
    free(dir);
    return st;
}

/* Collective: the checks every rank must pass before the first HDF5 collective. */
static enum ssl_status check_everywhere(MPI_Comm comm, const char *path, const struct ssl_emb_block *b,
                                        const struct ssl_emb_attr *attrs, int n_attrs,
                                        struct layout *lay, struct ssl_error *err)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    enum ssl_status st = ssl_h5_agree(comm, check_call(path, b, attrs, n_attrs, err), err);
    if (st == SSL_OK)
        st = ssl_h5_agree(comm, gather_layout(comm, b, call_hash(path, attrs, n_attrs), path, lay, err), err);
    if (st == SSL_OK) st = from_root(comm, rank == 0 ? check_dir(path, err) : SSL_OK, err);
    return st;
}

enum ssl_status ssl_emb_write(const char *path, const struct ssl_emb_block *local,
                              const struct ssl_emb_attr *attrs, int n_attrs,
                              const struct ssl_comm *comm, struct ssl_error *err)
{
    MPI_Comm world = comm != NULL ? comm->world : MPI_COMM_SELF;
    int rank = 0;
    MPI_Comm_rank(world, &rank);
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    struct wctx w = {world, NULL, H5I_INVALID_HID, H5I_INVALID_HID, {0, 0, 0, 0}};
    enum ssl_status st = check_everywhere(world, path, local, attrs, n_attrs, &w.lay, err);
    char *tmp = NULL;
    bool created = false;
    if (st == SSL_OK) {
        size_t len = strlen(path) + sizeof ".tmp";
        tmp = malloc(len);
        SSL_CHECK(tmp != NULL);
        snprintf(tmp, len, "%s.tmp", path);
        w.tmp = tmp;
        st = write_tmp(&w, local, attrs, n_attrs, &created, err);
    }
    if (st == SSL_OK) st = from_root(world, rank == 0 ? publish(tmp, path, err) : SSL_OK, err);
    /* unlink, not remove: a directory that happens to bear the .tmp name is not ours */
    if (st != SSL_OK && created && rank == 0) unlink(tmp);
    free(tmp);
    ssl_h5_quiet_end(&q);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading (one process)                                                                    */

struct attr_list {
    struct ssl_emb_data *d;
    const char *path;
    struct ssl_error *err;
    enum ssl_status st;
};

/* A string attribute (variable or fixed length) as a malloc'd copy, or NULL. */
static char *read_string(hid_t attr, hid_t ftype)
{
    char *out = NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    /* HDF5 does not convert between character sets: read in the file's */
    if (mt < 0 || H5Tset_cset(mt, H5Tget_cset(ftype)) < 0) {
        if (mt >= 0) H5Tclose(mt);
        return NULL;
    }
    if (H5Tis_variable_str(ftype) > 0) {
        char *v = NULL;
        if (H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Aread(attr, mt, &v) >= 0 && v != NULL)
            out = strdup(v);
        if (v != NULL) H5free_memory(v);
    } else {
        size_t size = H5Tget_size(ftype);
        out = calloc(size + 1, 1);
        if (out != NULL && (H5Tset_size(mt, size + 1) < 0 || H5Aread(attr, mt, out) < 0)) {
            free(out);
            out = NULL;
        }
    }
    H5Tclose(mt);
    return out;
}

/* One root attribute into the list: scalar strings and integers; other types are skipped. */
static enum ssl_status read_attr(hid_t attr, const char *name, struct attr_list *l)
{
    hid_t t = H5Aget_type(attr), s = H5Aget_space(attr);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    bool scalar = s >= 0 && H5Sget_simple_extent_npoints(s) == 1;
    enum ssl_status st = SSL_OK;
    if (scalar && (cls == H5T_STRING || cls == H5T_INTEGER)) {
        struct ssl_emb_data *d = l->d;
        struct ssl_emb_attr a = {.name = strdup(name), .is_string = cls == H5T_STRING};
        SSL_CHECK(a.name != NULL);
        bool ok = a.is_string ? (a.str = read_string(attr, t)) != NULL
                              : H5Aread(attr, H5T_NATIVE_INT64, &a.i64) >= 0;
        if (ok) {
            d->attrs = realloc(d->attrs, (size_t)(d->n_attrs + 1) * sizeof *d->attrs);
            SSL_CHECK(d->attrs != NULL);
            d->attrs[d->n_attrs++] = a;
        } else {
            free((char *)a.name);
            st = ssl_h5_fail(l->err, SSL_E_DATA, l->path, name);
        }
    }
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    return st;
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    struct attr_list *l = data;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    l->st = attr < 0 ? ssl_h5_fail(l->err, SSL_E_DATA, l->path, name) : read_attr(attr, name, l);
    if (attr >= 0) H5Aclose(attr);
    return l->st == SSL_OK ? 0 : 1;
}

static int cmp_attr(const void *a, const void *b)
{
    return strcmp(((const struct ssl_emb_attr *)a)->name, ((const struct ssl_emb_attr *)b)->name);
}

static enum ssl_status read_attrs(hid_t file, const char *path, struct ssl_emb_data *d,
                                  struct ssl_error *err)
{
    struct attr_list l = {d, path, err, SSL_OK};
    hsize_t idx = 0;
    herr_t rc = H5Aiterate2(file, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, &l);
    if (l.st != SSL_OK) return l.st;
    if (rc < 0) return ssl_h5_fail(err, SSL_E_DATA, path, "root attributes");
    if (d->n_attrs > 0) qsort(d->attrs, (size_t)d->n_attrs, sizeof *d->attrs, cmp_attr);
    return SSL_OK;
}

/* Root format and format_version say this is a dump this program reads. */
static enum ssl_status check_format(const struct ssl_emb_data *d, const char *path, struct ssl_error *err)
{
    const struct ssl_emb_attr *f = ssl_emb_find_attr(d, "format"), *v = ssl_emb_find_attr(d, "format_version");
    if (f == NULL || !f->is_string || strcmp(f->str, SSL_EMB_FORMAT) != 0)
        return ssl_error_set(err, SSL_E_DATA, "%s: not an embedding dump (root attribute format is not \"%s\")",
                             path, SSL_EMB_FORMAT);
    if (v == NULL || v->is_string || v->i64 != SSL_EMB_FORMAT_VERSION)
        return ssl_error_set(err, SSL_E_DATA, "%s: root attribute format_version is not %d (this program's)",
                             path, SSL_EMB_FORMAT_VERSION);
    return SSL_OK;
}

/* What a dataset must be: rank (1 or 2), class, and the rows the others have (-1: any). */
struct dwant {
    const char *name;
    int ndims;
    H5T_class_t cls;
    hid_t mtype;
    int64_t rows;
};

/* The shape of the open dataset, checked against want. */
static enum ssl_status check_shape(hid_t dset, const struct dwant *want, const char *path,
                                   hsize_t dims[2], struct ssl_error *err)
{
    hid_t t = H5Dget_type(dset), s = H5Dget_space(dset);
    int ndims = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    enum ssl_status st = SSL_OK;
    dims[0] = 0;
    dims[1] = 1;
    if (t < 0 || s < 0) st = ssl_h5_fail(err, SSL_E_DATA, path, want->name);
    else if (H5Tget_class(t) != want->cls)
        st = ssl_error_set(err, SSL_E_DATA, "%s: /%s must hold %s", path, want->name,
                           want->cls == H5T_FLOAT ? "floating-point numbers" : "integers");
    else if (ndims != want->ndims || H5Sget_simple_extent_dims(s, dims, NULL) < 0)
        st = ssl_error_set(err, SSL_E_DATA, "%s: /%s must be %d-D, found rank %d", path, want->name,
                           want->ndims, ndims);
    else if (want->rows >= 0 && (int64_t)dims[0] != want->rows)
        st = ssl_error_set(err, SSL_E_DATA, "%s: /%s has %lld rows, /h has %lld", path, want->name,
                           (long long)dims[0], (long long)want->rows);
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    return st;
}

/* Dataset want->name as a malloc'd (rows, cols) array of want->mtype. */
static enum ssl_status read_dataset(hid_t file, const char *path, const struct dwant *want,
                                    void **data, int64_t *rows, int64_t *cols, struct ssl_error *err)
{
    if (H5Lexists(file, want->name, H5P_DEFAULT) <= 0)
        return ssl_error_set(err, SSL_E_DATA, "%s: no dataset /%s", path, want->name);
    hid_t dset = H5Dopen2(file, want->name, H5P_DEFAULT);
    if (dset < 0) return ssl_error_set(err, SSL_E_DATA, "%s: /%s is not a dataset", path, want->name);
    hsize_t dims[2];
    enum ssl_status st = check_shape(dset, want, path, dims, err);
    if (st == SSL_OK) {
        *rows = (int64_t)dims[0];
        *cols = want->ndims == 2 ? (int64_t)dims[1] : 1;
        *data = malloc((size_t)(*rows * *cols) * H5Tget_size(want->mtype) + 1);
        if (*data == NULL) st = ssl_error_set(err, SSL_E_OTHER, "%s: /%s: out of memory", path, want->name);
    }
    if (st == SSL_OK && *rows * *cols > 0 && H5Dread(dset, want->mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0)
        st = ssl_h5_fail(err, SSL_E_DATA, path, want->name);
    H5Dclose(dset);
    return st;
}

static enum ssl_status read_datasets(hid_t file, const char *path, struct ssl_emb_data *d,
                                     struct ssl_error *err)
{
    int64_t cols = 0, rows = 0;
    struct dwant h = {"h", 2, H5T_FLOAT, H5T_NATIVE_FLOAT, -1};
    enum ssl_status st = read_dataset(file, path, &h, (void **)&d->h, &d->rows, &d->dh, err);
    struct dwant z = {"z", 2, H5T_FLOAT, H5T_NATIVE_FLOAT, d->rows};
    struct dwant lab = {"labels", 1, H5T_INTEGER, H5T_NATIVE_INT64, d->rows};
    struct dwant idx = {"index", 1, H5T_INTEGER, H5T_NATIVE_INT64, d->rows};
    if (st == SSL_OK) st = read_dataset(file, path, &z, (void **)&d->z, &rows, &d->dz, err);
    if (st == SSL_OK) st = read_dataset(file, path, &lab, (void **)&d->labels, &rows, &cols, err);
    if (st == SSL_OK) st = read_dataset(file, path, &idx, (void **)&d->index, &rows, &cols, err);
    return st;
}

enum ssl_status ssl_emb_read(const char *path, struct ssl_emb_data *out, struct ssl_error *err)
{
    memset(out, 0, sizeof *out);
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    enum ssl_status st = SSL_OK;
    FILE *probe = path != NULL ? fopen(path, "rb") : NULL;
    if (probe == NULL)
        st = ssl_error_set(err, SSL_E_USAGE, "%s: cannot open: %s", path != NULL ? path : "(null)", strerror(errno));
    else fclose(probe);
    hid_t file = H5I_INVALID_HID;
    if (st == SSL_OK && (file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        st = ssl_h5_fail(err, SSL_E_DATA, path, "cannot open as HDF5");
    if (st == SSL_OK) st = read_attrs(file, path, out, err);
    if (st == SSL_OK) st = check_format(out, path, err);
    if (st == SSL_OK) st = read_datasets(file, path, out, err);
    if (file >= 0) H5Fclose(file);
    if (st != SSL_OK) ssl_emb_free(out);
    ssl_h5_quiet_end(&q);
    return st;
}

const struct ssl_emb_attr *ssl_emb_find_attr(const struct ssl_emb_data *d, const char *name)
{
    for (int i = 0; i < d->n_attrs; ++i)
        if (strcmp(d->attrs[i].name, name) == 0) return &d->attrs[i];
    return NULL;
}

void ssl_emb_free(struct ssl_emb_data *d)
{
    if (d == NULL) return;
    for (int i = 0; i < d->n_attrs; ++i) {
        free((char *)d->attrs[i].name);
        free((char *)d->attrs[i].str);
    }
    free(d->attrs);
    free(d->h);
    free(d->z);
    free(d->labels);
    free(d->index);
    memset(d, 0, sizeof *d);
}
