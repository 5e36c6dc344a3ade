# augmentation tests: each op against a direct computation on small images, keyed determinism
# across batch slicing and thread counts, and the distribution of sampled crops.
ssl_unit_test(NAME test_augment SOURCES test_augment.c LIBS ssl_app OpenMP::OpenMP_C LABELS augment)
