# checkpoint tests: io/checkpoint.c (docs/CHECKPOINTS.md).
# Unit test, one process (an MPI singleton: the MPI-IO driver needs MPI_Init): round trip of
# every type and rank, names with dots, attributes, keep/latest/.tmp handling, corruption
# fallback, error messages, HDF5's error printing kept quiet.
ssl_unit_test(NAME test_checkpoint SOURCES test_checkpoint.c LIBS ssl_app LABELS "io;checkpoint" INITS_MPI)

# Collective writes at np 1 and 2, reads at other rank counts (1 and 3) of the same files,
# ordered with fixtures; the h5py check reads the np 2 file independently.
ssl_test_program(test_checkpoint_mpi test_checkpoint_mpi.c mpi_test_util.c)
set(SSL_CKPT_TEST_DIR ${CMAKE_CURRENT_BINARY_DIR}/checkpoint_mpi)
foreach(np 1 2)
  ssl_mpi_test(NAME checkpoint_mpi_write TARGET test_checkpoint_mpi NP ${np} NO_LEAK_CHECK
               ARGS write ${SSL_CKPT_TEST_DIR}/np${np} LABELS mpi checkpoint
               PROPERTIES FIXTURES_SETUP ckpt_np${np})
endforeach()
# reader np, writer np: every reader count differs from the writer's
foreach(pair "1;2" "3;2" "3;1")
  list(GET pair 0 np)
  list(GET pair 1 wnp)
  ssl_mpi_test(NAME checkpoint_mpi_read TARGET test_checkpoint_mpi NP ${np} SUFFIX _from_np${wnp}
               NO_LEAK_CHECK ARGS read ${SSL_CKPT_TEST_DIR}/np${wnp} LABELS mpi checkpoint
               PROPERTIES FIXTURES_REQUIRED ckpt_np${wnp})
endforeach()

# h5py (Debian's python3-h5py) opens the file written by 2 ranks: names, dtypes, shapes,
# values, CRC-32s and attributes, computed independently; exit 77 (skipped) without h5py.
add_test(NAME checkpoint_h5py COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_checkpoint_h5py.py
         ${SSL_CKPT_TEST_DIR}/np2)
set_tests_properties(checkpoint_h5py PROPERTIES LABELS "io;checkpoint" TIMEOUT 120
                     FIXTURES_REQUIRED ckpt_np2 SKIP_RETURN_CODE 77)
