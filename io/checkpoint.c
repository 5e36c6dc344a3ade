/* checkpoint.c: named arrays in HDF5, written collectively and atomically, read and
 * validated with per-dataset CRC-32 checksums (checkpoint.h has the contracts,
 * docs/CHECKPOINTS.md the file layout).
 *
 * Invariants: a file with a final name (`step-XXXXXXXX.h5`) was closed, fsynced and renamed by
 * rank 0 after every rank's collective write succeeded; `latest.h5` is only ever replaced by
 * rename(2). Every collective entry point ends each fallible phase with ssl_h5_agree_plain(),
 * so ranks only enter the next HDF5 or MPI collective together and all return the same status
 * and message.
 * Directory operations (scan, cleanup, rename, prune) and validation run on rank 0 only. */
#include "checkpoint.h"

#include <dirent.h>
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

#define FORMAT_NAME "ssltrain-checkpoint"
#define CHECKSUM_TEXT                                                                       \
    "crc32: zlib CRC-32 of each dataset's raw little-endian bytes (C order), stored in the " \
    "dataset attribute crc32"

enum { NAME_MAX_LEN = 1023, VALIDATE_BLOCK_BYTES = 64 << 20 };

static const char *const g_reserved[] = {"format", "format_version", "step", "n_datasets",
                                         "checksum"};

/* ---------------------------------------------------------------------------------------- */
/* Communicators                                                                            */

static MPI_Comm comm_of(const struct ssl_comm *comm)
{
    return comm != NULL ? comm->world : MPI_COMM_SELF;
}

static int rank_of(MPI_Comm comm)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    return rank;
}

/* Collective: whether `h` (a hash of the caller's arguments) is the same on every rank. A
 * mismatch is a programming error that would otherwise hang inside an HDF5 collective. */
static bool same_everywhere(MPI_Comm comm, uint32_t h)
{
    int64_t v[2] = {(int64_t)h, -(int64_t)h}, r[2];
    MPI_Allreduce(v, r, 2, MPI_INT64_T, MPI_MAX, comm);
    return r[0] == -r[1];
}

/* ---------------------------------------------------------------------------------------- */
/* Types                                                                                    */

const char *ssl_ckpt_type_name(enum ssl_ckpt_type type)
{
    switch (type) {
    case SSL_CKPT_F32: return "float32";
    case SSL_CKPT_F64: return "float64";
    case SSL_CKPT_I64: return "int64";
    case SSL_CKPT_U64: return "uint64";
    case SSL_CKPT_I32: return "int32";
    case SSL_CKPT_U8: return "uint8";
    }
    return "invalid";
}

size_t ssl_ckpt_type_size(enum ssl_ckpt_type type)
{
    switch (type) {
    case SSL_CKPT_F32: return 4;
    case SSL_CKPT_F64: return 8;
    case SSL_CKPT_I64: return 8;
    case SSL_CKPT_U64: return 8;
    case SSL_CKPT_I32: return 4;
    case SSL_CKPT_U8: return 1;
    }
    return 0;
}

static bool type_valid(enum ssl_ckpt_type type)
{
    return ssl_ckpt_type_size(type) != 0;
}

static hid_t file_type(enum ssl_ckpt_type type)
{
    switch (type) {
    case SSL_CKPT_F32: return H5T_IEEE_F32LE;
    case SSL_CKPT_F64: return H5T_IEEE_F64LE;
    case SSL_CKPT_I64: return H5T_STD_I64LE;
    case SSL_CKPT_U64: return H5T_STD_U64LE;
    case SSL_CKPT_I32: return H5T_STD_I32LE;
    case SSL_CKPT_U8: return H5T_STD_U8LE;
    }
    return H5I_INVALID_HID;
}

static hid_t mem_type(enum ssl_ckpt_type type)
{
    switch (type) {
    case SSL_CKPT_F32: return H5T_NATIVE_FLOAT;
    case SSL_CKPT_F64: return H5T_NATIVE_DOUBLE;
    case SSL_CKPT_I64: return H5T_NATIVE_INT64;
    case SSL_CKPT_U64: return H5T_NATIVE_UINT64;
    case SSL_CKPT_I32: return H5T_NATIVE_INT32;
    case SSL_CKPT_U8: return H5T_NATIVE_UINT8;
    }
    return H5I_INVALID_HID;
}

/* The enum value of an HDF5 file type; false for a type checkpoints never hold. */
static bool type_from_h5(hid_t t, enum ssl_ckpt_type *out)
{
    H5T_class_t cls = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    bool is_signed = H5Tget_sign(t) == H5T_SGN_2;
    if (cls == H5T_FLOAT && (size == 4 || size == 8)) {
        *out = size == 4 ? SSL_CKPT_F32 : SSL_CKPT_F64;
        return true;
    }
    if (cls != H5T_INTEGER) return false;
    if (size == 8) *out = is_signed ? SSL_CKPT_I64 : SSL_CKPT_U64;
    else if (size == 4 && is_signed) *out = SSL_CKPT_I32;
    else if (size == 1 && !is_signed) *out = SSL_CKPT_U8;
    else return false;
    return true;
}

static int64_t n_elems(int rank, const int64_t *dims)
{
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
}

/* "(3, 4)"; "()" for a scalar. */
static void format_shape(char *buf, size_t n, int rank, const int64_t *dims)
{
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < rank && used < n; ++i)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (used < n) snprintf(buf + used, n - used, ")");
}

/* ---------------------------------------------------------------------------------------- */
/* Checksums                                                                                */

/* CRC-32 (zlib) of n elements of elem_size bytes as they lie in the file: little-endian. */
static uint32_t crc_le(uint32_t crc, const void *data, size_t n, size_t elem_size)
{
    const unsigned char *p = data;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    unsigned char swapped[8];
    for (size_t i = 0; i < n; ++i, p += elem_size) {
        for (size_t b = 0; b < elem_size; ++b) swapped[b] = p[elem_size - 1 - b];
        crc = (uint32_t)crc32_z(crc, swapped, elem_size);
    }
    return crc;
#else
    return n == 0 ? crc : (uint32_t)crc32_z(crc, p, n * elem_size);
#endif
}

static uint32_t crc_str(uint32_t crc, const char *s)
{
    return (uint32_t)crc32_z(crc, (const unsigned char *)s, strlen(s) + 1);
}

static uint32_t crc_i64(uint32_t crc, int64_t v)
{
    return crc_le(crc, &v, 1, sizeof v);
}

/* ---------------------------------------------------------------------------------------- */
/* Names and content checks (local; identical on every rank for identical arguments)        */

/* A group/dataset path: non-empty components separated by single '/', none "." or "..",
 * printable characters only. */
