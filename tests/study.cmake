# study tests: `ssltrain study` (src/cmd_study.c) reproduces the W2 paper's synthetic studies.
# The collapse table at N = 3000, m = 200 is checked against LOSSES-SPEC 1c; every study runs
# with --quick and writes its CSV, Markdown and PNG.
set(SSL_STUDY_DIR ${CMAKE_CURRENT_BINARY_DIR}/study)
add_test(NAME study_collapse_quick
         COMMAND $<TARGET_FILE:ssltrain> study collapse --quick --out ${SSL_STUDY_DIR})
set_tests_properties(study_collapse_quick PROPERTIES LABELS "cli;metrics" ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                     TIMEOUT 120 FIXTURES_SETUP study_collapse PASS_REGULAR_EXPRESSION "\\| 200 \\| 0.9 \\| 19 \\| 199 \\|")
add_test(NAME study_collapse_values
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_study.py --dir ${SSL_STUDY_DIR} --collapse)
set_tests_properties(study_collapse_values PROPERTIES LABELS "cli;metrics" TIMEOUT 60
                     FIXTURES_REQUIRED study_collapse SKIP_RETURN_CODE 77)
add_test(NAME study_all_quick
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_study.py --dir ${SSL_STUDY_DIR}/all
                 --ssltrain $<TARGET_FILE:ssltrain>)
set_tests_properties(study_all_quick PROPERTIES LABELS "cli;metrics" ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                     TIMEOUT 300 SKIP_RETURN_CODE 77)
add_test(NAME study_unknown_name COMMAND $<TARGET_FILE:ssltrain> study nosuch --quick --out ${SSL_STUDY_DIR})
set_tests_properties(study_unknown_name PROPERTIES LABELS "cli" ENVIRONMENT "${SSL_MPI_TEST_ENV}" WILL_FAIL TRUE)
add_test(NAME cli_help_study COMMAND $<TARGET_FILE:ssltrain> study --help)
set_tests_properties(cli_help_study PROPERTIES LABELS cli ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                     PASS_REGULAR_EXPRESSION "usage: ssltrain study")
