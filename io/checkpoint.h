/* checkpoint.h: a generic store of named arrays and root attributes in HDF5, for resumable
 * training (docs/CHECKPOINTS.md describes the files).
 *
 * What: the caller describes its state as a table of entries (name, element type, rank 0..4,
 * dims, data) plus root attributes (strings and int64s). Names are paths of groups and a
 * dataset: "model/backbone.conv1.weight", "optim/momentum", "state/queue"; a '.' is an
 * ordinary character (PyTorch state_dict names), '/' separates groups, which are created as
 * needed. The library knows nothing about models or optimisers.
 *
 * Why this shape: the trainer's state is a few flat buffers with a table of names
 * (params.h), replicated on every rank, so one table serves both the write and the read, and a
 * checkpoint opens in h5py/h5dump with the trainer's own names.
 *
 * Files: `<dir>/step-XXXXXXXX.h5` (step zero-padded to 8 digits) and `<dir>/latest.h5`, a
 * relative symlink to the newest one. A write goes to `step-XXXXXXXX.h5.tmp` and is renamed
 * only when complete, so a file with a final name is never a partial write. Each dataset
 * carries a `crc32` attribute (zlib CRC-32 of its little-endian bytes), verified on every read
 * and by ssl_ckpt_find_resumable, so a corrupted or truncated file is detected and skipped.
 *
 * Contracts:
 * - Collective functions (marked) are called by every rank of `comm` in the same order with
 *   the same arguments; they return the same status and the same one-line message on every
 *   rank (failures are agreed with MPI_Allreduce, so no rank is left waiting in a collective).
 *   `comm` NULL means this process alone (MPI must be initialised: the MPI-IO driver needs it).
 * - Errors: SSL_E_USAGE for a bad call (bad name, type, rank, reserved attribute),
 *   SSL_E_DATA for a bad file (missing dataset, wrong shape or type, checksum mismatch, not
 *   a checkpoint), SSL_E_OTHER for the system (cannot create, rename, fsync). Messages name
 *   the file and, where there is one, the dataset or attribute. `err` must be clean
 *   (code SSL_OK) on entry.
 * - Nothing is printed: HDF5's automatic error printing is off inside these calls and the
 *   previous setting is restored on return; warnings are returned to the caller.
 * - The directory must be on a file system every rank sees (rank 0 decides, renames and
 *   deletes; the others rely on its view). */
#ifndef SSL_CHECKPOINT_H
#define SSL_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "comm.h"

enum { SSL_CKPT_MAX_RANK = 4, SSL_CKPT_FORMAT_VERSION = 1, SSL_CKPT_PATH_MAX = 4096 };

/* Element types; the file types are little-endian (h5py: float32, float64, int64, uint64,
 * int32, uint8). */
enum ssl_ckpt_type {
    SSL_CKPT_F32,
    SSL_CKPT_F64,
    SSL_CKPT_I64,
    SSL_CKPT_U64,
    SSL_CKPT_I32,
    SSL_CKPT_U8,
};

/* One dataset. name: "group/.../dataset", no leading or trailing '/', no empty, "." or ".."
 * component. rank 0 is a scalar (one element, dims unused). data: rank*dims elements, C order;
 * only rank 0's pointer is read by ssl_ckpt_write (the content is replicated; other ranks may
 * pass NULL). ssl_ckpt_read ignores data. */
struct ssl_ckpt_entry {
    const char *name;
    enum ssl_ckpt_type type;
    int rank;
    int64_t dims[SSL_CKPT_MAX_RANK];
    const void *data;
};

enum ssl_ckpt_attr_kind { SSL_CKPT_ATTR_STRING, SSL_CKPT_ATTR_INT64 };

/* A root attribute: a UTF-8 string (variable length; h5py reads str) or an int64. Reserved
 * names, written by the library: format, format_version, step, n_datasets, checksum. */
struct ssl_ckpt_attr {
    const char *name;
    enum ssl_ckpt_attr_kind kind;
    const char *str; /* SSL_CKPT_ATTR_STRING */
    int64_t i64;     /* SSL_CKPT_ATTR_INT64 */
};

/* Optional: a `description` string attribute on group `name` ("model", "optim/adamw"); the
 * group is created if no dataset lies in it. */
struct ssl_ckpt_group {
    const char *name;
    const char *description;
};

/* Everything one checkpoint holds besides the library's own attributes. */
struct ssl_ckpt_content {
    const struct ssl_ckpt_entry *entries;
    int64_t n_entries;
    const struct ssl_ckpt_attr *attrs;
    int64_t n_attrs;
    const struct ssl_ckpt_group *groups; /* may be NULL */
    int64_t n_groups;
};

/* "<dir>/step-XXXXXXXX.h5" into buf. SSL_E_USAGE if it does not fit or step < 0. */
enum ssl_status ssl_ckpt_path(char *buf, size_t n_bytes, const char *dir, int64_t step,
                              struct ssl_error *err);

