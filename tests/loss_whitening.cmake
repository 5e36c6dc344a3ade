# whitening loss tests
