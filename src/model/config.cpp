#include "model/config.h"

#include <cmath>
#include <limits>
#include <system_error>

#include <fmt/format.h>

#include "common/error.h"
#include "io/json_file.h"

namespace ilm {

namespace {

using nlohmann::json;

// Field access with errors of the form "<source>: field '<name>': <reason>".
class Fields {
 public:
  Fields(const json& j, const std::string& source) : j_(j), source_(source) {
    if (!j_.is_object()) throw Error(fmt::format("{}: expected a JSON object, got {}", source_, j_.type_name()));
  }

  [[noreturn]] void fail(std::string_view field, const std::string& msg) const {
    throw Error(fmt::format("{}: field '{}': {}", source_, field, msg));
  }

  // nullptr when absent; `null_is_absent` makes an explicit null count as absent.
  const json* find(std::string_view field, bool null_is_absent = true) const {
    const auto it = j_.find(field);
    if (it == j_.end() || (null_is_absent && it->is_null())) return nullptr;
    return &*it;
  }

  const json& require(std::string_view field) const {
    const auto it = j_.find(field);
    if (it == j_.end()) fail(field, "missing (required; the config-class default is not used)");
    return *it;
  }

  int64_t as_int(std::string_view field, const json& v) const {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(field, fmt::format("integer {} is too large", u));
      return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    fail(field, fmt::format("must be an integer, got {}", json_brief(v)));
  }

  // Model dimensions are bounded (2^24 is far above any real model) so that products of
  // them cannot overflow 64-bit size arithmetic before tensor shapes are checked.
  int64_t positive_int(std::string_view field, const json& v) const {
    constexpr int64_t kMaxDim = int64_t{1} << 24;
    const int64_t x = as_int(field, v);
    if (x <= 0) fail(field, fmt::format("must be a positive integer, got {}", x));
    if (x > kMaxDim) fail(field, fmt::format("{} is larger than any supported model dimension ({})", x, kMaxDim));
    return x;
  }

  int64_t non_negative_int(std::string_view field, const json& v) const {
    const int64_t x = as_int(field, v);
    if (x < 0) fail(field, fmt::format("must be a non-negative integer, got {}", x));
    return x;
  }

  double finite_number(std::string_view field, const json& v) const {
    if (!v.is_number()) fail(field, fmt::format("must be a number, got {}", json_brief(v)));
    const double x = v.get<double>();
    if (!std::isfinite(x)) fail(field, fmt::format("must be finite, got {}", x));
    return x;
  }

  double positive_number(std::string_view field, const json& v) const {
    const double x = finite_number(field, v);
    if (!(x > 0)) fail(field, fmt::format("must be > 0, got {}", x));
    return x;
  }

  bool boolean(std::string_view field, const json& v) const {
    if (!v.is_boolean()) fail(field, fmt::format("must be true or false, got {}", json_brief(v)));
    return v.get<bool>();
  }

  std::string string(std::string_view field, const json& v) const {
    if (!v.is_string()) fail(field, fmt::format("must be a string, got {}", json_brief(v)));
    return v.get<std::string>();
  }

  const std::string& source() const { return source_; }

