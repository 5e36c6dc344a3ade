/* version.c: the revision baked in at configure time and the libraries' own version strings. */
#include "version.h"

#include <hdf5.h>
#include <yaml.h>

#include "comm.h"
#include "gemm.h"
#include "version_info.h"

const char *ssl_version_revision(void) { return SSL_GIT_REVISION; }

void ssl_version_print(FILE *out)
{
    char mpi[256];
    unsigned h5_major = 0, h5_minor = 0, h5_release = 0;
    H5get_libversion(&h5_major, &h5_minor, &h5_release);
    fprintf(out, "ssltrain %s (revision %s)\n", SSL_VERSION, SSL_GIT_REVISION);
    fprintf(out, "MPI:       %s\n", ssl_comm_library(mpi, sizeof mpi));
    fprintf(out, "BLAS:      %s (kernels %s)\n", ssl_gemm_library(), ssl_gemm_kernels());
    fprintf(out, "HDF5:      %u.%u.%u (parallel)\n", h5_major, h5_minor, h5_release);
    fprintf(out, "ScaLAPACK: linked (Debian scalapack-openmpi)\n");
    fprintf(out, "libyaml:   %s\n", yaml_get_version_string());
}
