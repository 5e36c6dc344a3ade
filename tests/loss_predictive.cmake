# predictive loss tests: BYOL, SimSiam and the RDM predictors (src/losses/predictive.c) on the
# fp64 core: central-difference gradients, naive second computations, known values, and the
# global batch through a fake comm.
ssl_unit_test(NAME test_loss_predictive SOURCES test_loss_predictive.c gradcheck.c
              LIBS ssl_core_f64 LABELS "grad;loss")
