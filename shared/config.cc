#include "shared/config.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <set>
#include <string_view>
#include <utility>

#include <toml++/toml.h>

#include "shared/log.h"
#include "shared/messages.h"
#include "shared/names.h"
#include "shared/nats_url.h"

// Error messages read "<file>: <key path>: <what is wrong>". Key paths use
// dots for tables and 0-based indices for arrays ("types[2].columns[1].type"),
// the same notation as toml::at_path. Syntax errors read
// "<file>:<line>:<column>: syntax error: <what>".
//
// Validation stops at the first error, and unknown keys are checked before
// the values of a table are read, so a misspelt required key is reported as
// the typo it is rather than as a missing key.

namespace ds {
namespace {

// Durations are bounded so that a retention in nanoseconds (JetStream's
// unit) cannot overflow an int64.
constexpr int64_t kMaxDurationS = 100LL * 365 * 24 * 3600;
constexpr size_t kMinHttpTokenChars = 16;
constexpr int64_t kMinHttpBodyBytes = 1024;
constexpr int64_t kMaxHttpBodyBytes = 1LL << 30;
constexpr int64_t kMaxPublishBatch =
    std::min<int64_t>(10000, static_cast<int64_t>(kMaxBatchRecords));

std::string_view toml_type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "datetime";
    case toml::node_type::none: break;
  }
  return "nothing";
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The known key closest to `key`, if it is close enough to be a typo.
std::optional<std::string_view> closest_key(std::string_view key,
                                            std::initializer_list<std::string_view> known) {
  std::optional<std::string_view> best;
  size_t best_distance = 0;
  for (std::string_view k : known) {
    const size_t d = edit_distance(key, k);
    const size_t allowed = std::max<size_t>(1, std::min<size_t>(3, k.size() / 3));
    if (d <= allowed && (!best || d < best_distance)) {
      best = k;
      best_distance = d;
    }
  }
  return best;
}

std::string single_quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// Relative paths in a loaded file mean "next to the file"; `base` is the
// file's directory (empty for parse_*, which leaves them as written).
std::string resolve_path(const std::filesystem::path& base, const std::string& p) {
  if (p.empty() || base.empty()) return p;
  std::filesystem::path path(p);
  if (path.is_absolute()) return p;
  return (base / path).lexically_normal().string();
}

// One TOML table at a key path of a named file. A Section over a table that
// is absent from the file (`table_ == nullptr`) reads every key as absent, so
// defaults apply. Not thread-safe; lives for one parse.
class Section {
 public:
  Section(const std::string* file, const toml::table* table, std::string path)
      : file_(file), table_(table), path_(std::move(path)) {}

  const std::string& path() const { return path_; }

  std::string key_path(std::string_view key) const {
    if (path_.empty()) return std::string(key);
    return path_ + "." + std::string(key);
  }

  Status error_at(std::string_view key, std::string_view what) const {
    return Status::invalid_argument(*file_ + ": " + key_path(key) + ": " + std::string(what));
  }

  bool has(std::string_view key) const { return get(key) != nullptr; }

  // Every key of the table must be one of `known`.
  Status only_keys(std::initializer_list<std::string_view> known) const {
    if (!table_) return Status::ok();
    for (auto&& [k, node] : *table_) {
      (void)node;
      const std::string_view name = k.str();
      if (std::find(known.begin(), known.end(), name) != known.end()) continue;
      std::string what = "unknown key";
      if (auto guess = closest_key(name, known)) {
        what += " (did you mean " + std::string(*guess) + "?)";
      }
      return error_at(name, what);
    }
    return Status::ok();
  }

  // Leaves `out` unchanged when the key is absent.
  Status get_string(std::string_view key, std::string& out) const {
    const toml::node* n = get(key);
    if (!n) return Status::ok();
    const auto* v = n->as_string();
    if (!v) return wrong_type(key, "string", *n);
    out = v->get();
    return Status::ok();
  }

  Status require_string(std::string_view key, std::string& out) const {
    if (!has(key)) return error_at(key, "missing required key");
    return get_string(key, out);
  }

  // Leaves `out` unchanged when the key is absent; else the value must lie
  // in [min, max].
  Status get_int(std::string_view key, int64_t min, int64_t max, int64_t& out) const {
    const toml::node* n = get(key);
    if (!n) return Status::ok();
    const auto* v = n->as_integer();
    if (!v) return wrong_type(key, "integer", *n);
    return check_range(key, v->get(), min, max, out);
  }

  // Leaves `out` unchanged when the key is absent.
  Status get_bool(std::string_view key, bool& out) const {
    const toml::node* n = get(key);
    if (!n) return Status::ok();
    const auto* v = n->as_boolean();
    if (!v) return wrong_type(key, "boolean (true or false)", *n);
    out = v->get();
    return Status::ok();
  }

  Status check_range(std::string_view key, int64_t value, int64_t min, int64_t max,
                     int64_t& out) const {
    if (value < min || value > max) {
      return error_at(key, "must be between " + std::to_string(min) + " and " +
                               std::to_string(max) + ", got " + std::to_string(value));
    }
    out = value;
    return Status::ok();
  }

