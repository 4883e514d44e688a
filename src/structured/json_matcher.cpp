#include "structured/json_matcher.h"

#include <algorithm>
#include <cstring>

namespace ilm::structured {
namespace {

// Literal texts that are not in the schema's pool (negative text ids).
constexpr std::string_view kTrueText = "true", kFalseText = "false", kNullText = "null";
constexpr int32_t kTrueId = -1, kFalseId = -2, kNullId = -3;

std::string_view literal_text(const Schema& s, int32_t id) {
  if (id == kTrueId) return kTrueText;
  if (id == kFalseId) return kFalseText;
  if (id == kNullId) return kNullText;
  return s.pool[static_cast<size_t>(id)];
}

bool is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
bool is_hex(uint8_t c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Object phases.
enum : uint8_t { kObjOpen, kObjAfterKey, kObjAfterValue, kObjBeforeKey };
// Array phases.
enum : uint8_t { kArrOpen, kArrAfterValue };
// String phases.
enum : uint8_t { kStrNormal, kStrEsc, kStrHex0, kStrHex1, kStrHex2, kStrHex3 };
// Number phases.
enum : uint8_t { kNumStart, kNumMinus, kNumZero, kNumInt, kNumDot, kNumFrac, kNumE, kNumESign, kNumExp };
constexpr uint8_t kIntegerOnly = 1, kNegative = 2, kSurrogateLead = 4;
constexpr int kMaxDigits = 64;
constexpr int kMaxExponentDigits = 2;  // every number stays finite as a double (at most ~1e163)
constexpr int kMaxBoundedDigits = 18;  // |value| < 10^18 fits int64 with room for one more digit
constexpr size_t kMaxExtraKey = 256;

// UTF-8 continuation ranges for the byte after a lead byte (Unicode's well-formed table).
enum : int32_t { kRangeAny, kRangeA0BF, kRange809F, kRange90BF, kRange808F };
bool in_range(int32_t r, uint8_t c) {
  switch (r) {
    case kRangeA0BF: return c >= 0xA0 && c <= 0xBF;
    case kRange809F: return c >= 0x80 && c <= 0x9F;
    case kRange90BF: return c >= 0x90 && c <= 0xBF;
    case kRange808F: return c >= 0x80 && c <= 0x8F;
    default: return c >= 0x80 && c <= 0xBF;
  }
}

// The byte a one-letter escape stands for (\" \\ \/ \b \f \n \r \t).
uint8_t unescape(uint8_t c) {
  switch (c) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return c;
  }
}

bool required_from(const SchemaNode& n, int32_t from) {
  for (size_t i = static_cast<size_t>(from); i < n.required.size(); ++i)
    if (n.required[i]) return true;
  return false;
}

// Some integer with the sign and digits so far (|value| = v, d digits; `closed`: no more
// digits may follow, after a leading zero) lies in [lo, hi].
bool int_viable(bool negative, int64_t v, int d, bool closed, bool complete, int64_t lo, int64_t hi) {
  auto hits = [&](int64_t a, int64_t b) {  // magnitudes [a, b] with the sign applied meet [lo, hi]
    const int64_t x = negative ? -b : a, y = negative ? -a : b;
    return x <= hi && y >= lo;
  };
  if (d == 0) return negative ? lo <= 0 : true;  // "-" alone: -0 or any negative
  if (complete && hits(v, v)) return true;
  if (closed) return false;
  int64_t scale = 1;
  for (int k = 1; d + k <= kMaxBoundedDigits; ++k) {
    scale *= 10;
    if (v > (INT64_MAX - (scale - 1)) / scale) break;
    if (hits(v * scale, v * scale + scale - 1)) return true;
  }
  return false;
}

class Stepper {
 public:
  Stepper(const Schema& s, std::vector<Thread>& out) : s_(s), out_(out) {}

