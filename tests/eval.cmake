# Evaluation of frozen features (src/eval_knn.c, src/eval_linear.c; docs/EVALUATION.md).
# One process: kNN against a naive implementation, known values, ties and errors; the linear
# probe's gradient (finite differences), standardisation, separable data, errors.
ssl_unit_test(NAME test_eval SOURCES test_eval.c LIBS ssl_app LABELS eval INITS_MPI)

# P = 1..4 ranks give what one process gives on the same global data (tests/mpi_eval.c). np > 2
# runs oversubscribed on a 2-core machine (SSL_MPI_TEST_ENV), so PROCESSORS is capped at 2.
add_executable(mpi_eval mpi_eval.c)
target_link_libraries(mpi_eval PRIVATE ssl_app)
target_compile_options(mpi_eval PRIVATE -UNDEBUG)
foreach(np 1 2 3 4)
  if(np GREATER 2)
    set(procs 2)
  else()
    set(procs ${np})
  endif()
  add_test(NAME mpi_eval_np${np}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS}
                   $<TARGET_FILE:mpi_eval> ${MPIEXEC_POSTFLAGS})
  set_tests_properties(mpi_eval_np${np} PROPERTIES ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                       PROCESSORS ${procs} TIMEOUT 120 LABELS "mpi;eval")
endforeach()