  // A duration: integer seconds or a string "<n>[smhd]" ("90s", "30m",
  // "12h", "7d"; a bare number is seconds). Result in seconds, in
  // [min, kMaxDurationS].
  Status get_duration_s(std::string_view key, int64_t min, int64_t& out) const {
    const toml::node* n = get(key);
    if (!n) return Status::ok();
    int64_t seconds = 0;
    if (const auto* i = n->as_integer()) {
      seconds = i->get();
    } else if (const auto* s = n->as_string()) {
      std::optional<int64_t> parsed = parse_duration_s(s->get());
      if (!parsed) {
        return error_at(key, "invalid duration " + single_quoted(s->get()) +
                                 " (expected integer seconds or a string like \"90s\", "
                                 "\"30m\", \"12h\", \"7d\")");
      }
      seconds = *parsed;
    } else {
      return wrong_type(key, "duration (integer seconds or string)", *n);
    }
    return check_range(key, seconds, min, kMaxDurationS, out);
  }

  // A size: -1 (unlimited), integer bytes, or a string "<n><unit>" with unit
  // B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024),
  // case-insensitive.
  Status get_bytes(std::string_view key, int64_t& out) const {
    const toml::node* n = get(key);
    if (!n) return Status::ok();
    int64_t bytes = 0;
    if (const auto* i = n->as_integer()) {
      bytes = i->get();
    } else if (const auto* s = n->as_string()) {
      std::optional<int64_t> parsed = parse_bytes(s->get());
      if (!parsed) {
        return error_at(key, "invalid size " + single_quoted(s->get()) +
                                 " (expected integer bytes or a string like \"512MiB\", "
                                 "\"10GB\")");
      }
      bytes = *parsed;
    } else {
      return wrong_type(key, "size (integer bytes or string)", *n);
    }
    if (bytes == -1 || bytes > 0) {
      out = bytes;
      return Status::ok();
    }
    return error_at(key, "must be -1 (unlimited) or a positive size, got " + std::to_string(bytes));
  }

  // A sub-table; an absent key gives an empty Section.
  Result<Section> get_table(std::string_view key) const {
    const toml::node* n = get(key);
    if (!n) return Section(file_, nullptr, key_path(key));
    const auto* t = n->as_table();
    if (!t) return wrong_type(key, "table", *n);
    return Section(file_, t, key_path(key));
  }

  // An array of tables ([[key]] or key = [{...}, ...]); absent gives none.
  Result<std::vector<Section>> get_tables(std::string_view key) const {
    std::vector<Section> out;
    const toml::node* n = get(key);
    if (!n) return out;
    const auto* a = n->as_array();
    if (!a) return wrong_type(key, "array of tables", *n);
    for (size_t i = 0; i < a->size(); ++i) {
      const std::string element_path = key_path(key) + "[" + std::to_string(i) + "]";
      const toml::node* e = a->get(i);
      const auto* t = e->as_table();
      if (!t) {
        return Status::invalid_argument(*file_ + ": " + element_path + ": expected table, got " +
                                        std::string(toml_type_name(e->type())));
      }
      out.emplace_back(file_, t, element_path);
    }
    return out;
  }

 private:
  const toml::node* get(std::string_view key) const {
    return table_ ? table_->get(key) : nullptr;
  }

  Status wrong_type(std::string_view key, std::string_view expected, const toml::node& n) const {
    return error_at(key, "expected " + std::string(expected) + ", got " +
                             std::string(toml_type_name(n.type())));
  }

  static std::optional<int64_t> parse_leading_int(std::string_view s, std::string_view& rest) {
    int64_t v = 0;
    const char* end = s.data() + s.size();
    auto [ptr, ec] = std::from_chars(s.data(), end, v);
    if (ec != std::errc() || ptr == s.data() || s[0] == '-') return std::nullopt;
    rest = std::string_view(ptr, static_cast<size_t>(end - ptr));
    return v;
  }

  static std::optional<int64_t> parse_duration_s(std::string_view s) {
    std::string_view unit;
    std::optional<int64_t> n = parse_leading_int(s, unit);
    if (!n) return std::nullopt;
    int64_t scale = 0;
    if (unit.empty() || unit == "s") {
      scale = 1;
    } else if (unit == "m") {
      scale = 60;
    } else if (unit == "h") {
      scale = 3600;
    } else if (unit == "d") {
      scale = 86400;
    } else {
      return std::nullopt;
    }
    int64_t seconds = 0;
    if (__builtin_mul_overflow(*n, scale, &seconds)) return std::nullopt;
    return seconds;
  }

