#include "server/http_head.h"

#include <algorithm>

#include <fmt/format.h>

namespace ilm::server {

namespace {

bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

// A field value character (RFC 9110 §5.5): visible ASCII, obs-text, space and tab; never NUL,
// CR, LF or another control character.
bool is_value_char(unsigned char c) { return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f); }

std::string lower(std::string_view s) {
  std::string o(s);
  for (char& c : o)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return o;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether the comma-separated list `v` holds `token` (case-insensitive).
bool list_has(std::string_view v, std::string_view token) {
  size_t p = 0;
  while (p <= v.size()) {
    const size_t c = std::min(v.find(',', p), v.size());
    if (lower(trim(v.substr(p, c - p))) == token) return true;
    p = c + 1;
  }
  return false;
}

HeadParse error(int status, std::string msg) {
  HeadParse r;
  r.status = HeadParse::Status::Error;
  r.error_status = status;
  r.error = std::move(msg);
  return r;
}

// Splits the head into lines (LF-terminated, one CR before the LF removed); returns the index
// just past the blank line, or npos while it has not come.
size_t head_end(std::string_view buf, std::vector<std::string_view>& lines) {
  size_t p = 0;
  while (true) {
    const size_t nl = buf.find('\n', p);
    if (nl == std::string_view::npos) return std::string_view::npos;
    std::string_view line = buf.substr(p, nl - p);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    p = nl + 1;
    if (line.empty()) return p;
    lines.push_back(line);
  }
}

HeadParse parse_request_line(std::string_view line) {
  const size_t a = line.find(' ');
  const size_t b = a == std::string_view::npos ? a : line.find(' ', a + 1);
  if (b == std::string_view::npos || line.find(' ', b + 1) != std::string_view::npos)
    return error(400, "malformed request line (expected 'METHOD target HTTP/1.1')");
  HeadParse r;
  const std::string_view method = line.substr(0, a), target = line.substr(a + 1, b - a - 1), version = line.substr(b + 1);
  if (!is_token(method)) return error(400, "malformed request method");
  if (target.empty() || !std::all_of(target.begin(), target.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u > 0x20 && u != 0x7f;
      }))
    return error(400, "malformed request target");
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
      version[5] > '9' || version[7] < '0' || version[7] > '9')
    return error(400, "malformed HTTP version");
  if (version[5] != '1') return error(505, fmt::format("HTTP version {} is not supported (use HTTP/1.1)", version));
  r.head.method = std::string(method);
  r.head.target = std::string(target);
  r.head.minor_version = version[7] - '0';
  return r;
}

}  // namespace

const std::string* RequestHead::field(std::string_view lower_name) const {
  for (const auto& [n, v] : fields)
    if (n == lower_name) return &v;
  return nullptr;
}

HeadParse parse_request_head(std::string_view buf, const HeadLimits& limits) {
  // Robustness (RFC 9112 §2.2): empty lines before the request line are skipped.
  size_t skip = 0;
  while (skip < buf.size() && (buf[skip] == '\r' || buf[skip] == '\n')) ++skip;
  std::vector<std::string_view> lines;
  const size_t end = head_end(buf.substr(skip), lines);
  const size_t max_lines = static_cast<size_t>(std::max(0, limits.max_fields)) + 1;
  if (end == std::string_view::npos || skip + end > limits.max_bytes) {
    if (buf.size() > limits.max_bytes)
      return error(431, fmt::format("the request head exceeds {} bytes", limits.max_bytes));
    if (lines.size() > max_lines)
      return error(431, fmt::format("the request head has more than {} header fields", limits.max_fields));
    return {};
  }
  if (lines.empty()) return error(400, "empty request");
  if (lines.size() > max_lines)
    return error(431, fmt::format("the request head has more than {} header fields", limits.max_fields));
  HeadParse r = parse_request_line(lines[0]);
  if (r.status == HeadParse::Status::Error) return r;
  RequestHead& h = r.head;
  h.head_bytes = skip + end;
  h.keep_alive = h.minor_version >= 1;
  bool have_length = false, have_te = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') return error(400, "obsolete line folding in the request head");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon)))
      return error(400, fmt::format("malformed header field line {}", i));
    const std::string name = lower(line.substr(0, colon));
    const std::string_view value = trim(line.substr(colon + 1));
    if (!std::all_of(value.begin(), value.end(), [](char c) { return is_value_char(static_cast<unsigned char>(c)); }))
      return error(400, fmt::format("header field '{}' contains a control character", name));
    if (name == "content-length") {
      if (value.empty() || value.size() > 18 || !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return error(400, "malformed Content-Length");
      const uint64_t n = std::stoull(std::string(value));
      if (have_length && n != h.content_length) return error(400, "conflicting Content-Length fields");
      h.content_length = n;
      have_length = true;
    } else if (name == "transfer-encoding") {
      if (have_te || lower(value) != "chunked")
        return error(501, fmt::format("transfer coding '{}' is not supported (only 'chunked')", value));
      have_te = true;
      h.chunked = true;
    } else if (name == "connection") {
      if (list_has(value, "close")) h.keep_alive = false;
      if (h.minor_version == 0 && list_has(value, "keep-alive")) h.keep_alive = true;
    } else if (name == "expect") {
      h.expect_continue = lower(value) == "100-continue";
    }
    h.fields.emplace_back(name, std::string(value));
  }
  // A request with both framings is how requests are smuggled past proxies (RFC 9112 §6.3).
  if (have_te && have_length) return error(400, "both Transfer-Encoding and Content-Length");
  if (have_te && h.minor_version == 0) return error(400, "chunked transfer coding in an HTTP/1.0 request");
  r.status = HeadParse::Status::Complete;
  return r;
}

