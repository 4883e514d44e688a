#include "structured/json_schema.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

namespace ilm::structured {
namespace {

using json = nlohmann::ordered_json;

const std::set<std::string>& annotations() {
  static const std::set<std::string> k = {"title",    "description", "default",   "examples",  "$schema",
                                          "$id",      "$comment",    "deprecated", "readOnly", "writeOnly",
                                          "$defs",    "definitions", "name",      "strict"};
  return k;
}

std::string escape_pointer(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

uint8_t type_bit(const json& t, const std::string& where) {
  if (!t.is_string()) throw SchemaError(where, "'type' must be a string or a list of strings");
  const std::string& s = t.get_ref<const std::string&>();
  if (s == "object") return kObject;
  if (s == "array") return kArray;
  if (s == "string") return kString;
  if (s == "number") return kNumber | kInteger;
  if (s == "integer") return kInteger;
  if (s == "boolean") return kBoolean;
  if (s == "null") return kNull;
  throw SchemaError(where, fmt::format("unknown type '{}'", s));
}

int64_t as_count(const json& v, const std::string& where) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    throw SchemaError(where, "must be a non-negative integer");
  return v.get<int64_t>();
}

class Compiler {
 public:
  explicit Compiler(const json& root) : root_(root) {
    out_.nodes.emplace_back();  // node 0: any JSON value
  }

  Schema run() {
    out_.root = compile(root_, "");
    refuse_empty_cycles();
    return std::move(out_);
  }

  // anyOf / $ref links consume no input: a cycle of them ({"$ref": "#"}, two definitions that
  // refer to each other) would never reach a value.
  void refuse_empty_cycles() const {
    const size_t n = out_.nodes.size();
    std::vector<uint8_t> mark(n, 0);  // 0 new, 1 on the path, 2 done
    std::vector<std::pair<NodeId, size_t>> stack;
    for (size_t start = 0; start < n; ++start) {
      if (mark[start]) continue;
      stack.push_back({static_cast<NodeId>(start), 0});
      mark[start] = 1;
      while (!stack.empty()) {
        auto& [id, next] = stack.back();
        const auto& alts = out_.nodes[static_cast<size_t>(id)].any_of;
        if (next == alts.size()) {
          mark[static_cast<size_t>(id)] = 2;
          stack.pop_back();
          continue;
        }
        const NodeId to = alts[next++];
        if (mark[static_cast<size_t>(to)] == 1)
          throw SchemaError("", "the schema refers to itself without a value in between ($ref / anyOf cycle)");
        if (mark[static_cast<size_t>(to)] == 0) {
          mark[static_cast<size_t>(to)] = 1;
          stack.push_back({to, 0});
        }
      }
    }
  }

 private:
  int32_t intern(std::string text) {
    out_.pool.push_back(std::move(text));
    return static_cast<int32_t>(out_.pool.size() - 1);
  }

  NodeId fresh() {
    out_.nodes.emplace_back();
    return static_cast<NodeId>(out_.nodes.size() - 1);
  }

  NodeId resolve_ref(const std::string& ref, const std::string& where) {
    if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
    std::string name;
    const json* defs = nullptr;
    if (ref.rfind("#/$defs/", 0) == 0) {
      name = ref.substr(8);
      defs = root_.contains("$defs") ? &root_["$defs"] : nullptr;
    } else if (ref.rfind("#/definitions/", 0) == 0) {
      name = ref.substr(14);
      defs = root_.contains("definitions") ? &root_["definitions"] : nullptr;
    } else if (ref == "#") {
      const NodeId id = fresh();
      refs_[ref] = id;
      return compile_into(id, root_, "");
    } else {
      throw SchemaError(where, fmt::format("$ref '{}': only '#', '#/$defs/NAME' and '#/definitions/NAME' are supported", ref));
    }
    if (name.find('/') != std::string::npos || name.find('~') != std::string::npos)
      throw SchemaError(where, fmt::format("$ref '{}': nested or escaped definition names are not supported", ref));
    if (!defs || !defs->is_object() || !defs->contains(name))
      throw SchemaError(where, fmt::format("$ref '{}' names no definition", ref));
    // Reserve the node first: a recursive reference inside the definition finds it.
    const NodeId id = fresh();
    refs_[ref] = id;
    return compile_into(id, (*defs)[name], ref.substr(1));
  }

