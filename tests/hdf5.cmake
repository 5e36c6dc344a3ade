# hdf5 tests: the HDF5 image dataset (io/dataset_hdf5.c).
# Unit test, one process (an MPI singleton: the MPI-IO driver needs MPI_Init).
ssl_unit_test(NAME test_hdf5_dataset SOURCES test_hdf5_dataset.c LIBS ssl_app LABELS data INITS_MPI)

# Collective reads at odd and even rank counts (STYLE.md 7); rank 1 reads nothing.
add_executable(mpi_hdf5_read mpi_hdf5_read.c)
target_link_libraries(mpi_hdf5_read PRIVATE ssl_app)
target_compile_options(mpi_hdf5_read PRIVATE -UNDEBUG)
foreach(np 1 2 3)
  add_test(NAME mpi_hdf5_read_np${np}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
                   $<TARGET_FILE:mpi_hdf5_read> ${MPIEXEC_POSTFLAGS})
  set_tests_properties(mpi_hdf5_read_np${np} PROPERTIES ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                       PROCESSORS ${np} TIMEOUT 120 LABELS "data;mpi")
endforeach()
