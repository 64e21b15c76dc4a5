// `fer-train --nproc N`: torchrun --standalone --nproc_per_node=N for one
// machine, for users without Python. Starts N copies of this program with
// torchrun's variables, waits for them, and, as torchrun does, stops the others
// when one fails.
#pragma once

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fer/distributed/distributed.h"
#include "stop_signals.h"

namespace fer_app {

// argv without `--nproc N` / `--nproc=N`: what each rank runs.
inline std::vector<std::string> args_without_nproc(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--nproc") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0) continue;
    args.push_back(a);
  }
  return args;
}

namespace detail {
inline std::vector<pid_t>& launched() {
  static std::vector<pid_t> pids;
  return pids;
}
// Signals the ranks still running (an exited rank's entry is 0).
extern "C" inline void forward_signal(int signal) {
  for (pid_t pid : launched())
    if (pid > 0) kill(pid, signal);
}

[[noreturn]] inline void exec_rank(const std::vector<std::string>& args, int rank, int nproc, int port, int threads) {
  const auto set = [](const char* name, const std::string& value) { setenv(name, value.c_str(), 1); };
  set("RANK", std::to_string(rank));
  set("LOCAL_RANK", std::to_string(rank));
  set("WORLD_SIZE", std::to_string(nproc));
  set("LOCAL_WORLD_SIZE", std::to_string(nproc));
  set("MASTER_ADDR", "127.0.0.1");
  set("MASTER_PORT", std::to_string(port));
  if (!std::getenv("OMP_NUM_THREADS")) set("OMP_NUM_THREADS", std::to_string(threads));
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv("/proc/self/exe", argv.data());
  std::perror("fer-train --nproc: exec");
  _exit(127);
}

inline int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
}  // namespace detail

// Runs `args` as ranks 0..nproc-1 of a one-machine job. Each rank gets
// OMP_NUM_THREADS = cores / nproc unless it is set (torchrun sets 1); SIGINT,
// SIGTERM and SIGUSR1 are passed on to every rank. Returns 0 when every rank
// succeeds, kExitInterrupted when they stopped on such a signal, else the
// first failing rank's exit code, after SIGTERM (then, 30 s later, SIGKILL) to
// the others.
inline int launch_local_ranks(int nproc, const std::vector<std::string>& args) {
  if (nproc < 1) throw std::runtime_error("--nproc must be at least 1");
  const int port = fer::free_local_port();
  const int threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / nproc);
  std::fprintf(stderr, "fer-train --nproc %d: ranks 0..%d on 127.0.0.1:%d, %s threads each\n", nproc, nproc - 1, port,
               std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : std::to_string(threads).c_str());
  auto& pids = detail::launched();
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("--nproc: fork failed");
    if (pid == 0) detail::exec_rank(args, rank, nproc, port, threads);
    pids.push_back(pid);
  }
  for (const int signal : {SIGINT, SIGTERM, SIGUSR1}) std::signal(signal, detail::forward_signal);

  int result = 0;
  std::size_t running = pids.size();
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      if (std::chrono::steady_clock::now() > stop_deadline) detail::forward_signal(SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    --running;
    const auto it = std::find(pids.begin(), pids.end(), pid);
    const int rank = static_cast<int>(it - pids.begin()), code = detail::exit_code(status);
    *it = 0;
    if (code == kExitInterrupted && result == 0) {  // the ranks stop after the same batch, each saying so
      result = code;
    } else if (code != 0 && (result == 0 || result == kExitInterrupted)) {
      result = code;
      std::fprintf(stderr, "fer-train --nproc: rank %d exited with code %d; stopping the other ranks\n", rank, code);
      detail::forward_signal(SIGTERM);
      stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    }
  }
  return result;
}

}  // namespace fer_app
