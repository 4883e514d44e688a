// Structured output beyond the core keywords: string `pattern` (the regex subset of
// structured/regex.h, unanchored), `format` (date, date-time, time, uuid), `oneOf` with provably
// exclusive branches, and exact decimal bounds on numbers. Each feature: accept / refuse
// tables, refusals by JSON pointer, and random walks through live bytes that never dead-end
// and whose texts an independent checker (std::regex, calendar arithmetic, decimal strings)
// accepts.
#include <gtest/gtest.h>

#include "test_util.h"

#include <optional>
#include <random>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "structured/formats.h"
#include "structured/json_matcher.h"
#include "structured/json_schema.h"
#include "structured/regex.h"
#include "structured/token_mask.h"

namespace ilm::structured {
namespace {

using ojson = nlohmann::ordered_json;

Schema schema(const std::string& text) { return compile_schema(ojson::parse(text)); }

std::string refusal(const std::string& text) {
  try {
    compile_schema(ojson::parse(text));
  } catch (const SchemaError& e) {
    return e.where();
  }
  return "(compiled)";
}

bool dfa_matches(const ByteDfa& d, std::string_view s) {
  int32_t st = d.start;
  for (char c : s) {
    if (st == kDeadState) return false;
    st = d.step(st, static_cast<uint8_t>(c));
  }
  return st != kDeadState && d.accepts(st);
}

bool ecma_search(const std::string& pattern, const std::string& s) {
  return std::regex_search(s, std::regex(pattern, std::regex::ECMAScript));
}

std::string quoted(const std::string& s) { return nlohmann::json(s).dump(); }

// Chooses random live bytes until the state may end (then stops with probability 1/4) — the
// matcher's promise is that this never gets stuck. ASCII-only walks keep byte-level checkers
// (std::regex) meaningful. Returns nullopt when the walk ran out of steps.
std::optional<std::string> random_walk(const Schema& s, std::mt19937& rng, bool ascii_only, int max_steps = 400) {
  MatchState st = initial_state(s);
  std::string text;
  for (int step = 0; step < max_steps; ++step) {
    std::vector<uint8_t> live, ascii;
    for (int b = 0; b < 256; ++b)
      if (!advance(s, st, static_cast<uint8_t>(b)).dead()) {
        live.push_back(static_cast<uint8_t>(b));
        if (b < 0x80) ascii.push_back(static_cast<uint8_t>(b));
      }
    if (can_end(s, st) && (live.empty() || rng() % 4 == 0)) return text;
    if (live.empty()) {
      ADD_FAILURE() << "dead end after: " << text;
      return std::nullopt;
    }
    const auto& pool = ascii_only && !ascii.empty() ? ascii : live;
    uint8_t b = pool[rng() % pool.size()];
    // Steer towards an end now and then: a closing byte, or one after which the value may end.
    for (uint8_t x : pool)
      if ((x == '"' || x == '}' || x == ']') && rng() % 8 == 0) b = x;
    if (rng() % 3 == 0)
      for (uint8_t x : pool)
        if (can_end(s, advance(s, st, x))) b = x;
    st = advance(s, st, b);
    text.push_back(static_cast<char>(b));
  }
  return std::nullopt;
}

// --- the regex subset -------------------------------------------------------------------------

struct RegexCase {
  const char* pattern;
  std::vector<std::string> yes, no;
};

TEST(StructuredRegex, SubsetAcceptsAndRefusesLikeEcmaScript) {
  const std::vector<RegexCase> cases = {
      {"^abc$", {"abc"}, {"ab", "abcd", "xabc", ""}},
      {"^a(b|cd)*e$", {"ae", "abe", "acdbe", "abcdcde"}, {"ace", "abd", "a"}},
      {"^(?:ab)+$", {"ab", "abab"}, {"", "aba"}},
      {"^a?b+c*$", {"b", "abbb", "bcc", "abc"}, {"", "aab", "ac"}},
      {"^a{3}$", {"aaa"}, {"aa", "aaaa"}},
      {"^a{2,}$", {"aa", "aaaaaaa"}, {"a", ""}},
      {"^a{1,3}?b$", {"ab", "aaab"}, {"b", "aaaab"}},
      {"^x*?y+?$", {"y", "xxyy"}, {"x", ""}},
      {"^\\d{2}-\\D$", {"12-a", "00-x"}, {"12-3", "1-a"}},
      {"^\\w+\\W\\s\\S$", {"ab_9! x", "Z.\tq", "a  x"}, {"ab! ", "a!x x", "a x"}},
      {"^[a-c0-2_]+$", {"a1_c", "2"}, {"d", "a3", ""}},
      {"^[^a-c]$", {"d", "9", "-"}, {"a", "c", "dd"}},
      {"^[-a]$", {"-", "a"}, {"b"}},
      {"^[a-]$", {"-", "a"}, {"b"}},
      {"^[\\d.]+$", {"1.5", "..."}, {"a"}},
      {"^[\\]\\\\\\-]$", {"]", "\\", "-"}, {"a"}},
      {"^\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\/$", {".*+?()[]{}|^$/"}, {"a*+?()[]{}|^$/"}},
      {"^a.c$", {"abc", "a c", "a.c"}, {"a\nc", "a\rc", "ac"}},
      {"^\\n\\t\\r$", {"\n\t\r"}, {"ntr"}},
      {"^\\x41\\u0042$", {"AB"}, {"ab"}},
      {"^(a|b)(c|d)$", {"ac", "bd"}, {"ab", "cd"}},
      {"^(?<name>ab)c$", {"abc"}, {"ab"}},
      {"^()a$", {"a"}, {""}},
      {"^a|b$", {"ax", "xb", "a", "b"}, {"xa", "bx"}},
      {"^$", {""}, {"a"}},
      {"^[]$", {}, {"", "a"}},
      {"^[^]$", {"a", "\n"}, {"", "ab"}},
      {"^a{0}b$", {"b"}, {"ab"}},
  };
  for (const RegexCase& c : cases) {
    const ByteDfa d = compile_pattern(c.pattern);
    const bool named = std::string(c.pattern).find("(?<") != std::string::npos;  // std::regex lacks named groups
    for (const auto& s : c.yes) {
      EXPECT_TRUE(dfa_matches(d, s)) << c.pattern << " should match " << quoted(s);
      if (!named) {
        EXPECT_TRUE(ecma_search(c.pattern, s)) << "test table disagrees with std::regex: " << c.pattern << " " << s;
      }
    }
    for (const auto& s : c.no) {
      EXPECT_FALSE(dfa_matches(d, s)) << c.pattern << " should not match " << quoted(s);
      if (std::string(c.pattern) != "^[^]$" && !named) {
        EXPECT_FALSE(ecma_search(c.pattern, s)) << "test table disagrees with std::regex: " << c.pattern << " " << s;
      }
    }
  }
}

// Random ASCII strings: the DFA's search agrees with std::regex_search (ECMAScript).
TEST(StructuredRegex, AgreesWithStdRegexOnRandomStrings) {
  const std::vector<std::string> patterns = {
      "ab",      "^ab",         "ab$",         "^a|b$",        "a.b",          "^(a|b)*c$",  "[^ab]{2}",
      "^\\d+$",  "\\w\\W",      "^\\s*x\\s*$", "a{2,3}",       "^(ab|a)(bc|c)$", "b+?a",     "^[a-c]{1,2}-?$",
      "(?:a|)b", "^(a*)*b$",    "x",           "^.{0,3}$",     "[.-]",           "\\."};
  const std::string alphabet = "abcx0 -.\n_";
  std::mt19937 rng(5);
  for (const auto& p : patterns) {
    const ByteDfa d = compile_pattern(p);
    const std::regex re(p, std::regex::ECMAScript);
    for (int i = 0; i < 400; ++i) {
      std::string s;
      for (size_t n = rng() % 7; n > 0; --n) s.push_back(alphabet[rng() % alphabet.size()]);
      EXPECT_EQ(dfa_matches(d, s), std::regex_search(s, re)) << p << " on " << quoted(s);
    }
  }
}

TEST(StructuredRegex, PatternIsUnanchored) {
  EXPECT_TRUE(dfa_matches(compile_pattern("b"), "abc"));
  EXPECT_TRUE(dfa_matches(compile_pattern("b"), "b"));
  EXPECT_FALSE(dfa_matches(compile_pattern("b"), "ac"));
  EXPECT_TRUE(dfa_matches(compile_pattern("^a"), "a\n\xC3\xA9"));   // anything after, newlines included
  EXPECT_TRUE(dfa_matches(compile_pattern("c$"), "\n\xE2\x82\xAC" "c"));
  EXPECT_FALSE(dfa_matches(compile_pattern("^a"), "ba"));
  EXPECT_FALSE(dfa_matches(compile_pattern("a$"), "ab"));
  EXPECT_TRUE(dfa_matches(compile_pattern(""), "anything"));
}

// One regex character is one code point; '.' leaves out line terminators only.
TEST(StructuredRegex, DotAndClassesMatchWholeUtf8Characters) {
  const ByteDfa one = compile_pattern("^.$");
  for (const char* s : {"a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\x7F"}) EXPECT_TRUE(dfa_matches(one, s)) << s;
  for (const char* s : {"", "ab", "\n", "\r", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xC3", "\xC3\xA9\xC3\xA9"})
    EXPECT_FALSE(dfa_matches(one, s)) << quoted(s);
  EXPECT_TRUE(dfa_matches(compile_pattern("^.{2}$"), "\xC3\xA9\xF0\x9F\x98\x80"));
  EXPECT_TRUE(dfa_matches(compile_pattern("^[^a]$"), "\xE2\x82\xAC"));
  EXPECT_FALSE(dfa_matches(compile_pattern("^[^\xE2\x82\xAC]$"), "\xE2\x82\xAC"));  // negated non-ASCII member
  EXPECT_TRUE(dfa_matches(compile_pattern("^[^\xE2\x82\xAC]$"), "\xE2\x82\xAD"));
  const ByteDfa range = compile_pattern("^[\xC3\xA0-\xC3\xBF]+$");  // à-ÿ
  EXPECT_TRUE(dfa_matches(range, "\xC3\xA9\xC3\xBF"));
  EXPECT_FALSE(dfa_matches(range, "e"));
  EXPECT_FALSE(dfa_matches(range, "\xC3\x9F"));
  EXPECT_TRUE(dfa_matches(compile_pattern("^\\S\\s$"), "\xE4\xB8\xAD\xE3\x80\x80"));  // CJK char, ideographic space
  EXPECT_FALSE(dfa_matches(compile_pattern("^\\w$"), "\xC3\xA9"));
  EXPECT_TRUE(dfa_matches(compile_pattern("^\\W$"), "\xC3\xA9"));
  // Bytes that are not well-formed UTF-8 never match.
  EXPECT_FALSE(dfa_matches(compile_pattern("^.*$"), "\xC0\xAF"));
  EXPECT_FALSE(dfa_matches(compile_pattern("^.*$"), "\xED\xA0\x80"));
}

TEST(StructuredRegex, UnsupportedSyntaxIsRefusedAtThePattern) {
  for (const char* p : {"(a)\\1", "(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", "\\bword", "a\\B", "\\p{L}", "\\P{L}",
                        "a^b", "a$b", "(^a)", "(a$)", "[z-a]", "(a", "a)", "*a", "a**", "a{2,1}", "a{1001}", "a{",
                        "a{x}", "\\u{41}", "\\k<n>", "\\cA", "[\\d-z]", "[a", "\\q", "\\ud800", "]", "}", "\\"}) {
    const std::string text = ojson({{"type", "string"}, {"pattern", p}}).dump();
    EXPECT_EQ(refusal(text), "/pattern") << p;
  }
  // Nested: the pointer names the keyword's place.
  EXPECT_EQ(refusal(R"j({"properties": {"a": {"type": "string", "pattern": "(?=x)"}}})j"), "/properties/a/pattern");
  // Patterns whose DFA is too large, or that match nothing the generator can write.
  EXPECT_EQ(refusal(R"({"type": "string", "pattern": "a[ab]{14}c"})"), "/pattern");
  EXPECT_EQ(refusal(R"({"type": "string", "pattern": "^\\x01$"})"), "/pattern");
  // Combinations that would need an intersection.
  EXPECT_EQ(refusal(R"({"type": "string", "pattern": "^a+$", "maxLength": 3})"), "/pattern");
  EXPECT_EQ(refusal(R"({"type": "string", "format": "date", "minLength": 3})"), "/format");
  EXPECT_EQ(refusal(R"({"type": "string", "format": "date", "pattern": "^2"})"), "/format");
  EXPECT_EQ(refusal(R"({"type": "string", "format": "email"})"), "/format");
  EXPECT_EQ(refusal(R"({"type": "string", "pattern": 5})"), "/pattern");
  EXPECT_EQ(refusal(R"({"type": "string", "pattern": "^[a-z]+\\d{2,4}$"})"), "(compiled)");
}

// --- pattern strings in the matcher ----------------------------------------------------------

TEST(StructuredPattern, MatcherFeedsDecodedCharacters) {
  const Schema s = schema(R"({"type": "string", "pattern": "^a\"b\\\\c/\\n$"})");
  EXPECT_TRUE(matches(s, R"("a\"b\\c/\n")"));
  EXPECT_TRUE(matches(s, R"("a\"b\\c\/\n")"));
  EXPECT_FALSE(matches(s, R"("a\"b\\c/n")"));
  EXPECT_FALSE(matches(s, R"("a\"b\\c/\n\n")"));
  const Schema u = schema(R"({"type": "string", "pattern": "^ab$"})");
  EXPECT_TRUE(matches(u, R"("ab")"));
  EXPECT_FALSE(matches(u, R"("\u0061b")"));  // no \u escapes in pattern strings
  EXPECT_FALSE(matches(u, R"("abc")"));
  // Unanchored: anything around the match.
  const Schema any = schema(R"({"type": "string", "pattern": "[0-9]{3}"})");
  EXPECT_TRUE(matches(any, R"("ab 123 cd")"));
  EXPECT_FALSE(matches(any, R"("ab 12 cd")"));
  // A backslash only where some escape can continue the match.
  const Schema plain = schema(R"({"type": "string", "pattern": "^[a-z]*$"})");
  EXPECT_TRUE(advance(plain, initial_state(plain), "\"ab\\").dead());
  // Pattern applies to strings only.
  const Schema mixed = schema(R"({"type": ["string", "integer"], "pattern": "^x$"})");
  EXPECT_TRUE(matches(mixed, "12"));
  EXPECT_TRUE(matches(mixed, R"("x")"));
  EXPECT_FALSE(matches(mixed, R"("y")"));
}

const std::vector<std::string>& pattern_schemas() {
  static const std::vector<std::string> k = {
      "^[a-z]{2,5}$", "x", "^(foo|bar)+[0-9]?$", "^\\d{3}-\\d{4}$", "[a-z]\\s*\\d", "^[^0-9]+$", "^a.c$", "^\"\\\\/?$",
      "^(\\w+\\.)*\\w+@\\w+$", "^[A-Z][a-z]*( [A-Z][a-z]*)*$", "0$", "^(ab|a)(bc|c)$"};
  return k;
}

TEST(StructuredPattern, RandomWalksEndInMatchingStrings) {
  std::mt19937 rng(11);
  for (const auto& p : pattern_schemas()) {
    const Schema s = schema(ojson({{"type", "string"}, {"pattern", p}}).dump());
    int ended = 0;
    for (int walk = 0; walk < 30; ++walk) {
      const auto text = random_walk(s, rng, /*ascii_only=*/true);
      if (!text) continue;
      ++ended;
      const auto value = nlohmann::json::parse(*text);
      ASSERT_TRUE(value.is_string()) << *text;
      EXPECT_TRUE(ecma_search(p, value.get<std::string>())) << p << " produced " << *text;
    }
    EXPECT_GT(ended, 0) << p;
  }
}

// Walks through every byte (non-ASCII too) never dead-end, and stay well-formed UTF-8.
TEST(StructuredPattern, EveryLiveStateCanBeCompleted) {
  std::mt19937 rng(12);
  for (const char* p : {"^.{1,4}$", "^[^a]*\xC3\xA9$", "\\S\\s\\S", "^[\xE4\xB8\x80-\xE9\xBE\xA5]+$"}) {
    const Schema s = schema(ojson({{"type", "string"}, {"pattern", p}}).dump());
    for (int walk = 0; walk < 20; ++walk) {
      const auto text = random_walk(s, rng, /*ascii_only=*/false);
      if (text) {
        EXPECT_NO_THROW(nlohmann::json::parse(*text)) << p;
      }
    }
  }
}

// --- formats ---------------------------------------------------------------------------------

bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// An independent check of the texts the formats allow (calendar arithmetic).
bool valid_date(const std::string& s) {
  if (!std::regex_match(s, std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}"))) return false;
  const int y = std::stoi(s.substr(0, 4)), m = std::stoi(s.substr(5, 2)), d = std::stoi(s.substr(8, 2));
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1 || m < 1 || m > 12 || d < 1) return false;
  return d <= days[m - 1] + (m == 2 && leap(y) ? 1 : 0);
}

bool valid_time(const std::string& s) {
  std::smatch m;
  if (!std::regex_match(s, m, std::regex("([0-9]{2}):([0-9]{2}):([0-9]{2})(\\.[0-9]+)?(Z|[+-]([0-9]{2}):([0-9]{2}))")))
    return false;
  if (std::stoi(m[1]) > 23 || std::stoi(m[2]) > 59 || std::stoi(m[3]) > 59) return false;
  return m[6].length() == 0 || (std::stoi(m[6]) <= 23 && std::stoi(m[7]) <= 59);
}

bool valid_format(const std::string& format, const std::string& s) {
  if (format == "date") return valid_date(s);
  if (format == "time") return valid_time(s);
  if (format == "date-time") return s.size() > 11 && s[10] == 'T' && valid_date(s.substr(0, 10)) && valid_time(s.substr(11));
  return std::regex_match(s, std::regex("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"));
}

Schema format_schema(const std::string& f) { return schema(ojson({{"type", "string"}, {"format", f}}).dump()); }

TEST(StructuredFormat, DatesTimesAndUuids) {
  const Schema date = format_schema("date");
  for (const char* v : {"2024-02-29", "2000-02-29", "2023-02-28", "2023-12-31", "0004-02-29", "1999-04-30"})
    EXPECT_TRUE(matches(date, quoted(v))) << v;
  for (const char* v : {"2023-02-29", "1900-02-29", "2023-04-31", "2023-13-01", "2023-00-10", "2023-01-00", "2023-1-01",
                        "20230101", "2023-01-01T00:00:00Z", "0000-01-01"})
    EXPECT_FALSE(matches(date, quoted(v))) << v;
  const Schema dt = format_schema("date-time");
  for (const char* v : {"2024-02-29T23:59:59Z", "2023-01-01T00:00:00.123456+05:30", "2023-06-15T12:30:00-08:00"})
    EXPECT_TRUE(matches(dt, quoted(v))) << v;
  for (const char* v : {"2023-02-29T00:00:00Z", "2023-01-01T24:00:00Z", "2023-01-01T00:60:00Z", "2023-01-01 00:00:00Z",
                        "2023-01-01T00:00:00", "2023-01-01T00:00:00+5:30", "2023-01-01t00:00:00z", "2023-01-01T00:00:00."})
    EXPECT_FALSE(matches(dt, quoted(v))) << v;
  const Schema time = format_schema("time");
  EXPECT_TRUE(matches(time, quoted("08:15:00Z")));
  EXPECT_TRUE(matches(time, quoted("23:59:59.5-12:00")));
  EXPECT_FALSE(matches(time, quoted("08:15:00")));
  EXPECT_FALSE(matches(time, quoted("08:15Z")));
  const Schema uuid = format_schema("uuid");
  EXPECT_TRUE(matches(uuid, quoted("123e4567-e89b-12d3-a456-426614174000")));
  EXPECT_TRUE(matches(uuid, quoted("123E4567-E89B-12D3-A456-426614174000")));
  EXPECT_FALSE(matches(uuid, quoted("123e4567e89b12d3a456426614174000")));
  EXPECT_FALSE(matches(uuid, quoted("123e4567-e89b-12d3-a456-42661417400g")));
  EXPECT_FALSE(format_pattern("email").has_value());
}

TEST(StructuredFormat, RandomWalksAreValid) {
  std::mt19937 rng(13);
  for (const char* f : {"date", "date-time", "time", "uuid"}) {
    const Schema s = format_schema(f);
    int ended = 0;
    for (int walk = 0; walk < 60; ++walk) {
      const auto text = random_walk(s, rng, /*ascii_only=*/true);
      if (!text) continue;
      ++ended;
      const std::string v = nlohmann::json::parse(*text).get<std::string>();
      EXPECT_TRUE(valid_format(f, v)) << f << ": " << v;
    }
    EXPECT_GT(ended, 30) << f;
  }
  // Every February 29th the date format allows is a leap day, and every leap year allows it.
  const Schema date = format_schema("date");
  for (int y = 1; y <= 2400; ++y) {
    const std::string text = quoted(fmt::format("{:04}-02-29", y));
    EXPECT_EQ(matches(date, text), leap(y)) << text;
  }
}

// --- decimal number bounds -------------------------------------------------------------------

TEST(StructuredNumberRange, DecimalBoundsAreExactAtTheEdges) {
  const Schema min = schema(R"({"type": "number", "minimum": 0.1})");
  for (const char* v : {"0.1", "0.10", "0.1000000000000", "1", "12345.5", "0.10000000000001"}) EXPECT_TRUE(matches(min, v)) << v;
  for (const char* v : {"0.09999999999999", "0.09999999999999999", "0.0999", "0", "-0.1", "1e3", "0.1e0", "-5"})
    EXPECT_FALSE(matches(min, v)) << v;
  const Schema xmin = schema(R"({"type": "number", "exclusiveMinimum": 0.1})");
  EXPECT_FALSE(matches(xmin, "0.1"));
  EXPECT_FALSE(matches(xmin, "0.100"));
  EXPECT_TRUE(matches(xmin, "0.10000000000001"));
  const Schema xmax = schema(R"({"type": "number", "exclusiveMaximum": 0})");
  for (const char* v : {"-0.00000000000001", "-1", "-123.25"}) EXPECT_TRUE(matches(xmax, v)) << v;
  for (const char* v : {"0", "-0", "-0.0", "0.5", "1"}) EXPECT_FALSE(matches(xmax, v)) << v;
  const Schema band = schema(R"({"type": "number", "minimum": -1.5, "exclusiveMaximum": -1.25})");
  for (const char* v : {"-1.5", "-1.3", "-1.2500000000001", "-1.26"}) EXPECT_TRUE(matches(band, v)) << v;
  for (const char* v : {"-1.25", "-1.2", "-1.6", "1.3", "-1.50000000000001"}) EXPECT_FALSE(matches(band, v)) << v;
  const Schema big = schema(R"({"type": "number", "minimum": 100, "maximum": 100.5})");
  const MatchState start = initial_state(big);
  EXPECT_FALSE(advance(big, start, "1").dead());
  EXPECT_TRUE(advance(big, start, "2").dead());    // 2..., 2x... and 2xx... all miss [100, 100.5]
  EXPECT_TRUE(advance(big, start, "-").dead());
  EXPECT_TRUE(advance(big, start, "0").dead());
  EXPECT_FALSE(advance(big, start, "100.").dead());
  EXPECT_TRUE(advance(big, start, "100.6").dead());
  EXPECT_TRUE(advance(big, start, "1000").dead());
  EXPECT_TRUE(matches(big, "100.5"));
  EXPECT_FALSE(matches(big, "100.50001"));
  // Large integer bounds on numbers, and integers unchanged.
  EXPECT_TRUE(matches(schema(R"({"type": "number", "maximum": -999999999999999})"), "-999999999999999"));
  EXPECT_TRUE(matches(schema(R"({"type": "integer", "minimum": 9007199254740993})"), "9007199254740993"));
  EXPECT_TRUE(matches(schema(R"({"type": ["number", "string"], "minimum": 3})"), R"("x")"));
  EXPECT_FALSE(matches(schema(R"({"type": ["number", "string"], "minimum": 3})"), "2"));
  // Ranges with no number of at most 15 digits are refused.
  EXPECT_EQ(refusal(R"({"type": "number", "exclusiveMinimum": 1e-20, "maximum": 1e-15})"), "");
  EXPECT_EQ(refusal(R"({"type": "number", "minimum": 1e15})"), "");
  EXPECT_EQ(refusal(R"({"type": "number", "minimum": 2, "maximum": 1})"), "");
  EXPECT_EQ(refusal(R"({"type": "string", "minimum": 2})"), "/minimum");
  EXPECT_EQ(refusal(R"({"type": "number", "minimum": "2"})"), "/minimum");
  EXPECT_EQ(refusal(R"({"type": "number", "minimum": 1e-300, "maximum": 1})"), "(compiled)");
}

// Exact comparison of two decimal texts without exponent (the test's own, by strings).
int compare_decimal(std::string a, std::string b) {
  auto split = [](std::string s) {
    const bool neg = !s.empty() && s[0] == '-';
    if (neg) s.erase(0, 1);
    const size_t dot = s.find('.');
    std::string ip = s.substr(0, dot), fp = dot == std::string::npos ? "" : s.substr(dot + 1);
    ip.erase(0, std::min(ip.find_first_not_of('0'), ip.size()));
    while (!fp.empty() && fp.back() == '0') fp.pop_back();
    const bool zero = ip.empty() && fp.empty();
    return std::tuple<bool, std::string, std::string>{neg && !zero, ip, fp};
  };
  auto [na, ia, fa] = split(std::move(a));
  auto [nb, ib, fb] = split(std::move(b));
  if (na != nb) return na ? -1 : 1;
  int mag = ia.size() != ib.size() ? (ia.size() < ib.size() ? -1 : 1) : ia.compare(ib) < 0 ? -1 : ia.compare(ib) > 0 ? 1 : 0;
  if (mag == 0) {
    const size_t n = std::max(fa.size(), fb.size());
    fa.resize(n, '0');
    fb.resize(n, '0');
    mag = fa.compare(fb) < 0 ? -1 : fa.compare(fb) > 0 ? 1 : 0;
  }
  return na ? -mag : mag;
}

TEST(StructuredNumberRange, RandomWalksStayInRange) {
  struct Bounds {
    const char *lo, *hi;
    bool lo_excl, hi_excl;
  };
  const std::vector<Bounds> bounds = {{"0.1", "0.2", false, true},   {"-3.75", "12", true, false},
                                      {"-0.001", "0.001", false, false}, {"99.99", nullptr, true, false},
                                      {nullptr, "-1000.5", false, false}, {"0", "0", false, false},
                                      {"123456.789", "123456.79", false, true}};
  std::mt19937 rng(17);
  for (const Bounds& b : bounds) {
    ojson s = {{"type", "number"}};
    if (b.lo) s[b.lo_excl ? "exclusiveMinimum" : "minimum"] = ojson::parse(b.lo);
    if (b.hi) s[b.hi_excl ? "exclusiveMaximum" : "maximum"] = ojson::parse(b.hi);
    const Schema sc = compile_schema(s);
    int ended = 0;
    for (int walk = 0; walk < 60; ++walk) {
      const auto text = random_walk(sc, rng, true, 40);
      if (!text) continue;
      ++ended;
      ASSERT_FALSE(nlohmann::json::parse(*text, nullptr, false).is_discarded()) << *text;
      if (b.lo) {
        EXPECT_GE(compare_decimal(*text, b.lo), b.lo_excl ? 1 : 0) << s.dump() << ": " << *text;
      }
      if (b.hi) {
        EXPECT_LE(compare_decimal(*text, b.hi), b.hi_excl ? -1 : 0) << s.dump() << ": " << *text;
      }
    }
    EXPECT_GT(ended, 20) << s.dump();
  }
}

// --- oneOf -----------------------------------------------------------------------------------

TEST(StructuredOneOf, ExclusiveBranchesCompileAndOverlappingOnesAreRefused) {
  // Accepted: disjoint types, disjoint literals, disjoint ranges, a discriminator.
  for (const char* s : {
           R"({"oneOf": [{"type": "string"}, {"type": "integer"}]})",
           R"({"oneOf": [{"type": "string"}]})",
           R"({"oneOf": [{"enum": ["a", "b"]}, {"const": "c"}, {"type": "null"}]})",
           R"({"oneOf": [{"type": "integer", "maximum": 0}, {"type": "integer", "minimum": 1}]})",
           R"({"oneOf": [{"type": "number", "maximum": 0.5}, {"type": "number", "exclusiveMinimum": 0.5}]})",
           R"({"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]},
                         {"type": "object", "properties": {"kind": {"enum": ["b", "c"]}}, "required": ["kind"]},
                         {"type": "array"}]})",
           R"({"$defs": {"a": {"type": "object", "properties": {"t": {"const": 1}}, "required": ["t"]},
                         "b": {"type": "object", "properties": {"t": {"const": 2}}, "required": ["t"]}},
               "oneOf": [{"$ref": "#/$defs/a"}, {"$ref": "#/$defs/b"}]})",
           R"({"oneOf": [{"anyOf": [{"type": "string"}, {"type": "boolean"}]}, {"type": ["null", "integer"]}]})",
       })
    EXPECT_EQ(refusal(s), "(compiled)") << s;
  // Refused: overlaps, or exclusivity not provable.
  for (const char* s : {
           R"({"oneOf": [{"type": "string"}, {"type": "string", "pattern": "a"}]})",
           R"({"oneOf": [{"type": "integer"}, {"type": "number"}]})",
           R"({"oneOf": [{"enum": ["a", "b"]}, {"enum": ["b"]}]})",
           R"({"oneOf": [{"const": {"a": 1, "b": 2}}, {"const": {"b": 2, "a": 1}}]})",
           R"({"oneOf": [{"type": "object"}, {"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"]}]})",
           R"({"oneOf": [{"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"]},
                         {"type": "object", "properties": {"k": {"const": 2}}}]})",
           R"({"oneOf": [{"properties": {"a": {"type": "string"}}}, {"type": "string"}]})",
           R"({"oneOf": [{"type": "integer", "maximum": 1}, {"type": "integer", "minimum": 1}]})",
           R"({"oneOf": [{"type": "string"}, {"enum": ["x", 1]}]})",
       })
    EXPECT_EQ(refusal(s), "/oneOf") << s;
  EXPECT_EQ(refusal(R"({"properties": {"p": {"oneOf": [{}, {}]}}})"), "/properties/p/oneOf");
  EXPECT_EQ(refusal(R"({"oneOf": [{"type": "string"}], "anyOf": [{"type": "string"}]})"), "/anyOf");
  EXPECT_EQ(refusal(R"({"oneOf": [{"type": "string"}], "minLength": 2})"), "/minLength");
}

