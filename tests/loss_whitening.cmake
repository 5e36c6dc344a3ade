# whitening loss tests: W-MSE, CW-RGP, Shuffled-DBN and the whitening-MSE comparison
# (src/losses/whitening.c) against central differences, a naive reference written in the test,
# known values and option validation, on the fp64 core.
ssl_unit_test(NAME test_loss_whitening SOURCES test_loss_whitening.c gradcheck.c LIBS ssl_core_f64 LABELS "grad;loss")
