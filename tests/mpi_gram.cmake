# W = (G + eps I)^power of a symmetric matrix held as block rows (mpi/eig_gram.c): the
# replicated LAPACK path and the block-cyclic ScaLAPACK path against references built from
# known factors or defining properties, at P = 1..4 (tests/mpi_eig_gram.c).
ssl_test_program(mpi_eig_gram mpi_eig_gram.c mpi_test_util.c)
ssl_mpi_test(NAME mpi_eig_gram NP 1 2 3 4 LABELS mpi linalg)
