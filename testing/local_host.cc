#include "testing/local_host.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

namespace ds {

sockaddr_in loopback_address(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

namespace {

// Whether 127.0.0.1:`port` can be bound now (0: whatever the kernel gives);
// the port bound, or 0.
int try_bind(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr = loopback_address(port);
  socklen_t len = sizeof addr;
  int bound = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    bound = ntohs(addr.sin_port);
  }
  ::close(fd);
  return bound;
}

// The lowest port the kernel hands out to outgoing connections.
int ephemeral_low() {
  std::istringstream range(read_text_file("/proc/sys/net/ipv4/ip_local_port_range"));
  int low = 0;
  return range >> low && low > kLowestTestPort + 1000 ? low : 32768;
}

}  // namespace

Result<int> free_loopback_port() {
  // Below the ephemeral range (see the header): a random start, then on.
  const int low = ephemeral_low();
  std::mt19937 random(std::random_device{}());
  const int span = low - kLowestTestPort;
  const int first = kLowestTestPort + static_cast<int>(random() % static_cast<unsigned>(span));
  for (int i = 0; i < 200; ++i) {
    const int port = kLowestTestPort + (first - kLowestTestPort + i) % span;
    if (try_bind(port) == port) return port;
  }
  if (const int port = try_bind(0); port != 0) return port;
  return Status::internal(std::string("no free loopback port: ") + std::strerror(errno));
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace ds
