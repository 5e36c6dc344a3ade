# Embedding dumps (io/embeddings.c): collective writes at np 1, 2, 3 (blocks of different
# sizes, an empty rank at np 3; rows, labels, indices and attributes read back by rank 0), the
# failures every rank must agree on (np 1 and 3), an independent h5py check of the np 2 file
# (names, shapes, dtypes, chunking, values, attributes) and `ssltrain analyze` on it.
ssl_test_program(test_embeddings_mpi test_embeddings_mpi.c mpi_test_util.c)
set(SSL_EMB_TEST_DIR ${CMAKE_CURRENT_BINARY_DIR}/embeddings_mpi)
foreach(mode_np "write;1" "write;2" "write;3" "fail;1" "fail;3")
  list(GET mode_np 0 mode)
  list(GET mode_np 1 np)
  # HDF5 must not print its error stack: our one-line messages replace it
  ssl_mpi_test(NAME embeddings_mpi_${mode} TARGET test_embeddings_mpi NP ${np} NO_LEAK_CHECK
               ARGS ${mode} ${SSL_EMB_TEST_DIR}/${mode}-np${np} LABELS mpi io TIMEOUT 60
               PROPERTIES FAIL_REGULAR_EXPRESSION "HDF5-DIAG|check failed")
endforeach()
set_tests_properties(embeddings_mpi_write_np2 PROPERTIES FIXTURES_SETUP emb_np2)

set(SSL_EMB_NP2_FILE ${SSL_EMB_TEST_DIR}/write-np2/emb-np2.h5)
# h5py (Debian's python3-h5py) reads the np 2 file without ssltrain code; 77 = skipped.
add_test(NAME embeddings_h5py COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_embeddings_h5py.py
         ${SSL_EMB_NP2_FILE} 637)
set_tests_properties(embeddings_h5py PROPERTIES LABELS "io" TIMEOUT 60 FIXTURES_REQUIRED emb_np2
                     SKIP_RETURN_CODE 77)
# `ssltrain analyze` reads the dump as it is: /z (the default) and /h.
add_test(NAME embeddings_analyze_z COMMAND $<TARGET_FILE:ssltrain> analyze ${SSL_EMB_NP2_FILE})
add_test(NAME embeddings_analyze_h COMMAND $<TARGET_FILE:ssltrain> analyze ${SSL_EMB_NP2_FILE} --dataset /h --json)
set_tests_properties(embeddings_analyze_z PROPERTIES PASS_REGULAR_EXPRESSION "/z: 637 x 7.*rankme")
set_tests_properties(embeddings_analyze_h PROPERTIES PASS_REGULAR_EXPRESSION "\"n\":637,\"d\":1000")
set_tests_properties(embeddings_analyze_z embeddings_analyze_h PROPERTIES LABELS "io;cli" TIMEOUT 60
                     ENVIRONMENT "${SSL_MPI_TEST_ENV}" FIXTURES_REQUIRED emb_np2)
