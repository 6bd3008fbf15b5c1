#include "shared/names.h"

#include <cctype>
#include <cstdio>

namespace ds {
namespace {

constexpr size_t kMaxNameChars = 64;


bool is_lower_or_digit_or_underscore(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

// [A-Za-z0-9_-]: the characters that are safe in one NATS subject token, a
// durable consumer name and a file name alike.
bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

bool is_token(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameChars) return false;
  for (char c : s) {
    if (!is_token_char(c)) return false;
  }
  return true;
}

}  // namespace

Status validate_type_name(std::string_view name) {
  bool valid = !name.empty() && name.size() <= kMaxNameChars && name[0] >= 'a' && name[0] <= 'z';
  for (size_t i = 1; valid && i < name.size(); ++i) valid = is_lower_or_digit_or_underscore(name[i]);
  if (valid) return Status::ok();
  return Status::invalid_argument("invalid business type name " + quoted_for_message(name) +
                                  ": use 1-64 characters from a-z 0-9 _, starting with a letter a-z");
}

Status validate_agent_id(std::string_view id) {
  if (is_token(id)) return Status::ok();
  return Status::invalid_argument("invalid agent id " + quoted_for_message(id) +
                                  ": use 1-64 characters from A-Z a-z 0-9 _ -");
}

Status validate_partition(std::string_view partition) {
  if (partition == kAllPartitions) {
    return Status::invalid_argument("invalid partition '_all': it is reserved for records without a partition");
  }
  if (is_token(partition)) return Status::ok();
  return Status::invalid_argument("invalid partition " + quoted_for_message(partition) +
                                  ": use 1-64 characters from A-Z a-z 0-9 _ -");
}

Status validate_subject_prefix(std::string_view prefix) {
  bool valid = !prefix.empty();
  size_t token_start = 0;
  for (size_t i = 0; valid && i <= prefix.size(); ++i) {
    if (i == prefix.size() || prefix[i] == '.') {
      valid = i > token_start;  // no empty token: "", ".ds", "ds.", "a..b"
      token_start = i + 1;
    } else {
      valid = is_token_char(prefix[i]);
    }
  }
  if (valid) return Status::ok();
  return Status::invalid_argument("invalid subject prefix " + quoted_for_message(prefix) +
                                  ": use one or more tokens of A-Z a-z 0-9 _ - separated by '.'");
}

namespace {
std::string join(std::string_view a, std::string_view b) {
  std::string s(a);
  s += '.';
  s += b;
  return s;
}
}  // namespace

std::string Subjects::ingest(std::string_view type, std::string_view producer) const {
  return join(join(p_ + ".ingest", type), producer);
}
std::string Subjects::ingest_wildcard() const { return p_ + ".ingest.*.*"; }
std::optional<IngestSubject> Subjects::parse_ingest(std::string_view subject) const {
  const std::string head = p_ + ".ingest.";
  if (subject.substr(0, head.size()) != head) return std::nullopt;
  const std::string_view rest = subject.substr(head.size());
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos || rest.find('.', dot + 1) != std::string_view::npos) return std::nullopt;
  return IngestSubject{std::string(rest.substr(0, dot)), std::string(rest.substr(dot + 1))};
}
std::string Subjects::register_agent(std::string_view agent) const {
  return join(p_ + ".hub.register", agent);
}
std::string Subjects::register_wildcard() const { return p_ + ".hub.register.*"; }
std::string Subjects::snapshot(std::string_view agent) const { return join(p_ + ".hub.snapshot", agent); }
std::string Subjects::snapshot_wildcard() const { return p_ + ".hub.snapshot.*"; }
std::string Subjects::heartbeat(std::string_view type) const { return join(p_ + ".hb", type); }
std::string Subjects::probe(std::string_view agent) const { return join(join(p_ + ".agent", agent), "hb"); }
std::string Subjects::hub_beat(std::string_view agent) const { return join(p_ + ".hub.beat", agent); }
std::string Subjects::hub_beat_wildcard() const { return p_ + ".hub.beat.*"; }
std::string quoted_for_message(std::string_view s) {
  constexpr size_t kMaxShown = 80;
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > kMaxShown) out += "...";
  out += "'";
  return out;
}

std::string Subjects::digest(std::string_view agent) const { return join(join(p_ + ".agent", agent), "digest"); }
std::string Subjects::delta(std::string_view type, std::string_view partition) const {
  return join(join(p_ + ".delta", type), partition);
}
std::string Subjects::delta_filter(std::string_view type) const { return join(join(p_ + ".delta", type), ">"); }
std::string Subjects::feed(std::string_view type, std::string_view partition) const {
  return join(join(p_ + ".feed", type), partition);
}
std::string Subjects::feed_filter(std::string_view type) const { return join(join(p_ + ".feed", type), ">"); }
std::string Subjects::push(std::string_view agent, std::string_view type) const {
  return join(join(p_ + ".push", agent), type);
}

std::string_view Subjects::last_token(std::string_view subject) {
  const size_t dot = subject.rfind('.');
  return dot == std::string_view::npos ? subject : subject.substr(dot + 1);
}

std::string stream_name(std::string_view type) {
  std::string s = "DS_";
  for (char c : type) s += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string consumer_name(std::string_view agent) { return "ag_" + std::string(agent); }

std::string inbox_prefix(std::string_view id) { return "_INBOX_" + std::string(id); }

std::string msg_id(std::string_view type, uint64_t first_version) {
  return std::string(type) + ":" + std::to_string(first_version);
}

}  // namespace ds
