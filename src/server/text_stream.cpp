#include "server/text_stream.h"

#include <algorithm>

namespace ilm::server {

size_t count_chars(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

StopScan scan_stop(std::string_view text, const std::vector<std::string>& stop) {
  StopScan r;
  for (const auto& s : stop) r.match = std::min(r.match, text.find(s));
  if (r.match != std::string_view::npos) return r;
  // The earliest start whose tail is a prefix of some stop string; only the last
  // (longest stop - 1) bytes can be one.
  size_t longest = 0;
  for (const auto& s : stop) longest = std::max(longest, s.size());
  const size_t from = longest == 0 ? text.size() : text.size() - std::min(text.size(), longest - 1);
  r.safe = text.size();
  for (size_t p = from; p < text.size(); ++p) {
    const std::string_view tail = text.substr(p);
    const bool prefix = std::any_of(stop.begin(), stop.end(), [&](const std::string& s) {
      return s.size() > tail.size() && std::string_view(s).substr(0, tail.size()) == tail;
    });
    if (prefix) {
      r.safe = p;
      break;
    }
  }
  return r;
}

TextStream::TextStream(const Tokenizer& tok, std::vector<std::string> stop, bool skip_special, int64_t min_tokens,
                       std::vector<TokenId> keep)
    : decoder_(tok, skip_special, std::move(keep)), stop_(std::move(stop)), min_tokens_(min_tokens) {}

std::string StopFilter::feed(const std::string& text, bool final) {
  if (stopped_) return {};
  held_ += text;
  const StopScan scan = scan_stop(held_, stop_);
  std::string out;
  if (scan.match != std::string_view::npos) {
    out = held_.substr(0, scan.match);
    held_.clear();
    stopped_ = true;
  } else if (final) {
    out.swap(held_);
  } else {
    out = held_.substr(0, scan.safe);
    held_.erase(0, scan.safe);
  }
  return out;
}

std::string TextStream::push(TokenId id) {
  last_offset_ = decoded_chars_;
  if (stopped()) return {};
  std::string text = decoder_.push(id);
  decoded_chars_ += count_chars(text);
  if (++pushed_ <= min_tokens_) return text;  // stop strings apply after min_tokens (as vLLM)
  return stop_.feed(text, false);
}

std::string TextStream::finish() {
  if (stopped()) return {};
  std::string text = decoder_.flush();
  decoded_chars_ += count_chars(text);
  return stop_.feed(text, true);
}

}  // namespace ilm::server
