#include "server/generation.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>

#include "server/text_stream.h"
#include "tokenizer/tool_call_parser.h"

namespace ilm::server {

namespace {

class StreamSource final : public EventSource {
 public:
  explicit StreamSource(std::shared_ptr<RequestStream> s) : s_(std::move(s)) {}
  bool next(EngineEvent& ev, std::chrono::milliseconds timeout) override { return s_->next(ev, timeout); }
  void cancel() override { s_->cancel(); }
  int64_t cached_tokens() const override { return s_->cached_tokens(); }

 private:
  std::shared_ptr<RequestStream> s_;
};

double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

// "call_" and 24 random letters and digits, as OpenAI's call ids look.
std::string make_call_id() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return id;
}

}  // namespace

std::unique_ptr<EventSource> wrap(std::shared_ptr<RequestStream> stream) {
  return std::make_unique<StreamSource>(std::move(stream));
}

struct Generation::Choice {
  TextStream text;
  std::optional<ToolCallParser> tools;
  std::optional<StopFilter> content_stop;  // with tools: stop strings apply to the content only
  ChoiceResult result;
  bool done = false;
  std::chrono::steady_clock::time_point first, last;
  bool echoed = false;  // the echoed prompt was sent
};

Generation::Generation(const Tokenizer& tok, const GenerationRequest& req,
                       std::vector<std::unique_ptr<EventSource>> sources)
    : tok_(tok), req_(req), sources_(std::move(sources)) {
  const size_t n = static_cast<size_t>(req.n);
  choices_.reserve(sources_.size() * n);
  // Tool-call markers are decoded as text for the parser, which keeps them out of the content.
  std::vector<TokenId> keep;
  if (req.tool_calls)
    for (const std::string_view m : ToolCallParser::kMarkers)
      if (const auto id = tok.piece_to_id(m)) keep.push_back(*id);
  for (size_t i = 0; i < sources_.size() * n; ++i) {
    // With tools the stop strings are looked for in the content, never in a call's markers or JSON.
    choices_.push_back(Choice{TextStream(tok, req.tool_calls ? std::vector<std::string>{} : req.stop,
                                         req.skip_special_tokens, req.sampling.min_tokens, keep),
                              std::nullopt, std::nullopt, {}, false, {}, {}, false});
    if (req.tool_calls) {
      choices_.back().tools.emplace(req.max_tool_calls, /*constrained=*/req.grammar != nullptr);
      choices_.back().content_stop.emplace(req.stop);
    }
    choices_.back().result.index = static_cast<int>(i);
  }
  open_.assign(sources_.size(), req.n);
  if (req.echo)
    for (size_t k = 0; k < sources_.size() && k < req.prompts.size(); ++k) echoes_.push_back(make_echo(req.prompts[k]));
}

Generation::Echo Generation::make_echo(const std::vector<TokenId>& prompt) const {
  Echo e;
  StreamDecoder dec(tok_, req_.skip_special_tokens);
  for (TokenId id : prompt) {
    if (req_.logprobs >= 0) {
      LogprobEntry entry;
      entry.bytes = tok_.token_bytes(id, /*skip_special=*/false);
      entry.token = take_valid_utf8(entry.bytes, nullptr);
      entry.text_offset = e.chars;
      entry.unconditioned = e.entries.empty();
      e.entries.push_back(std::move(entry));
    }
    const std::string piece = dec.push(id);
    e.chars += count_chars(piece);
    e.text += piece;
  }
  const std::string tail = dec.flush();
  e.chars += count_chars(tail);
  e.text += tail;
  return e;
}

Generation::~Generation() {
  for (auto& s : sources_) s->cancel();
}

LogprobEntry Generation::logprob_entry(const EngineEvent& ev, size_t offset) const {
  // JSON has no infinities; -9999 is what OpenAI-compatible servers report for "impossible".
  auto finite = [](float lp) { return std::isfinite(lp) ? lp : -9999.0f; };
  auto alt = [&](TokenId id, float lp) {
    LogprobAlt a;
    a.bytes = tok_.token_bytes(id, /*skip_special=*/false);
    a.token = take_valid_utf8(a.bytes, nullptr);
    a.logprob = finite(lp);
    return a;
  };
  LogprobEntry e;
  static_cast<LogprobAlt&>(e) = alt(ev.token, ev.logprob);
  e.text_offset = offset;
  for (const auto& t : ev.top) e.top.push_back(alt(t.id, t.logprob));
  return e;
}

// Routes a delta's text through the choice's tool-call parser: content stays text, calls become
// tool-call deltas; a reply that ended by itself after a call finishes with "tool_calls".
void Generation::parse_tool_calls(Choice& c, ChoiceDelta& delta) {
  std::vector<ToolCallEvent> events;
  c.tools->push(delta.text, events);
  const bool ended = !delta.finish_reason.empty();
  if (ended) c.tools->finish(events);
  delta.text.clear();
  auto& calls = c.result.tool_calls;
  // Stop strings apply after min_tokens tokens (as vLLM's), to the content only.
  const bool stops_apply = c.result.completion_tokens > req_.sampling.min_tokens;
  for (auto& e : events) {
    if (c.content_stop->stopped()) break;  // nothing after a stop string
    switch (e.kind) {
      case ToolCallEvent::Kind::Text:
        delta.text += stops_apply ? c.content_stop->feed(e.text, false) : e.text;
        break;
      case ToolCallEvent::Kind::Begin:
        calls.push_back({make_call_id(), e.text, ""});
        delta.tool_calls.push_back({static_cast<int>(calls.size()) - 1, calls.back().id, e.text, ""});
        break;
      case ToolCallEvent::Kind::Args:
        calls.back().arguments += e.text;
        if (delta.tool_calls.empty() || delta.tool_calls.back().index != static_cast<int>(calls.size()) - 1)
          delta.tool_calls.push_back({static_cast<int>(calls.size()) - 1, "", "", ""});
        delta.tool_calls.back().arguments += e.text;
        break;
      case ToolCallEvent::Kind::End:
        break;
    }
  }
  if (ended) delta.text += c.content_stop->feed("", true);
  if (c.content_stop->stopped()) delta.finish_reason = "stop";
  if (delta.finish_reason == "stop" && !calls.empty()) delta.finish_reason = "tool_calls";
}

