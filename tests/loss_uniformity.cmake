# uniformity loss tests: W2 (both eigen routes), Wang & Isola uniformity and alignment
# (src/losses/uniformity.c) against central differences, naive loops, the metrics of
# src/metrics.c, known values and a fake 3-rank comm, on the fp64 core.
ssl_unit_test(NAME test_loss_uniformity SOURCES test_loss_uniformity.c gradcheck.c
              LIBS ssl_core_f64 LABELS "grad;loss")
