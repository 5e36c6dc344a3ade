/* comm.c: MPI setup, the aborting error handler, and the library version. */
#include "comm.h"

#include <stdio.h>
#include <string.h>

static void on_mpi_error(MPI_Comm *comm, int *code, ...)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0, rank = -1, size = 0;
    MPI_Error_string(*code, msg, &len);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    fprintf(stderr, "[rank %d/%d] MPI error: %s\n", rank, size, msg);
    fflush(stderr);
    MPI_Abort(*comm, 1);
}

int ssl_comm_init(struct ssl_comm *comm, int *argc, char ***argv)
{
    int up = 0;
    MPI_Initialized(&up);
    if (!up && MPI_Init(argc, argv) != MPI_SUCCESS) return -1;
    MPI_Errhandler handler;
    MPI_Comm_create_errhandler(on_mpi_error, &handler);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, handler);
    MPI_Comm_dup(MPI_COMM_WORLD, &comm->world);
    MPI_Comm_set_errhandler(comm->world, handler);
    MPI_Errhandler_free(&handler);
    MPI_Comm_rank(comm->world, &comm->rank);
    MPI_Comm_size(comm->world, &comm->size);
    return 0;
}

void ssl_comm_finalize(struct ssl_comm *comm)
{
    MPI_Comm_free(&comm->world);
    MPI_Finalize();
}

_Noreturn void ssl_comm_abort(const struct ssl_comm *comm, int code, const char *msg)
{
    fprintf(stderr, "[rank %d/%d] %s\n", comm->rank, comm->size, msg);
    fflush(stderr);
    MPI_Abort(comm->world, code);
    for (;;) {
    }
}

const char *ssl_comm_library(char *buf, size_t n_bytes)
{
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    version[strcspn(version, ",\n")] = '\0';
    snprintf(buf, n_bytes, "%s", version);
    return buf;
}
