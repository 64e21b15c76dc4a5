// One process per output folder (fer/report/run_lock.h), across processes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "fer/report/run_lock.h"
#include "test_util.h"

namespace {
// Runs `child` in a forked process; returns its exit status (-1: killed by a signal).
template <typename Child>
int run_in_child(Child child) {
  const pid_t pid = fork();
  if (pid == 0) _exit(child());
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
}  // namespace

TEST(RunFolderLock, ASecondProcessIsRefusedNamingTheFolderAndTheHolder) {
  fer_test::TempDir dir;
  const auto folder = (dir.path() / "run").string();
  fer::RunFolderLock held(folder);
  const std::string holder = "pid " + std::to_string(getpid());
  const int status = run_in_child([&] {
    try {
      fer::RunFolderLock second(folder);
      return 1;  // taken while held
    } catch (const fer::RunFolderBusy& e) {
      const std::string message = e.what();
      return message.find(folder) != std::string::npos && message.find(holder) != std::string::npos ? 0 : 2;
    } catch (...) {
      return 3;
    }
  });
  EXPECT_EQ(status, 0) << "1: the second process took the folder; 2: the message lacks the folder or '" << holder
                       << "'; 3: another error";
  // Within one process too: another lock is another holder.
  EXPECT_THROW(fer::RunFolderLock again(folder), fer::RunFolderBusy);
}

TEST(RunFolderLock, AKilledHoldersFolderAndAReleasedOneAreFree) {
  fer_test::TempDir dir;
  const auto folder = (dir.path() / "run").string();
  const int status = run_in_child([&] {
    fer::RunFolderLock held(folder);
    raise(SIGKILL);  // dies holding it, as a killed run does
    return 0;
  });
  EXPECT_EQ(status, -1);
  { fer::RunFolderLock resumed(folder); }  // the OS released the dead holder's lock
  EXPECT_NO_THROW(fer::RunFolderLock after_release(folder));
}