ChunkedScanner::Result ChunkedScanner::fail(std::string msg) {
  error_ = std::move(msg);
  return Result::Error;
}

ChunkedScanner::Result ChunkedScanner::feed(std::string_view data, size_t& used) {
  constexpr size_t kMaxLine = 4096, kMaxTrailers = 16u << 10;
  size_t i = 0;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
    return -1;
  };
  while (i < data.size()) {
    const char c = data[i];
    switch (state_) {
      case State::Size: {
        const int d = hex(c);
        if (d >= 0) {
          if (++size_digits_ > 15) return fail("chunk size too long");
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(d);
          ++i;
          break;
        }
        if (size_digits_ == 0) return fail("malformed chunk size");
        if (total_ + remaining_ > max_body_) return Result::TooLarge;
        state_ = State::SizeLine;
        line_bytes_ = 0;
        break;
      }
      case State::SizeLine:  // chunk extensions (ignored) up to CRLF
        if (c == '\r') {
          state_ = State::SizeLF;
        } else if (c == '\n' || (static_cast<unsigned char>(c) < 0x20 && c != '\t')) {
          return fail("malformed chunk size line");
        } else if (++line_bytes_ > kMaxLine) {
          return fail("chunk extension too long");
        }
        ++i;
        break;
      case State::SizeLF:
        if (c != '\n') return fail("chunk size line not ended by CRLF");
        ++i;
        size_digits_ = 0;
        state_ = remaining_ == 0 ? State::TrailerStart : State::Data;
        break;
      case State::Data: {
        const uint64_t n = std::min<uint64_t>(remaining_, data.size() - i);
        i += n;
        remaining_ -= n;
        total_ += n;
        if (remaining_ == 0) state_ = State::DataCR;
        break;
      }
      case State::DataCR:
        if (c != '\r') return fail("chunk data not followed by CRLF");
        ++i;
        state_ = State::DataLF;
        break;
      case State::DataLF:
        if (c != '\n') return fail("chunk data not followed by CRLF");
        ++i;
        state_ = State::Size;
        break;
      case State::TrailerStart:  // a trailer field line, or the final CRLF
        if (c == '\r') {
          state_ = State::FinalLF;
        } else if (is_tchar(static_cast<unsigned char>(c))) {
          state_ = State::TrailerLine;
        } else {
          return fail("malformed trailer section");
        }
        ++i;
        ++trailer_bytes_;
        break;
      case State::TrailerLine:
        if (c == '\r') {
          state_ = State::TrailerLF;
        } else if (!is_value_char(static_cast<unsigned char>(c)) && c != ':') {
          return fail("malformed trailer field");
        }
        ++i;
        if (++trailer_bytes_ > kMaxTrailers) return fail("trailer section too long");
        break;
      case State::TrailerLF:
        if (c != '\n') return fail("trailer field not ended by CRLF");
        ++i;
        state_ = State::TrailerStart;
        break;
      case State::FinalLF:
        if (c != '\n') return fail("chunked body not ended by CRLF");
        used = i + 1;
        return Result::Done;
    }
  }
  used = data.size();
  return Result::NeedMore;
}

}  // namespace ilm::server
