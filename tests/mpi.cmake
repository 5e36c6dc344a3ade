# MPI invariance of the losses and SyncBN (mpi/loss_comm.c): P = 1, 2, 3, 4 ranks compute what
# one process computes on the same global batch (tests/mpi_loss_invariance.c). np > 2 runs
# oversubscribed on a 2-core machine (SSL_MPI_TEST_ENV), so PROCESSORS is capped at 2.
add_executable(mpi_loss_invariance mpi_loss_invariance.c)
target_link_libraries(mpi_loss_invariance PRIVATE ssl_app)
target_compile_options(mpi_loss_invariance PRIVATE -UNDEBUG)
foreach(np 1 2 3 4)
  if(np GREATER 2)
    set(procs 2)
  else()
    set(procs ${np})
  endif()
  add_test(NAME mpi_loss_invariance_np${np}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
                   $<TARGET_FILE:mpi_loss_invariance> ${MPIEXEC_POSTFLAGS})
  set_tests_properties(mpi_loss_invariance_np${np} PROPERTIES ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                       PROCESSORS ${procs} TIMEOUT 120 LABELS "mpi;loss")
endforeach()

# One training step end to end (tests/mpi_step_invariance.c): convnet + projector with SyncBN,
# VICReg over the MPI loss comm, backward, bucketed gradient allreduce (mpi/reduce.c) at
# P = 1..4 equals one process on the global batch (loss, gradients, BN running statistics).
add_executable(mpi_step_invariance mpi_step_invariance.c)
target_link_libraries(mpi_step_invariance PRIVATE ssl_app)
target_compile_options(mpi_step_invariance PRIVATE -UNDEBUG)
foreach(np 1 2 3 4)
  if(np GREATER 2)
    set(procs 2)
  else()
    set(procs ${np})
  endif()
  add_test(NAME mpi_step_invariance_np${np}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
                   $<TARGET_FILE:mpi_step_invariance> ${MPIEXEC_POSTFLAGS})
  set_tests_properties(mpi_step_invariance_np${np} PROPERTIES ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                       PROCESSORS ${procs} TIMEOUT 120 LABELS "mpi;train")
endforeach()

# The replicated eigen-decomposition (mpi/eig_scalapack.c): LAPACK below the threshold,
# ScaLAPACK pdsyevd on a BLACS grid above it, both equal to ssl_linalg_syevd and bitwise the
# same on every rank (tests/mpi_eig_scalapack.c).
add_executable(mpi_eig_scalapack mpi_eig_scalapack.c)
target_link_libraries(mpi_eig_scalapack PRIVATE ssl_app)
target_compile_options(mpi_eig_scalapack PRIVATE -UNDEBUG)
foreach(np 1 2 3 4)
  if(np GREATER 2)
    set(procs 2)
  else()
    set(procs ${np})
  endif()
  add_test(NAME mpi_eig_scalapack_np${np}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
                   $<TARGET_FILE:mpi_eig_scalapack> ${MPIEXEC_POSTFLAGS})
  set_tests_properties(mpi_eig_scalapack_np${np} PROPERTIES ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                       PROCESSORS ${procs} TIMEOUT 120 LABELS "mpi;linalg")
endforeach()

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
