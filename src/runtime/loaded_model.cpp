#include "runtime/loaded_model.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/error.h"
#include "common/progress.h"
#include "model/registry.h"
#include "runtime/tensor_parallel.h"

namespace ilm {

namespace {
void require_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw Error(fmt::format("{}: not a model directory (expected config.json, *.safetensors, "
                            "tokenizer.model)",
                            dir.string()));
}
}  // namespace

CheckpointInfo CheckpointInfo::load(const std::filesystem::path& dir, LoadProgress* progress) {
  require_dir(dir);
  CheckpointInfo info;
  info.config = ModelConfig::load(dir);
  info.generation = GenerationConfig::load(dir);
  // Token ids in generation_config.json get the same range check as config.json's.
  const auto check_id = [&](const char* field, int64_t id) {
    if (id >= info.config.vocab_size)
      throw Error(fmt::format("{}: field '{}': token id {} is outside the vocabulary ({}, config.json vocab_size)",
                              (dir / "generation_config.json").string(), field, id, info.config.vocab_size));
  };
  for (const int64_t id : info.generation.eos_token_ids) check_id("eos_token_id", id);
  if (info.generation.bos_token_id) check_id("bos_token_id", *info.generation.bos_token_id);
  if (info.generation.pad_token_id) check_id("pad_token_id", *info.generation.pad_token_id);
  info.store = std::make_unique<TensorStore>(TensorStore::open(dir, progress));
  return info;
}

LoadedModel LoadedModel::load(const std::filesystem::path& dir, const LoadOptions& opts) {
  CheckpointInfo info = CheckpointInfo::load(dir, opts.progress);
  LoadedModel m;
  m.comm = make_communicator(opts.tp);
  const bool sharded = m.comm->size() > 1;
  m.dir = dir;
  m.config = info.config;
  m.generation = info.generation;
  m.store = std::move(info.store);
  m.tokenizer = std::make_unique<Tokenizer>(Tokenizer::load(dir));
  if (m.tokenizer->vocab_size() > m.config.vocab_size)
    throw Error(fmt::format("{}: tokenizer has {} tokens but config.json vocab_size is {}",
                            dir.string(), m.tokenizer->vocab_size(), m.config.vocab_size));
  if (m.config.stored_quant.format != QuantFormat::None && opts.quant.format != QuantFormat::None &&
      quant_name(opts.quant) != quant_name(m.config.stored_quant))
    throw Error(fmt::format("{}: checkpoint is stored as {}; --quant {} cannot change that (quantize the original "
                            "checkpoint instead)",
                            dir.string(), quant_name(m.config.stored_quant), quant_name(opts.quant)));
  m.backend = make_backend(opts.backend, opts.threads, opts.precision);
  // Weights used in place: read them now, into huge pages (decode reads every byte per token;
  // with 4 KiB pages the TLB walks cost it ~40% of the bandwidth). Weights converted at load
  // (quantized, repacked) are read once and released instead.
  LoadProgress* const progress = opts.progress;
  // A rank of a tensor-parallel job reads only its slices (after the model is built, below).
  if (opts.quant.format == QuantFormat::None && m.config.stored_quant.format == QuantFormat::None &&
      opts.backend != "ref" && !sharded) {
    uint64_t total = 0, before = 0;
    for (const auto& f : m.store->files()) total += f->mapping().size();
    if (progress) progress->begin("paging in", total, ProgressUnit::Bytes);
    for (const auto& f : m.store->files()) {
      if (progress)
        f->mapping().populate_huge(true, [&](size_t done) { progress->update(before + done); });
      else
        f->mapping().populate_huge(true);
      before += f->mapping().size();
    }
    if (progress) progress->end();
  }
  // Converted weights: the architecture reads each tensor once through the store, converting
  // as it goes; those reads are the progress (k/N tensors).
  const bool converting = m.config.stored_quant.format != QuantFormat::None || opts.quant.format != QuantFormat::None;
  if (progress && converting) {
    progress->begin(m.config.stored_quant.format != QuantFormat::None ? "repacking tensors" : "quantizing tensors",
                    m.store->tensor_count(), ProgressUnit::Count);
    m.store->report_reads_to(progress);
  }
  struct StopReports {
    TensorStore& store;
    ~StopReports() { store.report_reads_to(nullptr); }
  } stop_reports{*m.store};
  m.lm = create_model(m.config, *m.store, *m.backend, opts.quant, m.comm.get());
  if (progress && converting) progress->end();
  if (sharded) {
    // Page in this rank's slices now (one read per page), not at the first token.
    for (const auto& span : m.lm->decode_weight_memory())
      for (size_t i = 0; i < span.size(); i += 4096) static_cast<void>(*static_cast<const volatile std::byte*>(&span[i]));
    // Loads may take different times; wait for every rank before the first collective.
    m.comm->barrier(600);
    if (m.comm->rank() == 0) m.lm = std::make_unique<TpLeader>(std::move(m.lm), *m.comm);
  }
  return m;
}

std::vector<TokenId> LoadedModel::stop_ids() const {
  std::vector<TokenId> ids;
  for (auto id : generation.eos_token_ids) ids.push_back(static_cast<TokenId>(id));
  if (config.eos_token_id >= 0) ids.push_back(static_cast<TokenId>(config.eos_token_id));
  if (tokenizer)
    if (auto im_end = tokenizer->piece_to_id("<|im_end|>")) ids.push_back(*im_end);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace ilm
