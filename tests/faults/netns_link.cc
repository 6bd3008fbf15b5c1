#include "tests/faults/netns_link.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <queue>
#include <random>
#include <regex>

#include <fmt/format.h>

#include "testing/child_process.h"

namespace ds::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kCommandTimeoutMs = 20000;
// 198.18.0.0/15 holds 32768 /30 subnets.
constexpr uint32_t kRangeBase = (198u << 24) | (18u << 16);
constexpr int kSubnets = 32768;
constexpr int kSubnetAttempts = 64;
constexpr size_t kMaxPacket = 65536;
constexpr int kMaxReadsPerWake = 256;
constexpr int kIdlePollMs = 100;

// Links made by this process so far (names and subnets differ per link).
std::atomic<int> links_made{0};

std::string dotted(uint32_t address) {
  return fmt::format("{}.{}.{}.{}", address >> 24, (address >> 16) & 0xff, (address >> 8) & 0xff, address & 0xff);
}

Status run_ip(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "ip");
  const CommandResult r = run_to_completion(args, dir.file("ip"), {}, kCommandTimeoutMs);
  if (r.exit_code == 0) return Status::ok();
  std::string line;
  for (const std::string& a : args) line += (line.empty() ? "" : " ") + a;
  return Status::internal(line + " exited " + std::to_string(r.exit_code) + ": " + r.err + r.out);
}

// Deletes namespaces this class made in test processes that are gone.
void remove_stale_namespaces(const TempDir& dir) {
  static const std::regex kOurs("dsnet-([0-9]+)-[0-9]+");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = entry.path().filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, kOurs)) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(m[1].str()));
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // its test still runs
    (void)run_ip(dir, {"netns", "del", name});
  }
}

// A TUN device (IP packets, no packet information header), non-blocking;
// it exists while the descriptor is open.
Result<int> open_tun(const std::string& name) {
  const int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return Status::unavailable(std::string("open /dev/net/tun: ") + std::strerror(errno) +
                               " (the network fault tests need the tun driver and root)");
  }
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name.c_str());
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::internal("TUNSETIFF " + name + ": " + std::strerror(err));
  }
  return fd;
}

// Whether `address` is already on some interface of the machine.
bool address_in_use(const TempDir& dir, const std::string& address) {
  const CommandResult r = run_to_completion({"ip", "-4", "-o", "addr", "show"}, dir.file("ip"), {}, kCommandTimeoutMs);
  return r.out.find(" " + address + "/") != std::string::npos ||
         r.out.find(" " + address + " ") != std::string::npos;
}

struct Pending {
  Clock::time_point due;
  uint64_t order = 0;  // tie-break: FIFO among equal due times
  bool to_netns = false;
  uint64_t arrival = 0;  // per-direction arrival number
  std::string bytes;
};

struct LaterFirst {
  bool operator()(const Pending& a, const Pending& b) const {
    return a.due != b.due ? a.due > b.due : a.order > b.order;
  }
};

}  // namespace

Result<std::unique_ptr<NetnsLink>> NetnsLink::create() {
  std::unique_ptr<NetnsLink> link(new NetnsLink());
  remove_stale_namespaces(link->dir_);
  const int n = links_made.fetch_add(1);
  const int pid = static_cast<int>(::getpid());
  link->netns_ = fmt::format("dsnet-{}-{}", pid, n);
  link->host_device_ = fmt::format("dsn{}x{}h", pid, n);
  link->netns_device_ = fmt::format("dsn{}x{}a", pid, n);
  if (link->host_device_.size() >= IFNAMSIZ) return Status::internal("device name too long: " + link->host_device_);
  for (int attempt = 0; attempt < kSubnetAttempts; ++attempt) {
    const int index = (pid * 7 + n * 31 + attempt) % kSubnets;
    const uint32_t base = kRangeBase + static_cast<uint32_t>(index) * 4;
    if (address_in_use(link->dir_, dotted(base + 1)) || address_in_use(link->dir_, dotted(base + 2))) continue;
    DS_RETURN_IF_ERROR(link->set_up(index));
    return link;
  }
  return Status::unavailable("no free /30 in 198.18.0.0/15 after " + std::to_string(kSubnetAttempts) + " tries");
}

Status NetnsLink::set_up(int index) {
  const uint32_t base = kRangeBase + static_cast<uint32_t>(index) * 4;
  host_address_ = dotted(base + 1);
  netns_address_ = dotted(base + 2);
  DS_RETURN_IF_ERROR(run_ip(dir_, {"netns", "add", netns_}));
  netns_made_ = true;
  DS_ASSIGN_OR_RETURN(host_fd_, open_tun(host_device_));
  DS_ASSIGN_OR_RETURN(netns_fd_, open_tun(netns_device_));
  // A TUN device may move to another namespace; its descriptor stays ours.
  DS_RETURN_IF_ERROR(run_ip(dir_, {"link", "set", netns_device_, "netns", netns_}));
  DS_RETURN_IF_ERROR(run_ip(dir_, {"addr", "add", host_address_, "peer", netns_address_, "dev", host_device_}));
  DS_RETURN_IF_ERROR(run_ip(dir_, {"link", "set", host_device_, "up"}));
  DS_RETURN_IF_ERROR(
      run_ip(dir_, {"-n", netns_, "addr", "add", netns_address_, "peer", host_address_, "dev", netns_device_}));
  DS_RETURN_IF_ERROR(run_ip(dir_, {"-n", netns_, "link", "set", netns_device_, "up"}));
  DS_RETURN_IF_ERROR(run_ip(dir_, {"-n", netns_, "link", "set", "lo", "up"}));
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return Status::internal(std::string("eventfd: ") + std::strerror(errno));
  relay_ = std::thread([this] { relay(); });
  return Status::ok();
}

