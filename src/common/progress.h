#pragma once
// Load progress: what a loader reports (phases of k/N shards, x/y bytes, k/N tensors), and
// the two ways it is shown on stderr. The loaders only call the interface (no printing in
// model or I/O code); the commands pick the renderer:
//   terminal (stderr is a tty): one line rewritten in place with \r, at most ~10 times a
//            second, finished with a newline at each phase's end;
//   plain    (a pipe or a file): one line at each phase's start and end, and at most one
//            line per 10% in between.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace ilm {

enum class ProgressUnit { Count, Bytes };

// Calls come from the loading thread, one phase at a time: begin, update*, end.
class LoadProgress {
 public:
  virtual ~LoadProgress() = default;
  // A phase starts: e.g. "mapping shards" (total: shards), "paging in" (total: bytes),
  // "quantizing tensors" (total: tensors).
  virtual void begin(const std::string& phase, uint64_t total, ProgressUnit unit) = 0;
  // `done` units of the phase so far; cheap enough to call per tensor or per chunk.
  virtual void update(uint64_t done) = 0;
  // The phase is complete (shown as done = total).
  virtual void end() = 0;
};

// Seconds on a monotonic clock (tests pass a scripted one).
using ProgressClock = std::function<double()>;
// Where a renderer's text goes (default: stderr, flushed).
using ProgressSink = std::function<void(const std::string&)>;

// What both renderers share: the current phase, its timing and its text.
class ProgressRenderer : public LoadProgress {
 public:
  ProgressRenderer(std::string prefix, ProgressSink sink, ProgressClock clock);
  void begin(const std::string& phase, uint64_t total, ProgressUnit unit) override;
  void update(uint64_t done) override;
  void end() override;

 protected:
  virtual void on_begin() = 0;
  virtual void on_update() = 0;
  virtual void on_end(double seconds) = 0;
  // "<prefix>: <phase> 3/7 (42%)", "<prefix>: <phase> 1.20/13.40 GB (8%)"; with `seconds`:
  // "<prefix>: <phase> 7/7 done in 0.41 s".
  std::string line(double seconds = -1) const;
  int percent() const;
  double now() const { return clock_(); }
  void emit(const std::string& text) const { sink_(text); }
  bool active() const { return active_; }

 private:
  std::string prefix_;
  ProgressSink sink_;
  ProgressClock clock_;
  std::string phase_;
  ProgressUnit unit_ = ProgressUnit::Count;
  uint64_t total_ = 0, done_ = 0;
  double start_ = 0;
  bool active_ = false;
};

// One line per phase start and end, and at most one per 10% in between. The sink gets each
// line without its '\n' (the default sink writes it to stderr with one).
class PlainProgress final : public ProgressRenderer {
 public:
  explicit PlainProgress(std::string prefix, ProgressSink line_sink = {}, ProgressClock clock = {});

 private:
  void on_begin() override;
  void on_update() override;
  void on_end(double seconds) override;
  int shown_decile_ = 0;
};

// One line redrawn with "\r...\033[K", at most every 0.1 s, ended with '\n' at each phase's
// end (and on destruction mid-phase, so an error message starts on its own line).
class TerminalProgress final : public ProgressRenderer {
 public:
  explicit TerminalProgress(std::string prefix, ProgressSink sink = {}, ProgressClock clock = {});
  ~TerminalProgress() override;
  TerminalProgress(const TerminalProgress&) = delete;
  TerminalProgress& operator=(const TerminalProgress&) = delete;

  static constexpr double kMinInterval = 0.1;

 private:
  void on_begin() override;
  void on_update() override;
  void on_end(double seconds) override;
  double last_draw_ = -1;
};

// TerminalProgress on stderr when stderr is a terminal, else PlainProgress; the plain lines go
// to `plain_lines` where given (e.g. a logger), else to stderr.
std::unique_ptr<LoadProgress> make_load_progress(const std::string& prefix, ProgressSink plain_lines = {});

}  // namespace ilm
