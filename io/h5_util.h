/* h5_util.h: the HDF5 helpers every ssltrain HDF5 module shares (checkpoints, embedding dumps,
 * the image dataset, the matrix reader): HDF5's own error printing turned off around our calls,
 * one-line failure messages naming the file, scalar attributes (variable-length UTF-8 strings,
 * integers), link checks, the MPI-IO file access list and the agreement of ranks on one status.
 *
 * Invariants: nothing here prints; every function that can fail records one line
 * "<path>: <what>: <reason>" in a struct ssl_error and returns its code. Only ssl_h5_agree and
 * ssl_h5_agree_plain are collective; everything else is local to the calling process. */
#ifndef SSL_H5_UTIL_H
#define SSL_H5_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <hdf5.h>
#include <mpi.h>

#include "check.h"

/* HDF5 prints its error stack by default; we report one line ourselves instead. The setting is
 * process-wide, so a public entry point saves and turns it off with ssl_h5_quiet_begin and
 * restores it with ssl_h5_quiet_end before returning. */
struct ssl_h5_quiet {
    H5E_auto2_t func;
    void *data;
};

void ssl_h5_quiet_begin(struct ssl_h5_quiet *q);
void ssl_h5_quiet_end(const struct ssl_h5_quiet *q);

/* Records "<path>: <what>: <HDF5's own reason>" as one line (the innermost description on the
 * current error stack, the one that says what went wrong) and returns code. */
enum ssl_status ssl_h5_fail(struct ssl_error *err, enum ssl_status code, const char *path,
                            const char *what);

/* A scalar variable-length UTF-8 string attribute (h5py reads it as str, h5dump prints it).
 * SSL_E_OTHER naming path and the attribute on failure. */
enum ssl_status ssl_h5_write_string_attr(hid_t loc, const char *name, const char *value,
                                         const char *path, struct ssl_error *err);
/* A scalar integer attribute: *value, of memory type mem_type (e.g. H5T_NATIVE_INT64), stored
 * as file_type (e.g. H5T_STD_I64LE). SSL_E_OTHER naming path and the attribute on failure. */
enum ssl_status ssl_h5_write_int_attr(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                                      const void *value, const char *path, struct ssl_error *err);
/* ssl_h5_write_int_attr of an int64 stored as H5T_STD_I64LE. */
enum ssl_status ssl_h5_write_i64_attr(hid_t loc, const char *name, int64_t value, const char *path,
                                      struct ssl_error *err);
/* Whether the open attribute holds exactly one integer, read into *value as an int64. */
bool ssl_h5_read_i64_attr(hid_t attr, int64_t *value);

/* Before opening path: a missing file ("<path>: cannot open: <errno text>"), one HDF5 cannot
 * probe (ssl_h5_fail with what) or one that is not HDF5 ("<path>: not an HDF5 file"), all
 * SSL_E_DATA, found without entering H5Fopen (with MPI-IO, a collective every rank must reach). */
enum ssl_status ssl_h5_check_file(const char *path, const char *what, struct ssl_error *err);

/* True when every component of name exists below loc ("optim/adamw", "/test/images"):
 * H5Lexists fails (rather than returning 0) when an intermediate group is missing. */
bool ssl_h5_link_exists(hid_t loc, const char *name);

/* A file-access list for the MPI-IO driver over comm with collective metadata operations
 * (rank 0 reads metadata and broadcasts it); H5I_INVALID_HID on failure. The caller closes it. */
hid_t ssl_h5_mpio_fapl(MPI_Comm comm);

/* open(path, flags) and fsync: a written file (O_RDONLY) or its directory (O_RDONLY |
 * O_DIRECTORY) on disk before a rename publishes it. SSL_E_OTHER naming path on failure. */
enum ssl_status ssl_h5_fsync_path(const char *path, int flags, struct ssl_error *err);

/* Collective over comm: the status of the lowest failing rank, and its message, on every
 * rank. When some ranks succeeded (the failure is that rank's own), the message starts with
 * "[rank r/P] " so the one line printed names it. SSL_OK when no rank failed. */
enum ssl_status ssl_h5_agree(MPI_Comm comm, enum ssl_status st, struct ssl_error *err);
/* Collective over comm: as ssl_h5_agree, the lowest failing rank's message without the prefix
 * (for messages that already say enough, or are the same on every rank). */
enum ssl_status ssl_h5_agree_plain(MPI_Comm comm, enum ssl_status st, struct ssl_error *err);

#endif