NetnsLink::~NetnsLink() {
  if (relay_.joinable()) {
    stop_ = true;
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
    relay_.join();
  }
  for (int fd : {host_fd_, netns_fd_, wake_fd_}) {
    if (fd >= 0) ::close(fd);
  }
  if (netns_made_) {
    if (Status s = run_ip(dir_, {"netns", "del", netns_}); !s.is_ok()) {
      std::fprintf(stderr, "NetnsLink: %s\n", s.to_string().c_str());
    }
  }
}

std::vector<std::string> NetnsLink::exec_prefix() const { return {"ip", "netns", "exec", netns_}; }

void NetnsLink::set_impairment(const LinkImpairment& impairment) {
  std::lock_guard lock(mu_);
  impairment_ = impairment;
}

void NetnsLink::set_partitioned(bool partitioned) {
  {
    std::lock_guard lock(mu_);
    partitioned_ = partitioned;
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);  // drop what is in flight now
}

LinkStats NetnsLink::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void NetnsLink::relay() {
  std::mt19937_64 random(std::random_device{}());
  std::uniform_real_distribution<double> chance(0.0, 1.0);
  std::priority_queue<Pending, std::vector<Pending>, LaterFirst> queue;
  uint64_t order = 0;
  uint64_t arrivals[2] = {0, 0};   // per direction: [to host, to netns]
  uint64_t delivered[2] = {0, 0};  // highest arrival number delivered, per direction
  Clock::time_point last_due[2] = {};  // per direction, for keep_order
  std::string buffer(kMaxPacket, '\0');

  while (!stop_.load()) {
    LinkImpairment impairment;
    bool partitioned = false;
    {
      std::lock_guard lock(mu_);
      impairment = impairment_;
      partitioned = partitioned_;
      if (partitioned) stats_.partitioned += queue.size();
    }
    if (partitioned) queue = {};

    int timeout_ms = kIdlePollMs;
    if (!queue.empty()) {
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(queue.top().due - Clock::now()).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(wait, 0, kIdlePollMs));
    }
    pollfd fds[3] = {{host_fd_, POLLIN, 0}, {netns_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 3, timeout_ms) < 0 && errno != EINTR) break;
    if (fds[2].revents & POLLIN) {
      uint64_t ignored = 0;
      (void)!::read(wake_fd_, &ignored, sizeof ignored);
      continue;  // settings may have changed: read them again first
    }

    LinkStats counted;
    for (int side = 0; side < 2; ++side) {
      if (!(fds[side].revents & POLLIN)) continue;
      const bool to_netns = side == 0;  // read from the host device: goes into the namespace
      for (int reads = 0; reads < kMaxReadsPerWake; ++reads) {
        const ssize_t got = ::read(fds[side].fd, buffer.data(), buffer.size());
        if (got <= 0) break;
        ++counted.packets;
        const uint64_t arrival = ++arrivals[to_netns];
        if (partitioned) {
          ++counted.partitioned;
          continue;
        }
        if (impairment.loss > 0 && chance(random) < impairment.loss) {
          ++counted.dropped;
          continue;
        }
        const int copies = impairment.duplicate > 0 && chance(random) < impairment.duplicate ? 2 : 1;
        counted.duplicated += static_cast<uint64_t>(copies - 1);
        for (int c = 0; c < copies; ++c) {
          int64_t delay = impairment.delay_ms;
          if (impairment.jitter_ms > 0) {
            delay += std::uniform_int_distribution<int64_t>(-impairment.jitter_ms, impairment.jitter_ms)(random);
          }
          if (impairment.reorder > 0 && chance(random) < impairment.reorder) delay = 0;
          delay = std::max<int64_t>(delay, 0);
          auto due = Clock::now() + std::chrono::milliseconds(delay);
          if (impairment.keep_order) due = std::max(due, last_due[to_netns]);
          last_due[to_netns] = due;
          queue.push(Pending{due, order++, to_netns, arrival, std::string(buffer.data(), static_cast<size_t>(got))});
        }
      }
    }

    const auto now = Clock::now();
    while (!queue.empty() && queue.top().due <= now) {
      const Pending& p = queue.top();
      const int fd = p.to_netns ? netns_fd_ : host_fd_;
      if (::write(fd, p.bytes.data(), p.bytes.size()) == static_cast<ssize_t>(p.bytes.size())) {
        ++counted.delivered;
        if (p.arrival < delivered[p.to_netns]) ++counted.out_of_order;
        delivered[p.to_netns] = std::max(delivered[p.to_netns], p.arrival);
      } else {
        ++counted.write_errors;
      }
      queue.pop();
    }

    std::lock_guard lock(mu_);
    stats_.packets += counted.packets;
    stats_.delivered += counted.delivered;
    stats_.dropped += counted.dropped;
    stats_.partitioned += counted.partitioned;
    stats_.duplicated += counted.duplicated;
    stats_.out_of_order += counted.out_of_order;
    stats_.write_errors += counted.write_errors;
  }
}

}  // namespace ds::testing
