#include "fer/report/environment.h"

#include <torch/torch.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#if FER_WITH_OPENCV
#include <opencv2/core/version.hpp>
#endif
#include <thread>

namespace fer {

#if FER_WITH_OPENCV
constexpr const char* kOpenCvVersion = CV_VERSION;
#else
constexpr const char* kOpenCvVersion = "none (built without OpenCV)";
#endif
namespace {

std::string git_revision() {
  FILE* pipe = popen("git rev-parse --short HEAD 2>/dev/null && git status --porcelain 2>/dev/null | head -1", "r");
  if (!pipe) return "unknown";
  char buf[256];
  std::string rev, dirty;
  if (fgets(buf, sizeof buf, pipe)) rev = buf;
  if (fgets(buf, sizeof buf, pipe)) dirty = "-dirty";
  pclose(pipe);
  while (!rev.empty() && (rev.back() == '\n' || rev.back() == '\r')) rev.pop_back();
  return rev.empty() ? "unknown" : rev + dirty;
}

}  // namespace

nlohmann::json environment_json(const torch::Device& device, int threads, const nlohmann::json& extra) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  nlohmann::json env = {{"libtorch_version", TORCH_VERSION},
                        {"opencv_version", kOpenCvVersion},
                        {"compiler", __VERSION__},
                        {"device", device.str()},
                        {"cuda_available", torch::cuda::is_available()},
                        {"threads", threads},
                        {"hardware_threads", std::thread::hardware_concurrency()},
                        {"git_revision", git_revision()},
                        {"host", host},
                        {"started_utc", when},
                        {"torch_config", torch::show_config()}};
  if (extra.is_object()) env.update(extra);
  return env;
}

}  // namespace fer
