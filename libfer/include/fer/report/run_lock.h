// One process per output folder. fer-train, fer-sweep and fer-live hold an
// exclusive lock on <folder>/.lock while they write there, so a second run
// into the same folder is refused instead of interleaving checkpoints, logs
// and TensorBoard files with the first. The lock is flock(2)'s: the OS
// releases it when the holder dies however it dies, so `--resume` of a killed
// run takes the folder over.
//
//   fer::RunFolderLock lock(run_dir);  // throws RunFolderBusy while another process writes there
#pragma once

#include <stdexcept>
#include <string>

namespace fer {

// Names the folder and the pid of the process holding it.
class RunFolderBusy : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class RunFolderLock {
 public:
  // Creates `folder` when missing; holds the lock until destroyed. Throws
  // RunFolderBusy when another open lock holds it (another process, or this
  // one through another RunFolderLock), std::runtime_error naming the file
  // when the lock file cannot be created.
  explicit RunFolderLock(const std::string& folder);
  ~RunFolderLock();
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace fer
