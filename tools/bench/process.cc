#include "tools/bench/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "tools/local_host.h"

namespace ds::bench {
namespace {

using Clock = std::chrono::steady_clock;

int64_t elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

Result<std::unique_ptr<TempDir>> TempDir::create(std::string_view prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/" + std::string(prefix) +
                        "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return Status::internal(errno_text("mkdtemp " + pattern));
  return std::unique_ptr<TempDir>(new TempDir(pattern));
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Status TempDir::write_file(std::string_view name, std::string_view text) const {
  std::ofstream out(file(name), std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return Status::internal("cannot write " + file(name));
  return Status::ok();
}

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(std::vector<std::string> argv, std::string log_path) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  // Prepared before fork: the child of a threaded parent may only make
  // async-signal-safe calls until exec.
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return Status::internal(errno_text("open " + log_path));
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return Status::internal(errno_text("fork"));
  }
  if (pid == 0) {
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, std::move(log_path)));
}

ChildProcess::~ChildProcess() { stop(); }

bool ChildProcess::alive() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string ChildProcess::log_text() const { return read_text_file(log_path_); }

Status ChildProcess::wait_for_log(std::string_view needle, int64_t timeout_ms) {
  const auto start = Clock::now();
  while (elapsed_ms(start) < timeout_ms) {
    const std::string text = log_text();
    if (text.find(needle) != std::string::npos) return Status::ok();
    if (!alive()) return Status::unavailable("process exited before '" + std::string(needle) + "': " + text);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string text = log_text();
  if (text.size() > 2000) text = text.substr(text.size() - 2000);
  return Status::deadline_exceeded("no '" + std::string(needle) + "' in the log after " +
                                   std::to_string(timeout_ms) + " ms: " + text);
}

void ChildProcess::stop(int64_t grace_ms) {
  if (!alive()) return;
  ::kill(pid_, SIGTERM);
  const auto start = Clock::now();
  while (elapsed_ms(start) < grace_ms) {
    if (!alive()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::vector<std::string> LogTail::new_lines() {
  std::vector<std::string> lines;
  std::ifstream in(path_, std::ios::binary);
  if (!in) return lines;
  in.seekg(static_cast<std::streamoff>(offset_));
  std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  offset_ += chunk.size();
  partial_ += chunk;
  size_t begin = 0;
  for (size_t nl = partial_.find('\n'); nl != std::string::npos; nl = partial_.find('\n', begin)) {
    lines.push_back(partial_.substr(begin, nl - begin));
    begin = nl + 1;
  }
  partial_.erase(0, begin);
  return lines;
}

Status wait_for_port(int port, int64_t timeout_ms) {
  const auto start = Clock::now();
  while (elapsed_ms(start) < timeout_ms) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return Status::internal(errno_text("socket"));
    sockaddr_in addr = loopback_address(port);
    const bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (up) return Status::ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::deadline_exceeded("nothing listens on port " + std::to_string(port));
}

Result<std::unique_ptr<NatsServerProcess>> NatsServerProcess::start(const TempDir& dir) {
  DS_ASSIGN_OR_RETURN(int port, free_loopback_port());
  std::filesystem::create_directories(dir.file("nats-store"));
  DS_ASSIGN_OR_RETURN(auto p, ChildProcess::spawn({"nats-server", "-js", "-sd", dir.file("nats-store"),
                                                   "-a", "127.0.0.1", "-p", std::to_string(port)},
                                                  dir.file("nats-server.log")));
  DS_RETURN_IF_ERROR(p->wait_for_log("Server is ready", 10000));
  DS_RETURN_IF_ERROR(wait_for_port(port, 10000));
  return std::unique_ptr<NatsServerProcess>(new NatsServerProcess(std::move(p), port));
}

std::string self_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

Result<ProcStats> proc_stats(pid_t pid) {
  ProcStats out;
  const std::string base = "/proc/" + std::to_string(pid);
  std::istringstream status(read_text_file(base + "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) out.rss_kb = std::stoll(line.substr(6));
    if (line.rfind("RssAnon:", 0) == 0) out.rss_anon_kb = std::stoll(line.substr(8));
    if (line.rfind("VmHWM:", 0) == 0) out.peak_rss_kb = std::stoll(line.substr(6));
  }
  const std::string stat = read_text_file(base + "/stat");
  // The command name (field 2) may hold spaces; fields resume after ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return Status::not_found("no " + base + "/stat");
  std::istringstream rest(stat.substr(close + 2));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  // Fields 14 and 15 of stat(5) are utime and stime; `fields` starts at 3.
  if (fields.size() < 13) return Status::internal("short " + base + "/stat");
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  out.cpu_seconds = static_cast<double>(std::stoll(fields[11]) + std::stoll(fields[12])) / ticks;
  return out;
}

}  // namespace ds::bench
