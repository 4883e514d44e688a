#include "structured/json_schema.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "structured/formats.h"
#include "structured/one_of.h"

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
    refuse_wide_branching();
    refuse_unproductive();
    // oneOf last: its branches may refer to definitions compiled after it.
    typed_.resize(out_.nodes.size(), false);
    for (const auto& [id, at] : one_ofs_) {
      const auto& alts = out_.nodes[static_cast<size_t>(id)].any_of;
      for (size_t i = 0; i < alts.size(); ++i)
        for (size_t j = i + 1; j < alts.size(); ++j)
          if (!mutually_exclusive(out_, typed_, alts[i], alts[j]))
            throw SchemaError(at, fmt::format("oneOf branches {} and {} may both match a value: overlapping oneOf "
                                              "branches cannot be enforced (use anyOf, or tell the branches apart by "
                                              "type or by a required property with distinct const values)", i, j));
    }
    return std::move(out_);
  }

  // The matcher follows every alternative of a value at once (at most kMaxAlternatives
  // threads): anyOf trees that fan out further (2^n paths from n nested two-way anyOfs) are
  // refused rather than explored or silently cut.
  void refuse_wide_branching() const {
    std::vector<int64_t> leaves(out_.nodes.size(), -1);
    std::function<int64_t(NodeId)> count = [&](NodeId id) -> int64_t {
      int64_t& memo = leaves[static_cast<size_t>(id)];
      if (memo >= 0) return memo;
      const SchemaNode& n = out_.nodes[static_cast<size_t>(id)];
      int64_t total = n.any_of.empty() ? 1 : 0;
      for (NodeId alt : n.any_of) total = std::min<int64_t>(total + count(alt), 1 << 20);
      return memo = total;
    };
    for (size_t i = 0; i < out_.nodes.size(); ++i)
      if (count(static_cast<NodeId>(i)) > static_cast<int64_t>(kMaxAlternatives))
        throw SchemaError("", fmt::format("anyOf alternatives expand to more than {} schemas", kMaxAlternatives));
  }

  // Every schema must have a finite instance (a recursive object whose recursion is required
  // has none): otherwise a generation could run on without ever being able to end.
  void refuse_unproductive() const {
    const size_t n = out_.nodes.size();
    std::vector<bool> ok(n, false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t i = 0; i < n; ++i) {
        if (ok[i]) continue;
        const SchemaNode& s = out_.nodes[i];
        auto good = [&](NodeId id) { return id != kNoNode && ok[static_cast<size_t>(id)]; };
        bool p = false;
        if (!s.any_of.empty()) {
          p = std::any_of(s.any_of.begin(), s.any_of.end(), good);
        } else if (s.literal_only || (s.types & (kString | kNumber | kInteger | kBoolean | kNull))) {
          p = true;
        } else if ((s.types & kArray)) {
          p = true;
          for (int64_t k = 0; k < s.min_items && p; ++k)
            p = good(k < static_cast<int64_t>(s.prefix_items.size()) ? s.prefix_items[static_cast<size_t>(k)] : s.items);
        }
        if (!p && (s.types & kObject) && s.any_of.empty() && !s.literal_only) {
          p = true;
          for (size_t k = 0; k < s.required.size(); ++k)
            if (s.required[k]) p = p && good(s.property_values[k]);
        }
        if (p) ok[i] = changed = true;
      }
    }
    for (size_t i = 0; i < n; ++i)
      if (!ok[i]) throw SchemaError("", "a subschema has no finite instance (required recursion, or minItems past items: false)");
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
      } else if (k == "anyOf" || k == "oneOf") {
        if (!v.is_array() || v.empty()) throw SchemaError(at, fmt::format("'{}' must be a non-empty list", k));
        if (!n.any_of.empty()) throw SchemaError(at, "'anyOf' and 'oneOf' together are not supported");
        for (size_t i = 0; i < v.size(); ++i) n.any_of.push_back(compile(v[i], fmt::format("{}/{}", at, i)));
        if (k == "oneOf") one_ofs_.push_back({id, at});  // checked once every node is compiled
      } else if (k == "pattern") {
        if (!v.is_string()) throw SchemaError(at, "'pattern' must be a string");
        n.pattern = add_pattern(v.get<std::string>(), at);
      } else if (k == "format") {
        if (!v.is_string()) throw SchemaError(at, "'format' must be a string");
        const auto pattern = format_pattern(v.get<std::string>());
        if (!pattern)
          throw SchemaError(at, fmt::format("format '{}' is not supported (supported: date, date-time, time, uuid)",
                                            v.get<std::string>()));
        n.pattern = add_pattern(*pattern, at);
      } else if (k == "properties") {
        if (!v.is_object()) throw SchemaError(at, "'properties' must be an object");
        if (v.size() > 4096) throw SchemaError(at, "more than 4096 properties in one object are not supported");
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
    // A pattern string is followed by its DFA alone: a length limit or a second DFA beside it
    // would need an intersection the matcher does not build.
    if (s.contains("pattern") && s.contains("format"))
      throw SchemaError(where + "/format", "'format' together with 'pattern' is not supported");
    for (const char* k : {"minLength", "maxLength"})
      if (n.pattern >= 0 && s.contains(k))
        throw SchemaError(where + (s.contains("pattern") ? "/pattern" : "/format"),
                          fmt::format("'{}' next to 'pattern' / 'format' cannot be enforced exactly; put the length "
                                      "in the pattern instead (e.g. ^.{{1,20}}$)", k));
    // Bounds: integers exactly in int64, numbers exactly in decimal (number_range.h).
    for (const char* k : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) {
      if (!s.contains(k)) continue;
      const std::string at = where + "/" + k;
      const json& v = s[k];
      if (!v.is_number()) throw SchemaError(at, "must be a number");
      const uint8_t numeric = n.types & (kNumber | kInteger);
      if (numeric == 0) throw SchemaError(at, fmt::format("'{}' on a schema that allows no number", k));
      if (numeric != kInteger) {
        if (!apply_bound(n.num_range, k, v.dump())) throw SchemaError(at, "must be a number");
        n.num_bounded = true;
        continue;
      }
      // Integers exactly; a fractional bound rounds inward. Generated integers have at most 18
      // digits, so bounds are limited to that range.
      constexpr int64_t kLimit = 999'999'999'999'999'999;
      int64_t lo_incl = 0, hi_incl = 0;
      if (v.is_number_integer()) {
        if (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(kLimit)
                                   : (v.get<int64_t>() > kLimit || v.get<int64_t>() < -kLimit))
          throw SchemaError(at, "integer bounds beyond 18 digits are not supported");
        lo_incl = hi_incl = v.get<int64_t>();
      } else {
        const double d = v.get<double>();
        if (!(d > -1e18 && d < 1e18)) throw SchemaError(at, "integer bounds beyond 18 digits are not supported");
        lo_incl = static_cast<int64_t>(std::ceil(d));
        hi_incl = static_cast<int64_t>(std::floor(d));
      }
      const std::string key = k;
      const bool whole = v.is_number_integer() || std::floor(v.get<double>()) == v.get<double>();
      n.int_bounded = true;
      if (key == "minimum") n.int_min = std::max(n.int_min, lo_incl);
      if (key == "exclusiveMinimum") n.int_min = std::max(n.int_min, whole ? lo_incl + 1 : lo_incl);
      if (key == "maximum") n.int_max = std::min(n.int_max, hi_incl);
      if (key == "exclusiveMaximum") n.int_max = std::min(n.int_max, whole ? hi_incl - 1 : hi_incl);
    }
    if (n.int_bounded && n.int_min > n.int_max) throw SchemaError(where, "the integer range is empty");
    if (n.num_bounded && !number_viable(n.num_range, {}) && !number_viable(n.num_range, {.negative = true}))
      throw SchemaError(where, fmt::format("no number of at most {} digits lies in the range", kMaxNumberDigits));
    if (n.min_items > n.max_items) throw SchemaError(where + "/minItems", "minItems exceeds maxItems");
    if (n.min_length > n.max_length) throw SchemaError(where + "/minLength", "minLength exceeds maxLength");
    // required: each name must be a listed property (an unlisted required key would need a
    // key the generator cannot know).
    n.required.assign(n.property_names.size(), false);
    if (s.contains("required")) {
      std::unordered_map<std::string_view, size_t> index;  // a schema may list many properties
      for (size_t i = 0; i < n.property_names.size(); ++i) index.emplace(n.property_names[i], i);
      for (const auto& r : s["required"]) {
        if (!r.is_string()) throw SchemaError(where + "/required", "'required' must be a list of names");
        const auto it = index.find(r.get_ref<const std::string&>());
        const bool found = it != index.end();
        if (found) n.required[it->second] = true;
        if (!found)
          throw SchemaError(where + "/required",
                            fmt::format("required property '{}' is not in 'properties'", r.get<std::string>()));
      }
    }
    // anyOf, enum and const decide the value alone here: other keywords beside them would
    // be ignored by the matcher, so they are refused (type beside enum / const is checked).
    for (const auto& [k, v] : s.items()) {
      if (annotations().count(k) || k == "anyOf" || k == "oneOf" || k == "enum" || k == "const") continue;
      if (!n.any_of.empty() || (n.literal_only && k != "type"))
        throw SchemaError(where + "/" + escape_pointer(k), fmt::format("'{}' next to {} is not supported", k,
                                                                       n.any_of.empty() ? "enum / const" : "anyOf / oneOf"));
    }
    if (!n.any_of.empty() && n.literal_only)
      throw SchemaError(where + (s.contains("anyOf") ? "/anyOf" : "/oneOf"), "'anyOf' / 'oneOf' next to enum / const is not supported");
    if (n.items == kNoNode && n.min_items > static_cast<int64_t>(n.prefix_items.size()))
      throw SchemaError(where + "/minItems", "minItems exceeds the prefixItems that 'items: false' allows");
    {  // alternatives the matcher follows at once must stay within kMaxAlternatives
      size_t longest = 0, run = 0;
      for (size_t i = 0; i < n.required.size(); ++i) {
        run = n.required[i] ? 0 : run + 1;
        longest = std::max(longest, run);
      }
      if (longest + 2 > kMaxAlternatives)
        throw SchemaError(where + "/properties", fmt::format("more than {} optional properties in a row are not supported",
                                                             kMaxAlternatives - 2));
      std::map<char, size_t> by_first;
      for (int32_t li : n.literals)
        if (++by_first[out_.pool[static_cast<size_t>(li)][0]] > kMaxAlternatives)
          throw SchemaError(where + "/enum", fmt::format("more than {} enum values start alike", kMaxAlternatives));
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
    if (typed_.size() <= static_cast<size_t>(id)) typed_.resize(static_cast<size_t>(id) + 1, false);
    typed_[static_cast<size_t>(id)] = typed;
    return id;
  }

  int32_t add_pattern(std::string_view pattern, const std::string& at) {
    ByteDfa dfa;
    try {
      dfa = compile_pattern(pattern);
    } catch (const RegexError& e) {
      throw SchemaError(at, fmt::format("pattern '{}': {}", pattern, e.what()));
    }
    if (dfa.start == kDeadState)
      throw SchemaError(at, fmt::format("pattern '{}' matches no string the generator can write (control characters "
                                        "other than \\b \\t \\n \\f \\r are never written)", pattern));
    out_.patterns.push_back(std::move(dfa));
    return static_cast<int32_t>(out_.patterns.size() - 1);
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
  std::vector<bool> typed_;  // per node: its schema has 'type' (else it allows every type)
  std::vector<std::pair<NodeId, std::string>> one_ofs_;  // oneOf nodes and their pointers
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