  static std::optional<int64_t> parse_bytes(std::string_view s) {
    std::string_view unit;
    std::optional<int64_t> n = parse_leading_int(s, unit);
    if (!n) return std::nullopt;
    if (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
    std::string lower(unit);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
    static constexpr std::array<std::pair<std::string_view, int64_t>, 10> kUnits = {{
        {"", 1},
        {"b", 1},
        {"kb", 1000LL},
        {"mb", 1000LL * 1000},
        {"gb", 1000LL * 1000 * 1000},
        {"tb", 1000LL * 1000 * 1000 * 1000},
        {"kib", 1LL << 10},
        {"mib", 1LL << 20},
        {"gib", 1LL << 30},
        {"tib", 1LL << 40},
    }};
    for (const auto& [name, scale] : kUnits) {
      if (lower != name) continue;
      int64_t bytes = 0;
      if (__builtin_mul_overflow(*n, scale, &bytes)) return std::nullopt;
      return bytes;
    }
    return std::nullopt;
  }

  const std::string* file_;
  const toml::table* table_;
  std::string path_;
};

// ---- parsing the document -------------------------------------------------

// toml++ 3.3.0 (Debian 12) reaches __builtin_unreachable(), undefined
// behaviour, when it meets a non-ASCII character where it checks for
// whitespace: outside strings and comments, and right after the line-ending
// backslash of a multi-line basic string (upstream marzer/tomlplusplus
// issues 190 and 295; found by tests/fuzz/config_fuzz.cc). Outside strings
// and comments TOML allows only ASCII anyway (bare keys, numbers, dates,
// booleans), so refusing such a character first changes only the error
// message; the backslash case is valid TOML, refused with advice.
// The scan follows TOML's strings and comments; it decides nothing else. A
// quote opens a string only where TOML allows one (first on its line or after
// '=', '[', '{', ',' or '.'): the parser reads `0"é` as one value.
Status refuse_what_the_parser_mishandles(std::string_view text, const std::string& file) {
  enum class In { kCode, kComment, kBasic, kLiteral, kMultiBasic, kMultiLiteral };
  In in = In::kCode;
  size_t line = 1;
  size_t line_start = 0;
  char before = '\0';  // the last character of code on this line, '\0' for none
  auto opens_string = [&] { return before == '\0' || std::string_view("=[{,.").find(before) != std::string_view::npos; };
  auto at = [&](size_t i) {
    return file + ":" + std::to_string(line) + ":" + std::to_string(i - line_start + 1) + ": ";
  };
  auto starts = [&](size_t i, std::string_view s) { return text.substr(i, s.size()) == s; };
  auto non_ascii = [&](size_t i) { return static_cast<unsigned char>(text[i]) >= 0x80; };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    // TOML allows no control character but tab (and CR in CRLF) anywhere; a
    // NUL would also read as "no code yet on this line" to opens_string().
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
      char code[8];
      std::snprintf(code, sizeof code, "%04X", static_cast<unsigned>(static_cast<unsigned char>(c)));
      return Status::invalid_argument(at(i) + "syntax error: control character U+" + code +
                                      " (TOML allows only tab)");
    }
    if (c == '\n') {
      ++line;
      line_start = i + 1;
      before = '\0';
      if (in == In::kComment || in == In::kBasic || in == In::kLiteral) in = In::kCode;
      continue;
    }
    switch (in) {
      case In::kCode:
        if (c == '#') {
          in = In::kComment;
        } else if ((c == '"' || c == '\'') && opens_string()) {
          const bool multi = starts(i, std::string(3, c));
          in = c == '"' ? (multi ? In::kMultiBasic : In::kBasic) : (multi ? In::kMultiLiteral : In::kLiteral);
          if (multi) i += 2;
        } else if (non_ascii(i)) {
          return Status::invalid_argument(at(i) + "syntax error: a non-ASCII character outside a string or "
                                                  "comment (keys and values other than strings are ASCII)");
        }
        if (c != ' ' && c != '\t' && in == In::kCode) before = c;
        break;
      case In::kComment:
        break;
      case In::kBasic:
        if (c == '\\') {
          if (i + 1 < text.size() && text[i + 1] != '\n') ++i;  // the escaped character
        } else if (c == '"') {
          in = In::kCode;
          before = c;
        }
        break;
      case In::kLiteral:
        if (c == '\'') {
          in = In::kCode;
          before = c;
        }
        break;
      case In::kMultiBasic:
        if (c == '\\') {
          const size_t eol = text.find_first_not_of(" \t\r", i + 1);
          if (eol != std::string_view::npos && text[eol] == '\n') {
            // A line-ending backslash: the parser skips the whitespace after it.
            const size_t content = text.find_first_not_of(" \t\r\n", eol);
            if (content != std::string_view::npos && non_ascii(content)) {
              return Status::invalid_argument(
                  at(i) + "a non-ASCII character right after a line-ending backslash in a multi-line string "
                          "is not supported (write it as \\uXXXX, or on the backslash's line)");
            }
          } else if (i + 1 < text.size()) {
            ++i;  // the escaped character
          }
        } else if (starts(i, R"(""")")) {
          in = In::kCode;
          before = c;
          i += 2;
          while (i + 1 < text.size() && text[i + 1] == '"') ++i;  // up to two quotes end the content
        }
        break;
      case In::kMultiLiteral:
        if (starts(i, "'''")) {
          in = In::kCode;
          before = c;
          i += 2;
          while (i + 1 < text.size() && text[i + 1] == '\'') ++i;
        }
        break;
    }
  }
  return Status::ok();
}

