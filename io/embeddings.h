/* embeddings.h: embedding dumps, the HDF5 files `ssltrain dump` and the trainer write and users
 * open in h5py. One file holds one split of a dataset passed through a model:
 *
 *   /h      float32 (N, dh)   backbone features
 *   /z      float32 (N, dz)   projector outputs
 *   /labels int64   (N)       class labels
 *   /index  int64   (N)       dataset index of each row
 *
 * each with a `description` string attribute, plus root attributes: `format`
 * ("ssltrain-embeddings") and `format_version` (1), always written by the library, and the
 * caller's (method, step, epoch, split, config, git_revision, dataset, ...). Strings are
 * variable-length UTF-8 (h5py reads str), integers int64.
 *
 * Layout: chunked by rows, each chunk all columns and about 1 MiB (at most N rows), so an h5py
 * slice `f["z"][a:b]` reads whole contiguous chunks; no compression (float embeddings shrink by
 * 9-18 % at ten times the write time, ../shared/HPC.md 3.3; uncompressed chunks also keep
 * collective writes free of the filter pipeline). A file with N = 0 is contiguous (HDF5 cannot
 * chunk an empty fixed-size dimension). `ssltrain analyze FILE [--dataset /h]` reads these
 * files as they are.
 *
 * Contracts:
 * - ssl_emb_write is collective over `comm` (NULL: this process alone; MPI must be initialised,
 *   the MPI-IO driver needs it): every rank calls it, in rank order each holds one contiguous
 *   block of rows (rank r's block follows rank r-1's; sizes may differ and may be 0), with the
 *   same path, attributes, dh and dz. It returns the same status and the same one-line message
 *   on every rank; no rank is left inside a collective.
 * - Atomic: the data go to "<path>.tmp", which rank 0 fsyncs and renames to path after the
 *   collective close (an existing file of that name is replaced, never half-written). On
 *   failure the .tmp is removed and an existing file at path stays as it was. The directory
 *   must exist and be on a file system every rank sees.
 * - Errors: SSL_E_USAGE for a bad call (dh/dz differing between ranks or < 1, negative rows,
 *   missing data, bad or duplicate attribute names, attributes differing between ranks, a
 *   `format`/`format_version` attribute other than the library's), SSL_E_OTHER for the system
 *   (missing directory, cannot create, write, rename, fsync); on reading SSL_E_DATA for a bad
 *   file, SSL_E_USAGE for a missing one. Messages are one line naming the file (prefixed
 *   "[rank r/P] " when the fault was one rank's only). `err` must be clean on entry.
 * - Nothing is printed: HDF5's automatic error printing is off inside these calls and the
 *   previous setting is restored on return. */
#ifndef SSL_EMBEDDINGS_H
#define SSL_EMBEDDINGS_H

#include <stdbool.h>
#include <stdint.h>

#include "check.h"
#include "comm.h"

#define SSL_EMB_FORMAT "ssltrain-embeddings"
enum { SSL_EMB_FORMAT_VERSION = 1 };

/* A root attribute: a string (str, is_string) or an int64 (i64). name: non-empty, no '/'.
 * `format` and `format_version` are the library's: a caller may pass them only with the
 * library's values (they are then written once), anything else is SSL_E_USAGE. */
struct ssl_emb_attr {
    const char *name;
    const char *str;
    int64_t i64;
    bool is_string;
};

/* This rank's rows: h (rows, dh), z (rows, dz), labels (rows), index (rows), row-major. The
 * pointers may be NULL when rows is 0; dh and dz must be >= 1 and equal on every rank. */
struct ssl_emb_block {
    const float *h, *z;
    const int64_t *labels, *index;
    int64_t rows, dh, dz;
};

/* Collective: writes the dump (see the contracts above). attrs: n_attrs root attributes,
 * identical on every rank (checked). */
enum ssl_status ssl_emb_write(const char *path, const struct ssl_emb_block *local,
                              const struct ssl_emb_attr *attrs, int n_attrs,
                              const struct ssl_comm *comm, struct ssl_error *err);

/* A whole dump in memory, as ssl_emb_read returns it. All pointers are malloc'd and owned
 * (ssl_emb_free releases them); attrs holds every string and integer root attribute
 * (format and format_version included) sorted by name; attributes of other types are left
 * out. */
struct ssl_emb_data {
    float *h, *z;              /* (rows, dh), (rows, dz) */
    int64_t *labels, *index;   /* (rows) */
    int64_t rows, dh, dz;
    struct ssl_emb_attr *attrs; /* (n_attrs) */
    int n_attrs;
};

/* One process, no MPI call (HDF5's default driver): reads the whole file at path into *out for
 * tests and tools; the dump must fit in memory. Checks the format attributes, the four
 * datasets' presence, types (floating point / integer) and shapes. On failure *out is empty
 * (freeing it is still fine). */
enum ssl_status ssl_emb_read(const char *path, struct ssl_emb_data *out, struct ssl_error *err);
/* The attribute called name, or NULL. */
const struct ssl_emb_attr *ssl_emb_find_attr(const struct ssl_emb_data *d, const char *name);
void ssl_emb_free(struct ssl_emb_data *d);

#endif
