#include "fer/wellbeing.h"

#include "sigpipe_guard.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace fer {

WellbeingMonitor::WellbeingMonitor(const AlertConfig& config, const std::vector<std::string>& class_names)
    : config_(config), class_names_(class_names), negative_(class_names.size(), false) {
  for (const auto& name : config.negative_emotions) {
    const auto it = std::find(class_names.begin(), class_names.end(), name);
    if (it == class_names.end()) throw ConfigError("alert.negative_emotions: '" + name + "' is not a class of the model");
    negative_[it - class_names.begin()] = true;
  }
}

std::optional<WellbeingAlert> WellbeingMonitor::observe(int track, double time_s, int label) {
  if (label < 0 || label >= static_cast<int>(class_names_.size()))
    throw std::invalid_argument("WellbeingMonitor::observe: label " + std::to_string(label) + " out of range");
  if (time_s >= next_forget_s_) forget_idle_tracks(time_s);
  TrackState& s = tracks_[track];
  if (s.counts.empty()) s.counts.assign(class_names_.size(), 0);
  if (!s.window.empty() && time_s < s.window.back().first)
    throw std::invalid_argument("WellbeingMonitor::observe: time went backwards for track " + std::to_string(track));
  s.window.emplace_back(time_s, label);
  ++s.counts[label];
  // The window is (time - window_s, time].
  while (s.window.front().first <= time_s - config_.window_s) {
    --s.counts[s.window.front().second];
    s.window.pop_front();
  }
  int negatives = 0;
  for (std::size_t c = 0; c < negative_.size(); ++c)
    if (negative_[c]) negatives += s.counts[c];
  const double share = static_cast<double>(negatives) / s.window.size();
  if (share <= config_.threshold) {
    s.above_since.reset();
    return std::nullopt;
  }
  if (!s.above_since) s.above_since = time_s;
  if (time_s - *s.above_since < config_.min_duration_s) return std::nullopt;
  if (s.last_alert && time_s - *s.last_alert < config_.cooldown_s) return std::nullopt;
  s.last_alert = time_s;
  WellbeingAlert alert;
  alert.track = track;
  alert.time_s = time_s;
  alert.window_start_s = s.window.front().first;
  alert.above_since_s = *s.above_since;
  alert.observations = static_cast<int>(s.window.size());
  alert.negative_share = share;
  for (int c : s.counts) alert.shares.push_back(static_cast<double>(c) / s.window.size());
  return alert;
}

void WellbeingMonitor::forget_idle_tracks(double now_s) {
  for (auto it = tracks_.begin(); it != tracks_.end();) {
    const TrackState& s = it->second;
    const bool window_passed = s.window.empty() || s.window.back().first <= now_s - config_.window_s;
    const bool cooled_down = !s.last_alert || now_s - *s.last_alert >= config_.cooldown_s;
    it = window_passed && cooled_down ? tracks_.erase(it) : std::next(it);
  }
  next_forget_s_ = now_s + config_.window_s / 2;
}

nlohmann::json WellbeingMonitor::to_json(const WellbeingAlert& a) const {
  nlohmann::json shares = nlohmann::json::object();
  for (std::size_t c = 0; c < class_names_.size(); ++c) shares[class_names_[c]] = a.shares[c];
  return {{"event", "wellbeing_alert"},
          {"time_s", a.time_s},
          {"track", a.track},
          {"window", {{"start_s", a.window_start_s}, {"end_s", a.time_s}, {"observations", a.observations},
                      {"negative_share", a.negative_share}, {"shares", shares}}},
          {"above_threshold_since_s", a.above_since_s},
          {"rule", {{"negative_emotions", config_.negative_emotions}, {"window_s", config_.window_s},
                    {"threshold", config_.threshold}, {"min_duration_s", config_.min_duration_s},
                    {"cooldown_s", config_.cooldown_s}}}};
}

pid_t spawn_with_input(const std::vector<std::string>& argv, const std::string& input) {
  if (argv.empty()) throw std::invalid_argument("spawn_with_input: empty command");
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("cannot create a pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], STDIN_FILENO);  // dup2 clears CLOEXEC on fd 0
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[0]);
  if (rc != 0) {
    close(fds[1]);
    throw std::runtime_error("cannot start alert command '" + argv[0] + "': " + std::strerror(rc));
  }
  {
    const SigpipeGuard guard;  // a command that ignores its input must not kill us
    std::size_t written = 0;
    while (written < input.size()) {
      const ssize_t n = write(fds[1], input.data() + written, input.size() - written);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;  // EPIPE: the command has gone; its exit status tells the rest
      }
      written += static_cast<std::size_t>(n);
    }
    close(fds[1]);
  }
  return pid;
}

std::optional<int> wait_child(pid_t pid, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0 && errno != EINTR) return -1;  // not our child (already reaped)
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace fer
