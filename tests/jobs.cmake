# The job catalogue (jobs/*.yaml, jobs/README.md). One test per job file:
# `ssltrain train jobs/X.yaml --check` (keys known and in range, method against model and views,
# the batch against ranks and micro-batches, the model's shapes; one process, no dataset, a
# fraction of a second), failing on a non-zero exit.
# tests/check_jobs.py: every catalogue file says what it reproduces, what to expect and how to
# run it, and jobs/README.md lists every file. Label "jobs".
file(GLOB SSL_JOB_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/jobs/*.yaml)
foreach(job_file ${SSL_JOB_FILES})
  get_filename_component(job_name ${job_file} NAME_WE)
  add_test(NAME job_${job_name} COMMAND ssltrain train ${job_file} --check)
  set_tests_properties(job_${job_name} PROPERTIES LABELS "jobs" TIMEOUT 60
                       ENVIRONMENT "${SSL_MPI_TEST_ENV}")
endforeach()

add_test(NAME jobs_documented
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_jobs.py ${PROJECT_SOURCE_DIR}/jobs)
set_tests_properties(jobs_documented PROPERTIES LABELS "jobs" TIMEOUT 60)