static bool name_valid(const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > NAME_MAX_LEN || name[0] == '/' || name[len - 1] == '/') return false;
    const char *c = name;
    for (const char *p = name;; ++p) {
        if (*p != '\0' && (unsigned char)*p < 0x20) return false;
        if (*p != '/' && *p != '\0') continue;
        size_t clen = (size_t)(p - c);
        if (clen == 0 || (clen == 1 && c[0] == '.') || (clen == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        if (*p == '\0') return true;
        c = p + 1;
    }
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The longest proper group prefix of `name` ("a/b" of "a/b/c") that is itself one of the
 * sorted names, or false. */
static bool dataset_prefix(const char *const *names, int64_t n, const char *name, char *prefix)
{
    bool found = false;
    for (const char *p = strchr(name, '/'); p != NULL; p = strchr(p + 1, '/')) {
        size_t len = (size_t)(p - name);
        char buf[NAME_MAX_LEN + 1];
        memcpy(buf, name, len);
        buf[len] = '\0';
        const char *key = buf;
        if (n > 0 && bsearch(&key, names, (size_t)n, sizeof *names, cmp_str_ptr) != NULL) {
            memcpy(prefix, buf, len + 1);
            found = true;
        }
    }
    return found;
}

/* Sorts names; a name given twice, or a dataset that another name uses as a group, is an
 * error (HDF5 cannot hold "a" as both a dataset and a group). */
static enum ssl_status check_name_set(const char **names, int64_t n, const char *path,
                                      struct ssl_error *err)
{
    if (n > 0) qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    char prefix[NAME_MAX_LEN + 1];
    for (int64_t i = 0; i < n; ++i) {
        if (i > 0 && strcmp(names[i - 1], names[i]) == 0)
            return ssl_error_set(err, SSL_E_USAGE, "%s: dataset %s is given twice", path, names[i]);
        if (dataset_prefix(names, n, names[i], prefix))
            return ssl_error_set(err, SSL_E_USAGE,
                                 "%s: %s is a dataset, so it cannot be the group of %s", path,
                                 prefix, names[i]);
    }
    return SSL_OK;
}

/* A described group must not be a dataset nor lie inside one. */
static enum ssl_status check_groups(const char *const *names, int64_t n,
                                    const struct ssl_ckpt_content *c, const char *path,
                                    struct ssl_error *err)
{
    char prefix[NAME_MAX_LEN + 1];
    for (int64_t i = 0; i < c->n_groups; ++i) {
        const char *g = c->groups[i].name, *key = g;
        if (n > 0 && bsearch(&key, names, (size_t)n, sizeof *names, cmp_str_ptr) != NULL)
            return ssl_error_set(err, SSL_E_USAGE, "%s: group %s is a dataset", path, g);
        if (dataset_prefix(names, n, g, prefix))
            return ssl_error_set(err, SSL_E_USAGE,
                                 "%s: %s is a dataset, so it cannot be the group of %s", path,
                                 prefix, g);
    }
    return SSL_OK;
}

static enum ssl_status check_entry(const struct ssl_ckpt_entry *e, int rank, const char *path,
                                   struct ssl_error *err)
{
    if (!name_valid(e->name))
        return ssl_error_set(err, SSL_E_USAGE,
                             "%s: bad dataset name \"%s\" (want group/.../name, no leading, "
                             "trailing or double '/')",
                             path, e->name != NULL ? e->name : "(null)");
    if (!type_valid(e->type))
        return ssl_error_set(err, SSL_E_USAGE, "%s: dataset %s: invalid type %d", path, e->name,
                             (int)e->type);
    if (e->rank < 0 || e->rank > SSL_CKPT_MAX_RANK)
        return ssl_error_set(err, SSL_E_USAGE, "%s: dataset %s: rank %d is outside 0..%d", path,
                             e->name, e->rank, SSL_CKPT_MAX_RANK);
    int64_t n = 1;
    for (int i = 0; i < e->rank; ++i) {
        if (e->dims[i] < 0 || (e->dims[i] > 0 && n > (INT64_MAX / 8) / e->dims[i]))
            return ssl_error_set(err, SSL_E_USAGE, "%s: dataset %s: bad dimension %lld", path,
                                 e->name, (long long)e->dims[i]);
        n *= e->dims[i];
    }
    if (rank == 0 && n > 0 && e->data == NULL)
        return ssl_error_set(err, SSL_E_USAGE, "%s: dataset %s: no data on rank 0", path, e->name);
    return SSL_OK;
}

static bool reserved(const char *name)
{
    for (size_t i = 0; i < sizeof g_reserved / sizeof *g_reserved; ++i)
        if (strcmp(name, g_reserved[i]) == 0) return true;
    return false;
}

static enum ssl_status check_attrs(const struct ssl_ckpt_content *c, const char *path,
                                   struct ssl_error *err)
{
    for (int64_t i = 0; i < c->n_attrs; ++i) {
        const struct ssl_ckpt_attr *a = &c->attrs[i];
        if (a->name == NULL || a->name[0] == '\0' || strchr(a->name, '/') != NULL)
            return ssl_error_set(err, SSL_E_USAGE, "%s: bad attribute name", path);
        if (reserved(a->name))
            return ssl_error_set(err, SSL_E_USAGE,
                                 "%s: attribute %s is reserved (the checkpoint writes it)", path,
                                 a->name);
        if (a->kind != SSL_CKPT_ATTR_STRING && a->kind != SSL_CKPT_ATTR_INT64)
            return ssl_error_set(err, SSL_E_USAGE, "%s: attribute %s: invalid kind", path, a->name);
        if (a->kind == SSL_CKPT_ATTR_STRING && a->str == NULL)
            return ssl_error_set(err, SSL_E_USAGE, "%s: attribute %s: NULL string", path, a->name);
        for (int64_t j = 0; j < i; ++j)
            if (strcmp(c->attrs[j].name, a->name) == 0)
                return ssl_error_set(err, SSL_E_USAGE, "%s: attribute %s is given twice", path,
                                     a->name);
    }
    return SSL_OK;
}

/* Entries, attributes and groups well-formed; groups neither datasets nor inside one. */
static enum ssl_status check_content(const struct ssl_ckpt_content *c, int rank, const char *path,
                                     struct ssl_error *err)
{
    if (c == NULL || c->n_entries < 0 || c->n_attrs < 0 || c->n_groups < 0 ||
        (c->n_entries > 0 && c->entries == NULL) || (c->n_attrs > 0 && c->attrs == NULL) ||
        (c->n_groups > 0 && c->groups == NULL))
        return ssl_error_set(err, SSL_E_USAGE, "%s: bad checkpoint content table", path);
    enum ssl_status st = SSL_OK;
    for (int64_t i = 0; i < c->n_entries && st == SSL_OK; ++i)
        st = check_entry(&c->entries[i], rank, path, err);
    for (int64_t i = 0; i < c->n_groups && st == SSL_OK; ++i)
        if (!name_valid(c->groups[i].name) || c->groups[i].description == NULL)
            st = ssl_error_set(err, SSL_E_USAGE, "%s: bad group description %lld", path, (long long)i);
    if (st == SSL_OK) st = check_attrs(c, path, err);
    if (st != SSL_OK) return st;
    const char **names = malloc((size_t)(c->n_entries + 1) * sizeof *names);
    SSL_CHECK(names != NULL);
    for (int64_t i = 0; i < c->n_entries; ++i) names[i] = c->entries[i].name;
    st = check_name_set(names, c->n_entries, path, err);
    if (st == SSL_OK) st = check_groups(names, c->n_entries, c, path, err);
    free(names);
    return st;
}

/* A hash of everything that must be identical on every rank (not the data). */
static uint32_t content_hash(const struct ssl_ckpt_content *c, int64_t step, int keep)
{
    uint32_t h = crc_i64(crc_i64(0, step), keep);
    for (int64_t i = 0; i < c->n_entries; ++i) {
        const struct ssl_ckpt_entry *e = &c->entries[i];
        h = crc_str(h, e->name);
        h = crc_i64(crc_i64(h, e->type), e->rank);
        for (int d = 0; d < e->rank; ++d) h = crc_i64(h, e->dims[d]);
    }
    for (int64_t i = 0; i < c->n_attrs; ++i) {
        const struct ssl_ckpt_attr *a = &c->attrs[i];
        h = crc_str(crc_i64(h, a->kind), a->name);
        h = a->kind == SSL_CKPT_ATTR_STRING ? crc_str(h, a->str) : crc_i64(h, a->i64);
    }
    for (int64_t i = 0; i < c->n_groups; ++i)
        h = crc_str(crc_str(h, c->groups[i].name), c->groups[i].description);
    return h;
}

/* ---------------------------------------------------------------------------------------- */
/* The directory (rank 0)                                                                   */

enum ssl_status ssl_ckpt_path(char *buf, size_t n_bytes, const char *dir, int64_t step,
                              struct ssl_error *err)
{
    if (dir == NULL || dir[0] == '\0')
        return ssl_error_set(err, SSL_E_USAGE, "checkpoint directory not set");
    if (step < 0)
        return ssl_error_set(err, SSL_E_USAGE, "%s: negative checkpoint step %lld", dir,
                             (long long)step);
    int len = snprintf(buf, n_bytes, "%s/step-%08lld.h5", dir, (long long)step);
    if (len < 0 || (size_t)len + 8 >= n_bytes) /* + 8: room for ".tmp" and ".stale" */
        return ssl_error_set(err, SSL_E_USAGE, "%s: checkpoint path too long", dir);
    return SSL_OK;
}

/* The step of a file named exactly like ssl_ckpt_path names it (suffix "" or ".tmp"). */
static bool parse_step_name(const char *name, const char *suffix, int64_t *step)
{
    if (strncmp(name, "step-", 5) != 0 || name[5] < '0' || name[5] > '9') return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(name + 5, &end, 10);
    if (errno != 0 || v < 0) return false;
    char canon[64];
    snprintf(canon, sizeof canon, "step-%08lld.h5%s", v, suffix);
    if (strcmp(canon, name) != 0) return false;
    *step = (int64_t)v;
    return true;
}

/* The basename's step, if it is a step file name. */
static bool step_of_path(const char *path, int64_t *step)
{
    const char *base = strrchr(path, '/');
    return parse_step_name(base != NULL ? base + 1 : path, "", step);
}

static enum ssl_status mkdir_p(const char *dir, struct ssl_error *err)
{
    char buf[SSL_CKPT_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return ssl_error_set(err, SSL_E_USAGE, "%s: path too long", dir);
    for (char *p = buf + 1;; ++p) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return ssl_error_set(err, SSL_E_OTHER, "%s: cannot create: %s", buf, strerror(errno));
        if (saved == '\0') break;
        *p = saved;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ssl_error_set(err, SSL_E_OTHER, "%s: not a directory", dir);
    return SSL_OK;
}

struct step_list {
    int64_t *steps;
    int64_t n, cap;
};

static void step_list_add(struct step_list *l, int64_t step)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->steps = realloc(l->steps, (size_t)l->cap * sizeof *l->steps);
        SSL_CHECK(l->steps != NULL);
    }
    l->steps[l->n++] = step;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

/* The steps of dir's step files, newest first. A missing directory is an empty list. */
static enum ssl_status scan_steps(const char *dir, struct step_list *l, struct ssl_error *err)
{
    *l = (struct step_list){NULL, 0, 0};
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT) return SSL_OK;
        return ssl_error_set(err, SSL_E_OTHER, "%s: cannot list: %s", dir, strerror(errno));
    }
    int64_t step;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d))
        if (parse_step_name(e->d_name, "", &step)) step_list_add(l, step);
    closedir(d);
    if (l->n > 0) qsort(l->steps, (size_t)l->n, sizeof *l->steps, cmp_desc);
    return SSL_OK;
}

