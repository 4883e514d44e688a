#include "server/connection_gate.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "common/error.h"
#include "server/allocator_policy.h"

namespace ilm::server {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 64u << 10;
constexpr size_t kMaxPendingOut = 1u << 20;  // relayed bytes the client has not taken yet: pause the worker side
constexpr uint64_t kListenTag = 0, kWakeTag = 1;

double since(Clock::time_point t, Clock::time_point now) { return std::chrono::duration<double>(now - t).count(); }

const char* reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

std::string peer_address(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, buf, sizeof buf);
  if (a.ss_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, buf, sizeof buf);
  return buf;
}

// The worker's response head with its Connection field replaced: every relayed request asks
// the worker to close (the gate frames requests itself), the client gets what it asked for.
std::string rewrite_response_head(std::string_view head, bool keep_alive, bool& framed) {
  std::string out;
  size_t p = 0;
  framed = false;
  bool first = true;
  while (p < head.size()) {
    size_t e = head.find("\r\n", p);
    if (e == std::string_view::npos) e = head.size();
    const std::string_view line = head.substr(p, e - p);
    p = e + 2;
    if (line.empty()) break;
    std::string name;
    if (!first) {
      const size_t c = line.find(':');
      name = std::string(line.substr(0, c == std::string_view::npos ? 0 : c));
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (name == "connection" || name == "keep-alive") continue;
      if (name == "content-length" || name == "transfer-encoding") framed = true;
    }
    first = false;
    out.append(line).append("\r\n");
  }
  out += keep_alive && framed ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return out;
}

struct Conn {
  enum class Phase { Idle, Head, Body, Relay, Closing };
  int fd = -1, up = -1;
  uint64_t serial = 0;
  std::string addr;
  Phase phase = Phase::Idle;
  Clock::time_point phase_start;
  std::string in, out, upout, resp_head;
  RequestHead head;
  std::optional<ChunkedScanner> chunks;
  size_t scanned = 0;       // bytes of `in` the head parser / chunk scanner has seen
  bool keep_alive = false;  // after the response being relayed
  bool resp_head_done = false, up_done = false, up_paused = false, reading = true;
  uint32_t client_events = 0, up_events = 0;
};

}  // namespace

struct ConnectionGate::Impl {
  GateLimits limits;
  ErrorBody error_body;
  int listen_fd = -1, wake_fd = -1, ep = -1, upstream_port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<double> drain_s{5};
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns;
  std::unordered_map<std::string, int> per_client;
  uint64_t next_serial = 2;  // 0, 1: the listening socket and the wake-up eventfd
  std::optional<Clock::time_point> last_large;  // when a request body of 1 MiB or more was relayed
  Clock::time_point last_trim;
  mutable std::mutex counters_mu;
  GateCounters c;

