# hdf5 tests: the HDF5 image dataset (io/dataset_hdf5.c).
# Unit test, one process (an MPI singleton: the MPI-IO driver needs MPI_Init).
ssl_unit_test(NAME test_hdf5_dataset SOURCES test_hdf5_dataset.c LIBS ssl_app LABELS data INITS_MPI)

# Collective reads at odd and even rank counts (STYLE.md 7); rank 1 reads nothing. PROCESSORS is
# the rank count, uncapped.
ssl_test_program(mpi_hdf5_read mpi_hdf5_read.c)
ssl_mpi_test(NAME mpi_hdf5_read NP 1 2 3 MAX_PROCESSORS 3 LABELS data mpi)