 private:
  const json& j_;
  const std::string& source_;
};

RopeScaling parse_rope_scaling(const Fields& f, const json* v) {
  RopeScaling rs;
  if (v == nullptr) return rs;  // absent or null: no scaling
  constexpr std::string_view field = "rope_scaling";
  if (!v->is_object())
    f.fail(field, fmt::format("must be null or an object {{\"type\": ..., \"factor\": ...}}, got {}", json_brief(*v)));
  const char* type_key = v->contains("type") ? "type" : "rope_type";
  for (const auto& [key, val] : v->items()) {
    if (key != type_key && key != "factor")
      f.fail(field, fmt::format("unexpected key '{}' (exactly \"type\" and \"factor\" are allowed)", key));
  }
  const auto t = v->find(type_key);
  if (t == v->end()) f.fail(field, "missing \"type\"");
  const auto fac = v->find("factor");
  if (fac == v->end()) f.fail(field, "missing \"factor\"");
  if (v->size() != 2) f.fail(field, "must have exactly the two keys \"type\" and \"factor\"");
  if (!t->is_string()) f.fail(field, fmt::format("\"type\" must be a string, got {}", json_brief(*t)));
  const std::string& type = t->get_ref<const std::string&>();
  if (type == "dynamic")
    rs.type = RopeScaling::Type::Dynamic;
  else if (type == "linear")
    rs.type = RopeScaling::Type::Linear;
  else
    f.fail(field, fmt::format("unsupported type \"{}\" (expected \"dynamic\" or \"linear\")", type));
  if (!fac->is_number()) f.fail(field, fmt::format("\"factor\" must be a number, got {}", json_brief(*fac)));
  rs.factor = fac->get<double>();
  if (!std::isfinite(rs.factor) || rs.factor < 1.0)
    f.fail(field, fmt::format("\"factor\" must be a number >= 1, got {}", json_brief(*fac)));
  return rs;
}

ModelConfig model_from_json(const json& j, const std::string& source) {
  const Fields f(j, source);
  ModelConfig c;

  {
    const json& a = f.require("architectures");
    if (!a.is_array() || a.empty())
      f.fail("architectures", fmt::format("must be a non-empty array of strings, got {}", json_brief(a)));
    for (const json& e : a)
      if (!e.is_string())
        f.fail("architectures", fmt::format("must be a non-empty array of strings, got {}", json_brief(a)));
    c.architecture = a[0].get<std::string>();
    if (c.architecture.empty()) f.fail("architectures", "architectures[0] is empty");
  }
  if (const json* v = f.find("model_type")) c.model_type = f.string("model_type", *v);

  c.hidden_size = f.positive_int("hidden_size", f.require("hidden_size"));
  c.num_layers = f.positive_int("num_hidden_layers", f.require("num_hidden_layers"));
  c.num_heads = f.positive_int("num_attention_heads", f.require("num_attention_heads"));
  if (const json* v = f.find("num_key_value_heads"))
    c.num_kv_heads = f.positive_int("num_key_value_heads", *v);
  else
    c.num_kv_heads = c.num_heads;  // HF: absent or null -> num_attention_heads
  c.intermediate_size = f.positive_int("intermediate_size", f.require("intermediate_size"));
  c.vocab_size = f.positive_int("vocab_size", f.require("vocab_size"));
  c.max_position_embeddings = f.positive_int("max_position_embeddings", f.require("max_position_embeddings"));
  // Domains, not just types: a rope_theta of 1e-320 or an eps of 1e300 loads and yields NaN logits.
  c.rms_norm_eps = f.positive_number("rms_norm_eps", f.require("rms_norm_eps"));
  if (!(c.rms_norm_eps < 1.0)) f.fail("rms_norm_eps", fmt::format("must be in (0, 1), got {}", c.rms_norm_eps));
  c.rope_theta = f.positive_number("rope_theta", f.require("rope_theta"));
  if (!(c.rope_theta > 1.0)) f.fail("rope_theta", fmt::format("must be a finite number > 1, got {}", c.rope_theta));
  c.rope_scaling = parse_rope_scaling(f, f.find("rope_scaling"));
  // The InternLM2 config class defaults bias to true while the real models have none: required.
  c.bias = f.boolean("bias", f.require("bias"));
  if (const json* v = f.find("tie_word_embeddings")) c.tie_word_embeddings = f.boolean("tie_word_embeddings", *v);
  c.hidden_act = "silu";
  if (const json* v = f.find("hidden_act")) c.hidden_act = f.string("hidden_act", *v);
  if (c.hidden_act != "silu")
    f.fail("hidden_act", fmt::format("unsupported activation \"{}\" (only \"silu\")", c.hidden_act));
  if (const json* v = f.find("torch_dtype")) c.torch_dtype = f.string("torch_dtype", *v);
  if (const json* q = f.find("quantization_config")) {
    if (!q->is_object()) f.fail("quantization_config", fmt::format("must be an object, got {}", json_brief(*q)));
    const auto method = q->find("quant_method");
    if (method == q->end() || !method->is_string() || method->get<std::string>() != "internlm.cpp")
      f.fail("quantization_config", fmt::format("unsupported quant_method {} (only checkpoints written by "
                                                "`internlm quantize`, quant_method \"internlm.cpp\")",
                                                method == q->end() ? "(none)" : json_brief(*method)));
    const auto fmt_it = q->find("format");
    const auto group = q->find("group_size");
    if (fmt_it == q->end() || !fmt_it->is_string() || group == q->end() || !group->is_number_integer())
      f.fail("quantization_config", "needs \"format\" (string) and \"group_size\" (integer)");
    try {
      c.stored_quant = parse_quant(fmt::format("{}:{}", fmt_it->get<std::string>(), group->get<int64_t>()));
    } catch (const Error& e) {
      f.fail("quantization_config", e.what());
    }
    if (c.stored_quant.format == QuantFormat::None) f.fail("quantization_config", "format must be int8 or int4");
  }

  auto token_id = [&](std::string_view field) -> int64_t {
    const json* v = f.find(field);
    if (v == nullptr) return -1;
    const int64_t id = f.non_negative_int(field, *v);
    if (id >= c.vocab_size) f.fail(field, fmt::format("token id {} is outside the vocabulary ({})", id, c.vocab_size));
    return id;
  };
  c.bos_token_id = token_id("bos_token_id");
  c.eos_token_id = token_id("eos_token_id");
  c.pad_token_id = token_id("pad_token_id");

  if (c.hidden_size % c.num_heads != 0)
    f.fail("hidden_size", fmt::format("{} is not divisible by num_attention_heads {}", c.hidden_size, c.num_heads));
  if (c.num_heads % c.num_kv_heads != 0)
    f.fail("num_key_value_heads", fmt::format("num_attention_heads {} is not divisible by num_key_value_heads {}",
                                              c.num_heads, c.num_kv_heads));
  c.head_dim = c.hidden_size / c.num_heads;
  if (c.head_dim % 2 != 0)
    f.fail("hidden_size", fmt::format("head dimension {} / {} = {} must be even for RoPE", c.hidden_size,
                                      c.num_heads, c.head_dim));
  return c;
}

GenerationConfig generation_from_json(const json& j, const std::string& source) {
  const Fields f(j, source);
  GenerationConfig g;
  if (const json* v = f.find("eos_token_id")) {
    if (v->is_array()) {
      for (const json& e : *v) {
        if (!e.is_number_integer())
          f.fail("eos_token_id", fmt::format("must be an integer or a list of integers, got {}", json_brief(*v)));
        g.eos_token_ids.push_back(f.non_negative_int("eos_token_id", e));
      }
    } else if (v->is_number_integer()) {
      g.eos_token_ids.push_back(f.non_negative_int("eos_token_id", *v));
    } else {
      f.fail("eos_token_id", fmt::format("must be an integer or a list of integers, got {}", json_brief(*v)));
    }
  }
  if (const json* v = f.find("bos_token_id")) g.bos_token_id = f.non_negative_int("bos_token_id", *v);
  if (const json* v = f.find("pad_token_id")) g.pad_token_id = f.non_negative_int("pad_token_id", *v);
  if (const json* v = f.find("temperature")) {
    const double t = f.finite_number("temperature", *v);
    if (t < 0) f.fail("temperature", fmt::format("must be >= 0, got {}", t));
    g.temperature = t;
  }
  if (const json* v = f.find("top_p")) {
    const double p = f.finite_number("top_p", *v);
    if (p < 0 || p > 1) f.fail("top_p", fmt::format("must be in [0, 1], got {}", p));
    g.top_p = p;
  }
  if (const json* v = f.find("repetition_penalty"))
    g.repetition_penalty = f.positive_number("repetition_penalty", *v);
  if (const json* v = f.find("top_k")) g.top_k = f.non_negative_int("top_k", *v);
  if (const json* v = f.find("max_new_tokens")) g.max_new_tokens = f.non_negative_int("max_new_tokens", *v);
  if (const json* v = f.find("max_length")) g.max_length = f.non_negative_int("max_length", *v);
  if (const json* v = f.find("do_sample")) g.do_sample = f.boolean("do_sample", *v);
  return g;
}

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& source) {
  try {
    return model_from_json(j, source);
  } catch (const nlohmann::json::exception& e) {  // defensive: types are checked before every get
    throw Error(fmt::format("{}: {}", source, e.what()));
  }
}

ModelConfig ModelConfig::load(const std::filesystem::path& model_dir) {
  const std::filesystem::path p = model_dir / "config.json";
  return from_json(read_json_file(p), p.string());
}

GenerationConfig GenerationConfig::from_json(const nlohmann::json& j, const std::string& source) {
  try {
    return generation_from_json(j, source);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: {}", source, e.what()));
  }
}

GenerationConfig GenerationConfig::load(const std::filesystem::path& model_dir) {
  const std::filesystem::path p = model_dir / "generation_config.json";
  std::error_code ec;
  const bool present = std::filesystem::exists(std::filesystem::symlink_status(p, ec));
  if (!present) return {};
  return from_json(read_json_file(p), p.string());
}

}  // namespace ilm
