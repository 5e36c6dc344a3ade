# `ssltrain loss` (the ssltrain-loss tool, exec'd by ssltrain) against numpy on h5py-written
# float32 and float64 files; skipped and absent inputs, unknown losses, bad files.
add_test(NAME loss_tool_vs_numpy COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_loss_tool.py
         --ssltrain $<TARGET_FILE:ssltrain> --tmp ${CMAKE_CURRENT_BINARY_DIR}/loss_tool)
set_tests_properties(loss_tool_vs_numpy PROPERTIES LABELS "cli;loss" ENVIRONMENT "${SSL_MPI_TEST_ENV}"
                     TIMEOUT 300 SKIP_RETURN_CODE 77)