  // Feeds one byte to thread t; survivors go to out.
  void feed(Thread t, uint8_t c) {
    for (;;) {
      if (t.stack.empty()) return;  // nothing may follow the root value
      Frame& f = t.stack.back();
      switch (f.kind) {
        case Frame::Value:
          if (is_ws(c)) {
            if (f.ws >= kMaxWhitespace || t.stack.size() == 1) return;  // none before the root value
            ++f.ws;
            return emit(std::move(t));
          }
          return start_value(std::move(t), f.node, c);
        case Frame::Literal: {
          const std::string_view text = literal_text(s_, f.a);
          if (static_cast<uint8_t>(text[static_cast<size_t>(f.b)]) != c) return;
          if (static_cast<size_t>(++f.b) == text.size()) t.stack.pop_back();
          return emit(std::move(t));
        }
        case Frame::String:
        case Frame::ExtraKey:
          return string_byte(std::move(t), c);
        case Frame::Number:
          if (number_byte(f, c)) return emit(std::move(t));
          if (!number_complete(f)) return;
          t.stack.pop_back();
          continue;  // the byte ends the number: the parent takes it
        case Frame::Object:
          return object_byte(std::move(t), c);
        case Frame::Array:
          return array_byte(std::move(t), c);
      }
      return;
    }
  }

  bool number_complete(const Frame& f) const {
    if (f.phase != kNumZero && f.phase != kNumInt && f.phase != kNumFrac && f.phase != kNumExp) return false;
    const SchemaNode& n = s_.nodes[static_cast<size_t>(f.node)];
    if (n.num_bounded) return number_in_range(n.num_range, decimal_prefix(f));
    if (!n.int_bounded) return true;
    const int64_t v = (f.flags & kNegative) ? -f.c : f.c;
    return v >= n.int_min && v <= n.int_max;
  }

 private:
  void emit(Thread&& t) { out_.push_back(std::move(t)); }

  void start_value(Thread t, NodeId id, uint8_t c) {
    const SchemaNode& n = s_.nodes[static_cast<size_t>(id)];
    if (!n.any_of.empty()) {
      for (NodeId alt : n.any_of) {
        Thread u = t;
        u.stack.back().node = alt;
        feed(std::move(u), c);
      }
      return;
    }
    Frame& f = t.stack.back();
    if (n.literal_only) {
      for (int32_t li : n.literals) {
        const std::string& text = s_.pool[static_cast<size_t>(li)];
        if (static_cast<uint8_t>(text[0]) != c) continue;
        Thread u = t;
        Frame& g = u.stack.back();
        g = Frame{};
        g.kind = Frame::Literal;
        g.a = li;
        g.b = 1;
        if (text.size() == 1) u.stack.pop_back();
        emit(std::move(u));
      }
      return;
    }
    auto literal = [&](int32_t id_) {
      f = Frame{};
      f.kind = Frame::Literal;
      f.a = id_;
      f.b = 1;
      emit(std::move(t));
    };
    if (c == '{' && (n.types & kObject)) {
      f = Frame{Frame::Object, kObjOpen, 0, 0, id, 0, 0, 0};
      return emit(std::move(t));
    }
    if (c == '[' && (n.types & kArray)) {
      if (n.max_items == 0 && n.min_items > 0) return;
      f = Frame{Frame::Array, kArrOpen, 0, 0, id, 0, 0, 0};
      return emit(std::move(t));
    }
    if (c == '"' && (n.types & kString)) {
      f = Frame{Frame::String, kStrNormal, 0, 0, id, 0, kRangeAny, 0};
      if (n.pattern >= 0) f.d = s_.patterns[static_cast<size_t>(n.pattern)].start;  // live (checked by the compiler)
      return emit(std::move(t));
    }
    if ((c == '-' || is_digit(c)) && (n.types & (kNumber | kInteger))) {
      f = Frame{Frame::Number, kNumStart, 0, static_cast<uint8_t>((n.types & kNumber) ? 0 : kIntegerOnly), id, 0, 0, 0};
      if (number_byte(f, c)) emit(std::move(t));
      return;
    }
    if (c == 't' && (n.types & kBoolean)) return literal(kTrueId);
    if (c == 'f' && (n.types & kBoolean)) return literal(kFalseId);
    if (c == 'n' && (n.types & kNull)) return literal(kNullId);
  }

  static NumberPrefix decimal_prefix(const Frame& f) {
    return {(f.flags & kNegative) != 0, f.c, f.b, f.phase == kNumDot || f.phase == kNumFrac, f.a};
  }

