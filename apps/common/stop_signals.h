// Preemption of the training apps (fer-train, fer-sweep): SIGTERM, SIGINT and
// SIGUSR1 (what SLURM and Kubernetes send before they kill a job; SLURM's
// --signal sends USR1) ask the run to stop after the batch it is on; it writes
// last.pt with its position in the epoch and the app exits kExitInterrupted.
// The same signal a second time ends the process at once (its default action).
#pragma once

#include <csignal>
#include <string>

namespace fer_app {

// The exit status of a run stopped by one of those signals, its work saved:
// requeue the job with the same command and --resume (docs/training.md).
constexpr int kExitInterrupted = 3;

namespace detail {
inline volatile std::sig_atomic_t stop_signal_received = 0;
extern "C" inline void remember_stop_signal(int signal) { stop_signal_received = signal; }
}  // namespace detail

// Installs the handlers (SA_RESETHAND: a second signal of a kind kills).
inline void install_stop_signals() {
  struct sigaction action {};
  action.sa_handler = detail::remember_stop_signal;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  for (const int signal : {SIGTERM, SIGINT, SIGUSR1}) sigaction(signal, &action, nullptr);
}

inline bool stop_requested() { return detail::stop_signal_received != 0; }

// "SIGTERM" for the signal that asked the run to stop ("" before one did).
inline std::string stop_signal_name() {
  switch (detail::stop_signal_received) {
    case 0: return "";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal " + std::to_string(detail::stop_signal_received);
  }
}

}  // namespace fer_app