// `text` with every non-ASCII character (a UTF-8 lead byte with its
// continuation bytes; a stray continuation byte is dropped) as one '@'. TOML
// allows '@', like a non-ASCII character, only in strings and comments, so
// the parser takes the same path through both texts, except where the
// original would make it look at a non-ASCII character as code (the
// undefined behaviour above): there, or at a lookahead that reached one, the
// copy ends in a syntax error, at the same line and column (toml++ counts
// characters, not bytes; CR is a column). The paths also part where toml++
// takes a non-ASCII character for whitespace (U+00A0, U+2000..U+200B,
// U+3000, U+FEFF and a few more; U+0085, U+2028/9 as line ends) and '@' is
// not; each such place outside strings is an error for the original too,
// but the skip after a line-ending backslash, which the scan above refuses.
std::string ascii_stand_in(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x80) {
      out.push_back(c);
    } else if ((b & 0xC0) != 0x80) {
      out.push_back('@');  // a continuation byte (10xxxxxx) adds nothing
    }
  }
  return out;
}

// Whether the character at `line`:`column` (1-based, in characters) of
// `text` is non-ASCII.
bool non_ascii_at(std::string_view text, size_t line, size_t column) {
  size_t i = 0;
  for (size_t l = 1; l < line; ++l) {
    i = text.find('\n', i);
    if (i == std::string_view::npos) return false;
    ++i;
  }
  for (size_t col = 1; i < text.size() && text[i] != '\n'; ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    if ((b & 0xC0) == 0x80) continue;  // inside a character
    if (col++ == column) return b >= 0x80;
  }
  return false;
}

// toml++ reports syntax errors by throwing toml::parse_error when built with
// TOML_EXCEPTIONS (the Debian package is) and through toml::parse_result
// otherwise; either way the error becomes a Status here and nothing escapes.
// The original text reaches the parser only once its ASCII stand-in (above)
// parsed; a syntax error of the stand-in at a non-ASCII character of the
// original says that its '@' stands for one.
Result<toml::table> parse_toml(std::string_view text, const std::string& file) {
  DS_RETURN_IF_ERROR(refuse_what_the_parser_mishandles(text, file));
  auto syntax_error = [&](const toml::parse_error& e, bool of_stand_in) {
    const toml::source_position& at = e.source().begin;
    std::string message = file + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) +
                          ": syntax error: " + std::string(e.description());
    if (of_stand_in && non_ascii_at(text, at.line, at.column)) {
      message += " ('@' stands for the non-ASCII character there)";
    }
    return Status::invalid_argument(std::move(message));
  };
  const std::string stand_in = ascii_stand_in(text);
  const bool ascii = stand_in == text;
#if TOML_EXCEPTIONS
  if (!ascii) {
    try {
      (void)toml::parse(std::string_view(stand_in), file);
    } catch (const toml::parse_error& e) {
      return syntax_error(e, true);
    }
  }
  try {
    return toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    return syntax_error(e, false);
  }
#else
  if (!ascii) {
    toml::parse_result checked = toml::parse(std::string_view(stand_in), file);
    if (!checked) return syntax_error(checked.error(), true);
  }
  toml::parse_result r = toml::parse(text, file);
  if (!r) return syntax_error(r.error(), false);
  return std::move(r).table();
#endif
}

Result<std::string> read_file(const std::string& path) {
  auto read_error = [&path](int err) {
    std::string msg = path + ": cannot read: " + std::strerror(err);
    if (err == ENOENT) return Status::not_found(std::move(msg));
    if (err == EACCES || err == EPERM) return Status::permission_denied(std::move(msg));
    return Status::invalid_argument(std::move(msg));
  };
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return read_error(errno);
  std::string text;
  std::array<char, 16384> buf;
  for (;;) {
    const size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    text.append(buf.data(), n);
    if (n < buf.size()) break;
  }
  if (std::ferror(f.get())) return read_error(errno != 0 ? errno : EIO);
  return text;
}

// ---- shared sections ----------------------------------------------------

// [log] level and format (hub and agent). `process` is the [hub] or
// [agent] section, whose log_level is the older spelling of [log] level.
Status read_log(const Section& root, const Section& process, std::string& level, LogFormat& format) {
  DS_ASSIGN_OR_RETURN(Section s, root.get_table("log"));
  DS_RETURN_IF_ERROR(s.only_keys({"level", "format"}));
  if (s.has("level") && process.has("log_level")) {
    return s.error_at("level", "set twice: also " + process.key_path("log_level") + " (keep [log] level only)");
  }
  const Section& from = process.has("log_level") ? process : s;
  const std::string_view key = process.has("log_level") ? "log_level" : "level";
  DS_RETURN_IF_ERROR(from.get_string(key, level));
  if (Status st = validate_log_level(level); !st.is_ok()) return from.error_at(key, st.message());
  std::string name = "text";
  DS_RETURN_IF_ERROR(s.get_string("format", name));
  auto parsed = parse_log_format(name);
  if (!parsed.is_ok()) return s.error_at("format", parsed.status().message());
  format = *parsed;
  return Status::ok();
}

Status validate_nats_url(const Section& s, const std::string& url) {
  if (url.empty()) return s.error_at("url", "must not be empty");
  auto servers = parse_nats_servers(url);
  if (!servers.is_ok()) return s.error_at("url", servers.status().message());
  return Status::ok();
}