  // A number with decimal bounds (number_range.h): no exponent, at most kMaxNumberDigits
  // digits, and every prefix can still reach the range.
  bool decimal_byte(Frame& f, uint8_t c) const {
    const SchemaNode& n = s_.nodes[static_cast<size_t>(f.node)];
    const int digit = is_digit(c) ? c - '0' : -1;
    switch (f.phase) {
      case kNumStart:
        if (c == '-') {
          f.flags |= kNegative;
          f.phase = kNumMinus;
          break;
        }
        [[fallthrough]];
      case kNumMinus:
        if (digit < 0) return false;
        f.phase = digit == 0 ? kNumZero : kNumInt;
        f.b = 1;
        f.c = digit;
        break;
      case kNumZero:
      case kNumInt:
        if (c == '.') {
          f.phase = kNumDot;
        } else if (f.phase == kNumInt && digit >= 0) {
          ++f.b;
          f.c = f.c * 10 + digit;
        } else {
          return false;
        }
        break;
      case kNumDot:
      case kNumFrac:
        if (digit < 0) return false;
        f.phase = kNumFrac;
        ++f.a;
        f.c = f.c * 10 + digit;
        break;
      default:
        return false;
    }
    if (f.a + f.b > kMaxNumberDigits) return false;  // before c grows past int64
    return number_viable(n.num_range, decimal_prefix(f));
  }

  // Advances a number frame by c; false when c cannot extend the number (it may end it).
  bool number_byte(Frame& f, uint8_t c) const {
    const SchemaNode& n = s_.nodes[static_cast<size_t>(f.node)];
    if (n.num_bounded) return decimal_byte(f, c);
    const bool int_only = f.flags & kIntegerOnly;
    auto digit = [&]() {
      if (++f.b > kMaxDigits) return false;
      if (n.int_bounded) {
        if (f.b > kMaxBoundedDigits) return false;
        f.c = f.c * 10 + (c - '0');
      }
      return true;
    };
    switch (f.phase) {
      case kNumStart:
        if (c == '-') {
          f.flags |= kNegative;
          f.phase = kNumMinus;
          break;
        }
        [[fallthrough]];  // a first digit is read as after a minus sign
      case kNumMinus:
        if (c == '0') {
          f.phase = kNumZero;
          f.b = 1;
        } else if (is_digit(c)) {
          f.phase = kNumInt;
          if (!digit()) return false;
        } else {
          return false;
        }
        break;
      case kNumZero:
      case kNumInt:
        if (f.phase == kNumInt && is_digit(c)) {
          if (!digit()) return false;
        } else if (c == '.' && !int_only) {
          f.phase = kNumDot;
        } else if ((c == 'e' || c == 'E') && !int_only) {
          f.phase = kNumE;
        } else {
          return false;
        }
        break;
      case kNumDot:
        if (!is_digit(c)) return false;
        f.phase = kNumFrac;
        f.b = 1;
        break;
      case kNumFrac:
        if (is_digit(c)) {
          if (++f.b > kMaxDigits) return false;
        } else if (c == 'e' || c == 'E') {
          f.phase = kNumE;
        } else {
          return false;
        }
        break;
      case kNumE:
        if (c == '+' || c == '-') f.phase = kNumESign;
        else if (is_digit(c)) f.phase = kNumExp, f.b = 1;
        else return false;
        break;
      case kNumESign:
        if (!is_digit(c)) return false;
        f.phase = kNumExp;
        f.b = 1;
        break;
      case kNumExp:
        if (!is_digit(c) || ++f.b > kMaxExponentDigits) return false;
        break;
      default:
        return false;
    }
    if (n.int_bounded) {
      const bool closed = f.phase == kNumZero;
      const int d = f.phase == kNumMinus ? 0 : f.b;
      if (!int_viable(f.flags & kNegative, f.c, d, closed, true, n.int_min, n.int_max)) return false;
    }
    return true;
  }

  // A pattern string's DFA takes the decoded character byte `c`: false when no match can
  // follow any more.
  bool pattern_step(Frame& f, const SchemaNode& n, uint8_t c) const {
    if (n.pattern < 0) return true;
    f.d = s_.patterns[static_cast<size_t>(n.pattern)].step(f.d, c);
    return f.d != kDeadState;
  }

