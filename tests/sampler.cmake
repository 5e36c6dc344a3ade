# The epoch permutation and rank slices (src/sampler.c).
ssl_unit_test(NAME test_sampler SOURCES test_sampler.c LIBS ssl_app LABELS data)
