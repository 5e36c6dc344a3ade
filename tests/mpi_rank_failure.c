/* mpi_rank_failure.c: a rank that fails takes the whole job down with its message, never a
 * hang. Mode "abort": rank 1 calls ssl_comm_abort (bad input on one rank) while the others wait
 * in a collective. Mode "mpi-error": rank 1 makes an invalid MPI call (a send to a rank that
 * does not exist) on the communicator with ssltrain's error handler. Either way the job must
 * end non-zero, promptly, with "[rank 1/N]" in the output; tests/expect_fail.cmake checks it. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "comm.h"

int main(int argc, char **argv)
{
    struct ssl_comm comm;
    if (ssl_comm_init(&comm, &argc, &argv) != 0) return 1;
    const char *mode = argc > 1 ? argv[1] : "abort";
    if (comm.rank == 1) {
        if (strcmp(mode, "abort") == 0) ssl_comm_abort(&comm, 3, "data/x.bin: truncated (test of a failing rank)");
        int value = 0;
        MPI_Send(&value, 1, MPI_INT, comm.size + 5, 0, comm.world); /* invalid rank */
    }
    int local = 1, total = 0;
    MPI_Allreduce(&local, &total, 1, MPI_INT, MPI_SUM, comm.world); /* the others wait here */
    ssl_comm_finalize(&comm);
    return 0;
}
