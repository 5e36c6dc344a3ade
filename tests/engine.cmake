# engine tests: the layers (and later the models and losses) of the numeric core.
# test_layers runs against the fp64 core: finite differences (gradcheck.c) and the naive
# references. test_layers_f32 is the same source against the float core that trains, with
# SSL_TEST_REFERENCE_ONLY: the naive references with float tolerances, no finite differences.
# Both use threads to play the ranks of SyncBN.
find_package(Threads REQUIRED)

ssl_unit_test(NAME test_layers SOURCES test_layers.c gradcheck.c LIBS ssl_core_f64 Threads::Threads
              LABELS grad)
ssl_unit_test(NAME test_layers_f32 SOURCES test_layers.c gradcheck.c
              LIBS ssl_core_f32 Threads::Threads LABELS grad)
target_compile_definitions(test_layers_f32 PRIVATE SSL_TEST_REFERENCE_ONLY)
