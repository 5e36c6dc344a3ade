/* comm.h: the MPI world of a run: setup with an error handler that turns any MPI error into a
 * message naming the rank and a job-wide abort (never a hang), and teardown.
 * Everything in mpi/ talks through a struct ssl_comm; nothing uses MPI_COMM_WORLD directly. */
#ifndef SSL_COMM_H
#define SSL_COMM_H

#include <stddef.h>

#include <mpi.h>

struct ssl_comm {
    MPI_Comm world; /* a duplicate of MPI_COMM_WORLD with the aborting error handler */
    int rank, size;
};

/* Collective. MPI_Init (if not yet), duplicate the world, install the error handler. */
int ssl_comm_init(struct ssl_comm *comm, int *argc, char ***argv);
/* Collective. Frees the communicator and finalizes MPI. */
void ssl_comm_finalize(struct ssl_comm *comm);
/* Not collective: prints "[rank r/n] msg" and takes the whole job down with `code`. */
_Noreturn void ssl_comm_abort(const struct ssl_comm *comm, int code, const char *msg);
/* MPI_Get_library_version's first line into buf. */
const char *ssl_comm_library(char *buf, size_t n_bytes);

#endif
