// Internal: writing into a child's pipe without dying when the child has gone.
#pragma once

#include <signal.h>
#include <time.h>

namespace fer {

// Holds SIGPIPE back on this thread for its lifetime, so a write into the pipe
// of a child that exited early fails with EPIPE instead of killing the process
// (SIGPIPE's default action). A SIGPIPE raised meanwhile is consumed before the
// old mask is restored.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_set_);
  }
  ~SigpipeGuard() {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_set_, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_set_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_set_, old_set_;
};

}  // namespace fer
