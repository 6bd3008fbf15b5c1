#pragma once
// Plain-text tables for the CLI: a header row and left-aligned columns.

#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ds {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::FILE* out = stdout) const;
  size_t size() const { return rows_.size() - 1; }
  // The header row first.
  const std::vector<std::vector<std::string>>& rows() const { return rows_; }

 private:
  std::vector<std::vector<std::string>> rows_;
};

// A JSON value as a table cell: a string as is, null as "-", else its JSON.
std::string table_cell(const nlohmann::json& j);

}  // namespace ds
