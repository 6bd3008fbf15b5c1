#include "testing/nats_cluster.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <stdexcept>
#include <thread>

#include "shared/nats.h"
#include "testing/local_host.h"

namespace ds {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kJetStreamReadyMs = 30000;
// A first start whose cluster port another process took in the meantime
// is tried again with new ports.
constexpr int kClusterAttempts = 3;

int64_t elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

}  // namespace

NatsCluster::NatsCluster(std::string program, int nodes, std::string extra_config)
    : program_(std::move(program)), count_(nodes), extra_config_(std::move(extra_config)) {
  if (nodes < 1) throw std::invalid_argument("NatsCluster: at least one node");
}

NatsCluster::~NatsCluster() {
  for (auto& n : nodes_) (void)n->stop();
}

Status NatsCluster::make_nodes() {
  for (auto& n : nodes_) (void)n->stop();
  nodes_.clear();
  std::vector<int> cluster_ports;
  monitor_ports_.clear();
  std::set<int> taken;
  while (static_cast<int>(cluster_ports.size()) < count_) {
    DS_ASSIGN_OR_RETURN(int port, free_loopback_port());
    if (taken.insert(port).second) cluster_ports.push_back(port);
  }
  while (static_cast<int>(monitor_ports_.size()) < count_) {
    DS_ASSIGN_OR_RETURN(int port, free_loopback_port());
    if (taken.insert(port).second) monitor_ports_.push_back(port);
  }
  // Client ports up front too, so urls() names a node not started yet.
  std::vector<int> client_ports;
  while (static_cast<int>(client_ports.size()) < count_) {
    DS_ASSIGN_OR_RETURN(int port, free_loopback_port());
    if (taken.insert(port).second) client_ports.push_back(port);
  }
  for (int i = 0; i < count_; ++i) {
    std::string routes;
    for (int j = 0; j < count_; ++j) {
      if (j == i) continue;
      routes += "    nats-route://127.0.0.1:" + std::to_string(cluster_ports[static_cast<size_t>(j)]) + "\n";
    }
    // JetStream clustering needs a unique server_name per node and a
    // cluster name; the routes list every other node (a node tolerates a
    // route that is not up yet and keeps trying it).
    const std::string config = "server_name: " + server_name(i) + "\nhttp: 127.0.0.1:" +
                               std::to_string(monitor_ports_[static_cast<size_t>(i)]) +
                               "\ncluster {\n  name: deltasync-test\n  listen: 127.0.0.1:" +
                               std::to_string(cluster_ports[static_cast<size_t>(i)]) + "\n  routes: [\n" + routes +
                               "  ]\n}\n" + extra_config_;
    nodes_.push_back(
        std::make_unique<NatsServerProcess>(program_, config, "127.0.0.1", client_ports[static_cast<size_t>(i)]));
  }
  return Status::ok();
}

Status NatsCluster::start(int nodes) {
  const bool first = nodes_.empty();
  const int count = nodes < 0 ? count_ : std::min(nodes, count_);
  Status last;
  for (int attempt = 0; attempt < (first ? kClusterAttempts : 1); ++attempt) {
    if (first) DS_RETURN_IF_ERROR(make_nodes());
    last = Status::ok();
    for (int i = 0; i < count && last.is_ok(); ++i) last = nodes_[static_cast<size_t>(i)]->start();
    if (last.is_ok()) break;
    if (!first || last.message().find("address already in use") == std::string::npos) return last;
  }
  if (!last.is_ok()) return last;
  for (int i = 0; i < count; ++i) {
    Status s = wait_jetstream(nodes_[static_cast<size_t>(i)]->url(), kJetStreamReadyMs);
    if (!s.is_ok()) return Status(s.code(), s.message() + "\n" + logs());
  }
  if (count < count_) return Status::ok();
  if (Status s = wait_placement(kJetStreamReadyMs); !s.is_ok()) return Status(s.code(), s.message() + "\n" + logs());
  return Status::ok();
}

Status NatsCluster::wait_placement(int64_t timeout_ms) {
  if (count_ == 1) return Status::ok();
  // The meta leader answers the JetStream API before it has heard what
  // every other node offers, and refuses a replicated stream meanwhile
  // ("no suitable peers for placement"): place and remove a probe stream.
  ConnectOptions opts;
  opts.config.url = urls();
  opts.name = "NatsCluster placement probe";
  DS_ASSIGN_OR_RETURN(std::unique_ptr<Connection> nc, Connection::connect(opts));
  DS_ASSIGN_OR_RETURN(std::unique_ptr<JetStream> js, nc->jetstream());
  StreamSpec probe;
  probe.name = "NATS_CLUSTER_PLACEMENT_PROBE";
  probe.subjects = {"nats-cluster.placement-probe"};
  probe.replicas = count_;
  const auto start = Clock::now();
  Status placed = js->ensure_stream(probe);
  while (!placed.is_ok() && elapsed_ms(start) < timeout_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    placed = js->ensure_stream(probe);
  }
  if (!placed.is_ok()) {
    return Status(placed.code(), "no stream with " + std::to_string(count_) + " replicas could be placed within " +
                                     std::to_string(timeout_ms) + " ms: " + placed.message());
  }
  return js->delete_stream(probe.name);
}

std::string NatsCluster::urls() const {
  std::string out;
  for (const auto& n : nodes_) out += (out.empty() ? "" : ",") + n->url();
  return out;
}

std::string NatsCluster::logs() const {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    out += "--- nats-server " + server_name(i) + " (" + node(i).dir() + ") ---\n" + node(i).log_text();
  }
  return out;
}

Status NatsCluster::node_current(int i) const {
  const int port = monitor_ports_.at(static_cast<size_t>(i));
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Status::unavailable("socket: " + std::string(std::strerror(errno)));
  std::string got;
  sockaddr_in addr = loopback_address(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      const auto start = Clock::now();
      char buf[1024];
      while (elapsed_ms(start) < 2000) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;  // HTTP/1.0: the server closes after the answer
        got.append(buf, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  if (got.rfind("HTTP/1.1 200", 0) == 0 || got.rfind("HTTP/1.0 200", 0) == 0) return Status::ok();
  const auto body = got.find("\r\n\r\n");
  return Status::unavailable(server_name(i) + " /healthz: " +
                             (got.empty() ? std::string("no answer") : got.substr(body == std::string::npos ? 0 : body + 4)));
}

Status NatsCluster::wait_current(int i, int64_t timeout_ms) const {
  const auto start = Clock::now();
  Status last = node_current(i);
  while (!last.is_ok() && elapsed_ms(start) < timeout_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    last = node_current(i);
  }
  return last;
}

Status NatsCluster::wait_jetstream(const std::string& url, int64_t timeout_ms) {
  const auto start = Clock::now();
  std::string last = "no answer yet";
  while (elapsed_ms(start) < timeout_ms) {
    ConnectOptions opts;
    opts.config.url = url;
    opts.name = "NatsCluster readiness probe";
    auto nc = Connection::connect(opts);
    if (nc.is_ok()) {
      // Account info: answered by the meta leader, so an answer without an
      // error means clients can create and use streams.
      auto reply = (*nc)->request("$JS.API.INFO", "", 1000);
      if (reply.is_ok() && reply->data().find("\"error\"") == std::string_view::npos) return Status::ok();
      last = reply.is_ok() ? std::string(reply->data()) : reply.status().to_string();
    } else {
      last = nc.status().to_string();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return Status::deadline_exceeded("JetStream not available through " + url + " within " +
                                   std::to_string(timeout_ms) + " ms: " + last);
}

}  // namespace ds
