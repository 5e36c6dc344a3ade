# MPI invariance of the losses and SyncBN (mpi/loss_comm.c): P = 1, 2, 3, 4 ranks compute what
# one process computes on the same global batch (tests/mpi_loss_invariance.c). np > 2 runs
# oversubscribed on a 2-core machine (SSL_MPI_TEST_ENV), so PROCESSORS is capped at 2.
ssl_test_program(mpi_loss_invariance mpi_loss_invariance.c)
ssl_mpi_test(NAME mpi_loss_invariance NP 1 2 3 4 LABELS mpi loss)

# One training step end to end (tests/mpi_step_invariance.c): convnet + projector with SyncBN,
# VICReg over the MPI loss comm, backward, bucketed gradient allreduce (mpi/reduce.c) at
# P = 1..4 equals one process on the global batch (loss, gradients, BN running statistics).
ssl_test_program(mpi_step_invariance mpi_step_invariance.c)
ssl_mpi_test(NAME mpi_step_invariance NP 1 2 3 4 LABELS mpi train)

# The replicated eigen-decomposition (mpi/eig_scalapack.c): LAPACK below the threshold,
# ScaLAPACK pdsyevd on a BLACS grid above it, both equal to ssl_linalg_syevd and bitwise the
# same on every rank (tests/mpi_eig_scalapack.c).
ssl_test_program(mpi_eig_scalapack mpi_eig_scalapack.c mpi_test_util.c)
ssl_mpi_test(NAME mpi_eig_scalapack NP 1 2 3 4 LABELS mpi linalg)

# A failing rank ends the job with its message and a non-zero exit, never a hang.
add_executable(mpi_rank_failure mpi_rank_failure.c)
target_link_libraries(mpi_rank_failure PRIVATE ssl_app)
add_test(NAME mpi_rank_abort_np3
         COMMAND ${CMAKE_COMMAND} -DCMD=${MPIEXEC_EXECUTABLE}\;${MPIEXEC_NUMPROC_FLAG}\;3\;$<TARGET_FILE:mpi_rank_failure>\;abort
                 -DCODE=3 "-DMATCH=[rank 1/3] data/x.bin: truncated" -P ${CMAKE_CURRENT_SOURCE_DIR}/expect_fail.cmake)
add_test(NAME mpi_rank_mpi_error_np3
         COMMAND ${CMAKE_COMMAND} -DCMD=${MPIEXEC_EXECUTABLE}\;${MPIEXEC_NUMPROC_FLAG}\;3\;$<TARGET_FILE:mpi_rank_failure>\;mpi-error
                 -DCODE=1 "-DMATCH=[rank 1/3] MPI error" -P ${CMAKE_CURRENT_SOURCE_DIR}/expect_fail.cmake)
set_tests_properties(mpi_rank_abort_np3 mpi_rank_mpi_error_np3 PROPERTIES ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                     PROCESSORS 2 TIMEOUT 60 LABELS "mpi")
