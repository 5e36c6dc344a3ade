# The epoch permutation and rank slices (src/sampler.c).
ssl_unit_test(NAME test_sampler SOURCES test_sampler.c LIBS ssl_app LABELS data)
# Sampler + augmentation together: the views of a step at P = 1..4 ranks are bitwise equal.
ssl_unit_test(NAME test_views_ranks SOURCES test_views_ranks.c LIBS ssl_app LABELS data)
