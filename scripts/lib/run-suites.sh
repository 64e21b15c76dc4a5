#!/usr/bin/env bash
# Sourced by the scripts that run the test suite (test.sh, test-libtorch2.sh,
# gpu-build.sh), after the build:
#   run_suites BUILD_DIR [ctest arguments]
# ctest runs $FER_TEST_JOBS suites side by side (default: the core count).
# FER_TEST_JOBS is exported: tests/add_suites.cmake gives each suite run side
# by side cores / jobs threads (OMP_NUM_THREADS).
run_suites() {
  local build=$1; shift
  export FER_TEST_JOBS=${FER_TEST_JOBS:-$(nproc)}
  (cd "$build" && ctest --output-on-failure --timeout 1800 --parallel "$FER_TEST_JOBS" "$@")
}
