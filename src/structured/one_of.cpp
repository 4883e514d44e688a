#include "structured/one_of.h"

#include <algorithm>
#include <optional>

namespace ilm::structured {
namespace {

using json = nlohmann::json;  // unordered: equal objects compare equal whatever their key order

// JSON value kinds: integers are numbers.
uint8_t kinds_of_types(uint8_t t) { return (t & kInteger) ? static_cast<uint8_t>((t & ~kInteger) | kNumber) : t; }

uint8_t kind_of(const json& v) {
  return v.is_object() ? kObject : v.is_array() ? kArray : v.is_string() ? kString : v.is_number() ? kNumber
         : v.is_boolean() ? kBoolean : kNull;
}

class Prover {
 public:
  Prover(const Schema& s, const std::vector<bool>& typed) : s_(s), typed_(typed) {}

  bool exclusive(NodeId a, NodeId b) const {
    const SchemaNode& x = node(a);
    const SchemaNode& y = node(b);
    // Every branch of an anyOf must be exclusive with the other side (anyOf graphs are acyclic
    // by now: the compiler refused $ref / anyOf cycles).
    if (!x.any_of.empty()) return std::all_of(x.any_of.begin(), x.any_of.end(), [&](NodeId u) { return exclusive(u, b); });
    if (!y.any_of.empty()) return std::all_of(y.any_of.begin(), y.any_of.end(), [&](NodeId u) { return exclusive(a, u); });
    const uint8_t common = kinds(a) & kinds(b);
    if (common == 0) return true;
    if (x.literal_only || y.literal_only) {
      const auto lx = literals(a), ly = literals(b);
      return lx && ly && disjoint(*lx, *ly);
    }
    if (common == kNumber) return ranges_disjoint(x, y);
    if (common == kObject) return discriminated(x, y);
    return false;
  }

 private:
  const SchemaNode& node(NodeId id) const { return s_.nodes[static_cast<size_t>(id)]; }

  // The kinds of value the node's schema accepts (a superset).
  uint8_t kinds(NodeId id) const {
    const SchemaNode& n = node(id);
    if (!n.any_of.empty()) {
      uint8_t k = 0;
      for (NodeId alt : n.any_of) k |= kinds(alt);
      return k;
    }
    if (n.literal_only) {
      uint8_t k = 0;
      for (int32_t li : n.literals) k |= kind_of(json::parse(s_.pool[static_cast<size_t>(li)]));
      return k;
    }
    const bool has_type = static_cast<size_t>(id) < typed_.size() && typed_[static_cast<size_t>(id)];
    return has_type ? kinds_of_types(n.types) : kinds_of_types(kAnyType);
  }

  // The values of an enum / const node (through aliases and anyOf); nullopt for other nodes.
  std::optional<std::vector<json>> literals(NodeId id) const {
    const SchemaNode& n = node(id);
    std::vector<json> out;
    if (!n.any_of.empty()) {
      for (NodeId alt : n.any_of) {
        auto sub = literals(alt);
        if (!sub) return std::nullopt;
        out.insert(out.end(), sub->begin(), sub->end());
      }
      return out;
    }
    if (!n.literal_only) return std::nullopt;
    for (int32_t li : n.literals) out.push_back(json::parse(s_.pool[static_cast<size_t>(li)]));
    return out;
  }

  static bool disjoint(const std::vector<json>& a, const std::vector<json>& b) {
    for (const json& u : a)
      for (const json& v : b)
        if (u == v) return false;
    return true;
  }

  // Both allow numbers only (checked by the caller). An unbounded side is the whole line.
  static bool ranges_disjoint(const SchemaNode& x, const SchemaNode& y) {
    auto range = [](const SchemaNode& n) -> std::optional<NumberRange> {
      if (n.int_bounded) {
        const Fixed scale = static_cast<Fixed>(100'000'000'000'000);  // 10^kFixedScale
        static_assert(kFixedScale == 14);
        return NumberRange{static_cast<Fixed>(n.int_min) * scale, static_cast<Fixed>(n.int_max) * scale};
      }
      if (n.num_bounded) return n.num_range;
      return std::nullopt;
    };
    const auto rx = range(x), ry = range(y);
    // Inclusive grid bounds: every value either side writes is on the grid (integers, or at
    // most 14 fraction digits), and a grid value is in a range exactly when it is between them.
    // An integer-typed side only writes integers, so its grid range is exact too.
    return rx && ry && (rx->hi < ry->lo || ry->hi < rx->lo);
  }

  // Objects told apart by a property both require, with disjoint enum / const values.
  bool discriminated(const SchemaNode& x, const SchemaNode& y) const {
    for (size_t i = 0; i < x.property_names.size(); ++i) {
      if (!x.required[i]) continue;
      for (size_t j = 0; j < y.property_names.size(); ++j) {
        if (!y.required[j] || y.property_names[j] != x.property_names[i]) continue;
        const auto lx = literals(x.property_values[i]), ly = literals(y.property_values[j]);
        if (lx && ly && disjoint(*lx, *ly)) return true;
      }
    }
    return false;
  }

  const Schema& s_;
  const std::vector<bool>& typed_;
};

}  // namespace

bool mutually_exclusive(const Schema& s, const std::vector<bool>& typed, NodeId a, NodeId b) {
  return Prover(s, typed).exclusive(a, b);
}

}  // namespace ilm::structured
