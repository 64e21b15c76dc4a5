// A progress bar for long loops: count, rate, ETA. On a terminal it redraws one
// line; in a log file (nohup, CI) it prints a line every 10% so logs stay short.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "fer/common/callbacks.h"

namespace fer {

class ProgressBar : public ProgressSink {
 public:
  // `unit` names what is counted in the rate ("img" -> "img/s").
  ProgressBar(std::int64_t total, std::string label, std::string unit = "img", std::FILE* out = stderr);
  ~ProgressBar() override;
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Advances by `steps` and `items` (items drive the rate, steps the bar);
  // `status` is appended (e.g. "loss 1.23").
  void advance(std::int64_t steps, std::int64_t items, const std::string& status = "") override;
  void finish() override;
  double elapsed_seconds() const;

 private:
  void draw(bool final_line);
  std::int64_t total_, done_ = 0, items_ = 0;
  std::string label_, unit_, status_;
  std::FILE* out_;
  bool tty_, finished_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// The core's progress callback drawing a ProgressBar per loop on stderr.
ProgressFactory progress_bars(const std::string& unit = "img");

// "1h02m", "3m05s", "12s"
std::string format_duration(double seconds);

}  // namespace fer
