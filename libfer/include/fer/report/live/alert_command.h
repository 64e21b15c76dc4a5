// The alert command: a program of the user's own that receives each wellbeing
// alert as a JSON line on its standard input (live sessions, fer/report/live/sinks.h).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace fer {

// Starts `argv` (argv[0] found through PATH, no shell) with `input` written to
// its standard input, which is then closed. Returns the child's pid; does not
// wait. A program that exits without reading its input does not kill the
// caller (SIGPIPE is held back). Throws std::runtime_error naming the program
// when it cannot be started.
pid_t spawn_with_input(const std::vector<std::string>& argv, const std::string& input);

// Waits up to `timeout_s` for `pid`; returns its exit status, or nullopt when
// it is still running (it is left running).
std::optional<int> wait_child(pid_t pid, double timeout_s);

}  // namespace fer
