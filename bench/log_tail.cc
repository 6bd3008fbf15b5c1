#include "bench/log_tail.h"

#include <fstream>
#include <iterator>

namespace ds::bench {

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

}  // namespace ds::bench