  // A backslash in a pattern string must lead to some escape the DFA can take.
  bool pattern_escape_viable(const Frame& f, const SchemaNode& n) const {
    if (n.pattern < 0) return true;
    const ByteDfa& dfa = s_.patterns[static_cast<size_t>(n.pattern)];
    for (uint8_t e : {'"', '\\', '/', '\b', '\f', '\n', '\r', '\t'})
      if (dfa.step(f.d, e) != kDeadState) return true;
    return false;
  }

  void string_byte(Thread t, uint8_t c) {
    Frame& f = t.stack.back();
    const bool key = f.kind == Frame::ExtraKey;
    const SchemaNode& n = s_.nodes[static_cast<size_t>(f.node)];
    const bool pattern = !key && n.pattern >= 0;
    const int64_t max_len = key ? static_cast<int64_t>(kMaxExtraKey) : n.max_length;
    if (key && c != '"') {
      if (t.key.size() >= kMaxExtraKey) return;
      t.key.push_back(static_cast<char>(c));
    }
    switch (f.phase) {
      case kStrNormal:
        if (f.a > 0) {  // inside a UTF-8 sequence
          if (!in_range(f.b, c)) return;
          if (pattern && !pattern_step(f, n, c)) return;
          f.b = kRangeAny;
          --f.a;
          return emit(std::move(t));
        }
        if (c == '"') {
          if (!key && f.c < n.min_length) return;
          if (pattern && !s_.patterns[static_cast<size_t>(n.pattern)].accepts(f.d)) return;
          if (key) {
            const SchemaNode& obj = s_.nodes[static_cast<size_t>(f.node)];
            for (const auto& name : obj.property_names)
              if (name == t.key) return;  // listed names are not extra keys
            t.key.clear();
          }
          t.stack.pop_back();
          return emit(std::move(t));
        }
        if (c < 0x20 || f.c + 1 > max_len) return;
        if (c == '\\') {
          if (key || (pattern && !pattern_escape_viable(f, n))) return;
          f.phase = kStrEsc;
          return emit(std::move(t));
        }
        if (pattern && !pattern_step(f, n, c)) return;  // a lead byte's DFA state is mid-character
        if (c < 0x80) {
          ++f.c;
          return emit(std::move(t));
        }
        if (c >= 0xC2 && c <= 0xDF) f.a = 1, f.b = kRangeAny;
        else if (c == 0xE0) f.a = 2, f.b = kRangeA0BF;
        else if (c == 0xED) f.a = 2, f.b = kRange809F;
        else if (c >= 0xE1 && c <= 0xEF) f.a = 2, f.b = kRangeAny;
        else if (c == 0xF0) f.a = 3, f.b = kRange90BF;
        else if (c >= 0xF1 && c <= 0xF3) f.a = 3, f.b = kRangeAny;
        else if (c == 0xF4) f.a = 3, f.b = kRange808F;
        else return;
        ++f.c;
        return emit(std::move(t));
      case kStrEsc:
        if (c == 'u' && !pattern) {
          f.phase = kStrHex0;
        } else if (c != 'u' && std::strchr("\"\\/bfnrt", c) && c != 0) {
          if (pattern && !pattern_step(f, n, unescape(c))) return;
          f.phase = kStrNormal;
          ++f.c;
        } else {
          return;  // pattern strings have no \u escapes: the DFA follows UTF-8 bytes
        }
        return emit(std::move(t));
      case kStrHex0:
      case kStrHex1:
      case kStrHex2:
      case kStrHex3:
        if (!is_hex(c)) return;
        if (f.phase == kStrHex0 && (c == 'd' || c == 'D')) f.flags |= kSurrogateLead;
        if (f.phase == kStrHex1 && (f.flags & kSurrogateLead) && !(c >= '0' && c <= '7')) return;  // D800-DFFF
        if (f.phase == kStrHex3) {
          f.phase = kStrNormal;
          f.flags &= static_cast<uint8_t>(~kSurrogateLead);
          ++f.c;
        } else {
          ++f.phase;
        }
        return emit(std::move(t));
      default:
        return;
    }
  }

  // Whitespace between a container's tokens, at most kMaxWhitespace in a row: true when `c`
  // was whitespace (the thread went on or died), false when the run is over.
  bool whitespace(Thread& t, uint8_t c) {
    Frame& f = t.stack.back();
    if (!is_ws(c)) {
      f.ws = 0;
      return false;
    }
    if (f.ws < kMaxWhitespace) {
      ++f.ws;
      emit(std::move(t));
    }
    return true;
  }

