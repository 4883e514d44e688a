// Load progress renderers: the plain lines of a scripted load, and the terminal line's \r
// redraws, throttle and final newline.
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "common/progress.h"

namespace ilm {
namespace {

// A scripted load: 2 shards, 1 GB paged in over 20 steps, 7 tensors quantized.
void script(LoadProgress& p) {
  p.begin("mapping shards", 2, ProgressUnit::Count);
  p.update(1);
  p.update(2);
  p.end();
  p.begin("paging in", 1000000000, ProgressUnit::Bytes);
  for (uint64_t i = 1; i <= 20; ++i) p.update(i * 50000000);
  p.end();
  p.begin("quantizing tensors", 7, ProgressUnit::Count);
  for (uint64_t i = 1; i <= 7; ++i) p.update(i);
  p.end();
}

// Advances `step` seconds each time it is read.
struct FakeClock {
  double step = 0.05, t = 0;
  ProgressClock fn() {
    return [this] { return t += step; };
  }
};

TEST(Progress, PlainLinesForPhaseStartEndAndEachTenPercent) {
  std::vector<std::string> lines;
  FakeClock clock;
  PlainProgress p("run", [&](const std::string& l) { lines.push_back(l); }, clock.fn());
  script(p);
  const std::vector<std::string> want = {
      "run: mapping shards 0/2 (0%)",
      "run: mapping shards 1/2 (50%)",
      "run: mapping shards 2/2 done in 0.05 s",
      "run: paging in 0.00/1.00 GB (0%)",
      "run: paging in 0.10/1.00 GB (10%)",
      "run: paging in 0.20/1.00 GB (20%)",
      "run: paging in 0.30/1.00 GB (30%)",
      "run: paging in 0.40/1.00 GB (40%)",
      "run: paging in 0.50/1.00 GB (50%)",
      "run: paging in 0.60/1.00 GB (60%)",
      "run: paging in 0.70/1.00 GB (70%)",
      "run: paging in 0.80/1.00 GB (80%)",
      "run: paging in 0.90/1.00 GB (90%)",
      "run: paging in 1.00/1.00 GB done in 0.05 s",
      "run: quantizing tensors 0/7 (0%)",
      "run: quantizing tensors 1/7 (14%)",
      "run: quantizing tensors 2/7 (28%)",
      "run: quantizing tensors 3/7 (42%)",
      "run: quantizing tensors 4/7 (57%)",
      "run: quantizing tensors 5/7 (71%)",
      "run: quantizing tensors 6/7 (85%)",
      "run: quantizing tensors 7/7 done in 0.05 s",
  };
  EXPECT_EQ(lines, want);
  for (const auto& l : lines) EXPECT_EQ(l.find_first_of("\r\n"), std::string::npos) << l;
}

TEST(Progress, PlainNeverRepeatsADecileAndSmallBytesUseSmallUnits) {
  std::vector<std::string> lines;
  FakeClock clock;
  PlainProgress p("quantize", [&](const std::string& l) { lines.push_back(l); }, clock.fn());
  p.begin("quantizing", 5000000, ProgressUnit::Bytes);  // 5 MB
  for (int i = 0; i < 3; ++i) p.update(600000);           // 12%, three times: one line
  p.update(100000);                                      // going back: no line
  p.update(5000000);                                     // 100%: left to the end line
  p.end();
  p.end();  // a second end is ignored
  p.update(1);  // outside a phase: ignored
  const std::vector<std::string> want = {
      "quantize: quantizing 0.00/5.00 MB (0%)",
      "quantize: quantizing 0.60/5.00 MB (12%)",
      "quantize: quantizing 5.00/5.00 MB done in 0.05 s",
  };
  EXPECT_EQ(lines, want);
}

TEST(Progress, TerminalRewritesOneLineThrottledAndEndsWithNewline) {
  std::string out;
  FakeClock clock{0.06, 0};
  {
    TerminalProgress p("run", [&](const std::string& s) { out += s; }, clock.fn());
    script(p);
  }
  // Every draw starts with \r and clears the rest of the line; each phase ends with \n.
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.front(), '\r');
  EXPECT_EQ(out.back(), '\n');
  size_t newlines = 0, returns = 0;
  for (char c : out) {
    newlines += c == '\n';
    returns += c == '\r';
  }
  EXPECT_EQ(newlines, 3u);  // one per phase, nothing else
  EXPECT_NE(out.find("\rrun: mapping shards 0/2 (0%)\033[K"), std::string::npos) << out;
  EXPECT_NE(out.find("\rrun: mapping shards 2/2 done in "), std::string::npos) << out;
  EXPECT_NE(out.find(" s\033[K\n\rrun: paging in 0.00/1.00 GB (0%)\033[K"), std::string::npos) << out;
  EXPECT_NE(out.find("\rrun: paging in 1.00/1.00 GB done in"), std::string::npos) << out;
  EXPECT_NE(out.find("\rrun: quantizing tensors 7/7 done in"), std::string::npos) << out;
  // 0.06 s per clock read and at most one draw per 0.1 s: about every other one of the 29
  // updates is drawn, plus the 3 begins and 3 ends.
  EXPECT_LT(returns, 3u + 3u + 20u);
  EXPECT_GE(returns, 3u + 3u + 8u);
}

TEST(Progress, TerminalFinishesTheLineWhenDestroyedMidPhase) {
  std::string out;
  FakeClock clock;
  {
    TerminalProgress p("serve", [&](const std::string& s) { out += s; }, clock.fn());
    p.begin("paging in", 100, ProgressUnit::Bytes);
    p.update(50);
  }  // e.g. an exception unwinds the load
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(out.find("done"), std::string::npos) << out;
}

TEST(Progress, MakeLoadProgressIsPlainWhenStderrIsNotATerminal) {
  // Under ctest stderr is a pipe or a file; where it is a terminal this says nothing.
  auto p = make_load_progress("x", [](const std::string&) {});
  ASSERT_NE(p, nullptr);
  if (!isatty(2)) {
    EXPECT_NE(dynamic_cast<PlainProgress*>(p.get()), nullptr);
  }
}

}  // namespace
}  // namespace ilm
