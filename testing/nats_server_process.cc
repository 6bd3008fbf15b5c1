#include "testing/nats_server_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "testing/local_host.h"

namespace ds {
namespace {

constexpr int64_t kReadyTimeoutMs = 10000;
constexpr int64_t kStopGraceMs = 10000;
constexpr int kPortAttempts = 5;
// What nats-server logs once it listens for clients.
constexpr const char* kReadyLine = "Server is ready";

using Clock = std::chrono::steady_clock;

int64_t elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

// Closes a socket fd on scope exit.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() { if (fd_ >= 0) ::close(fd_); }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// True when a client connecting to `address`:`port` receives the server's
// INFO line.
bool server_answers(const std::string& address, int port) {
  FdGuard fd(::socket(AF_INET, SOCK_STREAM, 0));
  if (fd.get() < 0) return false;
  sockaddr_in addr = loopback_address(port);
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) return false;
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
  std::string got;
  char buf[512];
  auto start = Clock::now();
  while (elapsed_ms(start) < 1000 && got.find('\n') == std::string::npos) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
  return got.rfind("INFO ", 0) == 0;
}

}  // namespace

NatsServerProcess::NatsServerProcess(std::string program, std::string extra_config, std::string listen_address,
                                     int port)
    : dir_("deltasync-nats"),
      program_(std::move(program)),
      extra_config_(std::move(extra_config)),
      listen_address_(std::move(listen_address)),
      port_(port) {
  store_dir_ = dir_.file("store");
  log_path_ = dir_.file("nats-server.log");
  // JetStream is configured in the file, not with -js/-sd: nats-server
  // 2.9.10 forgets command-line JetStream at a config reload (SIGHUP) and
  // shuts JetStream down (nats-server issue #6606, fixed in 2.11).
  config_path_ = dir_.write_file("nats-server.conf",
                                 "jetstream { store_dir: \"" + store_dir_ + "\" }\n" + extra_config_);
  std::filesystem::create_directories(store_dir_);
}

NatsServerProcess::~NatsServerProcess() {
  if (running()) (void)stop();
}

std::string NatsServerProcess::url() const { return "nats://" + listen_address_ + ":" + std::to_string(port_); }

std::string NatsServerProcess::log_text() const { return read_text_file(log_path_); }

Status NatsServerProcess::start() {
  if (running()) return Status::ok();
  const bool fixed_port = port_ != 0;
  Status last;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    if (!fixed_port) {
      DS_ASSIGN_OR_RETURN(port_, free_loopback_port());
    }
    bool port_clash = false;
    last = start_once(&port_clash);
    if (last.is_ok() || !port_clash) return last;
    // On a restart the old socket may linger briefly; on a first start the
    // port was taken by someone else. Either way, try again.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return last;
}

Status NatsServerProcess::start_once(bool* port_clash) {
  std::vector<std::string> args = {program_, "-a", listen_address_, "-p", std::to_string(port_), "-c", config_path_};
  // ChildProcess makes the server die with a crashed parent.
  process_ = std::make_unique<ChildProcess>(std::move(args), log_path_);
  const size_t ready_lines = process_->log_count(kReadyLine);  // the log is kept across restarts
  DS_RETURN_IF_ERROR(process_->start());

  bool exited = false;
  Status s = wait_ready(kReadyTimeoutMs, ready_lines, &exited);
  if (!s.is_ok()) {
    const std::string log = log_text();
    *port_clash = exited && log.find("address already in use") != std::string::npos;
    if (!exited) kill();
    return Status(s.code(), s.message() + "\n--- nats-server log (" + log_path_ + ") ---\n" + log);
  }
  return Status::ok();
}

Status NatsServerProcess::wait_ready(int64_t timeout_ms, size_t ready_lines_before, bool* exited) {
  auto start = Clock::now();
  while (elapsed_ms(start) < timeout_ms) {
    if (auto code = process_->wait_exit(0)) {
      *exited = true;
      return Status::unavailable("nats-server exited during start-up (exit code " + std::to_string(*code) + ")");
    }
    // Our server's own log line first: an INFO line alone may come from
    // another test's server that took the port while ours failed to bind.
    if (process_->log_count(kReadyLine) > ready_lines_before && server_answers(listen_address_, port_)) {
      return Status::ok();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return Status::deadline_exceeded("nats-server did not accept connections on port " +
                                   std::to_string(port_) + " within " +
                                   std::to_string(timeout_ms) + " ms");
}

Status NatsServerProcess::stop() {
  if (running()) (void)process_->stop(SIGTERM, kStopGraceMs);
  return Status::ok();
}

void NatsServerProcess::kill() {
  if (running()) (void)process_->stop(SIGKILL, kStopGraceMs);
}

Status NatsServerProcess::restart() {
  DS_RETURN_IF_ERROR(stop());
  return start();
}

}  // namespace ds
