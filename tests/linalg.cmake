# linalg tests: covariance, eigendecomposition, spectral and eigenvector backward, whitening
# transforms (src/linalg.c) against naive loops, defining properties and finite differences, on
# the fp64 core.
ssl_unit_test(NAME test_linalg SOURCES test_linalg.c gradcheck.c LIBS ssl_core_f64 LABELS grad)
