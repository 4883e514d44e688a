// `internlm run`: generate from a prompt, streaming the text to stdout and a stats line to stderr.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <climits>
#include <cstdio>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "common/progress.h"
#include "common/error.h"
#include "runtime/generator.h"
#include "runtime/loaded_model.h"
#include "runtime/tensor_parallel.h"
#include "tokenizer/chat_template.h"

namespace ilm::cli {

namespace {

struct RunArgs {
  ModelArgs model;
  std::string prompt, prompt_file, system;
  bool chat = false, quiet = false;
  bool has_prompt = false, has_prompt_file = false;  // given at all (--prompt "" is a prompt: BOS only)
  int64_t max_tokens = 256, max_model_len = 0;
  std::string kv_dtype = "f32";
  SamplingParams sampling;
};

// Sampling defaults come from generation_config.json, as in Hugging Face generate(); any flag
// given on the command line wins.
SamplingParams sampling_from(const GenerationConfig& gen, const CLI::App& cmd, SamplingParams s) {
  const bool do_sample = gen.do_sample.value_or(false);
  if (!cmd.count("--temperature")) s.temperature = do_sample ? static_cast<float>(gen.temperature.value_or(1.0)) : 0.0f;
  if (!cmd.count("--top-p") && do_sample && gen.top_p) s.top_p = static_cast<float>(*gen.top_p);
  // transformers' GenerationConfig defaults top_k to 50 when the file does not set it.
  if (!cmd.count("--top-k") && do_sample)
    s.top_k = static_cast<int32_t>(std::clamp<int64_t>(gen.top_k.value_or(50), 0, INT32_MAX));
  if (!cmd.count("--repetition-penalty") && gen.repetition_penalty)
    s.repetition_penalty = static_cast<float>(*gen.repetition_penalty);
  return s;
}

void run(const RunArgs& a, const CLI::App& cmd) {
  if (a.has_prompt == a.has_prompt_file) throw Error("give exactly one of --prompt or --prompt-file");
  const std::string text = a.has_prompt ? a.prompt : read_text_file(a.prompt_file);
  const DType kv_dtype = parse_kv_cache_dtype_arg(a.kv_dtype);

  // Load progress on stderr: a line redrawn in place on a terminal, plain lines otherwise.
  const std::unique_ptr<LoadProgress> progress = a.quiet ? nullptr : make_load_progress("run");
  LoadedModel m = a.model.load(progress.get());
  if (m.follower()) return follow(*m.lm, *m.comm);  // --tp: rank 0 tokenizes, samples and prints
  std::vector<TokenId> prompt;
  if (a.chat) {
    std::vector<ChatMessage> msgs;
    if (!a.system.empty()) msgs.push_back({"system", a.system});
    msgs.push_back({"user", text});
    prompt = encode_chat(*m.tokenizer, msgs, /*add_generation_prompt=*/true);
  } else {
    if (!a.system.empty()) throw Error("--system needs --chat");
    prompt = m.tokenizer->encode(text, /*add_special=*/true);
  }

  GenerateOptions opts;
  opts.max_tokens = a.max_tokens;
  opts.sampling = sampling_from(m.generation, cmd, a.sampling);
  opts.stop_ids = m.stop_ids();
  opts.context_limit = a.max_model_len;
  opts.kv_dtype = kv_dtype;
  opts.sample_vocab = m.tokenizer->vocab_size();

  // Chat replies hide special tokens, as the official chat() decodes with skip_special_tokens.
  StreamDecoder decoder(*m.tokenizer, /*skip_special=*/a.chat);
  auto emit = [](const std::string& s) {
    if (s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  };
  GenerateResult r = generate(*m.lm, prompt, opts, [&](TokenId id) {
    emit(decoder.push(id));
    return true;
  });
  emit(decoder.flush());
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!a.quiet)
    std::fprintf(stderr,
                 "[stats] prompt tokens: %lld, completion tokens: %lld, prefill: %.2f tok/s, "
                 "decode: %.2f tok/s, finish: %s, backend: %s, threads: %d\n",
                 static_cast<long long>(r.prompt_tokens), static_cast<long long>(r.completion_tokens),
                 r.prefill_tokens_per_second(), r.decode_tokens_per_second(),
                 r.finish_reason.c_str(), std::string(m.backend->name()).c_str(), m.backend->threads());
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt (streams to stdout)");
  args->model.add_to(*cmd);
  args->model.add_tp_to(*cmd);
  CLI::Option* prompt = cmd->add_option("--prompt,-p", args->prompt, "Prompt text (\"\": BOS only)");
  CLI::Option* prompt_file = cmd->add_option("--prompt-file", args->prompt_file, "Read the prompt from a file");
  cmd->add_flag("--chat", args->chat, "Wrap the prompt in the InternLM2 chat template");
  cmd->add_option("--system", args->system, "System message (with --chat)");
  cmd->add_option("--max-tokens,-n", args->max_tokens, "Maximum tokens to generate")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-model-len,--max-context", args->max_model_len,
                  "Prompt + completion tokens (default: the model's context; serve's --max-model-len)")
      ->check(CLI::NonNegativeNumber);
  add_kv_cache_dtype_option(*cmd, args->kv_dtype, "");
  cmd->add_option("--temperature", args->sampling.temperature, "0 = greedy (default: generation_config.json)");
  cmd->add_option("--top-k", args->sampling.top_k, "Keep the k most likely tokens (0 = off)");
  cmd->add_option("--top-p", args->sampling.top_p, "Nucleus sampling mass (1 = off)");
  cmd->add_option("--min-p", args->sampling.min_p, "Drop tokens below min_p x the top probability");
  cmd->add_option("--repetition-penalty", args->sampling.repetition_penalty, "HF repetition penalty (1 = off)");
  cmd->add_option("--seed", args->sampling.seed, "Sampling seed");
  cmd->add_flag("--quiet,-q", args->quiet, "No load progress, no stats line");
  cmd->callback([args, cmd, prompt, prompt_file] {
    args->has_prompt = prompt->count() > 0;
    args->has_prompt_file = prompt_file->count() > 0;
    run(*args, *cmd);
  });
}

}  // namespace ilm::cli
