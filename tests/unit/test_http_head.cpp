// HTTP/1.1 request framing of the connection gate (server/http_head.h): heads within and past
// their caps, field values with control characters, request smuggling shapes, and chunked bodies
// fed whole or a byte at a time. (Suite names start with "server" for `ctest -R server`.)
#include <gtest/gtest.h>

#include <string>

#include "server/http_head.h"

namespace ilm::server {
namespace {

using Status = HeadParse::Status;

HeadParse parse(const std::string& s, HeadLimits l = {}) { return parse_request_head(s, l); }

TEST(serverHttpHead, CompleteHeadWithFraming) {
  const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{body}";
  const HeadParse r = parse(req);
  ASSERT_EQ(r.status, Status::Complete) << r.error;
  EXPECT_EQ(r.head.method, "POST");
  EXPECT_EQ(r.head.target, "/v1/completions");
  EXPECT_EQ(r.head.content_length, 12u);
  EXPECT_FALSE(r.head.keep_alive);
  EXPECT_EQ(r.head.head_bytes, req.find("{body}"));
  ASSERT_NE(r.head.field("host"), nullptr);
  EXPECT_EQ(*r.head.field("host"), "x");
  // Every prefix is incomplete, never an error.
  for (size_t n = 0; n < r.head.head_bytes; ++n) EXPECT_EQ(parse(req.substr(0, n)).status, Status::Incomplete) << n;
}

TEST(serverHttpHead, KeepAliveDefaultsByVersionAndBareLfLines) {
  EXPECT_TRUE(parse("GET / HTTP/1.1\r\n\r\n").head.keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.0\r\n\r\n").head.keep_alive);
  EXPECT_TRUE(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").head.keep_alive);
  const HeadParse lf = parse("GET /health HTTP/1.1\nHost: x\n\n");
  EXPECT_EQ(lf.status, Status::Complete);
  EXPECT_TRUE(parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").head.expect_continue);
}

TEST(serverHttpHead, CapsGive431BeforeTheHeadEnds) {
  HeadLimits l;
  l.max_bytes = 1024;
  l.max_fields = 5;
  const HeadParse big = parse("GET / HTTP/1.1\r\nX: " + std::string(2000, 'a'), l);  // no blank line yet
  EXPECT_EQ(big.status, Status::Error);
  EXPECT_EQ(big.error_status, 431);
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 6; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  EXPECT_EQ(parse(many + "\r\n", l).error_status, 431);
  EXPECT_EQ(parse(many, l).error_status, 431);  // also while incomplete
  std::string five = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 5; ++i) five += "X-" + std::to_string(i) + ": 1\r\n";
  EXPECT_EQ(parse(five + "\r\n", l).status, Status::Complete);
}

TEST(serverHttpHead, MalformedHeadsAreRefusedWithTheirStatus) {
  const std::pair<std::string, int> cases[] = {
      {std::string("GET / HTTP/1.1\r\nAuthorization: Bearer KEY") + '\0' + "garbage\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400},
      {"GET  / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1 extra\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTX/1.1\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
  };
  for (const auto& [head, status] : cases) {
    const HeadParse r = parse(head);
    EXPECT_EQ(r.status, Status::Error) << head;
    EXPECT_EQ(r.error_status, status) << head << ": " << r.error;
    EXPECT_FALSE(r.error.empty());
  }
  // Obs-text (UTF-8) in a value is allowed.
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n").status, Status::Complete);
}

ChunkedScanner::Result scan_all(const std::string& body, uint64_t cap, size_t& used, bool byte_at_a_time) {
  ChunkedScanner s(cap);
  if (!byte_at_a_time) return s.feed(body, used);
  for (size_t i = 0; i < body.size(); ++i) {
    size_t u = 0;
    const auto r = s.feed(std::string_view(body).substr(i, 1), u);
    if (r != ChunkedScanner::Result::NeedMore) {
      used = i + u;
      return r;
    }
  }
  used = body.size();
  return ChunkedScanner::Result::NeedMore;
}

TEST(serverHttpHead, ChunkedBodiesWholeOrByteByByte) {
  using R = ChunkedScanner::Result;
  const std::string good = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
  for (bool bytewise : {false, true}) {
    size_t used = 0;
    EXPECT_EQ(scan_all(good + "NEXT REQUEST", 1 << 20, used, bytewise), R::Done);
    EXPECT_EQ(used, good.size());
    EXPECT_EQ(scan_all("5\r\nhelloXX0\r\n\r\n", 1 << 20, used, bytewise), R::Error);  // data not followed by CRLF
    EXPECT_EQ(scan_all("zz\r\n", 1 << 20, used, bytewise), R::Error);
    EXPECT_EQ(scan_all("5\nhello\r\n", 1 << 20, used, bytewise), R::Error);
    EXPECT_EQ(scan_all("ffffffffffffffff\r\n", 1 << 20, used, bytewise), R::Error);
    EXPECT_EQ(scan_all("100\r\n", 255, used, bytewise), R::TooLarge);  // refused before its data arrives
    EXPECT_EQ(scan_all("5\r\nhel", 1 << 20, used, bytewise), R::NeedMore);
  }
  ChunkedScanner s(1 << 20);
  size_t used = 0;
  s.feed("5\r\nhello\r\n3\r\nabc\r\n", used);
  EXPECT_EQ(s.body_bytes(), 8u);
}

}  // namespace
}  // namespace ilm::server
