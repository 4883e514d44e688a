#pragma once
// Noticing that an HTTP client went away while its request is still being generated.
// cpp-httplib 0.11.4 (Debian's) gives a handler no way to ask whether its connection is
// still open (later versions have Request::is_connection_closed), and a non-streaming handler
// writes nothing until the end. So the handler finds its own connection's socket once — the
// socket in this process whose local and peer addresses are the request's — and polls it for
// a hang-up. The socket stays open (httplib closes it only after the handler returns), so the
// descriptor cannot be reused by another connection meanwhile.
#include <string>

namespace ilm::server {

class PeerWatch {
 public:
  // Finds the connected socket with these addresses; without one, closed() is always false.
  PeerWatch(const std::string& local_addr, int local_port, const std::string& remote_addr, int remote_port);
  // True once the peer has closed or reset the connection (a pending request body or a
  // pipelined request does not count).
  bool closed() const;
  bool found() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace ilm::server