static enum ssl_status join(char *buf, size_t n, const char *dir, const char *name,
                            struct ssl_error *err)
{
    if (snprintf(buf, n, "%s/%s", dir, name) >= (int)n)
        return ssl_error_set(err, SSL_E_USAGE, "%s: path too long", dir);
    return SSL_OK;
}

/* Removes leftovers of a crashed write and renames step files newer than `step` aside. */
static enum ssl_status tidy_dir(const char *dir, int64_t step, struct ssl_error *err)
{
    DIR *d = opendir(dir);
    if (d == NULL) return ssl_error_set(err, SSL_E_OTHER, "%s: cannot list: %s", dir, strerror(errno));
    enum ssl_status st = SSL_OK;
    char path[SSL_CKPT_PATH_MAX], aside[SSL_CKPT_PATH_MAX + 8];
    int64_t s;
    for (struct dirent *e = readdir(d); e != NULL && st == SSL_OK; e = readdir(d)) {
        bool stale_tmp = parse_step_name(e->d_name, ".tmp", &s) || strcmp(e->d_name, "latest.h5.tmp") == 0;
        bool newer = parse_step_name(e->d_name, "", &s) && s > step;
        if (!stale_tmp && !newer) continue;
        st = join(path, sizeof path, dir, e->d_name, err);
        if (st == SSL_OK && stale_tmp && unlink(path) != 0 && errno != ENOENT)
            st = ssl_error_set(err, SSL_E_OTHER, "%s: cannot remove: %s", path, strerror(errno));
        snprintf(aside, sizeof aside, "%s.stale", path);
        if (st == SSL_OK && newer && rename(path, aside) != 0)
            st = ssl_error_set(err, SSL_E_OTHER, "%s: cannot rename to %s: %s", path, aside,
                               strerror(errno));
    }
    closedir(d);
    return st;
}

/* latest.h5 -> step-XXXXXXXX.h5 (relative, so the run directory can move), replaced by
 * rename(2) so a reader sees the old or the new link, never none. */
static enum ssl_status point_latest(const char *dir, int64_t step, struct ssl_error *err)
{
    char target[64], tmp[SSL_CKPT_PATH_MAX], latest[SSL_CKPT_PATH_MAX];
    snprintf(target, sizeof target, "step-%08lld.h5", (long long)step);
    enum ssl_status st = join(tmp, sizeof tmp, dir, "latest.h5.tmp", err);
    if (st == SSL_OK) st = join(latest, sizeof latest, dir, "latest.h5", err);
    if (st != SSL_OK) return st;
    if (unlink(tmp) != 0 && errno != ENOENT)
        return ssl_error_set(err, SSL_E_OTHER, "%s: cannot remove: %s", tmp, strerror(errno));
    if (symlink(target, tmp) != 0)
        return ssl_error_set(err, SSL_E_OTHER, "%s: symlink: %s", tmp, strerror(errno));
    if (rename(tmp, latest) != 0)
        return ssl_error_set(err, SSL_E_OTHER, "%s: rename to %s: %s", tmp, latest, strerror(errno));
    return SSL_OK;
}

