// How the core library reports while it works: through callbacks its caller
// passes (as whisper.cpp takes a log callback), never through a global logger,
// the terminal or process-wide settings. fer::report supplies the usual ones
// (progress_bars() in fer/report/progress.h); null callbacks keep the core silent.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace fer {

// Receives one log line.
using LogFn = std::function<void(const std::string& message)>;

// The progress of one long loop: advanced after each step, finished once.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  // Advances by `steps` and `items` (items drive the rate, steps the count);
  // `status` describes the moment (e.g. "loss 1.23").
  virtual void advance(std::int64_t steps, std::int64_t items, const std::string& status = "") = 0;
  virtual void finish() = 0;
};

// Makes the sink of a loop of `total` steps named `label`.
using ProgressFactory = std::function<std::unique_ptr<ProgressSink>(std::int64_t total, const std::string& label)>;

}  // namespace fer