Status read_nats(const Section& root, const std::filesystem::path& base, NatsConfig& nats) {
  DS_ASSIGN_OR_RETURN(Section s, root.get_table("nats"));
  DS_RETURN_IF_ERROR(s.only_keys({"url", "user", "password", "creds_file", "nkey_seed_file",
                                  "tls_ca_file", "tls_cert_file", "tls_key_file",
                                  "subject_prefix"}));
  DS_RETURN_IF_ERROR(s.get_string("url", nats.url));
  DS_RETURN_IF_ERROR(s.get_string("user", nats.user));
  DS_RETURN_IF_ERROR(s.get_string("password", nats.password));
  DS_RETURN_IF_ERROR(s.get_string("creds_file", nats.creds_file));
  DS_RETURN_IF_ERROR(s.get_string("nkey_seed_file", nats.nkey_seed_file));
  DS_RETURN_IF_ERROR(s.get_string("tls_ca_file", nats.tls_ca_file));
  DS_RETURN_IF_ERROR(s.get_string("tls_cert_file", nats.tls_cert_file));
  DS_RETURN_IF_ERROR(s.get_string("tls_key_file", nats.tls_key_file));
  DS_RETURN_IF_ERROR(s.get_string("subject_prefix", nats.subject_prefix));

  DS_RETURN_IF_ERROR(validate_nats_url(s, nats.url));
  if (!nats.password.empty() && nats.user.empty()) {
    return s.error_at("password", "requires nats.user");
  }
  // Name the second method given, so the message points at a key to remove.
  std::vector<std::string_view> methods;
  if (!nats.user.empty()) methods.push_back("user");
  if (!nats.creds_file.empty()) methods.push_back("creds_file");
  if (!nats.nkey_seed_file.empty()) methods.push_back("nkey_seed_file");
  if (methods.size() > 1) {
    return s.error_at(methods[1], "conflicts with nats." + std::string(methods[0]) +
                                      " (use at most one of user/password, creds_file, "
                                      "nkey_seed_file)");
  }
  if (nats.tls_cert_file.empty() != nats.tls_key_file.empty()) {
    return nats.tls_cert_file.empty()
               ? s.error_at("tls_key_file", "requires nats.tls_cert_file")
               : s.error_at("tls_cert_file", "requires nats.tls_key_file");
  }
  Status st = validate_subject_prefix(nats.subject_prefix);
  if (!st.is_ok()) return s.error_at("subject_prefix", st.message());

  for (std::string* p : {&nats.creds_file, &nats.nkey_seed_file, &nats.tls_ca_file,
                         &nats.tls_cert_file, &nats.tls_key_file}) {
    *p = resolve_path(base, *p);
  }
  return Status::ok();
}

Status read_required_path(const Section& s, std::string_view key, const std::filesystem::path& base,
                          std::string& out) {
  DS_RETURN_IF_ERROR(s.get_string(key, out));
  if (out.empty()) return s.error_at(key, "must not be empty");
  out = resolve_path(base, out);
  return Status::ok();
}

// ---- hub ------------------------------------------------------------------

// Column and key names: the identifier rules of type names ([a-z][a-z0-9_]*),
// because they become SQLite column names in every replica. A leading '_' is
// reserved for the replica's own columns (_version, _ts, _hub_ts).
Status validate_column_name(const Section& s, std::string_view key, std::string_view name) {
  if (!name.empty() && name.front() == '_') {
    return s.error_at(key, "column name " + single_quoted(name) +
                               " is reserved: names starting with '_' belong to the replica "
                               "(_version, _ts, _hub_ts)");
  }
  Status st = validate_type_name(name);
  if (!st.is_ok()) {
    return s.error_at(key, "invalid column name " + single_quoted(name) +
                               " (expected [a-z][a-z0-9_]*, at most 64 characters)");
  }
  return Status::ok();
}

std::string column_type_choices() {
  std::string out;
  for (ColumnType t : {ColumnType::kText, ColumnType::kInteger, ColumnType::kReal,
                       ColumnType::kBool, ColumnType::kBlob, ColumnType::kJson}) {
    if (!out.empty()) out += ", ";
    out += column_type_name(t);
  }
  return out;
}

Status read_column(const Section& s, Column& column) {
  DS_RETURN_IF_ERROR(s.only_keys({"name", "type"}));
  DS_RETURN_IF_ERROR(s.require_string("name", column.name));
  DS_RETURN_IF_ERROR(validate_column_name(s, "name", column.name));
  std::string type;
  DS_RETURN_IF_ERROR(s.require_string("type", type));
  Result<ColumnType> t = column_type_from_name(type);
  if (!t.is_ok()) {
    return s.error_at("type", "unknown column type " + single_quoted(type) + " (expected one of " +
                                  column_type_choices() + ")");
  }
  column.type = *t;
  return Status::ok();
}

