# Every dependency is a Debian 12 package; scripts/setup installs them.
find_package(PkgConfig REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
pkg_check_modules(OPENBLAS REQUIRED openblas)
pkg_check_modules(YAML REQUIRED IMPORTED_TARGET yaml-0.1)
pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
pkg_check_modules(PNG REQUIRED IMPORTED_TARGET libpng)
pkg_check_modules(CAIRO REQUIRED IMPORTED_TARGET cairo)
find_package(ZLIB REQUIRED)

# LAPACK (dsyevd, dpotrf) comes from OpenBLAS through liblapack.so.3; LAPACKE is the C interface.
find_path(LAPACKE_INCLUDE_DIR lapacke.h REQUIRED)
find_library(LAPACKE_LIBRARY lapacke REQUIRED)

# Debian's scalapack CMake config points at a file that does not exist: find the library.
find_library(SCALAPACK_LIBRARY NAMES scalapack-openmpi REQUIRED)
add_library(ScaLAPACK::ScaLAPACK INTERFACE IMPORTED)
target_link_libraries(ScaLAPACK::ScaLAPACK INTERFACE ${SCALAPACK_LIBRARY} ${LAPACKE_LIBRARY}
                      MPI::MPI_C)
target_include_directories(ScaLAPACK::ScaLAPACK INTERFACE ${LAPACKE_INCLUDE_DIR})

# Parallel HDF5, the openmpi build: refuse the serial one with a clear message.
set(HDF5_PREFER_PARALLEL TRUE)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR "ssltrain needs parallel HDF5 (Debian: libhdf5-openmpi-dev); found a serial "
                      "HDF5 at ${HDF5_INCLUDE_DIRS}. Install libhdf5-openmpi-dev or point "
                      "HDF5_ROOT at a parallel build.")
endif()
if(NOT TARGET HDF5::HDF5)
  add_library(HDF5::HDF5 INTERFACE IMPORTED)
  target_include_directories(HDF5::HDF5 INTERFACE ${HDF5_INCLUDE_DIRS})
  target_link_libraries(HDF5::HDF5 INTERFACE ${HDF5_LIBRARIES})
  target_compile_definitions(HDF5::HDF5 INTERFACE ${HDF5_DEFINITIONS})
endif()
