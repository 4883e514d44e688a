// What `internlm serve` adds for operators: log line rendering, request ids, CORS origins and
// API keys (constant-time, several, from a file).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "server/access_log.h"
#include "server/api_keys.h"
#include "server/cors.h"
#include "server/log.h"

namespace ilm::server {
namespace {

TEST(serverLog, RendersTextAndJson) {
  const log::Fields f = {{"id", "abc-1"}, {"path", "/v1/x y"}, {"n", 3}, {"bad", std::string("\xff")}};
  EXPECT_EQ(log::render(log::Format::Text, "request", f),
            "request id=abc-1 path=\"/v1/x y\" n=3 bad=\"\xEF\xBF\xBD\"");
  EXPECT_EQ(log::render(log::Format::Json, "say \"hi\"\n", f),
            "\"msg\":\"say \\\"hi\\\"\\n\",\"id\":\"abc-1\",\"path\":\"/v1/x y\",\"n\":3,\"bad\":\"\xEF\xBF\xBD\"");
  EXPECT_EQ(log::parse_level("warning"), log::Level::Warning);
  EXPECT_EQ(log::parse_level("warn"), log::Level::Warning);
  EXPECT_EQ(log::parse_level("off"), log::Level::Off);
  EXPECT_FALSE(log::parse_level("loud"));
  EXPECT_EQ(log::parse_format("json"), log::Format::Json);
  EXPECT_FALSE(log::parse_format("xml"));
}

TEST(serverLog, RequestIdsAreSanitizedAndBounded) {
  EXPECT_EQ(sanitize_request_id("abc-DEF_1.2:3"), "abc-DEF_1.2:3");
  EXPECT_EQ(sanitize_request_id("a b\"c\\d<e>\xc3\xa9"), "abcde");
  EXPECT_EQ(sanitize_request_id(std::string(1000, 'x')).size(), kMaxRequestIdBytes);
  EXPECT_EQ(sanitize_request_id("\"\" "), "");
  const std::string a = new_request_id(), b = new_request_id();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_EQ(sanitize_request_id(a), a);
}

TEST(serverCors, OriginsFromListsAndWildcard) {
  const CorsPolicy none;
  EXPECT_FALSE(none.enabled());
  EXPECT_EQ(none.allow_origin("https://a.example"), "");
  const CorsPolicy some({"https://a.example, https://b.example/", "http://localhost:3000"});
  EXPECT_TRUE(some.enabled());
  EXPECT_EQ(some.allow_origin("https://a.example"), "https://a.example");
  EXPECT_EQ(some.allow_origin("https://b.example"), "https://b.example");
  EXPECT_EQ(some.allow_origin("http://localhost:3000"), "http://localhost:3000");
  EXPECT_EQ(some.allow_origin("https://evil.example"), "");
  EXPECT_EQ(some.allow_origin(""), "");
  const CorsPolicy any({"*"});
  EXPECT_EQ(any.allow_origin("https://whatever.example"), "*");
}

TEST(serverApiKeys, SeveralKeysAndAKeyFile) {
  const ApiKeys none;
  EXPECT_FALSE(none.required());
  const ApiKeys keys({"alpha", "", "beta-2"});
  EXPECT_TRUE(keys.required());
  EXPECT_EQ(keys.size(), 2u);
  EXPECT_TRUE(keys.accepts("alpha"));
  EXPECT_TRUE(keys.accepts("beta-2"));
  EXPECT_FALSE(keys.accepts("alph"));
  EXPECT_FALSE(keys.accepts("alphaa"));
  EXPECT_FALSE(keys.accepts(""));

  const auto path = std::filesystem::temp_directory_path() / "internlm_test_api_keys.txt";
  {
    std::ofstream out(path);
    out << "# comment\n  one  \r\n\ntwo\n";
  }
  EXPECT_EQ(read_api_key_file(path.string()), (std::vector<std::string>{"one", "two"}));
  {
    std::ofstream out(path);
    out << "# only a comment\n";
  }
  EXPECT_THROW(read_api_key_file(path.string()), Error);
  std::filesystem::remove(path);
  EXPECT_THROW(read_api_key_file((path.string() + ".missing")), Error);
}

}  // namespace
}  // namespace ilm::server