/* Deletes all but the newest `keep` step files (keep <= 0: none). */
static enum ssl_status prune(const char *dir, int keep, struct ssl_error *err)
{
    if (keep <= 0) return SSL_OK;
    struct step_list l;
    enum ssl_status st = scan_steps(dir, &l, err);
    char path[SSL_CKPT_PATH_MAX];
    for (int64_t i = keep; i < l.n && st == SSL_OK; ++i) {
        st = ssl_ckpt_path(path, sizeof path, dir, l.steps[i], err);
        if (st == SSL_OK && unlink(path) != 0 && errno != ENOENT)
            st = ssl_error_set(err, SSL_E_OTHER, "%s: cannot remove: %s", path, strerror(errno));
    }
    free(l.steps);
    return st;
}

/* The data reach the disk before the name, the name before older checkpoints go. */
static enum ssl_status publish(const char *dir, const char *tmp, const char *final, int64_t step,
                               int keep, struct ssl_error *err)
{
    enum ssl_status st = ssl_h5_fsync_path(tmp, O_RDONLY, err);
    if (st == SSL_OK && rename(tmp, final) != 0)
        st = ssl_error_set(err, SSL_E_OTHER, "%s: rename to %s: %s", tmp, final, strerror(errno));
    if (st == SSL_OK) st = point_latest(dir, step, err);
    if (st == SSL_OK) st = ssl_h5_fsync_path(dir, O_RDONLY | O_DIRECTORY, err);
    if (st == SSL_OK) st = prune(dir, keep, err);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Writing                                                                                  */

/* Property lists shared by every dataset of one write. */
struct wctx {
    MPI_Comm comm;
    int rank;
    const char *path; /* the .tmp file, for messages */
    hid_t file, lcpl, dcpl, dxpl;
};

static hid_t make_space(int rank, const int64_t *dims)
{
    if (rank == 0) return H5Screate(H5S_SCALAR);
    hsize_t d[SSL_CKPT_MAX_RANK];
    for (int i = 0; i < rank; ++i) d[i] = (hsize_t)dims[i];
    return H5Screate_simple(rank, d, NULL);
}

/* Collective H5Dwrite: rank 0 writes everything, the others select nothing (the content is
 * replicated) but still take part. */
static herr_t write_data(const struct wctx *w, hid_t dset, hid_t space, const struct ssl_ckpt_entry *e)
{
    static const unsigned char none = 0; /* a valid pointer for ranks that write nothing */
    hid_t fsel = H5Scopy(space), msel = H5Scopy(space);
    herr_t rc = -1;
    if (fsel >= 0 && msel >= 0) {
        rc = 0;
        if (w->rank != 0 && (H5Sselect_none(fsel) < 0 || H5Sselect_none(msel) < 0)) rc = -1;
        const void *buf = w->rank == 0 ? e->data : &none;
        if (rc >= 0) rc = H5Dwrite(dset, mem_type(e->type), msel, fsel, w->dxpl, buf);
    }
    if (msel >= 0) H5Sclose(msel);
    if (fsel >= 0) H5Sclose(fsel);
    return rc;
}

static enum ssl_status write_entry(const struct wctx *w, const struct ssl_ckpt_entry *e, uint32_t crc,
                                   struct ssl_error *err)
{
    hid_t space = make_space(e->rank, e->dims), dset = H5I_INVALID_HID;
    enum ssl_status st = SSL_OK;
    if (space >= 0)
        dset = H5Dcreate2(w->file, e->name, file_type(e->type), space, w->lcpl, w->dcpl, H5P_DEFAULT);
    if (dset < 0) st = ssl_h5_fail(err, SSL_E_OTHER, w->path, e->name);
    if (st == SSL_OK && n_elems(e->rank, e->dims) > 0 && write_data(w, dset, space, e) < 0)
        st = ssl_h5_fail(err, SSL_E_OTHER, w->path, e->name);
    if (st == SSL_OK)
        st = ssl_h5_write_int_attr(dset, "crc32", H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc, w->path, err);
    if (dset >= 0 && H5Dclose(dset) < 0) st = ssl_h5_fail(err, SSL_E_OTHER, w->path, e->name);
    if (space >= 0) H5Sclose(space);
    return st;
}

static enum ssl_status write_group_description(const struct wctx *w, const struct ssl_ckpt_group *g,
                                               struct ssl_error *err)
{
    hid_t grp = ssl_h5_link_exists(w->file, g->name)
                    ? H5Gopen2(w->file, g->name, H5P_DEFAULT)
                    : H5Gcreate2(w->file, g->name, w->lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (grp < 0) return ssl_h5_fail(err, SSL_E_OTHER, w->path, g->name);
    enum ssl_status st = ssl_h5_write_string_attr(grp, "description", g->description, w->path, err);
    if (H5Gclose(grp) < 0) st = ssl_h5_fail(err, SSL_E_OTHER, w->path, g->name);
    return st;
}

static enum ssl_status write_root_attrs(const struct wctx *w, int64_t step,
                                        const struct ssl_ckpt_content *c, struct ssl_error *err)
{
    int32_t version = SSL_CKPT_FORMAT_VERSION;
    enum ssl_status st = ssl_h5_write_string_attr(w->file, "format", FORMAT_NAME, w->path, err);
    if (st == SSL_OK)
        st = ssl_h5_write_int_attr(w->file, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version,
                                   w->path, err);
    if (st == SSL_OK) st = ssl_h5_write_i64_attr(w->file, "step", step, w->path, err);
    if (st == SSL_OK) st = ssl_h5_write_i64_attr(w->file, "n_datasets", c->n_entries, w->path, err);
    if (st == SSL_OK) st = ssl_h5_write_string_attr(w->file, "checksum", CHECKSUM_TEXT, w->path, err);
    for (int64_t i = 0; i < c->n_attrs && st == SSL_OK; ++i) {
        const struct ssl_ckpt_attr *a = &c->attrs[i];
        st = a->kind == SSL_CKPT_ATTR_STRING
                 ? ssl_h5_write_string_attr(w->file, a->name, a->str, w->path, err)
                 : ssl_h5_write_i64_attr(w->file, a->name, a->i64, w->path, err);
    }
    return st;
}

/* Rank 0 checksums every entry and broadcasts the sums: the attributes are written
 * collectively, so every rank needs the same values. */
static uint32_t *entry_crcs(const struct wctx *w, const struct ssl_ckpt_content *c)
{
    uint32_t *crcs = malloc((size_t)(c->n_entries + 1) * sizeof *crcs);
    SSL_CHECK(crcs != NULL);
    if (w->rank == 0)
        for (int64_t i = 0; i < c->n_entries; ++i) {
            const struct ssl_ckpt_entry *e = &c->entries[i];
            crcs[i] = crc_le(0, e->data, (size_t)n_elems(e->rank, e->dims), ssl_ckpt_type_size(e->type));
        }
    if (c->n_entries > 0) MPI_Bcast(crcs, ssl_int(c->n_entries), MPI_UINT32_T, 0, w->comm);
    return crcs;
}

/* Collective: datasets, group descriptions and root attributes into the open file; each
 * dataset is agreed on, since a failed write on one rank must stop all before the next
 * collective create. */
static enum ssl_status write_body(const struct wctx *w, int64_t step, const struct ssl_ckpt_content *c,
                                  struct ssl_error *err)
{
    uint32_t *crcs = entry_crcs(w, c);
    enum ssl_status st = SSL_OK;
    for (int64_t i = 0; i < c->n_entries && st == SSL_OK; ++i)
        st = ssl_h5_agree_plain(w->comm, write_entry(w, &c->entries[i], crcs[i], err), err);
    free(crcs);
    for (int64_t i = 0; i < c->n_groups && st == SSL_OK; ++i)
        st = write_group_description(w, &c->groups[i], err);
    if (st == SSL_OK) st = write_root_attrs(w, step, c, err);
    return ssl_h5_agree_plain(w->comm, st, err);
}

static enum ssl_status make_plists(struct wctx *w, struct ssl_error *err)
{
    w->lcpl = H5Pcreate(H5P_LINK_CREATE);
    w->dcpl = H5Pcreate(H5P_DATASET_CREATE);
    w->dxpl = H5Pcreate(H5P_DATASET_XFER);
    /* contiguous, no fill: every byte is written, and contiguous is what collective I/O likes */
    if (w->lcpl < 0 || w->dcpl < 0 || w->dxpl < 0 ||
        H5Pset_create_intermediate_group(w->lcpl, 1) < 0 ||
        H5Pset_fill_time(w->dcpl, H5D_FILL_TIME_NEVER) < 0 ||
        H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        return ssl_h5_fail(err, SSL_E_OTHER, w->path, "property lists");
    return SSL_OK;
}

static void close_plists(struct wctx *w)
{
    if (w->lcpl >= 0) H5Pclose(w->lcpl);
    if (w->dcpl >= 0) H5Pclose(w->dcpl);
    if (w->dxpl >= 0) H5Pclose(w->dxpl);
}

/* Collective: create tmp, write, flush, close; every rank agrees on the outcome. */
static enum ssl_status write_tmp(const char *tmp, int64_t step, const struct ssl_ckpt_content *c,
                                 MPI_Comm comm, struct ssl_error *err)
{
    struct wctx w = {comm, rank_of(comm), tmp, H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID,
                     H5I_INVALID_HID};
    hid_t fapl = ssl_h5_mpio_fapl(comm);
    enum ssl_status st = SSL_OK;
    if (fapl < 0) st = ssl_h5_fail(err, SSL_E_OTHER, tmp, "MPI-IO file access");
    else if ((w.file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
        st = ssl_h5_fail(err, SSL_E_OTHER, tmp, "cannot create");
    if (fapl >= 0) H5Pclose(fapl);
    if (st == SSL_OK) st = make_plists(&w, err);
    st = ssl_h5_agree_plain(comm, st, err);
    if (st == SSL_OK) st = write_body(&w, step, c, err);
    close_plists(&w);
    if (w.file >= 0) {
        if (st == SSL_OK && H5Fflush(w.file, H5F_SCOPE_GLOBAL) < 0)
            st = ssl_h5_fail(err, SSL_E_OTHER, tmp, "flush");
        if (H5Fclose(w.file) < 0 && st == SSL_OK) st = ssl_h5_fail(err, SSL_E_OTHER, tmp, "close");
    }
    return ssl_h5_agree_plain(comm, st, err);
}

enum ssl_status ssl_ckpt_write(const char *dir, int64_t step,
                               const struct ssl_ckpt_content *content, int keep,
                               const struct ssl_comm *comm, struct ssl_error *err)
{
    MPI_Comm world = comm_of(comm);
    int rank = rank_of(world);
    char final[SSL_CKPT_PATH_MAX], tmp[SSL_CKPT_PATH_MAX + 8];
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    enum ssl_status st = ssl_ckpt_path(final, sizeof final, dir, step, err);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    if (st == SSL_OK) st = check_content(content, rank, final, err);
    st = ssl_h5_agree_plain(world, st, err);
    if (st == SSL_OK && !same_everywhere(world, content_hash(content, step, keep)))
        st = ssl_error_set(err, SSL_E_OTHER,
                           "%s: the checkpoint's entries, attributes or step differ between ranks",
                           final);
    if (st == SSL_OK) {
        if (rank == 0) st = mkdir_p(dir, err);
        if (rank == 0 && st == SSL_OK) st = tidy_dir(dir, step, err);
        st = ssl_h5_agree_plain(world, st, err);
    }
    bool created = st == SSL_OK;
    if (st == SSL_OK) st = write_tmp(tmp, step, content, world, err);
    if (st == SSL_OK) st = ssl_h5_agree_plain(world, rank == 0 ? publish(dir, tmp, final, step, keep, err) : SSL_OK, err);
    if (st != SSL_OK && created && rank == 0) remove(tmp);
    ssl_h5_quiet_end(&q);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Listing and validating (local)                                                           */

struct listing {
    struct ssl_ckpt_entry *e; /* sorted by name; names owned */
    int64_t n, cap;
    const char *path;
    struct ssl_error *err;
    enum ssl_status st;
};

static void listing_free(struct listing *l)
{
    for (int64_t i = 0; i < l->n; ++i) free((char *)l->e[i].name);
    free(l->e);
    l->e = NULL;
    l->n = l->cap = 0;
}

/* Type, rank and dims of dataset `name` into *e. */
static enum ssl_status describe_dataset(hid_t file, const char *name, const char *path,
                                        struct ssl_ckpt_entry *e, struct ssl_error *err)
{
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) return ssl_h5_fail(err, SSL_E_DATA, path, name);
    hid_t t = H5Dget_type(d), s = H5Dget_space(d);
    enum ssl_status st = SSL_OK;
    int rank = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    hsize_t dims[SSL_CKPT_MAX_RANK] = {0};
    if (t < 0 || s < 0) st = ssl_h5_fail(err, SSL_E_DATA, path, name);
    else if (!type_from_h5(t, &e->type))
        st = ssl_error_set(err, SSL_E_DATA, "%s: dataset %s has a type checkpoints do not hold", path, name);
    else if (rank < 0 || rank > SSL_CKPT_MAX_RANK || H5Sget_simple_extent_dims(s, dims, NULL) < 0)
        st = ssl_error_set(err, SSL_E_DATA, "%s: dataset %s has rank %d (at most %d)", path, name,
                           rank, SSL_CKPT_MAX_RANK);
    e->rank = rank;
    for (int i = 0; i < SSL_CKPT_MAX_RANK; ++i) e->dims[i] = (int64_t)dims[i];
    e->data = NULL;
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    H5Dclose(d);
    return st;
}

static herr_t visit_cb(hid_t obj, const char *name, const H5O_info_t *info, void *data)
{
    struct listing *l = data;
    if (info->type != H5O_TYPE_DATASET) return 0;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->e = realloc(l->e, (size_t)l->cap * sizeof *l->e);
        SSL_CHECK(l->e != NULL);
    }
    struct ssl_ckpt_entry *e = &l->e[l->n];
    e->name = strdup(name);
    SSL_CHECK(e->name != NULL);
    l->n++;
    l->st = describe_dataset(obj, name, l->path, e, l->err);
    return l->st == SSL_OK ? 0 : 1;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct ssl_ckpt_entry *)a)->name, ((const struct ssl_ckpt_entry *)b)->name);
}

/* Every dataset of the file, sorted by name. */
static enum ssl_status list_datasets(hid_t file, const char *path, struct listing *l,
                                     struct ssl_error *err)
{
    *l = (struct listing){NULL, 0, 0, path, err, SSL_OK};
    herr_t rc = H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_INC, visit_cb, l, H5O_INFO_BASIC);
    if (l->st != SSL_OK) return l->st;
    if (rc < 0) return ssl_h5_fail(err, SSL_E_DATA, path, "listing the datasets");
    if (l->n > 0) qsort(l->e, (size_t)l->n, sizeof *l->e, cmp_entry);
    return SSL_OK;
}

