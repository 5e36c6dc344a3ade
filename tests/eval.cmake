# Evaluation of frozen features (src/eval_knn.c, src/eval_linear.c; docs/EVALUATION.md).
# One process: kNN against a naive implementation, known values, ties and errors; the linear
# probe's gradient (finite differences), standardisation, separable data, errors.
ssl_unit_test(NAME test_eval SOURCES test_eval.c LIBS ssl_app LABELS eval INITS_MPI)

# P = 1..4 ranks give what one process gives on the same global data (tests/mpi_eval.c). np > 2
# runs oversubscribed on a 2-core machine (SSL_MPI_TEST_ENV), so PROCESSORS is capped at 2.
ssl_test_program(mpi_eval mpi_eval.c)
ssl_mpi_test(NAME mpi_eval NP 1 2 3 4 LABELS mpi eval)