// Applies one event; false once the client is gone (on_delta said so).
bool Generation::handle(size_t source, EngineEvent& ev, GenerationResult& result,
                        const std::function<bool(ChoiceDelta&&)>& on_delta) {
  if (ev.choice < 0 || ev.choice >= req_.n) return true;  // not ours; the engine never does this
  if (ev.kind == EngineEvent::Kind::PromptToken) {  // scores of the echoed prompt, before any token
    if (source < echoes_.size()) {
      Echo& e = echoes_[source];
      if (e.scored < e.entries.size()) {
        LogprobEntry scored = logprob_entry(ev, e.entries[e.scored].text_offset);
        e.entries[e.scored++] = std::move(scored);
      }
    }
    return true;
  }
  Choice& c = choices_[source * static_cast<size_t>(req_.n) + static_cast<size_t>(ev.choice)];
  if (c.done) return true;  // e.g. Finish("cancelled") after its stop string
  const auto now = std::chrono::steady_clock::now();
  ChoiceDelta delta;
  delta.index = c.result.index;
  size_t offset_shift = 0;  // the echoed prompt's characters come before the completion's
  if (source < echoes_.size()) {
    const Echo& e = echoes_[source];
    offset_shift = e.chars;
    if (!c.echoed) {  // the prompt goes first, in the choice's first delta
      c.echoed = true;
      delta.text = e.text;
      delta.logprobs = e.entries;
    }
  }

  if (ev.kind == EngineEvent::Kind::Token) {
    if (result.time_to_first_token < 0) result.time_to_first_token = seconds(now - start_);
    if (c.result.completion_tokens == 0) c.first = now;
    c.last = now;
    ++c.result.completion_tokens;
    delta.text += c.text.push(ev.token);
    if (req_.logprobs >= 0) delta.logprobs.push_back(logprob_entry(ev, offset_shift + c.text.last_token_offset()));
    if (c.text.stopped()) delta.finish_reason = "stop";
  } else {  // Finish
    if (ev.stop_token) ++c.result.completion_tokens;  // the stop id
    delta.text += c.text.finish();
    delta.finish_reason = c.text.stopped() ? "stop" : ev.finish_reason;
  }

  if (c.tools) parse_tool_calls(c, delta);
  c.result.text += delta.text;
  c.result.logprobs.insert(c.result.logprobs.end(), delta.logprobs.begin(), delta.logprobs.end());
  if (!delta.finish_reason.empty()) {
    c.done = true;
    c.result.finish_reason = delta.finish_reason;
    if (c.result.completion_tokens >= 2)
      c.result.time_per_output_token = seconds(c.last - c.first) / static_cast<double>(c.result.completion_tokens - 1);
    // Every choice of this prompt ended by a stop string: the engine may stop now.
    if (--open_[source] == 0 && ev.kind == EngineEvent::Kind::Token) sources_[source]->cancel();
  }
  if (on_delta && (!delta.text.empty() || !delta.logprobs.empty() || !delta.tool_calls.empty() ||
                   !delta.finish_reason.empty()))
    return on_delta(std::move(delta));
  return true;
}

GenerationResult Generation::run(const std::function<bool(ChoiceDelta&&)>& on_delta,
                                 const std::function<bool()>& client_gone,
                                 std::chrono::steady_clock::time_point start) {
  start_ = start;
  GenerationResult result;
  auto cancel_all = [&] {
    for (auto& s : sources_) s->cancel();
  };
  auto open_sources = [&] {
    size_t k = 0;
    for (int o : open_) k += o > 0 ? 1 : 0;
    return k;
  };
  auto last_check = std::chrono::steady_clock::now();
  while (open_sources() > 0) {
    // One source: block on it. Several: short waits in turn (a stream has no shared wait),
    // about 8 ms per round in all.
    const size_t k = open_sources();
    const auto wait = std::chrono::milliseconds(k == 1 ? 50 : std::max<size_t>(1, 8 / k));
    bool any = false;
    for (size_t s = 0; s < sources_.size(); ++s) {
      EngineEvent ev;
      while (open_[s] > 0 && sources_[s]->next(ev, any ? std::chrono::milliseconds(0) : wait)) {
        any = true;
        if (ev.kind == EngineEvent::Kind::Error) {
          result.error = ev.error.empty() ? "the engine failed" : ev.error;
          cancel_all();
          return result;
        }
        if (!handle(s, ev, result, on_delta)) {
          result.client_gone = true;
          cancel_all();
          return result;
        }
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (client_gone && now - last_check > std::chrono::milliseconds(any ? 100 : 20)) {
      last_check = now;
      if (client_gone()) {
        result.client_gone = true;
        cancel_all();
        return result;
      }
    }
  }
  // Prompt tokens as the request was tokenized (each prompt once, whatever n is).
  for (const auto& p : req_.prompts) result.prompt_tokens += static_cast<int64_t>(p.size());
  for (auto& s : sources_) result.cached_tokens += s->cached_tokens();
  for (auto& c : choices_) {
    result.completion_tokens += c.result.completion_tokens;
    result.choices.push_back(std::move(c.result));
  }
  return result;
}

}  // namespace ilm::server
