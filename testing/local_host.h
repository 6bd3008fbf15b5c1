#pragma once
// Small facts of the local host shared by the processes that start other
// processes: the benchmark (bench/) and the test harness (tests/harness).

#include <netinet/in.h>

#include <string>

#include "shared/status.h"

namespace ds {

// 127.0.0.1:`port` as a socket address.
sockaddr_in loopback_address(int port);

// A loopback port free now, picked at random below the kernel's ephemeral
// range (ip_local_port_range, from kLowestTestPort up): a port from that
// range, as the kernel's own choice for port 0 is, can be taken as the
// source port of any outgoing connection before the test's server binds it
// (a CI run once failed so: an agent's metrics listener found its port in
// use). Another test may still pick the same port before it is bound, so
// callers retry with a new one when binding fails.
inline constexpr int kLowestTestPort = 10000;
Result<int> free_loopback_port();

// Everything in the file at `path` ("" when it cannot be read).
std::string read_text_file(const std::string& path);

}  // namespace ds
