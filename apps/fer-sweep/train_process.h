// fer-sweep --parallel K: each run trains in its own fer-train process (the
// binary beside this one), with cores / K threads and, given --devices, its
// own GPU; its console output goes to <run>/sweep_console.log.
#pragma once

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fer/common/io.h"
#include "fer/config/config.h"
#include "fer/report/train/sweep.h"
#include "stop_signals.h"

namespace fer_app {

class TrainProcesses {
 public:
  // `devices`: CUDA device ids handed out one per running process (empty: none set).
  // `stop_requested`: when it turns true, each running fer-train gets SIGTERM
  // (it stops after its batch, saving its position) and its run throws fer::RunInterrupted.
  TrainProcesses(std::vector<std::string> devices, int threads_each, std::function<bool()> stop_requested)
      : free_(std::move(devices)), threads_(threads_each), stop_requested_(std::move(stop_requested)) {}

  void operator()(const fer::SweepRun& run, bool resume) {
    namespace fs = std::filesystem;
    fs::create_directories(run.dir);
    fer::Config config = run.config;
    config.train.threads = threads_;
    const std::string config_path = (fs::path(run.dir) / "sweep_request.yaml").string();
    fer::write_text_atomic(config_path, fer::to_yaml(config));
    std::vector<std::string> args{train_binary(), "--config", config_path, "--out", run.dir};
    if (resume) args.push_back("--resume");
    const std::string device = take_device();
    int code = 0;
    try {
      code = run_child(args, device, (fs::path(run.dir) / "sweep_console.log").string());
    } catch (...) {
      give_back(device);
      throw;
    }
    give_back(device);
    if (code == kExitInterrupted)
      throw fer::RunInterrupted(run.name + " stopped after a batch; its last.pt holds the position (" + run.dir +
                                "/sweep_console.log)");
    if (code != 0)
      throw std::runtime_error("fer-train exited with code " + std::to_string(code) + " (its output: " + run.dir +
                               "/sweep_console.log)");
  }

 private:
  static std::string train_binary() {
    return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "fer-train").string();
  }

  std::string take_device() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.empty()) return "";
    std::string device = free_.back();
    free_.pop_back();
    return device;
  }
  void give_back(const std::string& device) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!device.empty()) free_.push_back(device);
  }

  // Everything the child needs is built before fork: between fork and exec only
  // async-signal-safe calls, as this process has threads.
  int run_child(const std::vector<std::string>& args, const std::string& device, const std::string& log_path) const {
    std::vector<std::string> env_strings;
    for (char** e = ::environ; *e; ++e) {
      const std::string entry = *e;
      if (entry.rfind("CUDA_VISIBLE_DEVICES=", 0) != 0 || device.empty()) env_strings.push_back(entry);
    }
    if (!device.empty()) env_strings.push_back("CUDA_VISIBLE_DEVICES=" + device);
    std::vector<char*> argv, envp;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0) throw std::runtime_error("cannot write " + log_path);
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // a killed sweep leaves no run training behind it
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(log);
    if (pid < 0) throw std::runtime_error("fork failed for " + args[0]);
    int status = 0;
    for (bool told = false;;) {
      const pid_t done = waitpid(pid, &status, WNOHANG);
      if (done == pid) break;
      if (done < 0 && errno != EINTR) throw std::runtime_error("waitpid failed for " + args[0]);
      if (!told && stop_requested_ && stop_requested_()) {
        kill(pid, SIGTERM);
        told = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::vector<std::string> free_;
  int threads_;
  std::function<bool()> stop_requested_;
  std::mutex mutex_;
};

}  // namespace fer_app
