# Run by CTest when it reads the tests (fer_test_suites.cmake includes it):
# one CTest entry "Suite.*" per GoogleTest suite of FER_TESTS, listed from the
# binary itself, so a new test or suite needs no CMake change.
execute_process(COMMAND "${FER_TESTS}" --gtest_list_tests
                OUTPUT_VARIABLE listing ERROR_VARIABLE listing_errors RESULT_VARIABLE listing_status TIMEOUT 120)
if(NOT listing_status EQUAL 0)
  # Never zero tests in silence: this entry runs the listing again and fails with its output.
  add_test(fer_tests.ListsItsTests "${FER_TESTS}" --gtest_list_tests)
  return()
endif()
# How suites share the cores, when the scripts say how many run at once
# (FER_TEST_JOBS, scripts/lib/run-suites.sh): each suite run side by side gets
# cores / jobs threads (OMP_NUM_THREADS, which the test binary and the apps it
# starts take): on 2 cores, two suites of two threads each took 102 s where one
# thread each took 81 (OpenMP threads busy-wait). FER_SERIAL_SUITES run alone on
# every core. Without FER_TEST_JOBS (a plain `ctest -j N`) every suite keeps all
# cores.
set(side_threads 0)
if("$ENV{FER_TEST_JOBS}" MATCHES "^[1-9][0-9]*$")
  cmake_host_system_information(RESULT cores QUERY NUMBER_OF_LOGICAL_CORES)
  math(EXPR side_threads "${cores} / $ENV{FER_TEST_JOBS}")
  if(side_threads LESS 1)
    set(side_threads 1)
  endif()
endif()
string(REPLACE "\n" ";" lines "${listing}")
foreach(line IN LISTS lines)
  if(line MATCHES "^([A-Za-z0-9_/]+)\\.")  # "Suite." starts a suite; its tests are indented
    set(name "${CMAKE_MATCH_1}.*")
    add_test("${name}" bash "${FER_RUN_SUITE}" "${FER_TESTS}" "${CMAKE_MATCH_1}")
    set_tests_properties("${name}" PROPERTIES WORKING_DIRECTORY "${FER_TESTS_WORKDIR}"
                                              SKIP_REGULAR_EXPRESSION "fer-suite: every test skipped")
    list(FIND FER_SERIAL_SUITES "${CMAKE_MATCH_1}" serial)  # (IN_LIST needs a policy this file cannot rely on)
    list(FIND FER_LONG_SUITES "${CMAKE_MATCH_1}" long)
    if(serial GREATER -1)
      set_tests_properties("${name}" PROPERTIES RUN_SERIAL ON)
    elseif(side_threads GREATER 0)
      set_tests_properties("${name}" PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=${side_threads}")
    endif()
    if(long GREATER -1)  # started first, so no long suite is left running alone at the end
      set_tests_properties("${name}" PROPERTIES COST 1000)
    endif()
  endif()
endforeach()
