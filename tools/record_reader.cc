#include "tools/record_reader.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "shared/codec.h"

namespace ds {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

InputFormat input_format_for(const std::string& path) {
  return ends_with(lower(path), ".csv") ? InputFormat::kCsv : InputFormat::kJsonLines;
}

Result<std::vector<std::string>> read_csv_record(std::istream& in, uint64_t& line, bool& eof) {
  std::vector<std::string> cells;
  std::string cell;
  std::string text;
  eof = false;
  if (!std::getline(in, text)) {
    eof = true;
    return cells;
  }
  ++line;
  bool quoted = false;
  size_t i = 0;
  while (true) {
    if (i == text.size()) {
      if (quoted) {  // a quoted field spans lines
        std::string next;
        if (!std::getline(in, next)) {
          return Status::invalid_argument("line " + std::to_string(line) + ": unterminated quoted field");
        }
        ++line;
        cell += '\n';
        text = std::move(next);
        i = 0;
        continue;
      }
      break;
    }
    char c = text[i++];
    if (quoted) {
      if (c == '"') {
        if (i < text.size() && text[i] == '"') {
          cell += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        cell += c;
      }
    } else if (c == '"' && cell.empty()) {
      quoted = true;
    } else if (c == ',') {
      cells.push_back(std::move(cell));
      cell.clear();
    } else if (c == '\r' && i == text.size()) {
      // CRLF line ending
    } else {
      cell += c;
    }
  }
  cells.push_back(std::move(cell));
  return cells;
}

Result<Value> parse_cell(const std::string& text, ColumnType type) {
  if (text.empty()) return Value{};
  switch (type) {
    case ColumnType::kText:
      return Value{text};
    case ColumnType::kJson:
      // A CSV cell of a json column is JSON text (`"a"`, `42`, `{"k":1}`);
      // the hub makes it compact. A bare word is not JSON: quote it.
      if (!nlohmann::json::accept(text)) {
        return Status::invalid_argument("'" + text + "' is not valid JSON (a text value must be quoted: \"...\")");
      }
      return Value{JsonText{text}};
    case ColumnType::kBlob:
      return Value{text};  // base64, decoded by the schema check
    case ColumnType::kInteger: {
      int64_t v = 0;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || p != text.data() + text.size()) {
        return Status::invalid_argument("'" + text + "' is not an integer");
      }
      return Value{v};
    }
    case ColumnType::kReal: {
      char* end = nullptr;
      double v = std::strtod(text.c_str(), &end);
      if (end != text.c_str() + text.size() || !std::isfinite(v)) {
        return Status::invalid_argument("'" + text + "' is not a real number");
      }
      return Value{v};
    }
    case ColumnType::kBool: {
      std::string t = lower(text);
      if (t == "true" || t == "1" || t == "yes") return Value{true};
      if (t == "false" || t == "0" || t == "no") return Value{false};
      return Status::invalid_argument("'" + text + "' is not a bool (true/false/1/0/yes/no)");
    }
  }
  return Status::internal("unhandled column type");
}

RecordReader::RecordReader(std::istream& in, InputFormat format, TypeSchema schema)
    : in_(in), format_(format), schema_(std::move(schema)) {}

Status RecordReader::read_csv_header() {
  bool eof = false;
  DS_ASSIGN_OR_RETURN(header_, read_csv_record(in_, line_, eof));
  if (eof) return Status::invalid_argument("empty CSV input: expected a header row");
  bool has_key = false;
  for (const auto& name : header_) {
    if (name == schema_.key) {
      has_key = true;
    } else if (name != "_op" && name != "_ts" && !schema_.find_column(name)) {
      return Status::invalid_argument("line 1: unknown column '" + name + "' in the CSV header");
    }
  }
  if (!has_key) {
    return Status::invalid_argument("line 1: the CSV header lacks the key column '" + schema_.key + "'");
  }
  header_read_ = true;
  return Status::ok();
}

Result<IngestRecord> RecordReader::parse_csv_row(const std::vector<std::string>& cells) const {
  if (cells.size() != header_.size()) {
    return Status::invalid_argument("has " + std::to_string(cells.size()) + " cells, the header has " +
                                    std::to_string(header_.size()));
  }
  IngestRecord r;
  for (size_t i = 0; i < cells.size(); ++i) {
    const std::string& name = header_[i];
    const std::string& text = cells[i];
    if (name == schema_.key) {
      r.key = text;
    } else if (name == "_op") {
      if (text == "delete") {
        r.op = Op::kDelete;
      } else if (text.empty() || text == "upsert") {
        r.op = Op::kUpsert;
      } else {
        return Status::invalid_argument("column '_op': unknown op '" + text + "' (expected upsert or delete)");
      }
    } else if (name == "_ts") {
      if (text.empty()) continue;
      auto v = parse_cell(text, ColumnType::kInteger);
      if (!v) return v.status().with_context("column '_ts'");
      r.ts = std::get<int64_t>(*v);
    } else {
      auto v = parse_cell(text, schema_.find_column(name)->type);
      if (!v) return v.status().with_context("column '" + name + "'");
      r.fields.emplace(name, std::move(*v));
    }
  }
  if (r.key.empty()) return Status::invalid_argument("empty key");
  if (r.op == Op::kDelete) r.fields.clear();
  return r;
}

Result<IngestRecord> RecordReader::parse_json_line(const std::string& text) const {
  // Wrapped in [ ] to reuse the ingest decoder, so a line could also hold
  // no record (a NUL ends the JSON text early) or several ("{...},{...}"):
  // both are refused rather than read as nothing or as the first alone.
  auto records = decode_ingest_records_json("[" + text + "]");
  if (!records) return records.status();
  if (records->size() != 1) {
    return Status::invalid_argument("expected exactly one JSON record object on the line, found " +
                                    std::to_string(records->size()));
  }
  return std::move(records->front());
}

Result<size_t> RecordReader::read(size_t max, std::vector<IngestRecord>& out) {
  if (format_ == InputFormat::kCsv && !header_read_) DS_RETURN_IF_ERROR(read_csv_header());
  size_t n = 0;
  while (n < max) {
    if (format_ == InputFormat::kCsv) {
      bool eof = false;
      uint64_t first_line = line_ + 1;
      auto cells = read_csv_record(in_, line_, eof);
      if (!cells) return cells.status();
      if (eof) break;
      if (cells->size() == 1 && (*cells)[0].empty()) continue;  // blank line
      auto r = parse_csv_row(*cells);
      if (!r) return r.status().with_context("line " + std::to_string(first_line));
      out.push_back(std::move(*r));
    } else {
      std::string text;
      if (!std::getline(in_, text)) break;
      ++line_;
      if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto r = parse_json_line(text);
      if (!r) return r.status().with_context("line " + std::to_string(line_));
      out.push_back(std::move(*r));
    }
    ++n;
  }
  return n;
}

}  // namespace ds
