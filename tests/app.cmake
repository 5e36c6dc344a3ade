# The program as a user meets it: --help/--version, exit codes of bad input, and the install
# layout a cluster module would host.
set(SSL_BIN $<TARGET_FILE:ssltrain>)
add_test(NAME cli_help COMMAND ${SSL_BIN} --help)
set_tests_properties(cli_help PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "usage: ssltrain COMMAND")
foreach(cmd bench params)
  add_test(NAME cli_help_${cmd} COMMAND ${SSL_BIN} ${cmd} --help)
  set_tests_properties(cli_help_${cmd} PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "usage: ssltrain ${cmd}")
endforeach()
add_test(NAME cli_version COMMAND ${SSL_BIN} --version)
set_tests_properties(cli_version PROPERTIES LABELS cli ENVIRONMENT "${SSL_MPI_TEST_ENV}"
    PASS_REGULAR_EXPRESSION "revision [0-9a-f]+.*MPI: +Open MPI.*BLAS: +OpenBLAS.*HDF5: +1\\.")
add_test(NAME cli_help_config COMMAND ${SSL_BIN} help config)
set_tests_properties(cli_help_config PROPERTIES LABELS cli ENVIRONMENT "${SSL_MPI_TEST_ENV}"
    PASS_REGULAR_EXPRESSION "optim\\.lr.*model\\.backbone|model\\.backbone.*optim\\.lr")

# Bad input: exit code 2 and a one-line message naming the key / file.
add_test(NAME cli_unknown_key
         COMMAND ${CMAKE_COMMAND} -DCMD=${SSL_BIN}\;bench\;optim.lrr=1 -DCODE=2
                 "-DMATCH=command line: unknown key 'optim.lrr'" -P ${CMAKE_CURRENT_SOURCE_DIR}/expect_fail.cmake)
add_test(NAME cli_missing_job_file
         COMMAND ${CMAKE_COMMAND} -DCMD=${SSL_BIN}\;bench\;no-such-job.yaml -DCODE=2
                 "-DMATCH=no-such-job.yaml" -P ${CMAKE_CURRENT_SOURCE_DIR}/expect_fail.cmake)
add_test(NAME cli_batch_not_divisible
         COMMAND ${CMAKE_COMMAND} -DCMD=${MPIEXEC_EXECUTABLE}\;-n\;3\;${SSL_BIN}\;bench\;data.batch=16 -DCODE=2
                 "-DMATCH=not divisible by the 3 ranks" -P ${CMAKE_CURRENT_SOURCE_DIR}/expect_fail.cmake)
add_test(NAME cli_unknown_command
         COMMAND ${CMAKE_COMMAND} -DCMD=${SSL_BIN}\;frobnicate -DCODE=2 "-DMATCH=unknown command"
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/expect_fail.cmake)
set_tests_properties(cli_unknown_key cli_missing_job_file cli_batch_not_divisible cli_unknown_command
                     PROPERTIES LABELS cli ENVIRONMENT "${SSL_MPI_TEST_ENV}" TIMEOUT 60)

# A small real benchmark run at 2 ranks, as the main job does.
add_test(NAME bench_convnet_np2
         COMMAND ${MPIEXEC_EXECUTABLE} -n 2 ${SSL_BIN} bench model.backbone=convnet data.batch=16
                 model.projector.hidden=64 model.projector.out=64 bench.steps=2)
set_tests_properties(bench_convnet_np2 PROPERTIES LABELS "cli;mpi" ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                     PROCESSORS 2 TIMEOUT 120 PASS_REGULAR_EXPRESSION "images_per_s=[0-9]")

# cmake --install puts the binary, the job catalogue and the slurm templates under a prefix.
add_test(NAME install_layout
         COMMAND ${CMAKE_COMMAND} -DBUILD=${CMAKE_BINARY_DIR} -DPREFIX=${CMAKE_CURRENT_BINARY_DIR}/install-prefix
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/install_layout.cmake)
set_tests_properties(install_layout PROPERTIES LABELS cli TIMEOUT 120)

# Bad data: exit code 3 and one line naming the file (a CIFAR-10 directory whose batch file is
# not a whole number of records).
file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/cifar-broken)
foreach(i 1 2 3 4 5)
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/cifar-broken/data_batch_${i}.bin "not a record")
endforeach()
add_test(NAME cli_bad_data_file
         COMMAND ${CMAKE_COMMAND} -DCMD=${SSL_BIN}\;augment\;data.dataset=cifar10\;data.path=${CMAKE_CURRENT_BINARY_DIR}/cifar-broken\;--out\;${CMAKE_CURRENT_BINARY_DIR}/never.png
                 -DCODE=3 "-DMATCH=cifar-broken/data_batch_1.bin: size 12 bytes is not a multiple"
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/expect_fail.cmake)
set_tests_properties(cli_bad_data_file PROPERTIES LABELS "cli;data" ENVIRONMENT "${SSL_MPI_TEST_ENV}" TIMEOUT 60)

# `ssltrain analyze` against numpy on h5py-written float32 and float64 files; bad files exit 3.
add_test(NAME analyze_vs_numpy COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_analyze.py
         --ssltrain $<TARGET_FILE:ssltrain> --tmp ${CMAKE_CURRENT_BINARY_DIR}/analyze)
set_tests_properties(analyze_vs_numpy PROPERTIES LABELS "cli;metrics" ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                     TIMEOUT 300 SKIP_RETURN_CODE 77)
add_test(NAME cli_help_analyze COMMAND ${SSL_BIN} analyze --help)
set_tests_properties(cli_help_analyze PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "usage: ssltrain analyze")
