# `ssltrain train`, `eval` and `dump` end to end on a real Fashion-MNIST subset
# (tests/test_trainer.py; each subcommand its own run directory tree).
set(SSL_TRAINER_TEST ${CMAKE_CURRENT_SOURCE_DIR}/test_trainer.py --ssltrain $<TARGET_FILE:ssltrain>
    --mpiexec ${MPIEXEC_EXECUTABLE} --np-flag=${MPIEXEC_NUMPROC_FLAG})
foreach(np 1 2)
  add_test(NAME train_methods_np${np}
           COMMAND /usr/bin/python3 ${SSL_TRAINER_TEST} methods --np ${np}
                   --tmp ${CMAKE_CURRENT_BINARY_DIR}/train_methods_np${np})
  set_tests_properties(train_methods_np${np} PROPERTIES ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                       PROCESSORS ${np} TIMEOUT 900 SKIP_RETURN_CODE 77 LABELS "mpi;train")
endforeach()
foreach(what resume fallback errors outputs)
  add_test(NAME train_${what}
           COMMAND /usr/bin/python3 ${SSL_TRAINER_TEST} ${what}
                   --tmp ${CMAKE_CURRENT_BINARY_DIR}/train_${what})
  set_tests_properties(train_${what} PROPERTIES ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                       PROCESSORS 2 TIMEOUT 600 SKIP_RETURN_CODE 77 LABELS "mpi;train")
endforeach()

# docs/PYTORCH.md's loading snippet against ssltrain's own features (skipped without torch).
add_test(NAME train_pytorch_load
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_pytorch_load.py
                 --ssltrain $<TARGET_FILE:ssltrain> --mpiexec ${MPIEXEC_EXECUTABLE}
                 --np-flag=${MPIEXEC_NUMPROC_FLAG} --tmp ${CMAKE_CURRENT_BINARY_DIR}/train_pytorch_load)
set_tests_properties(train_pytorch_load PROPERTIES ENVIRONMENT "${SSL_MPI_TEST_ENV}" PROCESSORS 2
                     TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS "mpi;train;torch")