Status read_type(const Section& s, TypeConfig& type) {
  DS_RETURN_IF_ERROR(s.only_keys({"name", "key", "partition", "columns", "max_age", "max_bytes",
                                  "freshness_objective"}));
  DS_RETURN_IF_ERROR(s.require_string("name", type.name));
  Status st = validate_type_name(type.name);
  if (!st.is_ok()) return s.error_at("name", st.message());

  TypeSchema& schema = type.schema;
  DS_RETURN_IF_ERROR(s.require_string("key", schema.key));
  DS_RETURN_IF_ERROR(validate_column_name(s, "key", schema.key));

  DS_ASSIGN_OR_RETURN(std::vector<Section> columns, s.get_tables("columns"));
  std::set<std::string, std::less<>> seen;
  for (const Section& c : columns) {
    Column column;
    DS_RETURN_IF_ERROR(read_column(c, column));
    if (column.name == schema.key) {
      return c.error_at("name", "column " + single_quoted(column.name) +
                                    " is the key column, which is implicit: list it only as "
                                    "key");
    }
    if (!seen.insert(column.name).second) {
      return c.error_at("name", "duplicate column " + single_quoted(column.name));
    }
    schema.columns.push_back(std::move(column));
  }

  if (s.has("partition")) {
    std::string partition;
    DS_RETURN_IF_ERROR(s.get_string("partition", partition));
    const Column* c = schema.find_column(partition);
    if (!c) {
      return s.error_at("partition", "partition column " + single_quoted(partition) +
                                         " is not a declared column");
    }
    if (c->type != ColumnType::kText && c->type != ColumnType::kInteger) {
      return s.error_at("partition", "partition column " + single_quoted(partition) + " has type " +
                                         std::string(column_type_name(c->type)) +
                                         " (expected text or integer)");
    }
    schema.partition = std::move(partition);
  }

  DS_RETURN_IF_ERROR(s.get_duration_s("max_age", 0, type.max_age_s));
  DS_RETURN_IF_ERROR(s.get_bytes("max_bytes", type.max_bytes));
  DS_RETURN_IF_ERROR(s.get_duration_s("freshness_objective", 1, type.freshness_objective_s));
  return Status::ok();
}

// "host:port" with a non-empty host (a name, IPv4 address or [IPv6]) and a
// port in 0..65535 (0 = any free port).
std::optional<std::string> listen_problem(std::string_view listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string_view::npos) return "missing ':port'";
  const std::string_view host = listen.substr(0, colon);
  const std::string_view port = listen.substr(colon + 1);
  if (host.empty()) return "missing host (use 0.0.0.0 for every interface)";
  const bool bracketed = host.front() == '[';
  if (bracketed ? (host.size() < 3 || host.back() != ']')
                : host.find(':') != std::string_view::npos) {
    return "IPv6 addresses go in brackets, e.g. [::1]:8080";
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
    return "invalid port " + single_quoted(port) + " (expected 0..65535)";
  }
  return std::nullopt;
}

Status read_http(const Section& root, const std::filesystem::path& base, HubConfig& config) {
  DS_ASSIGN_OR_RETURN(Section s, root.get_table("http"));
  DS_RETURN_IF_ERROR(s.only_keys({"listen", "token", "max_body_bytes", "tls_cert_file", "tls_key_file"}));
  DS_RETURN_IF_ERROR(s.get_string("listen", config.http_listen));
  DS_RETURN_IF_ERROR(s.get_string("token", config.http_token));
  DS_RETURN_IF_ERROR(s.get_bytes("max_body_bytes", config.http_max_body_bytes));
  if (config.http_max_body_bytes < kMinHttpBodyBytes || config.http_max_body_bytes > kMaxHttpBodyBytes) {
    return s.error_at("max_body_bytes", "must be between 1KiB and 1GiB, got " +
                                            std::to_string(config.http_max_body_bytes));
  }
  DS_RETURN_IF_ERROR(s.get_string("tls_cert_file", config.http_tls_cert_file));
  DS_RETURN_IF_ERROR(s.get_string("tls_key_file", config.http_tls_key_file));
  if (config.http_tls_cert_file.empty() != config.http_tls_key_file.empty()) {
    return config.http_tls_cert_file.empty() ? s.error_at("tls_key_file", "requires http.tls_cert_file")
                                             : s.error_at("tls_cert_file", "requires http.tls_key_file");
  }
  config.http_tls_cert_file = resolve_path(base, config.http_tls_cert_file);
  config.http_tls_key_file = resolve_path(base, config.http_tls_key_file);
  if (config.http_listen.empty()) return Status::ok();
  if (auto problem = listen_problem(config.http_listen)) {
    return s.error_at("listen", "invalid address " + single_quoted(config.http_listen) + ": " + *problem +
                                    " (expected host:port, or \"\" to disable)");
  }
  if (config.http_token.empty()) {
    return s.error_at("token", "required when http.listen is set (a secret of at least " +
                                   std::to_string(kMinHttpTokenChars) + " characters)");
  }
  if (config.http_token.size() < kMinHttpTokenChars) {
    // Never echo the secret itself.
    return s.error_at("token", "must be at least " + std::to_string(kMinHttpTokenChars) +
                                   " characters, got " + std::to_string(config.http_token.size()));
  }
  return Status::ok();
}

// [metrics] listen (hub and agent): "", a bare port, or host:port.
Status read_metrics(const Section& root, std::string& listen) {
  DS_ASSIGN_OR_RETURN(Section s, root.get_table("metrics"));
  DS_RETURN_IF_ERROR(s.only_keys({"listen"}));
  DS_RETURN_IF_ERROR(s.get_string("listen", listen));
  if (listen.empty()) return Status::ok();
  if (auto problem = listen_problem(metrics_listen_address(listen))) {
    return s.error_at("listen", "invalid address " + single_quoted(listen) + ": " + *problem +
                                    " (expected a port (loopback), host:port, or \"\" to disable)");
  }
  return Status::ok();
}

