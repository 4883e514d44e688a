// `internlm tokenize`: encode text to token ids or decode ids to text with the model's tokenizer.
//   --text T | --file PATH     print the ids (comma-separated; --json: {"ids": [...], "pieces": [...]})
//   --ids 1,2,3                print the decoded text (--json: {"text": "..."})
//   --file PATH --jsonl        one JSON string per line in, one JSON array of ids per line out
//   --file PATH --jsonl --decode   one JSON array of ids per line in, one JSON string per line out
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "common/error.h"
#include "synth/synth.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ilm::cli {

namespace {

struct TokenizeArgs {
  std::string model, text, file, ids;
  bool no_bos = false, chat = false, json = false, jsonl = false, decode = false, skip_special = false;
  bool has_text = false, has_file = false, has_ids = false;  // given at all (--text "" is a text)
};

// A checkpoint or tokenizer directory (anything holding tokenizer.model), or the file itself.
std::filesystem::path tokenizer_dir(const std::string& model) {
  if (model.empty()) return default_tokenizer_dir();
  const std::filesystem::path p(model);
  std::error_code ec;
  if (std::filesystem::is_regular_file(p, ec) && p.filename() == "tokenizer.model") return p.parent_path();
  if (!std::filesystem::is_directory(p, ec)) throw Error(fmt::format("--model {}: no such directory", model));
  if (!std::filesystem::is_regular_file(p / "tokenizer.model", ec))
    throw Error(fmt::format("--model {}: no tokenizer.model in this directory", model));
  return p;
}

std::string read_input(const std::string& file) {
  if (file == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return std::move(ss).str();
  }
  return read_text_file(file);
}

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict); }

void write_out(const std::string& s) {
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) throw Error("cannot write to standard output");
}

std::vector<TokenId> encode_text(const Tokenizer& tok, const std::string& text, const TokenizeArgs& a) {
  if (a.chat) return encode_chat(tok, {{"user", text}}, true);
  return tok.encode(text, !a.no_bos);
}

void run_jsonl(const Tokenizer& tok, const TokenizeArgs& a) {
  std::istringstream in(read_input(a.file));
  std::string line, out;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{}:{}: invalid JSON: {}", a.file, lineno, e.what()));
    }
    try {
      if (a.decode) {
        if (!j.is_array()) throw Error("expected a JSON array of token ids");
        std::vector<TokenId> ids;
        ids.reserve(j.size());
        for (const auto& v : j) {
          if (!v.is_number_integer()) throw Error("expected a JSON array of token ids");
          const auto id = v.get<int64_t>();
          if (id < 0 || id >= tok.vocab_size())
            throw Error(fmt::format("token id {} is out of range (vocabulary size {})", id, tok.vocab_size()));
          ids.push_back(static_cast<TokenId>(id));
        }
        out = dump(nlohmann::json(tok.decode(ids, a.skip_special)));
      } else {
        if (!j.is_string()) throw Error("expected a JSON string");
        out = dump(nlohmann::json(encode_text(tok, j.get<std::string>(), a)));
      }
    } catch (const Error& e) {
      throw Error(fmt::format("{}:{}: {}", a.file, lineno, e.what()));
    }
    out += '\n';
    write_out(out);
  }
}

void run_tokenize(const TokenizeArgs& a) {
  const int sources = static_cast<int>(a.has_text) + static_cast<int>(a.has_file) + static_cast<int>(a.has_ids);
  if (sources != 1) throw Error("give exactly one of --text, --file or --ids");
  if (a.jsonl && !a.has_file) throw Error("--jsonl reads --file (one JSON value per line)");
  if (a.decode && !a.jsonl) throw Error("--decode is for --jsonl; use --ids to decode ids");
  if (a.chat && a.no_bos) throw Error("--chat always starts with BOS; drop --no-bos");
  if (a.chat && (a.has_ids || a.decode)) throw Error("--chat is for encoding text");

  const Tokenizer tok = Tokenizer::load(tokenizer_dir(a.model));
  if (a.jsonl) {
    run_jsonl(tok, a);
  } else if (a.has_ids) {
    const std::vector<TokenId> ids = parse_ids(a.ids);
    const std::string text = tok.decode(ids, a.skip_special);
    write_out(a.json ? dump(nlohmann::json{{"text", text}}) + "\n" : text + "\n");
  } else {
    const std::string text = a.has_file ? read_input(a.file) : a.text;
    const std::vector<TokenId> ids = encode_text(tok, text, a);
    if (a.json) {
      std::vector<std::string> pieces;
      pieces.reserve(ids.size());
      for (const TokenId id : ids) pieces.push_back(tok.id_to_piece(id));
      write_out(dump(nlohmann::json{{"ids", ids}, {"pieces", pieces}}) + "\n");
    } else {
      write_out(fmt::format("{}\n", fmt::join(ids, ",")));
    }
  }
  if (std::fflush(stdout) != 0) throw Error("cannot write to standard output");
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Encode text to token ids, or decode ids to text");
  cmd->add_option("--model,-m", args->model,
                  "Checkpoint or tokenizer directory (anything holding tokenizer.model; default: the "
                  "bundled InternLM2 tokenizer)");
  CLI::Option* text = cmd->add_option("--text", args->text, "Text to encode");
  CLI::Option* file = cmd->add_option("--file", args->file, "File to encode as-is ('-': standard input)");
  CLI::Option* ids = cmd->add_option("--ids", args->ids, "Token ids to decode, comma-separated");
  cmd->add_flag("--no-bos", args->no_bos, "Do not prepend BOS");
  cmd->add_flag("--chat", args->chat, "Wrap the text as one user turn of the chat template, with the assistant prompt");
  cmd->add_flag("--json", args->json, "Print JSON: {\"ids\": [...], \"pieces\": [...]} or {\"text\": ...}");
  cmd->add_flag("--jsonl", args->jsonl,
                "--file holds one JSON string per line; print one JSON array of ids per line");
  cmd->add_flag("--decode", args->decode, "With --jsonl: lines are JSON arrays of ids; print JSON strings");
  cmd->add_flag("--skip-special", args->skip_special, "When decoding, drop special tokens");
  cmd->callback([args, text, file, ids] {
    args->has_text = text->count() > 0;
    args->has_file = file->count() > 0;
    args->has_ids = ids->count() > 0;
    run_tokenize(*args);
  });
}

}  // namespace ilm::cli