/* Opens root attribute `name`: SSL_E_DATA naming it when missing. */
static enum ssl_status open_attr(hid_t loc, const char *name, const char *path, const char *where,
                                 hid_t *attr, struct ssl_error *err)
{
    htri_t has = H5Aexists(loc, name);
    if (has < 0) return ssl_h5_fail(err, SSL_E_DATA, path, name);
    if (has == 0) return ssl_error_set(err, SSL_E_DATA, "%s: no %s attribute %s", path, where, name);
    *attr = H5Aopen(loc, name, H5P_DEFAULT);
    if (*attr < 0) return ssl_h5_fail(err, SSL_E_DATA, path, name);
    return SSL_OK;
}

static enum ssl_status read_int_attr(hid_t loc, const char *name, const char *path,
                                     const char *where, int64_t *value, struct ssl_error *err)
{
    hid_t attr = H5I_INVALID_HID;
    enum ssl_status st = open_attr(loc, name, path, where, &attr, err);
    if (st != SSL_OK) return st;
    bool ok = ssl_h5_read_i64_attr(attr, value);
    H5Aclose(attr);
    if (!ok)
        return ssl_error_set(err, SSL_E_DATA, "%s: %s attribute %s is not one integer", path, where, name);
    return SSL_OK;
}

/* A variable- or fixed-length string attribute into a malloc'd copy. */
static enum ssl_status read_string_attr(hid_t loc, const char *name, const char *path,
                                        char **value, struct ssl_error *err)
{
    *value = NULL;
    hid_t attr = H5I_INVALID_HID;
    enum ssl_status st = open_attr(loc, name, path, "root", &attr, err);
    if (st != SSL_OK) return st;
    hid_t ft = H5Aget_type(attr), s = H5Aget_space(attr), mt = H5I_INVALID_HID;
    bool ok = ft >= 0 && s >= 0 && H5Tget_class(ft) == H5T_STRING && H5Sget_simple_extent_npoints(s) == 1;
    if (ok && H5Tis_variable_str(ft) > 0) {
        char *v = NULL;
        mt = H5Tcopy(H5T_C_S1);
        ok = mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Tset_cset(mt, H5Tget_cset(ft)) >= 0 &&
             H5Aread(attr, mt, &v) >= 0 && v != NULL;
        if (ok) *value = strdup(v);
        if (v != NULL) H5free_memory(v);
    } else if (ok) {
        size_t size = H5Tget_size(ft);
        *value = calloc(size + 1, 1);
        SSL_CHECK(*value != NULL);
        mt = H5Tcopy(ft);
        ok = mt >= 0 && H5Aread(attr, mt, *value) >= 0;
    }
    SSL_CHECK(!ok || *value != NULL);
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    if (s >= 0) H5Sclose(s);
    H5Aclose(attr);
    if (ok) return SSL_OK;
    free(*value);
    *value = NULL;
    return ssl_error_set(err, SSL_E_DATA, "%s: root attribute %s is not a string", path, name);
}

