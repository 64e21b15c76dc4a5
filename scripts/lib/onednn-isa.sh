#!/usr/bin/env bash
# Sourced by the scripts that run the test suite, after the build.
#   onednn_isa_for_tests BUILD_DIR/bin/fer_tests
# Some LibTorch builds' oneDNN computes wrong convolution gradients with its
# AVX-512 kernels (seen: Debian 13's LibTorch 2.6, oneDNN 3.7.2, on an AMD
# EPYC). libfer's start-up check then turns oneDNN off in every process:
# correct, but the suite runs 3-5x slower, past CI's time limit on a 2-core
# machine. oneDNN's AVX2 kernels were right there. So where the test binary's
# own start-up check reports the fault, the tests run with
# ONEDNN_MAX_CPU_ISA=AVX2; the check still runs in each test process under it.

# True when the test binary's start-up check reports the fault (it runs at
# static initialisation, so listing the tests is enough).
_onednn_fault_reported() {
  local report
  report=$("$1" --gtest_list_tests 2>&1 >/dev/null || true)
  [[ $report == *"oneDNN computes wrong"* ]]
}

onednn_isa_for_tests() {
  local tests=$1
  [ -z "${ONEDNN_MAX_CPU_ISA:-}" ] || return 0
  _onednn_fault_reported "$tests" || return 0
  export ONEDNN_MAX_CPU_ISA=AVX2
  if _onednn_fault_reported "$tests"; then
    echo "onednn: this LibTorch's oneDNN is wrong here with its AVX2 kernels too: the tests run without oneDNN (slow)" >&2
    unset ONEDNN_MAX_CPU_ISA
  else
    echo "onednn: this LibTorch's oneDNN is wrong here with its default (AVX-512) kernels and right with AVX2: the tests run with ONEDNN_MAX_CPU_ISA=AVX2" >&2
  fi
}
