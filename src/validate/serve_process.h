#pragma once
// `internlm serve` as a child process on a free loopback port, for the API and serving stages.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "validate/subprocess.h"
#include "validate/validate.h"

namespace ilm::validate {

struct ServeProcess {
  std::unique_ptr<Subprocess> proc;
  std::vector<std::string> argv;
  std::string host;
  int port = 0;
  double startup_seconds = 0;
  std::filesystem::path stdout_log, stderr_log;
  std::string url() const;
};

// Starts `internlm serve --model DIR --port 0 ...` with the run's backend, quant and threads plus
// `extra`, and waits for its "listening on http://HOST:PORT" line. Logs go to
// OUT/<name>.stdout.log and OUT/<name>.log. Throws ilm::Error (with the log's tail) when it
// exits or does not listen within api.start_timeout_s.
ServeProcess start_serve(const Context& ctx, const std::string& name, const std::vector<std::string>& extra);

// The last `lines` lines of a file.
std::string tail_lines(const std::filesystem::path& p, int lines);

}  // namespace ilm::validate
