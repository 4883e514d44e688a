#pragma once
// oneOf is enforced as anyOf when no value can match two of its branches; this decides that
// conservatively (false: not proved) for two compiled branches.
#include <vector>

#include "structured/json_schema.h"

namespace ilm::structured {

// No JSON value is valid against both nodes, by JSON Schema's rules (not only among the texts
// the matcher writes). Proofs: the value types the two schemas allow are disjoint; enum /
// const values are disjoint; number ranges are disjoint; or both are objects with a common
// required property whose values are enum / const sets that are disjoint (a discriminator).
// `typed[id]`: node id's schema has 'type' (an untyped schema allows values of every type,
// whatever the matcher writes for it).
bool mutually_exclusive(const Schema& s, const std::vector<bool>& typed, NodeId a, NodeId b);

}  // namespace ilm::structured
