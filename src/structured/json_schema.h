#pragma once
// JSON Schema compiled for constrained decoding: a graph of nodes the JSON matcher
// (json_matcher.h) walks byte by byte. Only keywords whose meaning the matcher enforces exactly
// are accepted; any other keyword that constrains instances is a SchemaError naming it (a
// silently looser output would be worse than a refusal). Annotations (title, description,
// default, examples, $schema, $id, $comment, deprecated, readOnly, writeOnly) are ignored.
//
// Supported: type (a name or a list), enum, const, anyOf, oneOf (only when its branches are
// provably mutually exclusive: disjoint types, disjoint enum / const values, disjoint number
// ranges, or objects told apart by a required property whose const / enum values differ; then
// it is an anyOf), $ref to #/$defs/... or #/definitions/... (recursive too), allOf with one
// subschema; objects: properties (generated in schema order), required, additionalProperties
// (false, true or a schema; extra keys come after the listed ones, are not listed names, and
// use no escapes); arrays: items, prefixItems, minItems, maxItems; strings: minLength,
// maxLength (code points; \u escapes of surrogates are not generated), pattern (the ECMA-262
// subset of regex.h, unanchored as JSON Schema says; no \u escapes are generated in such a
// string) or format date / date-time / time / uuid (formats.h), not together and not with
// minLength / maxLength; integers: minimum, maximum, exclusiveMinimum, exclusiveMaximum
// (exact, int64); numbers: the same four bounds, exact in decimal (number_range.h: bounded
// numbers have no exponent and at most 15 digits). Unbounded numbers are generated in JSON's
// syntax.
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "structured/number_range.h"
#include "structured/regex.h"

namespace ilm::structured {

using NodeId = int32_t;
inline constexpr NodeId kNoNode = -1;
// The most alternatives one value may open at once (anyOf leaves, optional keys in a row,
// enum values with the same first byte); the matcher's thread cap is this.
inline constexpr size_t kMaxAlternatives = 64;  // "nothing allowed" (additionalProperties: false, no more items)

enum TypeBit : uint8_t {
  kObject = 1,
  kArray = 2,
  kString = 4,
  kNumber = 8,   // any JSON number (integers included)
  kInteger = 16,
  kBoolean = 32,
  kNull = 64,
  kAnyType = 127,
};

struct SchemaNode {
  uint8_t types = kAnyType;
  // enum / const: the value is one of these JSON texts (compact, as nlohmann dumps them).
  bool literal_only = false;
  std::vector<int32_t> literals;  // indices into Schema::pool
  // anyOf: the value matches one of these (the node's own keywords do not apply).
  std::vector<NodeId> any_of;
  // object
  std::vector<int32_t> property_keys;  // pool indices: the key's JSON text without the opening quote, closing quote included
  std::vector<std::string> property_names;  // the raw names (to keep extra keys distinct from them)
  std::vector<NodeId> property_values;
  std::vector<bool> required;
  NodeId additional = 0;  // node 0 is "any JSON value"; kNoNode: no other keys
  // array
  std::vector<NodeId> prefix_items;
  NodeId items = 0;
  int64_t min_items = 0, max_items = std::numeric_limits<int64_t>::max();
  // string
  int64_t min_length = 0, max_length = std::numeric_limits<int64_t>::max();
  int32_t pattern = -1;  // pattern / format: index into Schema::patterns; -1: none
  // integer bounds (inclusive)
  bool int_bounded = false;
  int64_t int_min = std::numeric_limits<int64_t>::min(), int_max = std::numeric_limits<int64_t>::max();
  // number bounds (type number): exact decimal range, see number_range.h
  bool num_bounded = false;
  NumberRange num_range = unbounded_range();
};

struct Schema {
  std::vector<SchemaNode> nodes;  // nodes[0]: any JSON value
  std::vector<std::string> pool;  // literal texts
  std::vector<ByteDfa> patterns;  // string patterns and formats (regex.h)
  NodeId root = 0;
};

// A schema the matcher cannot enforce exactly, or an invalid one: `where` is the JSON pointer
// of the offending keyword (e.g. "/properties/date/format").
class SchemaError : public std::runtime_error {
 public:
  SchemaError(std::string where, const std::string& what) : std::runtime_error(what), where_(std::move(where)) {}
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

// Ordered JSON: properties are generated in the order the schema lists them.
Schema compile_schema(const nlohmann::ordered_json& schema);
// response_format {"type": "json_object"}: any JSON object.
Schema any_json_object();

}  // namespace ilm::structured
