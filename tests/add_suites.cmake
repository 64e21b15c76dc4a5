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
string(REPLACE "\n" ";" lines "${listing}")
foreach(line IN LISTS lines)
  if(line MATCHES "^([A-Za-z0-9_/]+)\\.")  # "Suite." starts a suite; its tests are indented
    set(name "${CMAKE_MATCH_1}.*")
    add_test("${name}" bash "${FER_RUN_SUITE}" "${FER_TESTS}" "${CMAKE_MATCH_1}")
    set_tests_properties("${name}" PROPERTIES WORKING_DIRECTORY "${FER_TESTS_WORKDIR}"
                                              SKIP_REGULAR_EXPRESSION "fer-suite: every test skipped")
    list(FIND FER_SERIAL_SUITES "${CMAKE_MATCH_1}" serial)  # (IN_LIST needs a policy this file cannot rely on)
    if(serial GREATER -1)
      set_tests_properties("${name}" PROPERTIES RUN_SERIAL ON)
    endif()
  endif()
endforeach()