TEST(StructuredOneOf, MatchesExactlyOneBranch) {
  const std::string branches[] = {
      R"({"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "minimum": 0}},
          "required": ["kind", "r"], "additionalProperties": false})",
      R"({"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "integer", "minimum": 1}},
          "required": ["kind", "side"], "additionalProperties": false})",
      R"({"type": "string", "format": "uuid"})",
      R"({"type": "null"})"};
  const std::string text = std::string(R"({"oneOf": [)") + branches[0] + "," + branches[1] + "," + branches[2] + "," +
                           branches[3] + "]}";
  const Schema s = schema(text);
  std::vector<Schema> each;
  for (const auto& b : branches) each.push_back(schema(b));
  EXPECT_TRUE(matches(s, R"({"kind": "circle", "r": 2.5})"));
  EXPECT_FALSE(matches(s, R"({"kind": "circle", "side": 2})"));
  std::mt19937 rng(19);
  int ended = 0;
  for (int walk = 0; walk < 60; ++walk) {
    const auto out = random_walk(s, rng, true);
    if (!out) continue;
    ++ended;
    int hits = 0;
    for (const Schema& b : each) hits += matches(b, *out) ? 1 : 0;
    EXPECT_EQ(hits, 1) << *out;
  }
  EXPECT_GT(ended, 20);
}

