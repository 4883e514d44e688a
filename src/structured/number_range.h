#pragma once
// Exact minimum / maximum / exclusiveMinimum / exclusiveMaximum for JSON numbers (type
// "number"), with prefix viability: a number prefix such as "-12.3" stands for the numbers it
// can still become, and the matcher keeps it only while that set meets the range.
//
// Bounded numbers are written without exponent and with at most kMaxNumberDigits digits in all
// (integer and fraction part). Such a number has at most 15 significant digits, so it is also
// a distinct double from any bound written with 15 or fewer: validators that compare doubles
// agree with this exact decimal comparison. Every value involved lies on the grid 10^-14, so
// bounds are kept as inclusive grid points (a `Fixed`, value * 10^14), rounded inward exactly
// from their decimal text.
#include <cstdint>
#include <string_view>

namespace ilm::structured {

__extension__ typedef __int128 Fixed;  // a number times 10^kFixedScale
inline constexpr int kFixedScale = 14;
inline constexpr int kMaxNumberDigits = 15;

struct NumberRange {
  Fixed lo, hi;  // inclusive grid points, clamped to +-10^30 (far beyond any 15-digit number)
};
NumberRange unbounded_range();

// Narrows `r` by one bound keyword ("minimum", "exclusiveMaximum", ...) whose JSON number text
// is `number` (as nlohmann dumps it). False when the text is not a JSON number.
bool apply_bound(NumberRange& r, std::string_view keyword, std::string_view number);

// A number prefix: sign, all digits so far as one integer, digits before and after the point.
struct NumberPrefix {
  bool negative = false;
  int64_t mantissa = 0;
  int int_digits = 0;   // 0: nothing after the sign yet
  bool dot = false;     // a point was written
  int frac_digits = 0;  // digits after the point
};

// Some number the prefix can still become (within the digit limit) lies in the range.
bool number_viable(const NumberRange& r, const NumberPrefix& p);
// The prefix is a complete number (digits, not ending with the point) inside the range.
bool number_in_range(const NumberRange& r, const NumberPrefix& p);

}  // namespace ilm::structured
