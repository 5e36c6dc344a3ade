# datasets tests: the in-memory formats (Fashion-MNIST IDX gzip, CIFAR-10/100 binary) and the
# dispatch of io/dataset.c, on files written at test time, plus the installed Fashion-MNIST
# package when present (io/dataset.c, io/dataset_idx.c, io/dataset_cifar.c).
ssl_unit_test(NAME test_datasets SOURCES test_datasets.c LIBS ssl_app LABELS data)
