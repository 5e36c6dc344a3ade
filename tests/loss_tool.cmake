# `ssltrain loss` (the ssltrain-loss tool, exec'd by ssltrain) against numpy on h5py-written
# float32 and float64 files; skipped and absent inputs, unknown losses, bad files.
add_test(NAME loss_tool_vs_numpy COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_loss_tool.py
         --ssltrain $<TARGET_FILE:ssltrain> --tmp ${CMAKE_CURRENT_BINARY_DIR}/loss_tool)
set_tests_properties(loss_tool_vs_numpy PROPERTIES LABELS "cli;loss" ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                     TIMEOUT 300 SKIP_RETURN_CODE 77)
# `mpiexec -n P ssltrain loss` at P = 1..4 writes what one process writes (every value and
# gradient within 1e-5), through ScaLAPACK too; loss.per_rank's averaging; the N % P usage
# error and a rank's own bad rows (tests/test_loss_tool_mpi.py).
add_test(NAME loss_tool_mpi COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_loss_tool_mpi.py
         --ssltrain $<TARGET_FILE:ssltrain> --mpiexec ${MPIEXEC_EXECUTABLE}
         --np-flag=${MPIEXEC_NUMPROC_FLAG} --tmp ${CMAKE_CURRENT_BINARY_DIR}/loss_tool_mpi)
set_tests_properties(loss_tool_mpi PROPERTIES LABELS "mpi;loss;cli" ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                     PROCESSORS 2 TIMEOUT 120 SKIP_RETURN_CODE 77)
