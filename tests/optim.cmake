# optim tests: SGD, LARS (+ clip), AdamW, the warmup/cosine schedule and the EMA, against
# hand-computed updates and PyTorch reference numbers, on the double core.
ssl_unit_test(NAME test_optim SOURCES test_optim.c LIBS ssl_core_f64 LABELS optim)