  void object_byte(Thread t, uint8_t c) {
    if (whitespace(t, c)) return;
    Frame& f = t.stack.back();
    const SchemaNode& n = s_.nodes[static_cast<size_t>(f.node)];
    const bool more_keys = static_cast<size_t>(f.a) < n.property_keys.size() || n.additional != kNoNode;
    switch (f.phase) {
      case kObjOpen:
      case kObjBeforeKey:
        if (c == '}' && f.phase == kObjOpen && !required_from(n, f.a)) {
          t.stack.pop_back();
          return emit(std::move(t));
        }
        if (c == '"') return key_start(std::move(t));
        return;
      case kObjAfterKey: {
        if (c != ':') return;
        const NodeId value = f.b >= 0 ? n.property_values[static_cast<size_t>(f.b)] : n.additional;
        f.phase = kObjAfterValue;
        Frame v;
        v.kind = Frame::Value;
        v.node = value;
        t.stack.push_back(v);
        return emit(std::move(t));
      }
      case kObjAfterValue:
        if (c == ',' && more_keys && (static_cast<size_t>(f.a) < n.property_keys.size() || !required_from(n, f.a))) {
          f.phase = kObjBeforeKey;
          return emit(std::move(t));
        }
        if (c == '}' && !required_from(n, f.a)) {
          t.stack.pop_back();
          return emit(std::move(t));
        }
        return;
      default:
        return;
    }
  }

  // An opening quote of a key: one thread per key that may come next (listed properties in
  // order, none skipping a required one; then extra keys once no required one is left).
  void key_start(Thread t) {
    const Frame& f = t.stack.back();
    const SchemaNode& n = s_.nodes[static_cast<size_t>(f.node)];
    for (size_t i = static_cast<size_t>(f.a); i < n.property_keys.size(); ++i) {
      Thread u = t;
      Frame& g = u.stack.back();
      g.phase = kObjAfterKey;
      g.b = static_cast<int32_t>(i);
      g.a = static_cast<int32_t>(i + 1);
      Frame lit;
      lit.kind = Frame::Literal;
      lit.a = n.property_keys[i];
      u.stack.push_back(lit);
      emit(std::move(u));
      if (n.required[i]) break;
    }
    if (n.additional != kNoNode && !required_from(n, f.a)) {
      Frame& g = t.stack.back();
      g.phase = kObjAfterKey;
      g.b = -1;
      g.a = static_cast<int32_t>(n.property_keys.size());
      Frame k;
      k.kind = Frame::ExtraKey;
      k.node = g.node;
      t.stack.push_back(k);
      t.key.clear();
      emit(std::move(t));
    }
  }

  void array_byte(Thread t, uint8_t c) {
    if (whitespace(t, c)) return;
    Frame& f = t.stack.back();
    const SchemaNode& n = s_.nodes[static_cast<size_t>(f.node)];
    auto item_node = [&](int64_t i) {
      if (i >= n.max_items) return kNoNode;
      return i < static_cast<int64_t>(n.prefix_items.size()) ? n.prefix_items[static_cast<size_t>(i)] : n.items;
    };
    if (c == ']' && f.c >= n.min_items) {
      t.stack.pop_back();
      return emit(std::move(t));
    }
    if (f.phase == kArrAfterValue) {
      if (c != ',' || item_node(f.c) == kNoNode) return;
      Frame v;
      v.kind = Frame::Value;
      v.node = item_node(f.c);
      ++f.c;
      t.stack.push_back(v);
      return emit(std::move(t));
    }
    // kArrOpen: the first item starts with this byte.
    const NodeId item = item_node(0);
    if (item == kNoNode) return;
    f.phase = kArrAfterValue;
    f.c = 1;
    Frame v;
    v.kind = Frame::Value;
    v.node = item;
    t.stack.push_back(v);
    feed(std::move(t), c);
  }

