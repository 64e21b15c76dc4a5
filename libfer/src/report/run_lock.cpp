#include "fer/report/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

namespace fer {
namespace fs = std::filesystem;

namespace {
// The holder's pid as it wrote it, or "unknown" (a holder between open and write).
std::string holder_pid(int fd) {
  char text[32] = {};
  const auto n = pread(fd, text, sizeof text - 1, 0);
  std::string pid(text, n > 0 ? static_cast<std::size_t>(n) : 0);
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid.empty() ? "unknown" : pid;
}
}  // namespace

RunFolderLock::RunFolderLock(const std::string& folder) {
  fs::create_directories(folder);
  const auto path = (fs::path(folder) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot create the run lock " + path + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    const auto pid = holder_pid(fd_);
    ::close(fd_);
    if (error == EWOULDBLOCK)
      throw RunFolderBusy(folder + " is in use by another run (pid " + pid + ", lock " + path +
                          "); wait for it to end, stop it, or choose another folder");
    throw std::runtime_error("cannot lock " + path + ": " + std::strerror(error));
  }
  const auto pid = std::to_string(::getpid()) + "\n";
  // The pid only serves the message above: failing to write it loses nothing.
  [[maybe_unused]] const bool written =
      ::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) == static_cast<ssize_t>(pid.size());
}

RunFolderLock::~RunFolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock; the file stays (removing it would race a new holder)
}

}  // namespace fer
