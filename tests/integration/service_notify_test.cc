// Readiness reported to a service manager (Type=notify, shared/service_notify.h)
// by the real binaries: the test binds the unix datagram socket systemd
// would, passes it in NOTIFY_SOCKET, and reads what arrives. The hub says
// READY=1 only once nats-server is up (before, STATUS lines with its
// retries); the agent only once it has registered with a hub. Both say
// STOPPING=1 on SIGTERM. No systemd runs.

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "testing/child_process.h"
#include "tests/harness/hub_process.h"
#include "tests/integration/hub_test_util.h"

namespace ds::testing {
namespace {

// The notification socket: a bound AF_UNIX datagram socket, closed (and its
// file removed) by the destructor. One test thread reads it.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path_.size() >= sizeof addr.sun_path) return;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) bound_ = true;
  }
  ~NotifySocket() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  bool bound() const { return bound_; }
  const std::string& path() const { return path_; }

  // Reads every datagram that arrives within `timeout_ms` until `done`
  // holds for one of them; returns whether it did. All are kept in seen().
  template <typename Pred>
  bool wait_for(Pred done, int64_t timeout_ms) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      seen_.emplace_back(buf, static_cast<size_t>(n));
      if (done(seen_.back())) return true;
    }
  }
  const std::vector<std::string>& seen() const { return seen_; }
  size_t count_containing(const std::string& needle) const {
    return static_cast<size_t>(std::count_if(seen_.begin(), seen_.end(), [&](const std::string& m) {
      return m.find(needle) != std::string::npos;
    }));
  }
  std::string dump() const {
    std::string out;
    for (const std::string& m : seen_) out += "[" + m + "]\n";
    return out;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
  std::vector<std::string> seen_;
};

bool is_ready(const std::string& m) { return m.find("READY=1") != std::string::npos; }

class ServiceNotifyTest : public NatsTest {
 protected:
  TempDir dir_{"notify-test"};
};

TEST_F(ServiceNotifyTest, HubIsReadyOnlyOnceNatsServerIsUp) {
  NotifySocket notify(dir_.file("notify.sock"));
  ASSERT_TRUE(notify.bound()) << std::strerror(errno);
  ASSERT_TRUE(server_->stop().is_ok());  // the broker is down at the hub's start; its port stays
  HubProcess hub(dir_.write_file("hub.toml", two_type_hub_toml(*server_, dir_, "", "")), dir_.file("hub.log"));
  ASSERT_TRUE(hub.launch({{"NOTIFY_SOCKET", notify.path()}}).is_ok());

  // Retries are reported as STATUS, and no READY comes while NATS is down.
  ASSERT_TRUE(notify.wait_for([&](const std::string&) {
    return notify.count_containing("STATUS=not ready: waiting for NATS at " + server_->url() + ": retry") >= 2;
  }, 20000)) << notify.dump() << hub.log_text();
  EXPECT_EQ(notify.count_containing("READY=1"), 0u) << notify.dump();

  ASSERT_TRUE(server_->start().is_ok()) << server_->log_text();
  ASSERT_TRUE(notify.wait_for(is_ready, 30000)) << notify.dump() << hub.log_text();
  EXPECT_EQ(hub.log_count("started: nats"), 1u) << hub.log_text();  // it had started when it said READY
  EXPECT_NE(notify.seen().back().find("STATUS=ready"), std::string::npos) << notify.dump();

  hub.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for([](const std::string& m) { return m.find("STOPPING=1") != std::string::npos; },
                              15000)) << notify.dump();
  EXPECT_EQ(hub.wait_exit(15000), std::optional<int>(0)) << hub.log_text();
  EXPECT_EQ(notify.count_containing("READY=1"), 1u) << notify.dump();
}

TEST_F(ServiceNotifyTest, AgentIsReadyOnlyOnceRegisteredWithTheHub) {
  NotifySocket notify(dir_.file("notify.sock"));
  ASSERT_TRUE(notify.bound()) << std::strerror(errno);
  const std::string agent_toml = dir_.write_file(
      "agent.toml", "[agent]\nid = \"store-1\"\nlog_level = \"info\"\n[nats]\nurl = \"" + server_->url() +
                        "\"\n[replica]\npath = \"" + dir_.file("replica.db") +
                        "\"\n[[subscriptions]]\ntype = \"price\"\npartition = \"*\"\n");
  ChildProcess agent({std::string(DELTASYNC_BINARY_DIR) + "/deltasync-agent", "run", "--config", agent_toml},
                     dir_.file("agent.log"));
  // NATS is up, the hub is not: the agent is connected but cannot register.
  ASSERT_TRUE(agent.start({{"NOTIFY_SOCKET", notify.path()}}).is_ok());
  ASSERT_TRUE(notify.wait_for([](const std::string& m) {
    return m.find("STATUS=not ready: registration failed, retrying") != std::string::npos;
  }, 30000)) << notify.dump() << agent.log_text();
  EXPECT_EQ(notify.count_containing("READY=1"), 0u) << notify.dump();

  HubProcess hub(dir_.write_file("hub.toml", two_type_hub_toml(*server_, dir_, "", "")), dir_.file("hub.log"));
  ASSERT_TRUE(hub.start().is_ok()) << hub.log_text();
  // The registrar's backoff doubles from 0.5 s: its next try is at most ~8 s away here.
  ASSERT_TRUE(notify.wait_for(is_ready, 40000)) << notify.dump() << agent.log_text();
  EXPECT_GE(hub.log_count("agent store-1 registered"), 1u) << hub.log_text();
  EXPECT_NE(notify.seen().back().find("STATUS=ready: registered with the hub"), std::string::npos) << notify.dump();

  agent.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for([](const std::string& m) { return m.find("STOPPING=1") != std::string::npos; },
                              15000)) << notify.dump();
  EXPECT_EQ(agent.wait_exit(15000), std::optional<int>(0)) << agent.log_text();
  EXPECT_EQ(notify.count_containing("READY=1"), 1u) << notify.dump();
}

}  // namespace
}  // namespace ds::testing
