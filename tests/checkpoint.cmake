# checkpoint tests: io/checkpoint.c (docs/CHECKPOINTS.md).
# Unit test, one process (an MPI singleton: the MPI-IO driver needs MPI_Init): round trip of
# every type and rank, names with dots, attributes, keep/latest/.tmp handling, corruption
# fallback, error messages, HDF5's error printing kept quiet.
ssl_unit_test(NAME test_checkpoint SOURCES test_checkpoint.c LIBS ssl_app LABELS "io;checkpoint" INITS_MPI)

# Collective writes at np 1 and 2, reads at other rank counts (1 and 3) of the same files,
# ordered with fixtures; the h5py check reads the np 2 file independently.
add_executable(test_checkpoint_mpi test_checkpoint_mpi.c)
target_link_libraries(test_checkpoint_mpi PRIVATE ssl_app)
target_compile_options(test_checkpoint_mpi PRIVATE -UNDEBUG)
set(SSL_CKPT_TEST_DIR ${CMAKE_CURRENT_BINARY_DIR}/checkpoint_mpi)
# Open MPI leaks at exit in its own libraries (see ssl_unit_test's INITS_MPI): leak detection
# off so these also run in a sanitizer build; no effect otherwise.
set(SSL_CKPT_MPI_ENV ${SSL_MPI_TEST_ENV} ASAN_OPTIONS=detect_leaks=0)
foreach(np 1 2)
  add_test(NAME checkpoint_mpi_write_np${np}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
                   $<TARGET_FILE:test_checkpoint_mpi> ${MPIEXEC_POSTFLAGS} write ${SSL_CKPT_TEST_DIR}/np${np})
  set_tests_properties(checkpoint_mpi_write_np${np} PROPERTIES ENVIRONMENT "${SSL_CKPT_MPI_ENV}"
                       PROCESSORS ${np} TIMEOUT 120 LABELS "mpi;checkpoint"
                       FIXTURES_SETUP ckpt_np${np})
endforeach()
# reader np, writer np: every reader count differs from the writer's
foreach(pair "1;2" "3;2" "3;1")
  list(GET pair 0 np)
  list(GET pair 1 wnp)
  if(np GREATER 2)
    set(procs 2)
  else()
    set(procs ${np})
  endif()
  add_test(NAME checkpoint_mpi_read_np${np}_from_np${wnp}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
                   $<TARGET_FILE:test_checkpoint_mpi> ${MPIEXEC_POSTFLAGS} read ${SSL_CKPT_TEST_DIR}/np${wnp})
  set_tests_properties(checkpoint_mpi_read_np${np}_from_np${wnp} PROPERTIES
                       ENVIRONMENT "${SSL_CKPT_MPI_ENV}" PROCESSORS ${procs} TIMEOUT 120
                       LABELS "mpi;checkpoint" FIXTURES_REQUIRED ckpt_np${wnp})
endforeach()

# h5py (Debian's python3-h5py) opens the file written by 2 ranks: names, dtypes, shapes,
# values, CRC-32s and attributes, computed independently; exit 77 (skipped) without h5py.
add_test(NAME checkpoint_h5py COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_checkpoint_h5py.py
         ${SSL_CKPT_TEST_DIR}/np2)
set_tests_properties(checkpoint_h5py PROPERTIES LABELS "io;checkpoint" TIMEOUT 120
                     FIXTURES_REQUIRED ckpt_np2 SKIP_RETURN_CODE 77)
