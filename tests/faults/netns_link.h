#pragma once
// NetnsLink: a network namespace for one process of a test (an agent), joined
// to the machine's namespace by a point-to-point link whose packets the test
// delays, drops, duplicates, reorders or cuts off entirely (a partition), the
// impairments `tc qdisc ... netem` gives.
//
// Why not veth + tc netem: the kernels this suite runs on (the 2-core
// development VM and CI, Linux 6.18 without CONFIG_NET_SCH_NETEM: `tc qdisc
// add ... netem` answers "Specified qdisc kind is unknown") have no netem
// qdisc. So the link is two TUN devices, one in the namespace and one in the
// machine's, and a relay thread of this object moves every IP packet from one
// to the other through a delay queue, deciding per packet as netem does:
// dropped with probability `loss`; sent twice with probability `duplicate`;
// sent at once, ahead of the packets waiting, with probability `reorder`;
// otherwise held `delay_ms` plus a uniform jitter in [-jitter_ms, +jitter_ms]
// (which reorders too, as netem's jitter does, unless `keep_order`). A
// partition drops everything
// both ways, including what is in flight: TCP connections stay established
// and silent, as behind a pulled cable, and resume when healed.
//
// Names and addresses are unique per test process and link: the namespace is
// "dsnet-<pid>-<n>", the devices "dsn<pid>x<n>h" (machine side) and
// "...a" (namespace side), the /30 taken from 198.18.0.0/15 (RFC 2544's
// benchmarking range, routed nowhere) skipping any subnet already in use, so
// parallel ctest runs and other suites (tests/rollout uses 10.200-249.x)
// never collide. The devices vanish with this process (they live only as
// long as its file descriptors); the namespace is deleted by the destructor,
// and a namespace of this naming left behind by a crashed test process (pid
// no longer running) is deleted by the next create().
//
// Needs root (CAP_NET_ADMIN, /dev/net/tun, iproute2's `ip`). create() and
// the destructor run on the test's thread; set_impairment(),
// set_partitioned() and stats() are thread-safe; the relay runs on its own
// thread. Start the namespace's processes with exec_prefix() + argv: `ip
// netns exec NAME` execs the program, so the pid and signals are the
// program's own.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shared/status.h"
#include "testing/temp_dir.h"

namespace ds::testing {

// What happens to each packet, in each direction alike.
struct LinkImpairment {
  int64_t delay_ms = 0;
  int64_t jitter_ms = 0;  // uniform in [-jitter_ms, +jitter_ms], never below 0 in all
  double loss = 0;        // probability a packet is dropped
  double duplicate = 0;   // probability a packet is sent twice (each copy delayed on its own)
  double reorder = 0;     // probability a packet skips the delay
  // Jitter without reordering: a packet never leaves before the one ahead
  // of it (same direction), as behind a real WAN's queues; netem's jitter
  // (and this link's by default) reorders.
  bool keep_order = false;
};

// Counts since create(), both directions together.
struct LinkStats {
  uint64_t packets = 0;       // read from either side
  uint64_t delivered = 0;     // written to the other side (copies included)
  uint64_t dropped = 0;       // lost at random
  uint64_t partitioned = 0;   // dropped by a partition (arriving or in flight)
  uint64_t duplicated = 0;    // extra copies made
  uint64_t out_of_order = 0;  // delivered after a packet that arrived later (same direction)
  uint64_t write_errors = 0;  // the receiving device refused the packet
};

class NetnsLink {
 public:
  // Sets up the namespace, the devices and addresses, and starts the relay
  // (no impairment yet). Fails with the command's output when a step fails.
  static Result<std::unique_ptr<NetnsLink>> create();
  ~NetnsLink();
  NetnsLink(const NetnsLink&) = delete;
  NetnsLink& operator=(const NetnsLink&) = delete;

  const std::string& netns() const { return netns_; }
  // The machine side of the link: what a process in the namespace connects
  // to (a server must listen on it, or on 0.0.0.0).
  const std::string& host_address() const { return host_address_; }
  // The namespace side.
  const std::string& netns_address() const { return netns_address_; }
  // {"ip", "netns", "exec", netns()}: put it before a program's argv.
  std::vector<std::string> exec_prefix() const;

  void set_impairment(const LinkImpairment& impairment);
  // true: drop everything both ways from now on (and what is in flight).
  void set_partitioned(bool partitioned);
  LinkStats stats() const;

 private:
  NetnsLink() = default;
  Status set_up(int index);
  void relay();

  TempDir dir_{"deltasync-netns"};  // scratch output of the ip commands
  std::string netns_;
  std::string host_device_;
  std::string netns_device_;
  std::string host_address_;
  std::string netns_address_;
  bool netns_made_ = false;
  int host_fd_ = -1;
  int netns_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop, or settings changed
  std::atomic<bool> stop_{false};
  std::thread relay_;

  mutable std::mutex mu_;
  LinkImpairment impairment_;  // guarded by mu_
  bool partitioned_ = false;   // guarded by mu_
  LinkStats stats_;            // guarded by mu_
};

}  // namespace ds::testing
