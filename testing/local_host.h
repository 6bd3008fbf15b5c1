#pragma once
// Small facts of the local host shared by the processes that start other
// processes: the benchmark (bench/) and the test harness (tests/harness).

#include <netinet/in.h>

#include <string>

#include "shared/status.h"

namespace ds {

// 127.0.0.1:`port` as a socket address.
sockaddr_in loopback_address(int port);

// Asks the kernel for a free loopback port. Another process may take it
// before it is bound, so callers retry with a new one when binding fails.
Result<int> free_loopback_port();

// Everything in the file at `path` ("" when it cannot be read).
std::string read_text_file(const std::string& path);

}  // namespace ds
