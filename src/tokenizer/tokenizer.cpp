#include "tokenizer/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/json_file.h"
#include "tokenizer/sp_model_patch.h"

namespace ilm {

namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁"

std::string read_binary_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("{}: read failed", path.string()));
  return std::move(ss).str();
}

// A special-token field of tokenizer_config.json: a string, {"content": ...}, or null.
std::optional<std::string> token_field(const nlohmann::json& cfg, const char* key,
                                       const std::filesystem::path& path) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::nullopt;
  const nlohmann::json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  throw Error(fmt::format("{}: \"{}\" must be a string or an object with a \"content\" string", path.string(), key));
}

bool bool_field(const nlohmann::json& cfg, const char* key, bool fallback, const std::filesystem::path& path) {
  if (!cfg.contains(key) || cfg[key].is_null()) return fallback;
  if (!cfg[key].is_boolean()) throw Error(fmt::format("{}: \"{}\" must be true or false", path.string(), key));
  return cfg[key].get<bool>();
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::load(const std::filesystem::path& dir) {
  const std::filesystem::path model_path = dir / "tokenizer.model";
  const std::filesystem::path config_path = dir / "tokenizer_config.json";
  if (!std::filesystem::is_regular_file(model_path))
    throw Error(fmt::format("{}: no tokenizer.model in this directory", dir.string()));
  std::string proto = read_binary_file(model_path);

  // The piece list of the file, for id range checks and renaming decisions.
  const std::vector<SpPieceInfo> pieces = list_sp_pieces(proto);
  const auto n_pieces = static_cast<int64_t>(pieces.size());
  if (n_pieces == 0) throw Error(fmt::format("{}: the model has no pieces", model_path.string()));

  Tokenizer tok;
  nlohmann::json cfg = nlohmann::json::object();
  const bool has_config = std::filesystem::exists(config_path);
  if (has_config) {
    cfg = read_json_file(config_path);
    if (!cfg.is_object()) throw Error(fmt::format("{}: expected a JSON object", config_path.string()));
  }

  if (has_config && cfg.contains("added_tokens_decoder") && !cfg["added_tokens_decoder"].is_null()) {
    const nlohmann::json& dec = cfg["added_tokens_decoder"];
    if (!dec.is_object())
      throw Error(fmt::format("{}: \"added_tokens_decoder\" must be an object", config_path.string()));
    for (const auto& [key, entry] : dec.items()) {
      int64_t id = -1;
      try {
        size_t used = 0;
        id = std::stoll(key, &used);
        if (used != key.size()) id = -1;
      } catch (const std::exception&) {
        id = -1;
      }
      if (id < 0) throw Error(fmt::format("{}: added_tokens_decoder key \"{}\" is not a token id", config_path.string(), key));
      if (id >= n_pieces)
        throw Error(fmt::format("{}: added token id {} is beyond the sentencepiece vocabulary ({} pieces); "
                                "tokens outside the model are not supported",
                                config_path.string(), id, n_pieces));
      if (!entry.is_object() || !entry.contains("content") || !entry["content"].is_string())
        throw Error(fmt::format("{}: added_tokens_decoder[\"{}\"] has no \"content\" string", config_path.string(), key));
      AddedToken t;
      t.id = static_cast<TokenId>(id);
      t.content = entry["content"].get<std::string>();
      if (t.content.empty())
        throw Error(fmt::format("{}: added_tokens_decoder[\"{}\"] has an empty content", config_path.string(), key));
      if (!is_valid_utf8(t.content))
        throw Error(fmt::format("{}: added_tokens_decoder[\"{}\"] is not valid UTF-8", config_path.string(), key));
      t.special = bool_field(entry, "special", true, config_path);
      tok.added_.push_back(std::move(t));
    }
  } else {
    // No config: sentencepiece's unknown and control pieces are the special tokens.
    for (int64_t id = 0; id < n_pieces; ++id) {
      const int type = pieces[static_cast<size_t>(id)].type;
      if (type == static_cast<int>(SpPieceType::kUnknown) || type == static_cast<int>(SpPieceType::kControl))
        tok.added_.push_back(AddedToken{pieces[static_cast<size_t>(id)].piece, static_cast<TokenId>(id), true});
    }
  }

  // Rename the pieces whose string the config overrides (92538..92543: "[UNUSED_TOKEN_141]".. ->
  // "<|plugin|>"..), so the model neither knows the old strings nor disagrees with the config.
  std::map<int32_t, std::string> renames;
  for (const AddedToken& t : tok.added_)
    if (pieces[static_cast<size_t>(t.id)].piece != t.content) renames[t.id] = t.content;
  if (!renames.empty()) proto = rename_sp_pieces(proto, renames);

  tok.sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = tok.sp_->LoadFromSerializedProto(proto);
  if (!status.ok()) throw Error(fmt::format("{}: cannot load: {}", model_path.string(), status.ToString()));
  if (tok.sp_->GetPieceSize() != n_pieces)
    throw Error(fmt::format("{}: sentencepiece reports {} pieces, the file holds {}", model_path.string(),
                            tok.sp_->GetPieceSize(), n_pieces));
  for (const auto& [id, piece] : renames)
    if (tok.sp_->IdToPiece(id) != piece)
      throw Error(fmt::format("{}: renaming piece {} to \"{}\" failed", model_path.string(), id, piece));

  std::stable_sort(tok.added_.begin(), tok.added_.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  tok.added_index_.assign(static_cast<size_t>(n_pieces), -1);
  tok.special_.assign(static_cast<size_t>(n_pieces), 0);
  for (size_t i = 0; i < tok.added_.size(); ++i) {
    const AddedToken& t = tok.added_[i];
    if (tok.added_index_[static_cast<size_t>(t.id)] >= 0)
      throw Error(fmt::format("{}: token id {} is listed twice", config_path.string(), t.id));
    tok.added_index_[static_cast<size_t>(t.id)] = static_cast<int32_t>(i);
    if (t.special) tok.special_[static_cast<size_t>(t.id)] = 1;
    if (tok.added_first_bytes_.find(t.content[0]) == std::string::npos) tok.added_first_bytes_ += t.content[0];
  }
  for (int64_t id = 0; id < n_pieces; ++id) {
    const int i = static_cast<int>(id);
    if (tok.sp_->IsControl(i) || tok.sp_->IsUnknown(i)) tok.special_[static_cast<size_t>(id)] = 1;
  }

  // Special token ids: the config's strings when given, else sentencepiece's.
  const auto resolve = [&](const char* key, int sp_default) -> std::optional<TokenId> {
    const std::optional<std::string> s = token_field(cfg, key, config_path);
    if (!s) return sp_default >= 0 ? std::optional<TokenId>(sp_default) : std::nullopt;
    for (const AddedToken& t : tok.added_)
      if (t.content == *s) return t.id;
    if (const auto id = tok.piece_to_id(*s)) return id;
    throw Error(fmt::format("{}: \"{}\" is \"{}\", which is not a token of the model", config_path.string(), key, *s));
  };
  if (const auto b = resolve("bos_token", tok.sp_->bos_id())) tok.bos_id_ = *b;
  if (const auto e = resolve("eos_token", tok.sp_->eos_id())) tok.eos_id_ = *e;
  tok.pad_id_ = resolve("pad_token", tok.sp_->pad_id());
  tok.add_bos_ = bool_field(cfg, "add_bos_token", true, config_path);
  tok.add_eos_ = bool_field(cfg, "add_eos_token", false, config_path);
  if (cfg.contains("chat_template") && cfg["chat_template"].is_string())
    tok.chat_template_ = cfg["chat_template"].get<std::string>();
  return tok;
}

std::vector<TokenId> Tokenizer::encode_chunk(std::string_view chunk) const {
  std::vector<int> ids;
  if (chunk.empty()) return ids;
  const auto status = sp_->Encode(chunk, &ids);
  if (!status.ok()) throw Error(fmt::format("sentencepiece encoding failed: {}", status.ToString()));
  return ids;
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_special) const {
  if (const size_t bad = utf8_error_offset(text); bad != std::string_view::npos)
    throw Error(fmt::format("cannot tokenize: the text is not valid UTF-8 (byte 0x{:02X} at byte offset {})",
                            static_cast<unsigned>(static_cast<uint8_t>(text[bad])), bad));
  std::vector<TokenId> out;
  if (add_special && add_bos_) out.push_back(bos_id_);
  const auto append = [&](std::string_view chunk) {
    const std::vector<TokenId> ids = encode_chunk(chunk);
    out.insert(out.end(), ids.begin(), ids.end());
  };
  // Added tokens: leftmost occurrence first, the longest one at that position (added_ is sorted
  // longest first). Contents are valid UTF-8, so a match always starts on a character boundary.
  size_t start = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (added_first_bytes_.find(text[i]) != std::string::npos) {
      const std::string_view rest = text.substr(i);
      const AddedToken* hit = nullptr;
      for (const AddedToken& t : added_)
        if (rest.starts_with(t.content)) {
          hit = &t;
          break;
        }
      if (hit != nullptr) {
        append(text.substr(start, i - start));
        out.push_back(hit->id);
        i += hit->content.size();
        start = i;
        continue;
      }
    }
    ++i;
  }
  append(text.substr(start));
  if (add_special && add_eos_) out.push_back(eos_id_);
  return out;
}

std::optional<int64_t> Tokenizer::count_beyond(std::string_view text, int64_t limit) const {
  // Every token but BOS/EOS covers at least one byte of the text.
  if (static_cast<int64_t>(text.size()) <= limit) return std::nullopt;
  // Pieces of ~16 KiB cut just before a space or newline, where sentencepiece starts a new
  // piece anyway (and no added token has a space); without one nearby, at a character
  // boundary. A cut can change the count by a few tokens only: allow 8 per cut.
  constexpr size_t kPiece = 16u << 10, kSearch = 4u << 10;
  constexpr int64_t kSlackPerCut = 8;
  int64_t count = 0, cuts = 0;
  size_t p = 0;
  while (p < text.size()) {
    size_t e = std::min(text.size(), p + kPiece);
    if (e < text.size()) {
      size_t s = text.find_first_of(" \n", e);
      if (s == std::string_view::npos || s > e + kSearch) {
        s = e;
        while (s > p + 1 && (static_cast<uint8_t>(text[s]) & 0xC0) == 0x80) --s;
      }
      e = s;
    }
    count += static_cast<int64_t>(encode(text.substr(p, e - p), false).size());
    ++cuts;
    if (count > limit + kSlackPerCut * cuts) return count - kSlackPerCut * cuts;
    p = e;
  }
  return std::nullopt;
}

void Tokenizer::check_id(TokenId id) const {
  if (id < 0 || id >= vocab_size())
    throw Error(fmt::format("token id {} is out of range (vocabulary size {})", id, vocab_size()));
}

std::string Tokenizer::token_bytes(TokenId id, bool skip_special) const {
  check_id(id);
  const auto uid = static_cast<size_t>(id);
  if (const int32_t a = added_index_[uid]; a >= 0) {
    const AddedToken& t = added_[static_cast<size_t>(a)];
    return (t.special && skip_special) ? std::string() : t.content;
  }
  const std::string& piece = sp_->IdToPiece(id);
  if (special_[uid] != 0) return skip_special ? std::string() : piece;
  if (sp_->IsByte(id)) {
    // "<0xNN>"
    if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>')
      throw Error(fmt::format("byte piece {} has an unexpected form \"{}\"", id, piece));
    const unsigned v = static_cast<unsigned>(std::stoul(piece.substr(3, 2), nullptr, 16));
    return std::string(1, static_cast<char>(v));
  }
  std::string out;
  out.reserve(piece.size());
  size_t pos = 0;
  while (true) {
    const size_t m = piece.find(kSpaceMarker, pos);
    if (m == std::string::npos) break;
    out.append(piece, pos, m - pos);
    out.push_back(' ');
    pos = m + kSpaceMarker.size();
  }
  out.append(piece, pos, std::string::npos);
  return out;
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool skip_special) const {
  std::string bytes;
  for (const TokenId id : ids) bytes += token_bytes(id, skip_special);
  // The same replacement as StreamDecoder: an incomplete tail is flushed as U+FFFD.
  return take_valid_utf8(bytes, nullptr);
}

std::string Tokenizer::id_to_piece(TokenId id) const {
  check_id(id);
  return sp_->IdToPiece(id);
}

std::optional<TokenId> Tokenizer::piece_to_id(std::string_view piece) const {
  const int id = sp_->PieceToId(piece);
  if (id < 0 || id >= vocab_size()) return std::nullopt;
  if (sp_->IdToPiece(id) != piece) return std::nullopt;  // PieceToId answers unk for unknown pieces
  return id;
}

int64_t Tokenizer::vocab_size() const { return sp_ ? sp_->GetPieceSize() : 0; }

bool Tokenizer::is_special(TokenId id) const {
  return id >= 0 && id < vocab_size() && special_[static_cast<size_t>(id)] != 0;
}

}  // namespace ilm
