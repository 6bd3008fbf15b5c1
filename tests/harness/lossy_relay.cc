#include "tests/harness/lossy_relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <sstream>
#include <string_view>

namespace ds::testing {
namespace {

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

Result<int> connect_loopback(const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return Status::invalid_argument("lossy relay: upstream host '" + host + "' is not an IPv4 address");
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::internal(std::string("lossy relay: socket: ") + std::strerror(errno));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return Status::unavailable("lossy relay: connect to " + host + ":" + std::to_string(port) + ": " + why);
  }
  return fd;
}

// A MSG or HMSG control line: "MSG <subject> <sid> [reply] <size>" or
// "HMSG <subject> <sid> [reply] <header size> <total size>".
struct MessageLine {
  std::string subject;
  std::string reply;
  size_t payload = 0;  // bytes after the line, before the closing CRLF
};

// The message line `line` is, or nothing for any other line.
std::optional<MessageLine> message_line(std::string_view line) {
  const bool headers = line.rfind("HMSG ", 0) == 0;
  if (!headers && line.rfind("MSG ", 0) != 0) return std::nullopt;
  std::istringstream tokens{std::string(line)};
  std::vector<std::string> t;
  for (std::string s; tokens >> s;) t.push_back(s);
  const size_t without_reply = headers ? 5 : 4;
  if (t.size() != without_reply && t.size() != without_reply + 1) return std::nullopt;
  MessageLine m;
  m.subject = t[1];
  if (t.size() == without_reply + 1) m.reply = t[3];
  m.payload = std::stoul(t.back());
  return m;
}

}  // namespace

Result<std::unique_ptr<LossyRelay>> LossyRelay::start(const std::string& upstream_url) {
  const std::string prefix = "nats://";
  const size_t colon = upstream_url.rfind(':');
  if (upstream_url.rfind(prefix, 0) != 0 || colon == std::string::npos || colon < prefix.size()) {
    return Status::invalid_argument("lossy relay: '" + upstream_url + "' is not nats://host:port");
  }
  const std::string host = upstream_url.substr(prefix.size(), colon - prefix.size());
  const int upstream_port = std::stoi(upstream_url.substr(colon + 1));

  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::internal(std::string("lossy relay: socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return Status::internal("lossy relay: listen: " + why);
  }
  std::unique_ptr<LossyRelay> relay(new LossyRelay(fd, ntohs(addr.sin_port), host, upstream_port));
  relay->acceptor_ = std::thread([r = relay.get()] { r->accept_loop(); });
  return relay;
}

LossyRelay::LossyRelay(int listener, int port, std::string host, int upstream_port)
    : listener_(listener), port_(port), upstream_host_(std::move(host)), upstream_port_(upstream_port) {}

LossyRelay::~LossyRelay() {
  stopping_.store(true);
  ::shutdown(listener_, SHUT_RDWR);  // wakes accept()
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listener_);
  std::vector<std::unique_ptr<Link>> links;
  {
    std::lock_guard<std::mutex> lock(mu_);
    links.swap(links_);
  }
  for (auto& link : links) {
    ::shutdown(link->client, SHUT_RDWR);
    ::shutdown(link->server, SHUT_RDWR);
    link->up.join();
    link->down.join();
    ::close(link->client);
    ::close(link->server);
  }
}

std::string LossyRelay::url() const { return "nats://127.0.0.1:" + std::to_string(port_); }

void LossyRelay::drop_next(const std::string& subject) {
  std::lock_guard<std::mutex> lock(mu_);
  drop_subject_ = subject;
}

bool LossyRelay::take_drop(const std::string& subject) {
  std::lock_guard<std::mutex> lock(mu_);
  if (drop_subject_.empty() || drop_subject_ != subject) return false;
  drop_subject_.clear();
  return true;
}

void LossyRelay::accept_loop() {
  while (!stopping_.load()) {
    const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR) continue;
      return;  // the listener was shut down
    }
    auto server = connect_loopback(upstream_host_, upstream_port_);
    if (!server.is_ok()) {
      ::close(client);  // the client sees the connection refused, as without a relay
      continue;
    }
    auto link = std::make_unique<Link>();
    link->client = client;
    link->server = *server;
    link->up = std::thread([this, from = client, to = *server] { pump_up(from, to); });
    link->down = std::thread([this, from = *server, to = client] { pump_down(from, to); });
    std::lock_guard<std::mutex> lock(mu_);
    links_.push_back(std::move(link));
  }
}

void LossyRelay::pump_up(int from, int to) {
  char buf[65536];
  while (true) {
    const ssize_t n = ::recv(from, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || !send_all(to, std::string_view(buf, static_cast<size_t>(n)))) break;
  }
  ::shutdown(to, SHUT_RDWR);
  ::shutdown(from, SHUT_RDWR);
}

void LossyRelay::pump_down(int from, int to) {
  char chunk[65536];
  std::string pending;  // bytes read but not yet a whole frame
  while (true) {
    const ssize_t n = ::recv(from, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(chunk, static_cast<size_t>(n));
    std::string out;
    size_t pos = 0;
    while (true) {
      const size_t eol = pending.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t end = eol + 2;
      const auto msg = message_line(std::string_view(pending).substr(pos, eol - pos));
      if (msg) {
        end += msg->payload + 2;
        if (end > pending.size()) break;  // the payload is still on its way
      }
      // Only a delivery: not the consumer's idle heartbeats and flow-control
      // requests, which go to the same subject.
      if (msg && msg->reply.rfind("$JS.ACK.", 0) == 0 && take_drop(msg->subject)) {
        ++dropped_;
      } else {
        out.append(pending, pos, end - pos);
      }
      pos = end;
    }
    pending.erase(0, pos);
    if (!send_all(to, out)) break;
  }
  ::shutdown(to, SHUT_RDWR);
  ::shutdown(from, SHUT_RDWR);
}

}  // namespace ds::testing
