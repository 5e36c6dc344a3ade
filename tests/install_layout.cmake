# cmake --install into PREFIX, then check the files a module system needs.
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${PREFIX} RESULT_VARIABLE rc
                OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
foreach(f bin/ssltrain bin/ssltrain-loss share/ssltrain/jobs/bench-convnet.yaml share/ssltrain/slurm/README.md
          share/ssltrain/bench/compare-torch share/ssltrain/bench/torch_step.py)
  if(NOT EXISTS ${PREFIX}/${f})
    message(FATAL_ERROR "missing after install: ${f}")
  endif()
endforeach()
execute_process(COMMAND ${PREFIX}/bin/ssltrain --help RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "installed ssltrain --help failed: ${rc}")
endif()