/* Root `format` and `format_version` say this is a checkpoint this program reads. */
static enum ssl_status check_format(hid_t file, const char *path, struct ssl_error *err)
{
    char *format = NULL;
    enum ssl_status st = read_string_attr(file, "format", path, &format, err);
    if (st == SSL_OK && strcmp(format, FORMAT_NAME) != 0)
        st = ssl_error_set(err, SSL_E_DATA, "%s: format is \"%s\", not \"%s\"", path, format, FORMAT_NAME);
    free(format);
    int64_t version = 0;
    if (st == SSL_OK) st = read_int_attr(file, "format_version", path, "root", &version, err);
    if (st == SSL_OK && version != SSL_CKPT_FORMAT_VERSION)
        st = ssl_error_set(err, SSL_E_DATA, "%s: format_version %lld, this program reads %d", path,
                           (long long)version, SSL_CKPT_FORMAT_VERSION);
    return st;
}

static enum ssl_status check_crc(hid_t dset, const char *path, const char *name, uint32_t computed,
                                 struct ssl_error *err)
{
    int64_t stored = 0;
    char where[NAME_MAX_LEN + 16];
    snprintf(where, sizeof where, "dataset %s", name);
    enum ssl_status st = read_int_attr(dset, "crc32", path, where, &stored, err);
    if (st == SSL_OK && stored != (int64_t)computed)
        st = ssl_error_set(err, SSL_E_DATA,
                           "%s: dataset %s: checksum mismatch (crc32 stored 0x%08llx, data "
                           "0x%08lx): the file is corrupt",
                           path, name, (unsigned long long)stored, (unsigned long)computed);
    return st;
}

/* Reads a dataset in blocks of leading-dimension rows (bounded memory) and checks its CRC. */
static enum ssl_status verify_dataset(hid_t file, const char *path, const struct ssl_ckpt_entry *e,
                                      struct ssl_error *err)
{
    size_t esize = ssl_ckpt_type_size(e->type);
    int64_t total = n_elems(e->rank, e->dims);
    int64_t row = e->rank == 0 ? 1 : (e->dims[0] > 0 ? total / e->dims[0] : 0);
    int64_t rows = e->rank == 0 ? 1 : e->dims[0];
    int64_t per_block = row > 0 && (int64_t)esize * row < VALIDATE_BLOCK_BYTES
                            ? VALIDATE_BLOCK_BYTES / ((int64_t)esize * row) : 1;
    hid_t d = H5Dopen2(file, e->name, H5P_DEFAULT);
    if (d < 0) return ssl_h5_fail(err, SSL_E_DATA, path, e->name);
    unsigned char *buf = malloc((size_t)(per_block * row) * esize + 1);
    SSL_CHECK(buf != NULL);
    hid_t fspace = H5Dget_space(d);
    enum ssl_status st = fspace < 0 ? ssl_h5_fail(err, SSL_E_DATA, path, e->name) : SSL_OK;
    uint32_t crc = 0;
    for (int64_t r0 = 0; total > 0 && r0 < rows && st == SSL_OK; r0 += per_block) {
        int64_t nr = rows - r0 < per_block ? rows - r0 : per_block;
        hsize_t start[SSL_CKPT_MAX_RANK] = {(hsize_t)r0}, count[SSL_CKPT_MAX_RANK] = {(hsize_t)nr};
        for (int i = 1; i < e->rank; ++i) count[i] = (hsize_t)e->dims[i];
        hid_t mspace = e->rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(e->rank, count, NULL);
        bool ok = mspace >= 0 &&
                  (e->rank == 0 ||
                   H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0) &&
                  H5Dread(d, mem_type(e->type), mspace, fspace, H5P_DEFAULT, buf) >= 0;
        if (mspace >= 0) H5Sclose(mspace);
        if (!ok) st = ssl_h5_fail(err, SSL_E_DATA, path, e->name);
        else crc = crc_le(crc, buf, (size_t)(nr * row), esize);
    }
    if (st == SSL_OK) st = check_crc(d, path, e->name, crc, err);
    free(buf);
    if (fspace >= 0) H5Sclose(fspace);
    H5Dclose(d);
    return st;
}

