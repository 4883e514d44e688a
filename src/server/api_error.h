#pragma once
// An error that becomes an OpenAI-style error response:
//   {"error": {"message", "type", "param", "code"}} with an HTTP status.
#include <stdexcept>
#include <string>

namespace ilm::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {},
           std::string type = {})
      : std::runtime_error(std::move(message)),
        status_(status),
        param_(std::move(param)),
        code_(std::move(code)),
        type_(type.empty() ? default_type(status) : std::move(type)) {}

  int status() const { return status_; }
  const std::string& param() const { return param_; }  // empty: null
  const std::string& code() const { return code_; }    // empty: null
  const std::string& type() const { return type_; }

  // 4xx are the client's fault ("invalid_request_error", as OpenAI reports them); 5xx ours.
  static std::string default_type(int status) {
    return status >= 500 ? "server_error" : "invalid_request_error";
  }

 private:
  int status_;
  std::string param_, code_, type_;
};

// A 400 about one request field.
inline ApiError bad_request(std::string message, std::string param = {}) {
  return ApiError(400, std::move(message), std::move(param));
}

}  // namespace ilm::server
