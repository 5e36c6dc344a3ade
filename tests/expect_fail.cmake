# Runs CMD (a ;-list), expects exit code CODE and MATCH in its output, and exactly one
# line on stderr (the error line).
execute_process(COMMAND ${CMD} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL ${CODE})
  message(FATAL_ERROR "exit ${rc}, expected ${CODE}\nstdout: ${out}\nstderr: ${err}")
endif()
string(FIND "${out}${err}" "${MATCH}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "output lacks '${MATCH}'\nstdout: ${out}\nstderr: ${err}")
endif()
