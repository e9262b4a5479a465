# Included by cpp_tests/CMakeLists.txt: builds fuzz/ with clang in its own
# tree against the library this build made, and registers one ctest test per
# target fuzz/fuzz_<name>.cpp (label fuzz): its corpus fuzz/corpus/<name>,
# then a short seeded run (fuzz/run.sh). Without clang and libFuzzer the tests
# fail under NYXQ_TEST_REQUIRE_RESOURCES=1 (make test) and are skipped otherwise.
set(NYXQ_FUZZ_SECONDS 3 CACHE STRING "Seconds of seeded fuzzing per target in ctest, after the corpus")
set(NYXQ_FUZZ_BINARY_DIR ${PROJECT_BINARY_DIR}/fuzz)

find_program(NYXQ_CLANGXX NAMES clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14)
set(NYXQ_FUZZ_TOOLCHAIN OFF)
if(NYXQ_CLANGXX)
  set(probe_dir ${PROJECT_BINARY_DIR}/fuzz_probe)
  file(WRITE ${probe_dir}/probe.cpp
    "#include <cstddef>\n#include <cstdint>\n"
    "extern \"C\" int LLVMFuzzerTestOneInput(const uint8_t *, size_t) { return 0; }\n")
  execute_process(COMMAND ${NYXQ_CLANGXX} -fsanitize=fuzzer,address,undefined probe.cpp -o probe
    WORKING_DIRECTORY ${probe_dir} RESULT_VARIABLE probe_result OUTPUT_QUIET ERROR_QUIET)
  if(probe_result EQUAL 0)
    set(NYXQ_FUZZ_TOOLCHAIN ON)
  endif()
endif()

if(NYXQ_FUZZ_TOOLCHAIN)
  include(ExternalProject)
  ExternalProject_Add(nyxq_fuzz_targets
    SOURCE_DIR ${PROJECT_SOURCE_DIR}/fuzz
    BINARY_DIR ${NYXQ_FUZZ_BINARY_DIR}
    CMAKE_ARGS -DCMAKE_CXX_COMPILER=${NYXQ_CLANGXX} -DNYXQ_FUZZ_LIBRARY=${NYXQ_SHARED}
    BUILD_ALWAYS ON
    INSTALL_COMMAND ""
    DEPENDS nyxq_cargo)
else()
  message(STATUS "fuzz: no clang++ with libFuzzer (-fsanitize=fuzzer); the fuzz tests will say so")
endif()

file(GLOB NYXQ_FUZZ_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/fuzz/fuzz_*.cpp)
foreach(source ${NYXQ_FUZZ_SOURCES})
  get_filename_component(target ${source} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" name ${target})
  add_test(NAME fuzz_${name}
    COMMAND ${PROJECT_SOURCE_DIR}/fuzz/run.sh ${NYXQ_FUZZ_BINARY_DIR}/fuzz_${name}
            ${PROJECT_SOURCE_DIR}/fuzz/corpus/${name} ${NYXQ_FUZZ_BINARY_DIR}/work/${name} ${NYXQ_FUZZ_SECONDS})
  set_tests_properties(fuzz_${name} PROPERTIES LABELS fuzz SKIP_RETURN_CODE 77 TIMEOUT 300
    ENVIRONMENT "${NYXQ_TEST_ENV}")
endforeach()
