// `internlm logits`: dump the logits of every position, raw little-endian f32 [T, V] in FILE
// and {"shape": [T, V], "ids": [...]} in FILE.json, so any implementation can be compared.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <bit>
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "common/error.h"
#include "io/json_file.h"
#include "runtime/loaded_model.h"
#include "runtime/tensor_parallel.h"
#include "tokenizer/chat_template.h"

namespace ilm::cli {

namespace {

static_assert(std::endian::native == std::endian::little, "logits files are little-endian f32");

struct LogitsArgs {
  ModelArgs model;
  std::string prompt, ids, out;
  bool chat = false;
  bool has_prompt = false, has_ids = false;  // given at all (--prompt "" is a prompt: BOS only)
  int64_t prefill = 0;
  std::string kv_dtype = "f32";
};

void write_logits(const LogitsArgs& a) {
  if (a.has_prompt == a.has_ids) throw Error("give exactly one of --prompt or --ids");
  if (a.chat && !a.has_prompt) throw Error("--chat needs --prompt");
  const DType kv_dtype = parse_kv_cache_dtype_arg(a.kv_dtype);
  LoadedModel m = a.model.load();
  if (m.follower()) return follow(*m.lm, *m.comm);  // --tp: rank 0 tokenizes, drives and writes
  std::vector<TokenId> ids;
  if (a.has_ids) {
    ids = parse_ids(a.ids);
  } else if (a.chat) {
    ids = encode_chat(*m.tokenizer, {{"user", a.prompt}}, true);
  } else {
    ids = m.tokenizer->encode(a.prompt, true);
  }
  const int64_t T = static_cast<int64_t>(ids.size()), V = m.config.vocab_size;
  if (T == 0) throw Error("no tokens to run");
  for (TokenId id : ids)
    if (id >= V) throw Error(fmt::format("--ids: token id {} is outside the vocabulary [0, {})", id, V));
  const int64_t K = a.prefill > 0 ? std::min(a.prefill, T) : T;

  std::vector<float> logits(static_cast<size_t>(T * V));
  KvCache cache = m.lm->new_cache_as(T, kv_dtype);
  std::span<const TokenId> all(ids);
  m.lm->forward(all.first(static_cast<size_t>(K)), cache, logits, /*all_logits=*/true);
  for (int64_t t = K; t < T; ++t)
    m.lm->forward(all.subspan(static_cast<size_t>(t), 1), cache,
                  std::span<float>(logits).subspan(static_cast<size_t>(t * V)), false);
  m.lm.reset();  // done with the model: under --tp this releases the other ranks now

  std::FILE* f = std::fopen(a.out.c_str(), "wb");
  if (!f) throw Error(fmt::format("{}: cannot open for writing", a.out));
  const size_t n = logits.size();
  const bool ok = std::fwrite(logits.data(), sizeof(float), n, f) == n;
  if (std::fclose(f) != 0 || !ok) throw Error(fmt::format("{}: write failed", a.out));
  nlohmann::json meta = {{"shape", {T, V}},
                         {"ids", ids},
                         {"dtype", "float32"},
                         {"model", m.dir.string()},
                         {"backend", m.backend->name()},
                         {"prefill", K},
                         {"kv_cache_dtype", a.kv_dtype}};
  write_json_file(a.out + ".json", meta);
  std::fprintf(stderr, "wrote logits [%lld, %lld] to %s (+ .json)\n", static_cast<long long>(T),
               static_cast<long long>(V), a.out.c_str());
  const auto bad = std::count_if(logits.begin(), logits.end(), [](float v) { return !std::isfinite(v); });
  if (bad > 0)
    throw Error(fmt::format("{} of {} logits are not finite (NaN or Inf): the checkpoint or its config is broken", bad,
                            logits.size()));
}

}  // namespace

void add_logits_command(CLI::App& app) {
  auto args = std::make_shared<LogitsArgs>();
  CLI::App* cmd = app.add_subcommand("logits", "Write the logits of every position to a file");
  args->model.add_to(*cmd);
  args->model.add_tp_to(*cmd);
  CLI::Option* prompt =
      cmd->add_option("--prompt,-p", args->prompt, "Prompt text (BOS added per tokenizer_config; \"\": BOS only)");
  CLI::Option* ids = cmd->add_option("--ids", args->ids, "Token ids, comma-separated, used as given");
  cmd->add_flag("--chat", args->chat, "Wrap --prompt in the chat template (user turn + assistant prompt)");
  cmd->add_option("--out,-o", args->out, "Output file (raw f32 [T, V]); metadata in OUT.json")->required();
  cmd->add_option("--prefill", args->prefill,
                  "Run the first K tokens in one forward, then one token per forward through the KV cache "
                  "(default: all at once)")->check(CLI::NonNegativeNumber);
  add_kv_cache_dtype_option(*cmd, args->kv_dtype, "");
  cmd->callback([args, prompt, ids] {
    args->has_prompt = prompt->count() > 0;
    args->has_ids = ids->count() > 0;
    write_logits(*args);
  });
}

}  // namespace ilm::cli
