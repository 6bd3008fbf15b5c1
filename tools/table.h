#pragma once
// Plain-text tables for the CLI: a header row and left-aligned columns.

#include <cstdio>
#include <string>
#include <vector>

namespace ds {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::FILE* out = stdout) const;
  size_t size() const { return rows_.size() - 1; }

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace ds