Result<HubConfig> hub_from_text(std::string_view text, const std::string& file,
                                const std::filesystem::path& base) {
  DS_ASSIGN_OR_RETURN(toml::table doc, parse_toml(text, file));
  HubConfig config;
  config.path = file;
  Section root(&file, &doc, "");
  DS_RETURN_IF_ERROR(
      root.only_keys({"hub", "log", "nats", "store", "auth", "http", "metrics", "liveness", "delivery",
                      "retention", "streams", "ha", "types"}));

  DS_ASSIGN_OR_RETURN(Section hub, root.get_table("hub"));
  DS_RETURN_IF_ERROR(hub.only_keys({"name", "log_level"}));
  DS_RETURN_IF_ERROR(hub.get_string("name", config.name));
  if (config.name.empty()) return hub.error_at("name", "must not be empty");
  // It goes into every heartbeat and, with [ha], into every delta's headers
  // (shared/codec.h, kPayloadHeadroom).
  if (config.name.size() > 64) {
    return hub.error_at("name", "must be at most 64 characters, got " + std::to_string(config.name.size()));
  }
  DS_RETURN_IF_ERROR(read_log(root, hub, config.log_level, config.log_format));

  DS_RETURN_IF_ERROR(read_nats(root, base, config.nats));

  DS_ASSIGN_OR_RETURN(Section store, root.get_table("store"));
  DS_RETURN_IF_ERROR(store.only_keys({"path"}));
  DS_RETURN_IF_ERROR(read_required_path(store, "path", base, config.store_path));

  DS_ASSIGN_OR_RETURN(Section auth, root.get_table("auth"));
  DS_RETURN_IF_ERROR(auth.only_keys({"identities_file"}));
  DS_RETURN_IF_ERROR(auth.get_string("identities_file", config.identities_file));
  if (!config.identities_file.empty()) {
    config.identities_file = resolve_path(base, config.identities_file);
  } else if (!config.nats.user.empty() || !config.nats.creds_file.empty() || !config.nats.nkey_seed_file.empty()) {
    // An authenticated hub holds every NATS right; without the registry it
    // would act for any agent or producer on whatever their requests say.
    return auth.error_at("identities_file",
                         "required when the hub authenticates to NATS: name the identities.json that "
                         "`deltasync creds` wrote with the credentials, so the hub can authorize "
                         "agents and producers");
  }

  DS_RETURN_IF_ERROR(read_http(root, base, config));
  DS_RETURN_IF_ERROR(read_metrics(root, config.metrics_listen));

  DS_ASSIGN_OR_RETURN(Section liveness, root.get_table("liveness"));
  DS_RETURN_IF_ERROR(liveness.only_keys({"heartbeat_interval_ms", "dead_after"}));
  DS_RETURN_IF_ERROR(
      liveness.get_int("heartbeat_interval_ms", 100, 3600000, config.heartbeat_interval_ms));
  DS_RETURN_IF_ERROR(liveness.get_int("dead_after", 1, 100, config.dead_after));

  DS_ASSIGN_OR_RETURN(Section delivery, root.get_table("delivery"));
  DS_RETURN_IF_ERROR(delivery.only_keys({"max_ack_pending", "publish_batch"}));
  DS_RETURN_IF_ERROR(delivery.get_int("max_ack_pending", 1, 100000, config.max_ack_pending));
  DS_RETURN_IF_ERROR(delivery.get_int("publish_batch", 1, kMaxPublishBatch, config.publish_batch));

  DS_ASSIGN_OR_RETURN(Section streams, root.get_table("streams"));
  DS_RETURN_IF_ERROR(streams.only_keys({"replicas"}));
  // 2 would lose its quorum with either node: a cluster tolerates a node
  // loss only with 3 replicas.
  DS_RETURN_IF_ERROR(streams.get_int("replicas", 1, 3, config.stream_replicas));
  if (config.stream_replicas == 2) {
    return streams.error_at("replicas", "must be 1 (one nats-server, no redundancy) or 3 (a JetStream cluster of "
                                        "at least 3 nodes), got 2: two replicas stop with either node");
  }

  DS_ASSIGN_OR_RETURN(Section ha, root.get_table("ha"));
  DS_RETURN_IF_ERROR(ha.only_keys({"enabled", "lease_ms"}));
  DS_RETURN_IF_ERROR(ha.get_bool("enabled", config.ha_enabled));
  DS_RETURN_IF_ERROR(ha.get_int("lease_ms", 1000, 60000, config.ha_lease_ms));

  DS_ASSIGN_OR_RETURN(Section retention, root.get_table("retention"));
  DS_RETURN_IF_ERROR(retention.only_keys({"enabled", "tombstone_max_age"}));
  DS_RETURN_IF_ERROR(retention.get_bool("enabled", config.retention_enabled));
  DS_RETURN_IF_ERROR(retention.get_duration_s("tombstone_max_age", 0, config.tombstone_max_age_s));

  DS_ASSIGN_OR_RETURN(std::vector<Section> types, root.get_tables("types"));
  if (types.empty()) {
    return root.error_at("types", "at least one business type is required ([[types]])");
  }
  for (const Section& t : types) {
    TypeConfig type;
    DS_RETURN_IF_ERROR(read_type(t, type));
    if (config.find_type(type.name)) {
      return t.error_at("name", "duplicate type " + single_quoted(type.name));
    }
    // The hub learns what an agent applied from its heartbeat replies, once
    // per interval: a shorter objective could not tell a breach from a
    // reply not yet due.
    if (type.freshness_objective_s * 1000 < config.heartbeat_interval_ms) {
      return t.error_at("freshness_objective",
                        std::to_string(type.freshness_objective_s) + " s is shorter than [liveness] "
                        "heartbeat_interval_ms (" + std::to_string(config.heartbeat_interval_ms) +
                        " ms): the hub hears what agents applied once per heartbeat, so make the objective at "
                        "least one interval (two or more to leave room for the apply)");
    }
    config.types.push_back(std::move(type));
  }
  return config;
}

