#pragma once
// `internlm bench-serve`: the progress display while a level runs — one line rewritten in place
// on a terminal, a line every few seconds otherwise (logs, CI).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

namespace ilm::serve_bench {

class Progress {
 public:
  // out: where to draw (stderr); tty: rewrite one line; interval_s: seconds between lines when
  // not a tty; enabled = false draws nothing.
  Progress(std::FILE* out, bool tty, double interval_s, bool enabled = true);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void start(std::string label, int total);          // begins a phase (a level, a scenario step)
  void request_done(bool ok, int64_t output_tokens);  // thread-safe
  void finish();                                      // final line of the phase

  std::string line() const;  // the current status text (also used by the tests)

 private:
  void loop();
  void draw(bool final);

  std::FILE* out_;
  bool tty_, enabled_;
  double interval_s_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false, active_ = false;
  std::string label_;
  int total_ = 0;
  double started_ = 0;
  std::atomic<int> done_{0}, failed_{0};
  std::atomic<int64_t> tokens_{0};
  size_t last_width_ = 0;
};

}  // namespace ilm::serve_bench
