# metrics tests: collapse metrics (src/metrics.c) on the fp64 core.
ssl_unit_test(NAME test_metrics SOURCES test_metrics.c LIBS ssl_core_f64 LABELS metrics)
