# Run at every build (cmake -P): writes version_info.h with the current git revision, touching
# the file only when the text changes so nothing rebuilds needlessly.
execute_process(COMMAND git describe --always --dirty --abbrev=12
                WORKING_DIRECTORY ${SRC} OUTPUT_VARIABLE rev OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET)
if(NOT rev)
  set(rev "unknown")
endif()
set(text "#define SSL_GIT_REVISION \"${rev}\"\n#define SSL_VERSION \"${VERSION}\"\n")
if(EXISTS ${DST})
  file(READ ${DST} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${DST} "${text}")
endif()
