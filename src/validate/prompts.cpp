#include "validate/prompts.h"

#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace ilm::validate {

std::vector<PromptSpec> load_prompts(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open the prompt set", file.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_prompts(ss.str(), file.string());
}

std::vector<PromptSpec> parse_prompts(const std::string& text, const std::string& source) {
  std::vector<PromptSpec> out;
  std::set<std::string> ids;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", source, n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{}: invalid JSON: {}", where, e.what()));
    }
    if (!j.is_object()) throw Error(fmt::format("{}: expected a JSON object", where));
    PromptSpec p;
    if (!j.contains("id") || !j["id"].is_string() || j["id"].get<std::string>().empty())
      throw Error(fmt::format("{}: missing \"id\" (a non-empty string)", where));
    p.id = j["id"].get<std::string>();
    if (!ids.insert(p.id).second) throw Error(fmt::format("{}: duplicate id '{}'", where, p.id));
    p.category = j.value("category", p.id);
    if (j.contains("messages")) {
      if (!j["messages"].is_array() || j["messages"].empty())
        throw Error(fmt::format("{}: \"messages\" must be a non-empty array", where));
      for (const auto& m : j["messages"]) {
        if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
            !m["content"].is_string())
          throw Error(fmt::format("{}: each message needs string \"role\" and \"content\"", where));
        p.messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
      }
    } else if (j.contains("prompt") && j["prompt"].is_string()) {
      p.chat = false;
      p.prompt = j["prompt"].get<std::string>();
    } else {
      throw Error(fmt::format("{}: needs \"messages\" or \"prompt\"", where));
    }
    if (j.contains("max_tokens")) {
      if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() < 1)
        throw Error(fmt::format("{}: \"max_tokens\" must be a positive integer", where));
      p.max_tokens = j["max_tokens"].get<int64_t>();
    }
    if (j.contains("stop")) {
      if (!j["stop"].is_array()) throw Error(fmt::format("{}: \"stop\" must be an array of strings", where));
      for (const auto& s : j["stop"]) {
        if (!s.is_string() || s.get<std::string>().empty())
          throw Error(fmt::format("{}: \"stop\" must be an array of non-empty strings", where));
        p.stop.push_back(s.get<std::string>());
      }
    }
    out.push_back(std::move(p));
  }
  if (out.empty()) throw Error(fmt::format("{}: no prompts", source));
  return out;
}

std::vector<TokenId> prompt_ids(const PromptSpec& p, const Tokenizer& tok) {
  return p.chat ? encode_chat(tok, p.messages, true) : tok.encode(p.prompt, true);
}

}  // namespace ilm::validate
