# whitening layer tests: group ZCA whitening (Shuffled-DBN) against its defining properties, an
# independent Newton-Schulz S^-1/2, and finite differences, on the fp64 core.
ssl_unit_test(NAME test_whiten SOURCES test_whiten.c gradcheck.c LIBS ssl_core_f64 LABELS grad)
