# uniformity loss tests
