# redundancy-reduction loss tests: Barlow Twins, VICReg, Zero-CL (src/losses/redundancy.c) on the
# fp64 core: gradient checks, naive references, known values, a fake multi-rank comm.
ssl_unit_test(NAME test_loss_redundancy SOURCES test_loss_redundancy.c gradcheck.c LIBS ssl_core_f64 LABELS "grad;loss")
