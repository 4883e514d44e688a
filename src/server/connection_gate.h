#pragma once
// The server's front door: one event-loop thread (epoll) that owns every client connection and
// lets a request reach the HTTP workers (cpp-httplib's thread pool, listening on loopback behind
// it) only once its head and body have fully arrived within their caps and deadlines. A client
// that trickles its head, stalls its body or just holds connections open costs a few KiB of
// buffer and a descriptor, never a worker thread, so it cannot keep a legitimate request from
// being answered. Each complete request is relayed to a worker on its own loopback connection
// and its response (streams included) relayed back as it comes; a client that hangs up closes
// its worker connection at once, which the worker notices (PeerWatch, DataSink::is_writable).
//
// What the gate answers itself, with an OpenAI error object and the connection closed:
//   400 malformed head, field value with a control character, bad chunked framing
//   408 head not complete within head_timeout_s, or a body slower than body_min_rate
//   413 body larger than max_body_bytes (refused from the head, before reading it)
//   431 head larger than its byte cap or with too many fields
//   501 a transfer coding other than chunked; 505 an HTTP version other than 1.x
// Pipelined requests are read, then answered one after the other.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "server/http_head.h"

namespace ilm::server {

struct GateLimits {
  HeadLimits head;
  uint64_t max_body_bytes = 8u << 20;
  double head_timeout_s = 10;     // from a request's first byte (or the connection's start) to its blank line
  double idle_timeout_s = 5;      // keep-alive: between a response and the next request's first byte
  double body_grace_s = 10;       // a body may take this long plus its size at body_min_rate
  double body_min_rate = 64 << 10;  // bytes per second
  int max_connections = 4096;     // open client connections (capped by the descriptor limit)
  int max_connections_per_client = 1024;  // per client IP address
};

struct GateCounters {
  int64_t open = 0, accepted = 0, evicted = 0, timed_out = 0, refused = 0;
};

class ConnectionGate {
 public:
  // `error_body(status, message, code)` renders the JSON body of the gate's own error answers.
  using ErrorBody = std::function<std::string(int status, const std::string& message, const std::string& code)>;
  ConnectionGate(GateLimits limits, ErrorBody error_body);
  ~ConnectionGate();
  ConnectionGate(const ConnectionGate&) = delete;
  ConnectionGate& operator=(const ConnectionGate&) = delete;

  // Listens on host:port (0: any free port); returns the port. Throws ilm::Error.
  int listen(const std::string& host, int port);
  // Serves until stop(), relaying complete requests to 127.0.0.1:upstream_port.
  void run(int upstream_port);
  // From any thread: stops accepting and reading new requests; responses being relayed run to
  // their end (for at most drain_s), then run() returns. Safe before run() starts.
  void stop(double drain_s);
  GateCounters counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ilm::server