/* Collective. Writes `content` as `<dir>/step-XXXXXXXX.h5` (dir is created if missing):
 * 1. rank 0 removes stale `step-*.h5.tmp` and `latest.h5.tmp` left by a crashed write, and
 *    renames step files newer than `step` to `<name>.stale` (an abandoned timeline, e.g. a
 *    corrupt checkpoint resume skipped), so latest.h5 and pruning always see the newest;
 * 2. every rank creates `step-XXXXXXXX.h5.tmp` with the MPI-IO driver, rank 0's data are
 *    written collectively (the others select nothing), flushed and closed;
 * 3. rank 0 fsyncs the file, renames it to the final name, points `latest.h5` at it (a
 *    relative symlink `latest.h5.tmp` renamed over `latest.h5`), fsyncs the directory and
 *    deletes all but the newest `keep` step files (keep <= 0 keeps all);
 * 4. the status is agreed, so every rank returns after the file is complete.
 * An existing file of the same step is replaced atomically. Root attribute `step` = step. */
enum ssl_status ssl_ckpt_write(const char *dir, int64_t step,
                               const struct ssl_ckpt_content *content, int keep,
                               const struct ssl_comm *comm, struct ssl_error *err);

/* The outcome of ssl_ckpt_find_resumable; identical on every rank. */
struct ssl_ckpt_found {
    bool found;                   /* false: no checkpoint at all (a fresh run) */
    int64_t step;                 /* when found */
    char path[SSL_CKPT_PATH_MAX]; /* "<dir>/step-XXXXXXXX.h5" when found */
    int n_rejected;               /* newer files that failed validation */
    char warning[2048];           /* one line per rejected file: "<path>: skipped: <why>" */
};

/* Collective (rank 0 validates, the result is broadcast). The newest step-XXXXXXXX.h5 of dir
 * (by step number: a completed step file is never newer than latest.h5's target, and the
 * scan still works when latest.h5 is lost) that passes ssl_ckpt_validate; each newer file
 * that fails is reported in out->warning. A missing or empty directory is out->found = false
 * and SSL_OK. Step files present but none valid is SSL_E_DATA (starting afresh would silently
 * discard the run; the user decides). */
enum ssl_status ssl_ckpt_find_resumable(const char *dir, const struct ssl_comm *comm,
                                        struct ssl_ckpt_found *out, struct ssl_error *err);

/* Not collective (this process, the default file driver). Checks that path is a complete
 * checkpoint: root `format` = "ssltrain-checkpoint", `format_version` = 1, `n_datasets`
 * equals the datasets present, `step` equals the step in the file name (if it has one), and
 * every dataset's CRC-32 matches its data (the whole file is read). */
enum ssl_status ssl_ckpt_validate(const char *path, struct ssl_error *err);

/* ---- reading --------------------------------------------------------------------------- */

struct ssl_ckpt; /* an open checkpoint (opaque) */

/* Collective. Opens path (MPI-IO driver, read-only) on every rank of comm (any rank count,
 * whatever wrote it), checks format and format_version and lists the datasets. */
enum ssl_status ssl_ckpt_open(struct ssl_ckpt **ck, const char *path, const struct ssl_comm *comm,
                              struct ssl_error *err);

/* Collective. Reads dataset want->name into out (every rank gets the whole array). The type,
 * rank and dims must equal want's exactly (no conversion), and the data must match the
 * stored CRC-32; otherwise SSL_E_DATA, e.g.
 * "ckpt/step-00000100.h5: dataset model/x has shape (3, 4), expected (4, 3)". */
enum ssl_status ssl_ckpt_read(struct ssl_ckpt *ck, const struct ssl_ckpt_entry *want, void *out,
                              struct ssl_error *err);

/* Collective. A root integer attribute as int64. Missing or not an integer: SSL_E_DATA. */
enum ssl_status ssl_ckpt_attr_int64(struct ssl_ckpt *ck, const char *name, int64_t *value,
                                    struct ssl_error *err);
/* Collective. A root string attribute into *value (malloc'd, NUL-terminated; the caller frees
 * it). Missing or not a string: SSL_E_DATA. */
enum ssl_status ssl_ckpt_attr_string(struct ssl_ckpt *ck, const char *name, char **value,
                                     struct ssl_error *err);

/* Not collective. The datasets in the file, sorted by name: name, type, rank and dims (data
 * NULL), valid until ssl_ckpt_close. For reporting missing and unexpected entries. */
int64_t ssl_ckpt_count(const struct ssl_ckpt *ck);
const struct ssl_ckpt_entry *ssl_ckpt_dataset(const struct ssl_ckpt *ck, int64_t i);
/* The entry named `name`, or NULL. */
const struct ssl_ckpt_entry *ssl_ckpt_lookup(const struct ssl_ckpt *ck, const char *name);
/* The path the checkpoint was opened from. */
const char *ssl_ckpt_file(const struct ssl_ckpt *ck);

/* Collective. Closes the file and frees ck (NULL is a no-op on every rank). */
void ssl_ckpt_close(struct ssl_ckpt *ck);

/* "float32", "float64", "int64", "uint64", "int32", "uint8". */
const char *ssl_ckpt_type_name(enum ssl_ckpt_type type);
/* Bytes per element. */
size_t ssl_ckpt_type_size(enum ssl_ckpt_type type);

#endif