  Impl(GateLimits l, ErrorBody e) : limits(l), error_body(std::move(e)) {
    ep = epoll_create1(EPOLL_CLOEXEC);
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ep < 0 || wake_fd < 0) throw Error("cannot create the server's event loop");
    // Idle and slow clients hold descriptors, not threads: allow as many as the system lets us.
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
      r.rlim_cur = r.rlim_max;
      setrlimit(RLIMIT_NOFILE, &r);
    }
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != RLIM_INFINITY) {
      const auto fit = static_cast<int64_t>((r.rlim_cur - 256) / 2);  // a relayed request holds two
      limits.max_connections = static_cast<int>(std::max<int64_t>(16, std::min<int64_t>(fit, limits.max_connections)));
    }
  }
  ~Impl() {
    for (auto& [id, cn] : conns) {
      if (cn->up >= 0) ::close(cn->up);
      ::close(cn->fd);
    }
    if (listen_fd >= 0) ::close(listen_fd);
    ::close(wake_fd);
    ::close(ep);
  }

  void count(int64_t GateCounters::*field, int64_t d = 1) {
    std::lock_guard lock(counters_mu);
    c.*field += d;
  }

  // ---- epoll bookkeeping: client sockets are tagged 2*serial, worker sockets 2*serial + 1.
  void watch(int fd, uint64_t tag, uint32_t events, uint32_t& current) {
    epoll_event e{};
    e.events = events;
    e.data.u64 = tag;
    if (current == 0 && events != 0) epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    else if (events != current) epoll_ctl(ep, events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD, fd, &e);
    current = events;
  }
  void update_client(Conn& cn) {
    uint32_t ev = EPOLLRDHUP;
    if (cn.reading) ev |= EPOLLIN;
    if (!cn.out.empty()) ev |= EPOLLOUT;
    watch(cn.fd, cn.serial * 2, ev, cn.client_events);
  }
  void update_upstream(Conn& cn) {
    if (cn.up < 0) return;
    uint32_t ev = EPOLLRDHUP;
    if (!cn.up_paused) ev |= EPOLLIN;
    if (!cn.upout.empty()) ev |= EPOLLOUT;
    watch(cn.up, cn.serial * 2 + 1, ev, cn.up_events);
  }

  void close_upstream(Conn& cn) {
    if (cn.up < 0) return;
    epoll_ctl(ep, EPOLL_CTL_DEL, cn.up, nullptr);
    ::close(cn.up);
    cn.up = -1;
    cn.up_events = 0;
  }
  void close_conn(uint64_t serial) {
    auto it = conns.find(serial);
    if (it == conns.end()) return;
    Conn& cn = *it->second;
    close_upstream(cn);
    epoll_ctl(ep, EPOLL_CTL_DEL, cn.fd, nullptr);
    ::close(cn.fd);
    if (--per_client[cn.addr] <= 0) per_client.erase(cn.addr);
    conns.erase(it);
    count(&GateCounters::open, -1);
  }

  void set_phase(Conn& cn, Conn::Phase p) {
    cn.phase = p;
    cn.phase_start = Clock::now();
  }

  // The gate's own answer: an error object, then the connection is closed once it is written
  // (the rest of the request is not read).
  void refuse(Conn& cn, int status, const std::string& msg, const std::string& code = {}) {
    const std::string body = error_body(status, msg, code);
    cn.out += fmt::format("HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                          status, reason(status), body.size());
    cn.out += body;
    cn.in.clear();
    cn.reading = false;
    close_upstream(cn);
    set_phase(cn, Conn::Phase::Closing);
    count(status == 408 ? &GateCounters::timed_out : &GateCounters::refused);
    update_client(cn);
    flush_client(cn);
  }

  // ---- accepting, with the per-client and total caps: at a cap, the oldest connection of that
  // client (or of all) that has no request at a worker makes room; failing that, the new one is
  // closed.
  bool evict_oldest(const std::string* addr) {
    Conn* victim = nullptr;
    for (auto& [id, cn] : conns) {
      if (cn->phase == Conn::Phase::Relay || (addr && cn->addr != *addr)) continue;
      if (!victim || cn->serial < victim->serial) victim = cn.get();
    }
    if (!victim) return false;
    close_conn(victim->serial);
    count(&GateCounters::evicted);
    return true;
  }

  void accept_all() {
    while (true) {
      sockaddr_storage sa{};
      socklen_t len = sizeof sa;
      const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&sa), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // EAGAIN, or out of descriptors (the next sweep frees some)
      }
      const std::string addr = peer_address(sa);
      if ((per_client.count(addr) && per_client[addr] >= limits.max_connections_per_client && !evict_oldest(&addr)) ||
          (static_cast<int>(conns.size()) >= limits.max_connections && !evict_oldest(nullptr))) {
        ::close(fd);
        count(&GateCounters::refused);
        continue;
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto cn = std::make_unique<Conn>();
      cn->fd = fd;
      cn->serial = next_serial++;
      cn->addr = addr;
      set_phase(*cn, Conn::Phase::Head);  // a new connection owes its first request head
      ++per_client[addr];
      update_client(*cn);
      conns.emplace(cn->serial, std::move(cn));
      count(&GateCounters::accepted);
      count(&GateCounters::open);
    }
  }

  // ---- client side
  void read_client(Conn& cn) {
    char buf[kReadChunk];
    while (cn.reading) {
      const ssize_t n = ::recv(cn.fd, buf, sizeof buf, 0);
      if (n > 0) {
        if (cn.phase == Conn::Phase::Closing) continue;  // discarded: the answer is already out
        cn.in.append(buf, static_cast<size_t>(n));
        // While a request is at a worker, pipelined bytes wait, up to one head's worth.
        if (cn.phase == Conn::Phase::Relay && cn.in.size() > limits.head.max_bytes) {
          cn.reading = false;
          update_client(cn);
        }
        continue;
      }
      if (n == 0) return close_conn(cn.serial);  // a hang-up, also mid-response: the worker sees its socket close
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return close_conn(cn.serial);
      break;
    }
    advance(cn);
  }

  // Sends as much of `buf` as the socket takes now; false on a broken connection.
  static bool send_some(int fd, std::string& buf) {
    while (!buf.empty()) {
      const ssize_t n = ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
      if (n > 0) {
        buf.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    return true;
  }

  void flush_client(Conn& cn) {
    if (!send_some(cn.fd, cn.out)) return close_conn(cn.serial);
    if (cn.out.empty()) {
      if (cn.phase == Conn::Phase::Closing) {
        // Half-close so the client reads the answer before the connection goes (a close with
        // unread input would reset it and lose the answer); the sweep closes it shortly.
        ::shutdown(cn.fd, SHUT_WR);
        cn.reading = true;  // and drain what it still sends
      } else if (cn.phase == Conn::Phase::Relay && cn.up_done) {
        return finish_relay(cn);
      }
      if (cn.up_paused) {
        cn.up_paused = false;
        update_upstream(cn);
      }
    } else if (cn.out.size() > kMaxPendingOut && !cn.up_paused && cn.up >= 0) {
      cn.up_paused = true;
      update_upstream(cn);
    }
    update_client(cn);
  }

  // Moves a connection through head, body and relay as far as the bytes received allow.
  void advance(Conn& cn) {
    const uint64_t serial = cn.serial;
    while (conns.count(serial)) {
      switch (cn.phase) {
        case Conn::Phase::Idle:
          if (cn.in.empty() || stopping) return;
          set_phase(cn, Conn::Phase::Head);
          cn.scanned = 0;
          break;
        case Conn::Phase::Head: {
          // Blank lines before a request are dropped here, and the head is parsed again only
          // when a line has ended since the last try (or the cap is passed): a head trickled
          // a byte at a time costs O(size x lines), not O(size^2), with lines capped.
          const size_t lead = cn.in.find_first_not_of("\r\n");
          cn.in.erase(0, lead == std::string::npos ? cn.in.size() : lead);
          cn.scanned = std::min(cn.scanned, cn.in.size());
          if (cn.in.find('\n', cn.scanned) == std::string::npos && cn.in.size() <= limits.head.max_bytes) {
            cn.scanned = cn.in.size();
            return;
          }
          cn.scanned = cn.in.size();
          HeadParse hp = parse_request_head(cn.in, limits.head);
          if (hp.status == HeadParse::Status::Incomplete) return;
          if (hp.status == HeadParse::Status::Error)
            return refuse(cn, hp.error_status, hp.error, hp.error_status == 431 ? "request_header_too_large" : "");
          cn.head = std::move(hp.head);
          if (!cn.head.chunked && cn.head.content_length > limits.max_body_bytes)
            return refuse(cn, 413, fmt::format("the request body exceeds {} bytes", limits.max_body_bytes),
                          "request_too_large");
          if (cn.head.expect_continue) cn.out += "HTTP/1.1 100 Continue\r\n\r\n";
          cn.in.erase(0, cn.head.head_bytes);
          cn.chunks.reset();
          if (cn.head.chunked) cn.chunks.emplace(limits.max_body_bytes);
          cn.scanned = 0;
          set_phase(cn, Conn::Phase::Body);
          if (!cn.out.empty()) flush_client(cn);
          break;
        }
        case Conn::Phase::Body: {
          size_t body_end = 0;
          if (cn.chunks) {
            size_t used = 0;
            const auto r = cn.chunks->feed(std::string_view(cn.in).substr(cn.scanned), used);
            if (r == ChunkedScanner::Result::TooLarge)
              return refuse(cn, 413, fmt::format("the request body exceeds {} bytes", limits.max_body_bytes),
                            "request_too_large");
            if (r == ChunkedScanner::Result::Error) return refuse(cn, 400, cn.chunks->error());
            if (r == ChunkedScanner::Result::NeedMore) {
              cn.scanned = cn.in.size();
              return;
            }
            body_end = cn.scanned + used;
          } else {
            if (cn.in.size() < cn.head.content_length) return;
            body_end = static_cast<size_t>(cn.head.content_length);
          }
          start_relay(cn, body_end);
          return;
        }
        case Conn::Phase::Relay:
        case Conn::Phase::Closing:
          return;
      }
    }
  }

  // ---- worker side
  // The client's address goes along as X-Internlm-Peer (for the access log); a client's own
  // field of that name is dropped.
  std::string forwarded_head(const RequestHead& h, const std::string& peer) const {
    std::string s = fmt::format("{} {} HTTP/1.1\r\n", h.method, h.target);
    for (const auto& [n, v] : h.fields) {
      // Hop-by-hop fields are the gate's business; the worker gets one request per connection.
      // No route serves partial content: Range is ignored (httplib would answer a bare 416).
      if (n == "connection" || n == "keep-alive" || n == "expect" || n == "te" || n == "upgrade" ||
          n == "proxy-connection" || n == "range" || n == "if-range" || n == "x-internlm-peer")
        continue;
      s.append(n).append(": ").append(v).append("\r\n");
    }
    s += fmt::format("X-Internlm-Peer: {}\r\nConnection: close\r\n\r\n", peer);
    return s;
  }

  void start_relay(Conn& cn, size_t body_end) {
    cn.upout = forwarded_head(cn.head, cn.addr);
    cn.upout.append(cn.in, 0, body_end);
    cn.in.erase(0, body_end);
    if (cn.in.capacity() > kReadChunk) std::string(cn.in).swap(cn.in);  // an idle connection keeps no large buffer
    cn.keep_alive = cn.head.keep_alive;
    cn.resp_head.clear();
    cn.resp_head_done = cn.up_done = cn.up_paused = false;
    set_phase(cn, Conn::Phase::Relay);
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(upstream_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 && errno != EINPROGRESS)) {
      if (fd >= 0) ::close(fd);
      return refuse(cn, 503, "the server cannot take the request now (no worker connection); retry shortly");
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    cn.up = fd;
    cn.up_events = 0;
    update_upstream(cn);
    update_client(cn);
  }

  void write_upstream(Conn& cn) {
    if (!send_some(cn.up, cn.upout)) {
      if (!cn.resp_head_done) return refuse(cn, 502, "the request could not be handed to a worker");
      return close_conn(cn.serial);
    }
    if (cn.upout.empty() && cn.upout.capacity() > 0) {
      const size_t was = cn.upout.capacity();
      std::string().swap(cn.upout);
      trim_after_large_request(was);
      if (was >= (1u << 20)) last_large = Clock::now();
    }
    update_upstream(cn);
  }

  void read_upstream(Conn& cn) {
    char buf[kReadChunk];
    while (cn.up >= 0 && !cn.up_paused) {
      const ssize_t n = ::recv(cn.up, buf, sizeof buf, 0);
      if (n > 0) {
        if (cn.resp_head_done) {
          cn.out.append(buf, static_cast<size_t>(n));
        } else {
          cn.resp_head.append(buf, static_cast<size_t>(n));
          const size_t e = cn.resp_head.find("\r\n\r\n");
          if (e != std::string::npos) {
            bool framed = false;
            const bool keep = cn.keep_alive && !stopping;
            cn.out += rewrite_response_head(std::string_view(cn.resp_head).substr(0, e + 4), keep, framed);
            cn.keep_alive = keep && framed;
            cn.out.append(cn.resp_head, e + 4, std::string::npos);
            cn.resp_head.clear();
            cn.resp_head_done = true;
          }
        }
        const uint64_t serial = cn.serial;
        flush_client(cn);
        if (!conns.count(serial)) return;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      // The worker closed: the response is complete (every relayed request asked for close).
      close_upstream(cn);
      if (!cn.resp_head_done) return refuse(cn, 502, "the worker closed the connection without a response");
      cn.up_done = true;
      if (cn.out.empty()) finish_relay(cn);
      return;
    }
  }

  void finish_relay(Conn& cn) {
    close_upstream(cn);
    if (!cn.keep_alive || stopping) {
      set_phase(cn, Conn::Phase::Closing);
      cn.reading = false;
      flush_client(cn);
      return;
    }
    set_phase(cn, Conn::Phase::Idle);
    cn.reading = true;
    update_client(cn);
    advance(cn);  // a pipelined request may be waiting already
  }

  // ---- deadlines
  void sweep(Clock::time_point now) {
    // A large request's memory is freed by the worker after the gate let go of its copy: trim
    // again a few times over the next seconds (malloc_trim takes ~1 ms on small heaps).
    if (last_large && since(*last_large, now) < 3 && since(last_trim, now) > 0.5) {
      trim_after_large_request(1u << 20);
      last_trim = now;
    }
    std::vector<uint64_t> expired;
    for (auto& [id, cn] : conns) {
      const double t = since(cn->phase_start, now);
      switch (cn->phase) {
        case Conn::Phase::Idle:
          if (t > limits.idle_timeout_s || stopping) expired.push_back(id);
          break;
        case Conn::Phase::Head:
          if (t > limits.head_timeout_s || stopping) expired.push_back(id);
          break;
        case Conn::Phase::Body: {
          const double got = static_cast<double>(cn->chunks ? cn->chunks->body_bytes() : cn->in.size());
          const double need = static_cast<double>(cn->chunks ? cn->chunks->body_bytes() : cn->head.content_length);
          if (t > limits.body_grace_s + std::max(got, need) / limits.body_min_rate || stopping) expired.push_back(id);
          break;
        }
        case Conn::Phase::Closing:
          if (t > 2) expired.push_back(id);
          break;
        case Conn::Phase::Relay:
          break;
      }
    }
    for (uint64_t id : expired) {
      auto it = conns.find(id);
      if (it == conns.end()) continue;
      Conn& cn = *it->second;
      const bool answer = !stopping && (cn.phase == Conn::Phase::Body || (cn.phase == Conn::Phase::Head && !cn.in.empty()));
      if (answer) {
        refuse(cn, 408,
               cn.phase == Conn::Phase::Head
                   ? fmt::format("the request head did not arrive within {} s", limits.head_timeout_s)
                   : fmt::format("the request body arrived slower than {} bytes/s", limits.body_min_rate),
               "request_timeout");
      } else {
        if (cn.phase != Conn::Phase::Closing) count(&GateCounters::timed_out);
        close_conn(id);
      }
    }
  }

  void dispatch(const epoll_event& e) {
    const uint64_t tag = e.data.u64;
    if (tag == kListenTag) return accept_all();
    if (tag == kWakeTag) {
      uint64_t v;
      (void)!::read(wake_fd, &v, sizeof v);
      return;
    }
    auto it = conns.find(tag / 2);
    if (it == conns.end()) return;
    Conn& cn = *it->second;
    const uint64_t serial = cn.serial;
    if (tag % 2 == 0) {
      if (e.events & EPOLLOUT) flush_client(cn);
      if (!conns.count(serial)) return;
      if (e.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (!cn.reading && (e.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return close_conn(serial);
        read_client(cn);
      }
    } else {
      if (e.events & EPOLLOUT) write_upstream(cn);
      if (!conns.count(serial) || cn.up < 0) return;
      if (e.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_upstream(cn);
    }
  }

  void loop() {
    epoll_event le{};
    le.events = EPOLLIN;
    le.data.u64 = kListenTag;
    epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &le);
    epoll_event we{};
    we.events = EPOLLIN;
    we.data.u64 = kWakeTag;
    epoll_ctl(ep, EPOLL_CTL_ADD, wake_fd, &we);
    std::vector<epoll_event> events(256);
    auto last_sweep = Clock::now();
    std::optional<Clock::time_point> stop_at;
    while (true) {
      if (stopping && !stop_at) {
        stop_at = Clock::now();
        epoll_ctl(ep, EPOLL_CTL_DEL, listen_fd, nullptr);
        sweep(Clock::now());  // idle and half-received connections go now
      }
      if (stop_at && (conns.empty() || since(*stop_at, Clock::now()) > drain_s)) break;
      const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
      for (int i = 0; i < n; ++i) dispatch(events[static_cast<size_t>(i)]);
      const auto now = Clock::now();
      if (since(last_sweep, now) >= 0.1) {
        sweep(now);
        last_sweep = now;
      }
    }
  }
};

ConnectionGate::ConnectionGate(GateLimits limits, ErrorBody error_body)
    : impl_(std::make_unique<Impl>(limits, std::move(error_body))) {}

ConnectionGate::~ConnectionGate() = default;

int ConnectionGate::listen(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (getaddrinfo(host.c_str(), service.c_str(), &hints, &res) != 0 || !res)
    throw Error(fmt::format("cannot listen on {}:{} (unknown address)", host, port));
  int fd = -1;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) throw Error(fmt::format("cannot listen on {}:{} (address in use or not available)", host, port));
  sockaddr_storage sa{};
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  impl_->listen_fd = fd;
  return ntohs(sa.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(sa).sin6_port
                                        : reinterpret_cast<sockaddr_in&>(sa).sin_port);
}

void ConnectionGate::run(int upstream_port) {
  impl_->upstream_port = upstream_port;
  if (impl_->listen_fd < 0) throw Error("ConnectionGate::run before listen");
  impl_->loop();
}

void ConnectionGate::stop(double drain_s) {
  impl_->drain_s = drain_s;
  impl_->stopping = true;
  const uint64_t one = 1;
  (void)!::write(impl_->wake_fd, &one, sizeof one);
}

GateCounters ConnectionGate::counters() const {
  std::lock_guard lock(impl_->counters_mu);
  return impl_->c;
}

}  // namespace ilm::server
