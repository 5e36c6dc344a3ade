# redundancy loss tests