// --- token masks over pattern strings ---------------------------------------------------------

class StructuredRegexMask : public test::TokenizerFixture {};

// The DFA state is part of the mask cache key: tokens allowed in one state are never reused
// for another, and every allowed token keeps the match alive.
TEST_F(StructuredRegexMask, AllowedTokensKeepPatternStringsAlive) {
  auto trie = std::make_shared<const TokenTrie>(tok());
  for (const char* sc : {R"({"type": "string", "format": "date"})", R"({"type": "string", "pattern": "^(ab|cd)+x$"})",
                         R"({"type": "number", "minimum": -2.5, "exclusiveMaximum": 7})"}) {
    Grammar g(schema(sc), trie);
    std::mt19937 rng(23);
    for (int walk = 0; walk < 4; ++walk) {
      MatchState st = initial_state(g.schema());
      for (int step = 0; step < 30 && !can_end(g.schema(), st); ++step) {
        const auto bits = g.mask(st);
        std::vector<TokenId> ok;
        for (TokenId id = 0; id < trie->vocab_size(); ++id)
          if (allowed(*bits, id)) ok.push_back(id);
        ASSERT_FALSE(ok.empty()) << sc;
        for (int k = 0; k < 40; ++k)
          EXPECT_FALSE(advance(g.schema(), st, trie->bytes(ok[rng() % ok.size()])).dead()) << sc;
        st = advance(g.schema(), st, trie->bytes(ok[rng() % ok.size()]));
      }
    }
    // A valid instance's tokens are all allowed.
    const std::string valid = std::string(sc).find("date") != std::string::npos ? "\"2024-02-29\""
                              : std::string(sc).find("pattern") != std::string::npos ? "\"abcdx\""
                                                                                     : "-2.25";
    MatchState st = initial_state(g.schema());
    for (TokenId id : tok().encode(valid, false)) {
      ASSERT_TRUE(allowed(*g.mask(st), id)) << sc << " " << valid;
      st = advance(g.schema(), st, trie->bytes(id));
    }
    EXPECT_TRUE(can_end(g.schema(), st)) << valid;
  }
}

}  // namespace
}  // namespace ilm::structured
