#include "tests/harness/hub_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace ds::testing {
namespace {

// The hub's start-up summary line (hub/hub.cc).
constexpr std::string_view kStartedMarker = "started: nats";

}  // namespace

HubProcess::HubProcess(std::string config_path, std::string log_path)
    : config_path_(std::move(config_path)), log_path_(std::move(log_path)) {}

HubProcess::~HubProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    (void)wait_exit(10000);
  }
}

Status HubProcess::start(const std::vector<std::pair<std::string, std::string>>& env) {
  if (pid_ > 0) return Status::internal("hub process already running");
  const std::string binary = std::string(DELTASYNC_BINARY_DIR) + "/deltasync-hub";
  const size_t started_before = log_count(std::string(kStartedMarker));

  // Everything the child needs is prepared before fork.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string arg0 = binary, arg1 = "-c", arg2 = config_path_;
  std::vector<char*> argv = {arg0.data(), arg1.data(), arg2.data(), nullptr};
  const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return Status::internal("open " + log_path_ + ": " + std::strerror(errno));

  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return Status::internal(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(log_fd);
  pid_ = pid;

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    if (log_count(std::string(kStartedMarker)) > started_before) return Status::ok();
    int wstatus = 0;
    if (::waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = -1;
      return Status::internal("deltasync-hub exited during start-up:\n" + log_text());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status::deadline_exceeded("deltasync-hub did not start within 15 s:\n" + log_text());
}

void HubProcess::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> HubProcess::wait_exit(int64_t timeout_ms) {
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int wstatus = 0;
    const pid_t r = ::waitpid(pid_, &wstatus, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
      if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
      return -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string HubProcess::log_text() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t HubProcess::log_count(const std::string& needle) const {
  std::istringstream in(log_text());
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

}  // namespace ds::testing