  NodeId compile(const json& s, const std::string& where) { return compile_into(kNoNode, s, where); }

  // Compiles `s` into node `id` (a fresh one when kNoNode).
  NodeId compile_into(NodeId id, const json& s, const std::string& where) {
    if (++depth_ > 64) throw SchemaError(where, "the schema nests deeper than 64 levels");
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    if (s.is_boolean()) {
      if (!s.get<bool>()) throw SchemaError(where, "the schema 'false' allows no value");
      return id == kNoNode ? 0 : alias(id, 0);
    }
    if (!s.is_object()) throw SchemaError(where, "a schema must be an object or a boolean");
    if (s.contains("$ref")) {
      for (const auto& [k, v] : s.items())
        if (k != "$ref" && !annotations().count(k))
          throw SchemaError(where + "/" + escape_pointer(k), fmt::format("'{}' next to '$ref' is not supported", k));
      if (!s["$ref"].is_string()) throw SchemaError(where + "/$ref", "'$ref' must be a string");
      const NodeId target = resolve_ref(s["$ref"].get<std::string>(), where + "/$ref");
      return id == kNoNode ? target : alias(id, target);
    }
    if (s.contains("allOf")) {
      const json& all = s["allOf"];
      if (!all.is_array() || all.size() != 1)
        throw SchemaError(where + "/allOf", "'allOf' is supported with exactly one subschema");
      for (const auto& [k, v] : s.items())
        if (k != "allOf" && !annotations().count(k))
          throw SchemaError(where + "/" + escape_pointer(k), fmt::format("'{}' next to 'allOf' is not supported", k));
      const NodeId target = compile(all[0], where + "/allOf/0");
      return id == kNoNode ? target : alias(id, target);
    }
    if (id == kNoNode) id = fresh();
    SchemaNode n;
    bool typed = false;
    for (const auto& [k, v] : s.items()) {
      const std::string at = where + "/" + escape_pointer(k);
      if (annotations().count(k)) continue;
      if (k == "type") {
        typed = true;
        n.types = 0;
        if (v.is_array()) {
          if (v.empty()) throw SchemaError(at, "'type' must not be an empty list");
          for (const auto& t : v) n.types |= type_bit(t, at);
        } else {
          n.types = type_bit(v, at);
        }
      } else if (k == "enum" || k == "const") {
        n.literal_only = true;
        if (k == "enum" && (!v.is_array() || v.empty())) throw SchemaError(at, "'enum' must be a non-empty list");
        for (const auto& lit : k == "enum" ? v : json::array({v})) {
          if (lit.is_number_float()) throw SchemaError(at, "floating-point values in enum / const are not supported");
          n.literals.push_back(intern(lit.dump()));
        }
      } else if (k == "anyOf") {
        if (!v.is_array() || v.empty()) throw SchemaError(at, "'anyOf' must be a non-empty list");
        for (size_t i = 0; i < v.size(); ++i) n.any_of.push_back(compile(v[i], fmt::format("{}/{}", at, i)));
      } else if (k == "properties") {
        if (!v.is_object()) throw SchemaError(at, "'properties' must be an object");
        for (const auto& [name, sub] : v.items()) {
          n.property_names.push_back(name);
          n.property_keys.push_back(intern(json(name).dump().substr(1)));
          n.property_values.push_back(compile(sub, at + "/" + escape_pointer(name)));
        }
      } else if (k == "required") {
        if (!v.is_array()) throw SchemaError(at, "'required' must be a list of names");
      } else if (k == "additionalProperties") {
        if (v.is_boolean()) n.additional = v.get<bool>() ? 0 : kNoNode;
        else n.additional = compile(v, at);
      } else if (k == "items") {
        if (v.is_boolean()) n.items = v.get<bool>() ? 0 : kNoNode;
        else if (v.is_object()) n.items = compile(v, at);
        else throw SchemaError(at, "'items' must be a schema (use prefixItems for tuples)");
      } else if (k == "prefixItems") {
        if (!v.is_array()) throw SchemaError(at, "'prefixItems' must be a list of schemas");
        for (size_t i = 0; i < v.size(); ++i) n.prefix_items.push_back(compile(v[i], fmt::format("{}/{}", at, i)));
      } else if (k == "minItems") {
        n.min_items = as_count(v, at);
      } else if (k == "maxItems") {
        n.max_items = as_count(v, at);
      } else if (k == "minLength") {
        n.min_length = as_count(v, at);
      } else if (k == "maxLength") {
        n.max_length = as_count(v, at);
      } else if (k == "minimum" || k == "maximum" || k == "exclusiveMinimum" || k == "exclusiveMaximum") {
        continue;  // below, once the type is known
      } else {
        throw SchemaError(at, fmt::format("the JSON Schema keyword '{}' is not supported", k));
      }
    }
    // Bounds: exact for integers only.
    for (const char* k : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) {
      if (!s.contains(k)) continue;
      const std::string at = where + "/" + k;
      if (!typed || n.types != kInteger)
        throw SchemaError(at, fmt::format("'{}' is supported for type integer only", k));
      const json& v = s[k];
      if (!v.is_number()) throw SchemaError(at, "must be a number");
      const double d = v.get<double>();
      if (!(d > -9.2e18 && d < 9.2e18)) throw SchemaError(at, "out of the int64 range");
      const std::string key = k;
      n.int_bounded = true;
      if (key == "minimum") n.int_min = std::max(n.int_min, static_cast<int64_t>(std::ceil(d)));
      if (key == "exclusiveMinimum") n.int_min = std::max(n.int_min, static_cast<int64_t>(std::floor(d)) + 1);
      if (key == "maximum") n.int_max = std::min(n.int_max, static_cast<int64_t>(std::floor(d)));
      if (key == "exclusiveMaximum") n.int_max = std::min(n.int_max, static_cast<int64_t>(std::ceil(d)) - 1);
    }
    if (n.int_bounded && n.int_min > n.int_max) throw SchemaError(where, "the integer range is empty");
    if (n.min_items > n.max_items) throw SchemaError(where + "/minItems", "minItems exceeds maxItems");
    if (n.min_length > n.max_length) throw SchemaError(where + "/minLength", "minLength exceeds maxLength");
    // required: each name must be a listed property (an unlisted required key would need a
    // key the generator cannot know).
    n.required.assign(n.property_names.size(), false);
    if (s.contains("required")) {
      for (const auto& r : s["required"]) {
        if (!r.is_string()) throw SchemaError(where + "/required", "'required' must be a list of names");
        bool found = false;
        for (size_t i = 0; i < n.property_names.size(); ++i)
          if (n.property_names[i] == r.get_ref<const std::string&>()) n.required[i] = found = true;
        if (!found)
          throw SchemaError(where + "/required",
                            fmt::format("required property '{}' is not in 'properties'", r.get<std::string>()));
      }
    }
    if (!typed && !n.property_names.empty()) n.types = kObject;  // properties imply an object
    if (n.literal_only) {
      // The literals must also satisfy the other keywords: keep it simple and exact by refusing
      // a mix (an enum next to type is fine when every literal has that type).
      for (int32_t li : n.literals) {
        const json lit = json::parse(out_.pool[static_cast<size_t>(li)]);
        uint8_t bit = lit.is_object()    ? kObject
                      : lit.is_array()   ? kArray
                      : lit.is_string()  ? kString
                      : lit.is_number()  ? kInteger
                      : lit.is_boolean() ? kBoolean
                                         : kNull;
        if (!(n.types & bit)) throw SchemaError(where, fmt::format("the enum / const value {} does not have the schema's type", lit.dump()));
      }
    }
    out_.nodes[static_cast<size_t>(id)] = std::move(n);
    return id;
  }

  // Makes node `id` behave as `target` (a one-branch anyOf).
  NodeId alias(NodeId id, NodeId target) {
    SchemaNode n;
    n.any_of = {target};
    out_.nodes[static_cast<size_t>(id)] = std::move(n);
    return id;
  }

  const json& root_;
  Schema out_;
  std::map<std::string, NodeId> refs_;
  int depth_ = 0;
};

}  // namespace

Schema compile_schema(const json& schema) { return Compiler(schema).run(); }

Schema any_json_object() {
  Schema s;
  s.nodes.emplace_back();  // any value
  SchemaNode obj;
  obj.types = kObject;
  s.nodes.push_back(obj);
  s.root = 1;
  return s;
}

}  // namespace ilm::structured