// ---- agent ----------------------------------------------------------------

Status read_subscription(const Section& s, SubscriptionConfig& sub) {
  DS_RETURN_IF_ERROR(
      s.only_keys({"type", "partition", "hook", "hook_retries", "hook_timeout_ms"}));
  DS_RETURN_IF_ERROR(s.require_string("type", sub.type));
  Status st = validate_type_name(sub.type);
  if (!st.is_ok()) return s.error_at("type", st.message());
  DS_RETURN_IF_ERROR(s.get_string("partition", sub.partition));
  if (sub.partition != kAnyPartition) {
    st = validate_partition(sub.partition);
    if (!st.is_ok()) {
      return s.error_at("partition", st.message() + " (or \"*\" for every partition)");
    }
  }
  DS_RETURN_IF_ERROR(s.get_string("hook", sub.hook));
  DS_RETURN_IF_ERROR(s.get_int("hook_retries", 0, 100, sub.hook_retries));
  DS_RETURN_IF_ERROR(s.get_int("hook_timeout_ms", 100, 3600000, sub.hook_timeout_ms));
  return Status::ok();
}

Result<AgentConfig> agent_from_text(std::string_view text, const std::string& file,
                                    const std::filesystem::path& base) {
  DS_ASSIGN_OR_RETURN(toml::table doc, parse_toml(text, file));
  AgentConfig config;
  config.path = file;
  Section root(&file, &doc, "");
  DS_RETURN_IF_ERROR(root.only_keys({"agent", "log", "nats", "replica", "metrics", "subscriptions"}));

  DS_ASSIGN_OR_RETURN(Section agent, root.get_table("agent"));
  DS_RETURN_IF_ERROR(agent.only_keys({"id", "log_level", "live_feed"}));
  DS_RETURN_IF_ERROR(agent.require_string("id", config.id));
  DS_RETURN_IF_ERROR(agent.get_bool("live_feed", config.live_feed));
  Status st = validate_agent_id(config.id);
  if (!st.is_ok()) return agent.error_at("id", st.message());
  DS_RETURN_IF_ERROR(read_log(root, agent, config.log_level, config.log_format));

  DS_RETURN_IF_ERROR(read_nats(root, base, config.nats));

  DS_ASSIGN_OR_RETURN(Section replica, root.get_table("replica"));
  DS_RETURN_IF_ERROR(replica.only_keys({"path", "tombstone_max_age"}));
  DS_RETURN_IF_ERROR(read_required_path(replica, "path", base, config.replica_path));
  DS_RETURN_IF_ERROR(replica.get_duration_s("tombstone_max_age", 0, config.tombstone_max_age_s));

  DS_RETURN_IF_ERROR(read_metrics(root, config.metrics_listen));

  DS_ASSIGN_OR_RETURN(std::vector<Section> subs, root.get_tables("subscriptions"));
  if (subs.empty()) {
    return root.error_at("subscriptions",
                         "at least one subscription is required ([[subscriptions]])");
  }
  std::set<std::string, std::less<>> seen;
  for (const Section& s : subs) {
    SubscriptionConfig sub;
    DS_RETURN_IF_ERROR(read_subscription(s, sub));
    if (!seen.insert(sub.type).second) {
      return s.error_at("type", "type " + single_quoted(sub.type) +
                                    " is subscribed more than once (one subscription per type)");
    }
    config.subscriptions.push_back(std::move(sub));
  }
  return config;
}

std::filesystem::path directory_of(const std::string& file) {
  return std::filesystem::path(file).parent_path();
}

}  // namespace

std::string metrics_listen_address(const std::string& listen) {
  if (listen.empty()) return listen;
  if (listen.find_first_not_of("0123456789") == std::string::npos) return "127.0.0.1:" + listen;
  return listen;
}

const TypeConfig* HubConfig::find_type(std::string_view type_name) const {
  for (const TypeConfig& t : types) {
    if (t.name == type_name) return &t;
  }
  return nullptr;
}

Result<HubConfig> load_hub_config(const std::string& path) {
  DS_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return hub_from_text(text, path, directory_of(path));
}

Result<AgentConfig> load_agent_config(const std::string& path) {
  DS_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return agent_from_text(text, path, directory_of(path));
}

Result<HubConfig> parse_hub_config(std::string_view toml, const std::string& name) {
  return hub_from_text(toml, name, {});
}

Result<AgentConfig> parse_agent_config(std::string_view toml, const std::string& name) {
  return agent_from_text(toml, name, {});
}

}  // namespace ds
