#pragma once
// LogTail: follows a growing log file (a hub's, while a benchmark scenario
// watches it for state changes): each call returns the complete lines
// written since the previous call (a line still being written waits for the
// next). Reads only the new bytes, so polling a large log stays cheap.
//
// Not thread-safe; one owner.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ds::bench {

class LogTail {
 public:
  explicit LogTail(std::string path) : path_(std::move(path)) {}
  std::vector<std::string> new_lines();

 private:
  std::string path_;
  uint64_t offset_ = 0;
  std::string partial_;
};

}  // namespace ds::bench
