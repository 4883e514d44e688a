#include "common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include <fmt/format.h>

namespace ilm {

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void write_stderr(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

// "\r<line>\033[K" (+ "\n"): the line drawn over the previous one, rest of the row cleared.
// Appended piece by piece (GCC 12 warns falsely about `literal + std::string`, -Wrestrict).
std::string redraw(const std::string& line, bool newline) {
  std::string s;
  s.reserve(line.size() + 5);
  s.append("\r").append(line).append("\033[K");
  if (newline) s.append("\n");
  return s;
}

// The unit a byte total reads best in: GB from 1 GB, else MB, else kB.
std::pair<double, const char*> byte_unit(uint64_t total) {
  if (total >= 1000000000ull) return {1e9, "GB"};
  if (total >= 1000000ull) return {1e6, "MB"};
  return {1e3, "kB"};
}

}  // namespace

ProgressRenderer::ProgressRenderer(std::string prefix, ProgressSink sink, ProgressClock clock)
    : prefix_(std::move(prefix)),
      sink_(sink ? std::move(sink) : ProgressSink(write_stderr)),
      clock_(clock ? std::move(clock) : ProgressClock(steady_seconds)) {}

void ProgressRenderer::begin(const std::string& phase, uint64_t total, ProgressUnit unit) {
  if (active_) end();  // a phase left open: close it before the next one
  phase_ = phase;
  total_ = total;
  unit_ = unit;
  done_ = 0;
  start_ = clock_();
  active_ = true;
  on_begin();
}

void ProgressRenderer::update(uint64_t done) {
  if (!active_) return;
  done_ = std::min(done, total_);
  on_update();
}

void ProgressRenderer::end() {
  if (!active_) return;
  done_ = total_;
  on_end(clock_() - start_);
  active_ = false;
}

int ProgressRenderer::percent() const {
  if (total_ == 0) return 100;
  return static_cast<int>(static_cast<double>(done_) * 100.0 / static_cast<double>(total_));
}

std::string ProgressRenderer::line(double seconds) const {
  std::string amount;
  if (unit_ == ProgressUnit::Bytes) {
    const auto [scale, name] = byte_unit(total_);
    amount = fmt::format("{:.2f}/{:.2f} {}", static_cast<double>(done_) / scale, static_cast<double>(total_) / scale,
                         name);
  } else {
    amount = fmt::format("{}/{}", done_, total_);
  }
  if (seconds >= 0) return fmt::format("{}: {} {} done in {:.2f} s", prefix_, phase_, amount, seconds);
  return fmt::format("{}: {} {} ({}%)", prefix_, phase_, amount, percent());
}

PlainProgress::PlainProgress(std::string prefix, ProgressSink line_sink, ProgressClock clock)
    : ProgressRenderer(std::move(prefix),
                       line_sink ? std::move(line_sink) : ProgressSink([](const std::string& l) {
                         std::string s(l);
                         s.push_back('\n');
                         write_stderr(s);
                       }),
                       std::move(clock)) {}

void PlainProgress::on_begin() {
  shown_decile_ = 0;
  emit(line());
}

void PlainProgress::on_update() {
  // At most one line per 10% step reached (never the 100% one: the end line says that).
  const int decile = percent() / 10;
  if (decile <= shown_decile_ || decile >= 10) return;
  shown_decile_ = decile;
  emit(line());
}

void PlainProgress::on_end(double seconds) { emit(line(seconds)); }

TerminalProgress::TerminalProgress(std::string prefix, ProgressSink sink, ProgressClock clock)
    : ProgressRenderer(std::move(prefix), std::move(sink), std::move(clock)) {}

TerminalProgress::~TerminalProgress() {
  if (active()) emit("\n");  // interrupted mid-phase (an error): what follows starts a new line
}

void TerminalProgress::on_begin() {
  last_draw_ = now();
  emit(redraw(line(), false));
}

void TerminalProgress::on_update() {
  const double t = now();
  if (t - last_draw_ < kMinInterval) return;
  last_draw_ = t;
  emit(redraw(line(), false));
}

void TerminalProgress::on_end(double seconds) { emit(redraw(line(seconds), true)); }

std::unique_ptr<LoadProgress> make_load_progress(const std::string& prefix, ProgressSink plain_lines) {
  if (::isatty(STDERR_FILENO) != 0) return std::make_unique<TerminalProgress>(prefix);
  return std::make_unique<PlainProgress>(prefix, std::move(plain_lines));
}

}  // namespace ilm
