# verdict_cc_test(NAME SOURCES... [DEPS targets...])
# One GoogleTest binary per test file, registered with CTest through gtest_discover_tests.
# Tests find their fixtures through VERDICT_TESTDATA_DIR (tests/data, committed with their
# sources noted) and the repository through VERDICT_SOURCE_DIR.
#
# VERDICT_CTEST_PER_BINARY registers each binary as one CTest test instead (its tests run in one
# process). scripts/sanitize.sh sets it: there a process start (LibTorch's libraries under the
# sanitizer runtime) costs seconds, and discovery would run every binary once more at build time.
option(VERDICT_CTEST_PER_BINARY "One CTest test per GoogleTest binary instead of one per test" OFF)

function(verdict_cc_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_definitions(${name} PRIVATE
    VERDICT_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    VERDICT_TESTDATA_DIR="${PROJECT_SOURCE_DIR}/tests/data")
  if(VERDICT_CTEST_PER_BINARY)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES TIMEOUT 1800)
  else()
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 600)
  endif()
endfunction()
