#include "tests/harness/connect_checks.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace ds::testing {

size_t count_of(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

ConnectRun connect_repeatedly(const ConnectOptions& options, int connects, int threads) {
  std::atomic<int> failures{0};
  std::mutex mu;
  std::string first_failure;  // guarded by mu
  std::vector<std::thread> workers;
  const auto began = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < connects / threads; ++i) {
        auto nc = Connection::connect(options);
        Status s = nc.is_ok() ? (*nc)->flush(5000) : nc.status();
        if (!s.is_ok()) {
          ++failures;
          std::lock_guard<std::mutex> lock(mu);
          if (first_failure.empty()) first_failure = s.to_string();
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - began;
  return ConnectRun{failures.load(), std::move(first_failure), seconds.count()};
}

}  // namespace ds::testing
