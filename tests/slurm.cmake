# slurm/*.sbatch and slurm/summarize on a one-node SLURM cluster of this machine
# (tests/test_slurm.py, docs/SLURM.md). Installs slurm-wlm and munge from Debian when missing
# (root, apt); skips (77) with the reason only when SLURM cannot be installed or cannot start.
add_test(NAME slurm_scripts
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_slurm.py
                 --ssltrain $<TARGET_FILE:ssltrain> --source ${PROJECT_SOURCE_DIR}
                 --tmp ${CMAKE_CURRENT_BINARY_DIR}/slurm_scripts)
set_tests_properties(slurm_scripts PROPERTIES LABELS "slurm" RUN_SERIAL TRUE TIMEOUT 900
                     SKIP_RETURN_CODE 77 ENVIRONMENT "${SSL_MPI_TEST_ENV}")
