# W = (G + eps I)^power of a symmetric matrix held as block rows (mpi/eig_gram.c): the
# replicated LAPACK path and the block-cyclic ScaLAPACK path against references built from
# known factors or defining properties, at P = 1..4 (tests/mpi_eig_gram.c).
add_executable(mpi_eig_gram mpi_eig_gram.c)
target_link_libraries(mpi_eig_gram PRIVATE ssl_app)
target_compile_options(mpi_eig_gram PRIVATE -UNDEBUG)
foreach(np 1 2 3 4)
  if(np GREATER 2)
    set(procs 2)
  else()
    set(procs ${np})
  endif()
  add_test(NAME mpi_eig_gram_np${np}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
                   $<TARGET_FILE:mpi_eig_gram> ${MPIEXEC_POSTFLAGS})
  set_tests_properties(mpi_eig_gram_np${np} PROPERTIES ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                       PROCESSORS ${procs} TIMEOUT 120 LABELS "mpi;linalg")
endforeach()
