/* version.h: what `ssltrain --version` and every run's first lines report. */
#ifndef SSL_VERSION_H
#define SSL_VERSION_H

#include <stdio.h>

const char *ssl_version_revision(void);
/* ssltrain version and revision, then MPI, BLAS, HDF5, ScaLAPACK and libyaml versions. */
void ssl_version_print(FILE *out);

#endif
