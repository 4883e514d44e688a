#include "structured/number_range.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace ilm::structured {
namespace {

constexpr int kClampDigits = 30;  // |Fixed| is clamped to 10^30 (a real value of 10^16)

Fixed pow10(int k) {
  Fixed v = 1;
  for (int i = 0; i < k; ++i) v *= 10;
  return v;
}
const Fixed kClamp = pow10(kClampDigits);

// The smallest multiple of `step` that is >= v (v >= 0).
Fixed ceil_to(Fixed v, Fixed step) { return (v + step - 1) / step * step; }

// Magnitude bounds: the prefix's sign is applied by mirroring the range.
struct Magnitude {
  Fixed lo, hi;
  bool empty() const { return hi < lo; }
};
Magnitude magnitude(const NumberRange& r, bool negative) {
  const Fixed lo = negative ? -r.hi : r.lo, hi = negative ? -r.lo : r.hi;
  return {std::max<Fixed>(lo, 0), hi};
}

// Some point of the grid {a, a + step, ...} below b lies in m (a is on the grid).
bool grid_meets(const Magnitude& m, Fixed a, Fixed b, Fixed step) {
  const Fixed p = std::max(a, ceil_to(m.lo, step));
  return p < b && p <= m.hi;
}

bool viable_magnitude(const Magnitude& m, const NumberPrefix& p) {
  if (m.empty()) return false;
  const Fixed one = pow10(kFixedScale);
  const int n = p.int_digits;
  if (n == 0) {  // any first digit
    for (int d = 0; d <= 9; ++d) {
      NumberPrefix q = p;
      q.mantissa = d;
      q.int_digits = 1;
      if (viable_magnitude(m, q)) return true;
    }
    return false;
  }
  const int room = kMaxNumberDigits - n;  // fraction digits left with no more integer digits
  if (p.dot) {
    if (room < 1 || p.frac_digits > room) return false;
    const Fixed unit = pow10(kFixedScale - p.frac_digits);
    const Fixed a = static_cast<Fixed>(p.mantissa) * unit;
    return grid_meets(m, a, a + unit, pow10(kFixedScale - room));
  }
  if (p.mantissa == 0) return grid_meets(m, 0, one, pow10(kFixedScale - room));  // "0": 0.xxx
  for (int j = 0; j <= room; ++j) {  // j more integer digits, then up to room - j fraction digits
    const Fixed a = static_cast<Fixed>(p.mantissa) * pow10(j) * one;
    if (grid_meets(m, a, a + pow10(j) * one, pow10(kFixedScale - (room - j)))) return true;
  }
  return false;
}

}  // namespace

NumberRange unbounded_range() { return {-kClamp, kClamp}; }

bool apply_bound(NumberRange& r, std::string_view keyword, std::string_view text) {
  // text = [-] digits [. digits] [(e|E) [+|-] digits]: value = sign * mantissa * 10^exp.
  size_t i = 0;
  const bool negative = i < text.size() && text[i] == '-';
  if (negative) ++i;
  std::string digits;
  int exp = 0;
  bool any = false, seen_dot = false;
  for (; i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'); ++i) {
    if (text[i] == '.') {
      if (seen_dot) return false;
      seen_dot = true;
      continue;
    }
    any = true;
    digits.push_back(text[i]);
    if (seen_dot) --exp;
  }
  if (!any) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    const bool eneg = i < text.size() && text[i] == '-';
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
    int e = 0;
    bool edig = false;
    for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i, edig = true)
      e = std::min(e * 10 + (text[i] - '0'), 100000);
    if (!edig) return false;
    exp += eneg ? -e : e;
  }
  if (i != text.size()) return false;
  digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size()));
  // |value| * 10^kFixedScale = digits * 10^k, rounded down; `exact`: no remainder.
  const int k = exp + kFixedScale;
  const int len = static_cast<int>(digits.size());
  Fixed mag = 0;
  bool exact = true;
  if (len > 0 && len + k > kClampDigits) {
    mag = kClamp;
  } else if (len > 0) {
    const int keep = std::max(0, std::min(len, len + k));
    for (int d = 0; d < keep; ++d) mag = mag * 10 + (digits[static_cast<size_t>(d)] - '0');
    for (int d = keep; d < len; ++d) exact = exact && digits[static_cast<size_t>(d)] == '0';
    if (k > 0) mag *= pow10(k);
  }
  const Fixed floor_v = negative ? -(mag + (exact ? 0 : 1)) : mag;
  const Fixed ceil_v = negative ? -mag : mag + (exact ? 0 : 1);
  if (keyword == "minimum") r.lo = std::max(r.lo, ceil_v);
  else if (keyword == "exclusiveMinimum") r.lo = std::max(r.lo, exact ? ceil_v + 1 : ceil_v);
  else if (keyword == "maximum") r.hi = std::min(r.hi, floor_v);
  else if (keyword == "exclusiveMaximum") r.hi = std::min(r.hi, exact ? floor_v - 1 : floor_v);
  else return false;
  r.lo = std::clamp(r.lo, -kClamp, kClamp);
  r.hi = std::clamp(r.hi, -kClamp, kClamp);
  return true;
}

bool number_viable(const NumberRange& r, const NumberPrefix& p) {
  if (p.int_digits + p.frac_digits > kMaxNumberDigits) return false;
  // "-0" is 0: the mirrored range of a negative prefix covers it exactly when 0 is in range.
  return viable_magnitude(magnitude(r, p.negative), p);
}

bool number_in_range(const NumberRange& r, const NumberPrefix& p) {
  if (p.int_digits == 0 || (p.dot && p.frac_digits == 0) || p.int_digits + p.frac_digits > kMaxNumberDigits) return false;
  const Fixed mag = static_cast<Fixed>(p.mantissa) * pow10(kFixedScale - p.frac_digits);
  const Fixed v = p.negative ? -mag : mag;
  return r.lo <= v && v <= r.hi;
}

}  // namespace ilm::structured
