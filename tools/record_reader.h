#pragma once
// Reads producer input files for `deltasync push`: JSON lines (one ingest
// record per line, the shape of docs/protocol.md, "Messages") or CSV (a header row naming the
// key column, the type's columns and optionally `_op` and `_ts`; values are
// converted by the type's schema). Errors name the line and the column.
//
// Not thread-safe; one reader per input stream.

#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <vector>

#include "shared/messages.h"
#include "shared/schema.h"
#include "shared/status.h"

namespace ds {

enum class InputFormat { kJsonLines, kCsv };

// Picks the format from the file name (".csv" -> CSV, else JSON lines).
InputFormat input_format_for(const std::string& path);

class RecordReader {
 public:
  RecordReader(std::istream& in, InputFormat format, TypeSchema schema);

  // Appends up to `max` records to `out`; returns how many were read (0 at the
  // end of input). A malformed line fails the whole call and names the line.
  Result<size_t> read(size_t max, std::vector<IngestRecord>& out);
  // 1-based number of the last line consumed.
  uint64_t line() const { return line_; }

 private:
  Result<IngestRecord> parse_json_line(const std::string& text) const;
  Result<IngestRecord> parse_csv_row(const std::vector<std::string>& cells) const;
  Status read_csv_header();

  std::istream& in_;
  InputFormat format_;
  TypeSchema schema_;
  uint64_t line_ = 0;
  bool header_read_ = false;
  std::vector<std::string> header_;
};

// Splits one CSV record (RFC 4180: quoted fields, doubled quotes, embedded
// commas and newlines). Reads further lines from `in` while a quote is open;
// `line` counts the physical lines consumed.
Result<std::vector<std::string>> read_csv_record(std::istream& in, uint64_t& line, bool& eof);

// Converts CSV cell text to a Value of the column's type ("" -> null).
Result<Value> parse_cell(const std::string& text, ColumnType type);

}  // namespace ds
