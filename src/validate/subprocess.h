#pragma once
// Child processes for the API and serving stages: `internlm serve` and `internlm bench-serve`
// run as the real binaries, their output going to log files in the report folder.
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ilm::validate {

class Subprocess {
 public:
  // Starts argv[0] with argv (no shell); stdout and stderr are appended to the given files.
  // Throws ilm::Error when the files cannot be opened or the program cannot be started.
  Subprocess(const std::vector<std::string>& argv, const std::filesystem::path& stdout_file,
             const std::filesystem::path& stderr_file);
  ~Subprocess();  // kills a child still running
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  // The exit status once the child has exited (128 + signal when killed), else nullopt.
  std::optional<int> poll();
  // Waits up to timeout_s; nullopt on timeout.
  std::optional<int> wait(double timeout_s);
  void signal(int sig);
  // SIGTERM, wait up to grace_s, then SIGKILL; returns the exit status.
  int stop(double grace_s);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Runs a command to completion (killed after timeout_s); returns the exit status or nullopt on
// timeout.
std::optional<int> run_command(const std::vector<std::string>& argv, const std::filesystem::path& stdout_file,
                               const std::filesystem::path& stderr_file, double timeout_s);

// The command line as one shell-quoted string (for reports).
std::string shell_join(const std::vector<std::string>& argv);

// Reads a whole file ("" when it cannot be read).
std::string slurp(const std::filesystem::path& p);

}  // namespace ilm::validate
