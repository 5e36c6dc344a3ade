# contrastive loss tests: SimCLR NT-Xent, MoCo v2 InfoNCE with a queue (and its update), SwAV with
# Sinkhorn-Knopp (src/losses/contrastive.c) against central differences, naive loops, known
# values and a fake comm simulating 3 ranks, on the fp64 core.
ssl_unit_test(NAME test_loss_contrastive SOURCES test_loss_contrastive.c gradcheck.c LIBS ssl_core_f64 LABELS "grad;loss")
