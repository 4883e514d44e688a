#include "server/serve_bench_sse.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace ilm::serve_bench {

void SseParser::feed(std::string_view bytes, const Handler& on_data) {
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the \n of a \r\n already ended the line
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      line(pending_, on_data);
      pending_.clear();
    } else {
      pending_.push_back(c);
    }
  }
}

void SseParser::finish(const Handler& on_data) {
  if (!pending_.empty()) {
    line(pending_, on_data);
    pending_.clear();
  }
  line("", on_data);
}

void SseParser::line(std::string_view l, const Handler& on_data) {
  if (l.empty()) {  // end of event
    if (has_data_) on_data(data_);
    data_.clear();
    has_data_ = false;
    return;
  }
  if (l.front() == ':') return;  // comment
  const size_t colon = l.find(':');
  const std::string_view field = l.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : l.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field != "data") return;
  if (has_data_) data_.push_back('\n');
  data_.append(value);
  has_data_ = true;
}

namespace {

std::string text_of_choice(const nlohmann::json& choice, bool chat) {
  const nlohmann::json* v = nullptr;
  if (chat) {
    auto d = choice.find("delta");
    if (d != choice.end() && d->is_object()) {
      auto c = d->find("content");
      if (c != d->end()) v = &*c;
    }
  } else {
    auto c = choice.find("text");
    if (c != choice.end()) v = &*c;
  }
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

}  // namespace

void StreamRecorder::on_data(std::string_view data, double t) {
  if (!error_.empty() || done_) return;
  if (data == "[DONE]") {
    done_ = true;
    return;
  }
  nlohmann::json j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    error_ = fmt::format("invalid JSON in stream: {}", data.substr(0, 200));
    return;
  }
  if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
    error_ = fmt::format("error event in stream: {}", e->dump());
    return;
  }
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    if (auto c = u->find("completion_tokens"); c != u->end() && c->is_number_integer()) {
      r_.output_tokens = c->get<int64_t>();
      r_.usage_reported = true;
    }
    if (auto p = u->find("prompt_tokens"); p != u->end() && p->is_number_integer()) r_.prompt_tokens = p->get<int64_t>();
  }
  auto ch = j.find("choices");
  if (ch == j.end() || !ch->is_array() || ch->empty()) return;
  const nlohmann::json& choice = (*ch)[0];
  if (!choice.is_object()) return;
  ++chunks_with_choices_;
  if (first_choice_ < 0) first_choice_ = t;
  if (auto f = choice.find("finish_reason"); f != choice.end() && f->is_string()) r_.finish_reason = f->get<std::string>();
  const std::string text = text_of_choice(choice, chat_);
  if (text.empty()) return;
  r_.generated_text += text;
  if (r_.token_times.empty()) {
    r_.ttft = t - r_.start;
    r_.has_ttft = true;
  }
  r_.token_times.push_back(t);
}

void StreamRecorder::finish(double t) {
  r_.end = t;
  if (!error_.empty()) {
    r_.ok = false;
    r_.error = error_;
    return;
  }
  if (!done_) {
    r_.ok = false;
    r_.error = "the stream ended without data: [DONE]";
    return;
  }
  if (chunks_with_choices_ == 0) {
    r_.ok = false;
    r_.error = "the stream ended without any chunk with choices";
    return;
  }
  if (!r_.has_ttft) {  // only empty chunks (e.g. an immediate stop): the first chunk is the answer
    r_.ttft = first_choice_ - r_.start;
    r_.has_ttft = true;
  }
  if (!r_.usage_reported) r_.output_tokens = static_cast<int64_t>(r_.token_times.size());
  r_.ok = true;
}

}  // namespace ilm::serve_bench
