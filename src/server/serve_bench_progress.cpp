#include "server/serve_bench_progress.h"

#include <chrono>

#include <fmt/format.h>

#include "server/serve_bench_record.h"

namespace ilm::serve_bench {

Progress::Progress(std::FILE* out, bool tty, double interval_s, bool enabled)
    : out_(out), tty_(tty), enabled_(enabled), interval_s_(tty ? 0.25 : interval_s) {
  if (enabled_) thread_ = std::thread([this] { loop(); });
}

Progress::~Progress() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Progress::start(std::string label, int total) {
  std::lock_guard<std::mutex> lock(mu_);
  label_ = std::move(label);
  total_ = total;
  started_ = now_s();
  done_ = 0;
  failed_ = 0;
  tokens_ = 0;
  active_ = true;
}

void Progress::request_done(bool ok, int64_t output_tokens) {
  done_.fetch_add(1);
  if (!ok) failed_.fetch_add(1);
  tokens_.fetch_add(output_tokens);
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!active_) return;
  draw(true);
  active_ = false;
}

std::string Progress::line() const {
  const double elapsed = now_s() - started_;
  const int done = done_.load(), failed = failed_.load();
  const int64_t tokens = tokens_.load();
  std::string s = fmt::format("{}: {}/{} requests", label_, done, total_);
  if (failed > 0) s += fmt::format(" ({} failed)", failed);
  s += fmt::format(", {:.1f} s, {} output tokens", elapsed, tokens);
  if (elapsed > 0 && tokens > 0) s += fmt::format(" ({:.1f} tok/s)", static_cast<double>(tokens) / elapsed);
  return s;
}

void Progress::draw(bool final) {
  if (!enabled_) return;
  const std::string s = line();
  if (tty_) {
    const size_t pad = last_width_ > s.size() ? last_width_ - s.size() : 0;
    fmt::print(out_, "\r{}{}{}", s, std::string(pad, ' '), final ? "\n" : "");
    last_width_ = final ? 0 : s.size();
  } else {
    fmt::print(out_, "{}{}\n", s, final ? " (done)" : "");
  }
  std::fflush(out_);
}

void Progress::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::duration<double>(interval_s_));
    if (stop_) break;
    if (active_) draw(false);
  }
}

}  // namespace ilm::serve_bench
