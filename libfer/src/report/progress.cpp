#include "fer/report/progress.h"

#include <unistd.h>

#include <cmath>
#include <memory>

namespace fer {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

ProgressFactory progress_bars(const std::string& unit) {
  return [unit](std::int64_t total, const std::string& label) -> std::unique_ptr<ProgressSink> {
    return std::make_unique<ProgressBar>(total, label, unit);
  };
}

ProgressBar::ProgressBar(std::int64_t total, std::string label, std::string unit, std::FILE* out)
    : total_(total), label_(std::move(label)), unit_(std::move(unit)), out_(out), tty_(isatty(fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() { finish(); }

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::advance(std::int64_t steps, std::int64_t items, const std::string& status) {
  done_ += steps;
  items_ += items;
  status_ = status;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ > std::chrono::milliseconds(200) || done_ >= total_) {
      last_draw_ = now;
      draw(false);
    }
  } else {
    const int decile = total_ > 0 ? static_cast<int>(10 * done_ / total_) : 10;
    if (decile > last_decile_ && decile < 10) {
      last_decile_ = decile;
      if (decile > 0) draw(false);
    }
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void ProgressBar::draw(bool final_line) {
  const double elapsed = elapsed_seconds();
  const double rate = elapsed > 0 ? items_ / elapsed : 0.0;
  const double frac = total_ > 0 ? std::min(1.0, double(done_) / total_) : 1.0;
  const double eta = frac > 0 ? elapsed * (1 - frac) / frac : NAN;
  constexpr int width = 24;
  const int filled = static_cast<int>(frac * width);
  std::string bar(filled, '#');
  bar.append(width - filled, '.');
  std::fprintf(out_, "%s%s [%s] %lld/%lld %.1f %s/s %s %s%s%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
               static_cast<long long>(done_), static_cast<long long>(total_), rate, unit_.c_str(),
               final_line ? "in" : "ETA", format_duration(final_line ? elapsed : eta).c_str(),
               status_.empty() ? "" : "  ", status_.c_str());
  if (tty_) std::fprintf(out_, "\033[K");
  if (!tty_ || final_line) std::fprintf(out_, "\n");
  std::fflush(out_);
}

}  // namespace fer