  const Schema& s_;
  std::vector<Thread>& out_;
};

void append(std::string& k, const void* p, size_t n) { k.append(static_cast<const char*>(p), n); }

// A frame's counter as far as any continuation of at most `clamp` bytes can tell: a string's
// characters only matter through the room left below maxLength and the way left to minLength,
// an array's items through minItems / maxItems and the tuple's prefix. Equal canonical keys
// allow the same next tokens, so masks are shared (a length-limited string hits the cache).
int64_t canonical_count(const Schema* s, const Frame& f, int64_t clamp) {
  if (!s || clamp <= 0) return f.c;
  const SchemaNode& n = s->nodes[static_cast<size_t>(f.node)];
  if (f.kind == Frame::String) {
    const int64_t room = std::min(n.max_length - f.c, clamp);
    const int64_t need = std::min(std::max<int64_t>(n.min_length - f.c, 0), clamp);
    return room * (clamp + 1) + need;
  }
  if (f.kind == Frame::Array) {
    const int64_t fixed = std::max<int64_t>(static_cast<int64_t>(n.prefix_items.size()), n.min_items);
    if (f.c < fixed) return f.c;
    return -1 - std::min(n.max_items - f.c, clamp);  // past the prefix and minItems: only the room counts
  }
  return f.c;
}

std::string thread_key(const Thread& t, const Schema* s = nullptr, int64_t clamp = 0) {
  std::string k;
  k.reserve(t.stack.size() * 24 + t.key.size() + 8);
  for (const Frame& f : t.stack) {
    const uint8_t head[4] = {f.kind, f.phase, f.ws, f.flags};
    append(k, head, 4);
    append(k, &f.node, sizeof f.node);
    append(k, &f.a, sizeof f.a);
    append(k, &f.b, sizeof f.b);
    const int64_t c = canonical_count(s, f, clamp);
    append(k, &c, sizeof c);
    append(k, &f.d, sizeof f.d);
  }
  const uint32_t len = static_cast<uint32_t>(t.key.size());
  append(k, &len, sizeof len);
  k += t.key;
  return k;
}

// Drops duplicate threads (equal keys) and keeps at most kMaxThreads.
void normalize(std::vector<Thread>& threads) {
  if (threads.size() <= 1) return;
  std::vector<std::pair<std::string, size_t>> keys;
  keys.reserve(threads.size());
  for (size_t i = 0; i < threads.size(); ++i) keys.emplace_back(thread_key(threads[i]), i);
  std::sort(keys.begin(), keys.end());
  std::vector<Thread> out;
  for (size_t i = 0; i < keys.size() && out.size() < kMaxThreads; ++i)
    if (i == 0 || keys[i].first != keys[i - 1].first) out.push_back(std::move(threads[keys[i].second]));
  threads.swap(out);
}

}  // namespace

MatchState initial_state(const Schema& s) {
  MatchState st;
  Thread t;
  Frame v;
  v.kind = Frame::Value;
  v.node = s.root;
  t.stack.push_back(v);
  st.threads.push_back(std::move(t));
  return st;
}

MatchState advance(const Schema& s, const MatchState& st, uint8_t byte) {
  MatchState next;
  Stepper step(s, next.threads);
  for (const Thread& t : st.threads) step.feed(t, byte);
  normalize(next.threads);
  return next;
}

MatchState advance(const Schema& s, MatchState st, std::string_view bytes) {
  for (char c : bytes) {
    if (st.dead()) break;
    st = advance(s, st, static_cast<uint8_t>(c));
  }
  return st;
}

bool can_end(const Schema& s, const MatchState& st) {
  std::vector<Thread> sink;
  Stepper step(s, sink);
  for (const Thread& t : st.threads) {
    size_t depth = t.stack.size();
    // A number at the top ends with the text; everything below it must be closed already.
    if (depth == 1 && t.stack.back().kind == Frame::Number && step.number_complete(t.stack.back())) depth = 0;
    if (depth == 0) return true;
  }
  return false;
}

std::string state_key(const MatchState& st, const Schema* s, int64_t clamp) {
  std::string k;
  for (const Thread& t : st.threads) {
    const std::string tk = thread_key(t, s, clamp);
    const uint32_t len = static_cast<uint32_t>(tk.size());
    append(k, &len, sizeof len);
    k += tk;
  }
  return k;
}

bool matches(const Schema& s, std::string_view text) {
  const MatchState st = advance(s, initial_state(s), text);
  return !st.dead() && can_end(s, st);
}

}  // namespace ilm::structured
