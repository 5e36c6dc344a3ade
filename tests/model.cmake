# Whole-model gradient checks (fp64 core) and model structure.
ssl_unit_test(NAME test_model SOURCES test_model.c gradcheck.c LIBS ssl_core_f64 LABELS grad)