static enum ssl_status validate_open(hid_t file, const char *path, struct ssl_error *err)
{
    enum ssl_status st = check_format(file, path, err);
    int64_t step = 0, name_step = 0, n_declared = 0;
    if (st == SSL_OK && step_of_path(path, &name_step)) {
        st = read_int_attr(file, "step", path, "root", &step, err);
        if (st == SSL_OK && step != name_step)
            st = ssl_error_set(err, SSL_E_DATA, "%s: root attribute step is %lld, the name says %lld",
                               path, (long long)step, (long long)name_step);
    }
    if (st == SSL_OK) st = read_int_attr(file, "n_datasets", path, "root", &n_declared, err);
    struct listing l = {0};
    if (st == SSL_OK) st = list_datasets(file, path, &l, err);
    if (st == SSL_OK && l.n != n_declared)
        st = ssl_error_set(err, SSL_E_DATA, "%s: %lld datasets, the root attribute n_datasets says %lld",
                           path, (long long)l.n, (long long)n_declared);
    for (int64_t i = 0; i < l.n && st == SSL_OK; ++i) st = verify_dataset(file, path, &l.e[i], err);
    listing_free(&l);
    return st;
}

enum ssl_status ssl_ckpt_validate(const char *path, struct ssl_error *err)
{
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    enum ssl_status st = ssl_h5_check_file(path, "cannot open as HDF5 (truncated?)", err);
    hid_t file = H5I_INVALID_HID;
    if (st == SSL_OK && (file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        st = ssl_h5_fail(err, SSL_E_DATA, path, "cannot open as HDF5 (truncated?)");
    if (st == SSL_OK) st = validate_open(file, path, err);
    if (file >= 0) H5Fclose(file);
    ssl_h5_quiet_end(&q);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Finding the checkpoint to resume from                                                    */

static void add_warning(struct ssl_ckpt_found *out, const char *msg)
{
    size_t used = strlen(out->warning);
    snprintf(out->warning + used, sizeof out->warning - used, "%s%s; skipped", used ? "\n" : "", msg);
    out->n_rejected++;
}

/* Rank 0: the newest valid step file. */
static enum ssl_status find_local(const char *dir, struct ssl_ckpt_found *out, struct ssl_error *err)
{
    struct step_list l;
    enum ssl_status st = scan_steps(dir, &l, err);
    char first_reason[sizeof err->msg] = "";
    for (int64_t i = 0; i < l.n && st == SSL_OK && !out->found; ++i) {
        st = ssl_ckpt_path(out->path, sizeof out->path, dir, l.steps[i], err);
        if (st != SSL_OK) break;
        struct ssl_error e = {SSL_OK, ""};
        if (ssl_ckpt_validate(out->path, &e) == SSL_OK) {
            out->found = true;
            out->step = l.steps[i];
        } else {
            if (first_reason[0] == '\0') snprintf(first_reason, sizeof first_reason, "%s", e.msg);
            add_warning(out, e.msg);
        }
    }
    if (st == SSL_OK && !out->found && l.n > 0)
        st = ssl_error_set(err, SSL_E_DATA, "%s: none of the %lld checkpoints is valid; the newest: %s",
                           dir, (long long)l.n, first_reason);
    if (!out->found) out->path[0] = '\0';
    free(l.steps);
    return st;
}

enum ssl_status ssl_ckpt_find_resumable(const char *dir, const struct ssl_comm *comm,
                                        struct ssl_ckpt_found *out, struct ssl_error *err)
{
    MPI_Comm world = comm_of(comm);
    memset(out, 0, sizeof *out);
    out->step = -1;
    enum ssl_status st = SSL_OK;
    if (dir == NULL || dir[0] == '\0') st = ssl_error_set(err, SSL_E_USAGE, "checkpoint directory not set");
    else if (rank_of(world) == 0) st = find_local(dir, out, err);
    MPI_Bcast(out, (int)sizeof *out, MPI_BYTE, 0, world);
    return ssl_h5_agree_plain(world, st, err);
}

/* ---------------------------------------------------------------------------------------- */
/* Reading                                                                                  */

struct ssl_ckpt {
    MPI_Comm comm;
    hid_t file;
    hid_t dxpl; /* collective transfer */
    char path[SSL_CKPT_PATH_MAX];
    struct listing list;
};

static void release(struct ssl_ckpt *ck)
{
    if (ck->dxpl >= 0) H5Pclose(ck->dxpl);
    if (ck->file >= 0) H5Fclose(ck->file);
    listing_free(&ck->list);
    free(ck);
}

static enum ssl_status open_mpio(struct ssl_ckpt *ck, struct ssl_error *err)
{
    hid_t fapl = ssl_h5_mpio_fapl(ck->comm);
    if (fapl < 0) return ssl_h5_fail(err, SSL_E_OTHER, ck->path, "MPI-IO file access");
    ck->file = H5Fopen(ck->path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (ck->file < 0) return ssl_h5_fail(err, SSL_E_DATA, ck->path, "cannot open as HDF5 (truncated?)");
    ck->dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (ck->dxpl < 0 || H5Pset_dxpl_mpio(ck->dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        return ssl_h5_fail(err, SSL_E_OTHER, ck->path, "collective transfer");
    return SSL_OK;
}

enum ssl_status ssl_ckpt_open(struct ssl_ckpt **ckp, const char *path, const struct ssl_comm *comm,
                              struct ssl_error *err)
{
    *ckp = NULL;
    struct ssl_ckpt *ck = calloc(1, sizeof *ck);
    SSL_CHECK(ck != NULL);
    ck->comm = comm_of(comm);
    ck->file = ck->dxpl = H5I_INVALID_HID;
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    enum ssl_status st = SSL_OK;
    if (path == NULL || snprintf(ck->path, sizeof ck->path, "%s", path) >= (int)sizeof ck->path)
        st = ssl_error_set(err, SSL_E_USAGE, "checkpoint path missing or too long");
    if (st == SSL_OK) st = ssl_h5_check_file(path, "cannot open as HDF5 (truncated?)", err);
    st = ssl_h5_agree_plain(ck->comm, st, err);
    if (st == SSL_OK) st = ssl_h5_agree_plain(ck->comm, open_mpio(ck, err), err);
    if (st == SSL_OK) st = check_format(ck->file, ck->path, err);
    if (st == SSL_OK) st = list_datasets(ck->file, ck->path, &ck->list, err);
    st = ssl_h5_agree_plain(ck->comm, st, err);
    ssl_h5_quiet_end(&q);
    if (st != SSL_OK) release(ck);
    else *ckp = ck;
    return st;
}

const struct ssl_ckpt_entry *ssl_ckpt_lookup(const struct ssl_ckpt *ck, const char *name)
{
    if (name == NULL || ck->list.n == 0) return NULL;
    struct ssl_ckpt_entry key = {.name = name};
    return bsearch(&key, ck->list.e, (size_t)ck->list.n, sizeof key, cmp_entry);
}

int64_t ssl_ckpt_count(const struct ssl_ckpt *ck) { return ck->list.n; }

const struct ssl_ckpt_entry *ssl_ckpt_dataset(const struct ssl_ckpt *ck, int64_t i)
{
    return i >= 0 && i < ck->list.n ? &ck->list.e[i] : NULL;
}

const char *ssl_ckpt_file(const struct ssl_ckpt *ck) { return ck->path; }

/* The stored dataset matches `want` exactly (local). */
static enum ssl_status check_want(const struct ssl_ckpt *ck, const struct ssl_ckpt_entry *want,
                                  const void *out, struct ssl_error *err)
{
    if (want == NULL || want->name == NULL)
        return ssl_error_set(err, SSL_E_USAGE, "%s: read without a dataset name", ck->path);
    const struct ssl_ckpt_entry *have = ssl_ckpt_lookup(ck, want->name);
    if (have == NULL) return ssl_error_set(err, SSL_E_DATA, "%s: no dataset %s", ck->path, want->name);
    if (have->type != want->type)
        return ssl_error_set(err, SSL_E_DATA, "%s: dataset %s has type %s, expected %s", ck->path,
                             want->name, ssl_ckpt_type_name(have->type), ssl_ckpt_type_name(want->type));
    bool same = have->rank == want->rank;
    for (int i = 0; same && i < want->rank; ++i) same = have->dims[i] == want->dims[i];
    if (!same) {
        char h[128], w[128];
        format_shape(h, sizeof h, have->rank, have->dims);
        int want_rank = want->rank < 0 ? 0 : want->rank > SSL_CKPT_MAX_RANK ? SSL_CKPT_MAX_RANK : want->rank;
        format_shape(w, sizeof w, want_rank, want->dims);
        return ssl_error_set(err, SSL_E_DATA, "%s: dataset %s has shape %s, expected %s", ck->path,
                             want->name, h, w);
    }
    if (out == NULL && n_elems(have->rank, have->dims) > 0)
        return ssl_error_set(err, SSL_E_USAGE, "%s: dataset %s: no output buffer", ck->path, want->name);
    return SSL_OK;
}

static uint32_t want_hash(const struct ssl_ckpt_entry *want)
{
    if (want == NULL || want->name == NULL) return 0;
    uint32_t h = crc_i64(crc_i64(crc_str(0, want->name), want->type), want->rank);
    for (int i = 0; i < want->rank && i < SSL_CKPT_MAX_RANK; ++i) h = crc_i64(h, want->dims[i]);
    return h;
}

/* Collective: every rank reads the whole dataset. */
static enum ssl_status read_dataset(struct ssl_ckpt *ck, const struct ssl_ckpt_entry *e, void *out,
                                    struct ssl_error *err)
{
    hid_t d = H5Dopen2(ck->file, e->name, H5P_DEFAULT);
    if (d < 0) return ssl_h5_fail(err, SSL_E_DATA, ck->path, e->name);
    int64_t n = n_elems(e->rank, e->dims);
    enum ssl_status st = SSL_OK;
    if (n > 0 && H5Dread(d, mem_type(e->type), H5S_ALL, H5S_ALL, ck->dxpl, out) < 0)
        st = ssl_h5_fail(err, SSL_E_DATA, ck->path, e->name);
    if (st == SSL_OK)
        st = check_crc(d, ck->path, e->name, crc_le(0, out, (size_t)n, ssl_ckpt_type_size(e->type)), err);
    H5Dclose(d);
    return st;
}

enum ssl_status ssl_ckpt_read(struct ssl_ckpt *ck, const struct ssl_ckpt_entry *want, void *out,
                              struct ssl_error *err)
{
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    enum ssl_status st = SSL_OK;
    if (!same_everywhere(ck->comm, want_hash(want)))
        st = ssl_error_set(err, SSL_E_OTHER, "%s: ranks asked for different datasets (%s)", ck->path,
                           want != NULL && want->name != NULL ? want->name : "(null)");
    if (st == SSL_OK) st = ssl_h5_agree_plain(ck->comm, check_want(ck, want, out, err), err);
    if (st == SSL_OK) st = ssl_h5_agree_plain(ck->comm, read_dataset(ck, want, out, err), err);
    ssl_h5_quiet_end(&q);
    return st;
}

static uint32_t name_hash(const char *name)
{
    return name != NULL ? crc_str(0, name) : 0;
}

static enum ssl_status check_attr_name(const struct ssl_ckpt *ck, const char *name, struct ssl_error *err)
{
    enum ssl_status st = SSL_OK;
    if (!same_everywhere(ck->comm, name_hash(name)))
        st = ssl_error_set(err, SSL_E_OTHER, "%s: ranks asked for different attributes", ck->path);
    else if (name == NULL)
        st = ssl_error_set(err, SSL_E_USAGE, "%s: attribute name missing", ck->path);
    return st;
}

enum ssl_status ssl_ckpt_attr_int64(struct ssl_ckpt *ck, const char *name, int64_t *value,
                                    struct ssl_error *err)
{
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    enum ssl_status st = check_attr_name(ck, name, err);
    if (st == SSL_OK) st = ssl_h5_agree_plain(ck->comm, read_int_attr(ck->file, name, ck->path, "root", value, err), err);
    ssl_h5_quiet_end(&q);
    return st;
}

enum ssl_status ssl_ckpt_attr_string(struct ssl_ckpt *ck, const char *name, char **value,
                                     struct ssl_error *err)
{
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    *value = NULL;
    enum ssl_status st = check_attr_name(ck, name, err);
    if (st == SSL_OK) st = ssl_h5_agree_plain(ck->comm, read_string_attr(ck->file, name, ck->path, value, err), err);
    if (st != SSL_OK) {
        free(*value);
        *value = NULL;
    }
    ssl_h5_quiet_end(&q);
    return st;
}

void ssl_ckpt_close(struct ssl_ckpt *ck)
{
    if (ck == NULL) return;
    struct ssl_h5_quiet q;
    ssl_h5_quiet_begin(&q);
    release(ck);
    ssl_h5_quiet_end(&q);
}
