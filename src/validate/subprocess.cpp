#include "validate/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm::validate {

namespace {
int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 255;
}
}  // namespace

Subprocess::Subprocess(const std::vector<std::string>& argv, const std::filesystem::path& stdout_file,
                       const std::filesystem::path& stderr_file) {
  if (argv.empty()) throw Error("subprocess: empty command");
  const int out = ::open(stdout_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) throw Error(fmt::format("{}: cannot open for writing: {}", stdout_file.string(), std::strerror(errno)));
  const int err = ::open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (err < 0) {
    ::close(out);
    throw Error(fmt::format("{}: cannot open for writing: {}", stderr_file.string(), std::strerror(errno)));
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // exec failure is reported through a close-on-exec pipe.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    ::close(out);
    ::close(err);
    throw Error("subprocess: pipe failed");
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    ::dup2(out, 1);
    ::dup2(err, 2);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(args[0], args.data());
    const int e = errno;
    ssize_t w = ::write(fds[1], &e, sizeof e);
    (void)w;
    ::_exit(127);
  }
  ::close(fds[1]);
  ::close(out);
  ::close(err);
  if (pid < 0) {
    ::close(fds[0]);
    throw Error(fmt::format("subprocess: fork failed: {}", std::strerror(errno)));
  }
  int child_errno = 0;
  const ssize_t n = ::read(fds[0], &child_errno, sizeof child_errno);
  ::close(fds[0]);
  pid_ = pid;
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    wait(5);
    throw Error(fmt::format("cannot run {}: {}", argv[0], std::strerror(child_errno)));
  }
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
}

std::optional<int> Subprocess::poll() {
  if (status_ || pid_ <= 0) return status_;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) status_ = decode_status(st);
  return status_;
}

std::optional<int> Subprocess::wait(double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (!poll()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status_;
}

void Subprocess::signal(int sig) {
  if (pid_ > 0 && !poll()) ::kill(pid_, sig);
}

int Subprocess::stop(double grace_s) {
  signal(SIGTERM);
  if (auto st = wait(grace_s)) return *st;
  signal(SIGKILL);
  return wait(10).value_or(255);
}

std::optional<int> run_command(const std::vector<std::string>& argv, const std::filesystem::path& stdout_file,
                               const std::filesystem::path& stderr_file, double timeout_s) {
  Subprocess p(argv, stdout_file, stderr_file);
  if (auto st = p.wait(timeout_s)) return st;
  p.stop(5);
  return std::nullopt;
}

std::string shell_join(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    const bool plain = !a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                         "0123456789-_./:=,+@%") == std::string::npos;
    if (plain) {
      out += a;
    } else {
      out += '\'';
      for (char ch : a) {
        if (ch == '\'')
          out += "'\\''";
        else
          out += ch;
      }
      out += '\'';
    }
  }
  return out;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace ilm::validate
