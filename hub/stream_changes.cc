#include "hub/stream_changes.h"

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "hub/retry_key_header.h"
#include "hub/stream_publisher.h"
#include "shared/codec.h"
#include "shared/names.h"
#include "shared/schema.h"

namespace ds {
namespace {

// Messages `from`..`to` (at most kGetWindow) of `stream`, by sequence,
// read kGetsInFlight at a time (see the header).
std::vector<Result<StoredMessage>> get_window(StreamReader& js, const std::string& stream, uint64_t from,
                                              uint64_t to) {
  const size_t n = to - from + 1;
  std::vector<Result<StoredMessage>> got(n, Result<StoredMessage>(Status::internal("not read")));
  const size_t workers = std::min<size_t>(kGetsInFlight, n);
  if (workers <= 1) {
    for (size_t i = 0; i < n; ++i) got[i] = js.get_message(stream, from + i);
    return got;
  }
  {
    std::vector<std::jthread> threads;  // joined at the end of this scope
    threads.reserve(workers);
    for (size_t w = 0; w < workers; ++w) {
      threads.emplace_back([&, w] {
        for (size_t i = w; i < n; i += workers) got[i] = js.get_message(stream, from + i);
      });
    }
  }
  return got;
}

}  // namespace

Result<StreamChanges> read_stream_changes(StreamReader& js, const TypeConfig& type, uint64_t from_seq,
                                          uint64_t to_seq, uint64_t above_version) {
  const std::string stream = stream_name(type.name);
  StreamChanges out;
  std::vector<Result<StoredMessage>> window;
  for (uint64_t seq = from_seq; seq <= to_seq; ++seq) {
    const uint64_t at = (seq - from_seq) % kGetWindow;
    if (at == 0) window = get_window(js, stream, seq, std::min(to_seq, seq + kGetWindow - 1));
    Result<StoredMessage>& m = window[at];
    if (!m.is_ok()) {
      if (m.status().code() == StatusCode::kNotFound) continue;  // deleted or aged out meanwhile
      return m.status().with_context("read " + stream + " message " + std::to_string(seq));
    }
    const std::string where = stream + " message " + std::to_string(seq);
    auto delta = decode_delta_batch(m->data);
    const std::optional<uint64_t> batch = batch_of(*m);
    if (!delta.is_ok() || !batch || delta->type != type.name || delta->changes.empty()) {
      return Status::data_loss(where + " is not a delta batch of type '" + type.name + "' of this hub");
    }
    out.messages.push_back(StreamChanges::Read{seq, *batch, delta->changes.back().v});
    if (const auto keys = m->header(kRetryKeysHeader)) {
      auto decoded = decode_retry_keys(*keys);
      if (!decoded.is_ok()) return Status::data_loss(decoded.status().with_context(where).message());
      for (ProducerRetryKey& k : *decoded) {
        if (k.range.last_version > above_version) out.retry_keys.push_back(std::move(k));
      }
    }
    const auto dot = m->subject.rfind('.');
    const std::string partition = dot == std::string::npos ? m->subject : m->subject.substr(dot + 1);
    for (Change& c : delta->changes) {
      out.messages.back().last_version = std::max(out.messages.back().last_version, c.v);
      if (c.v <= above_version) continue;
      // Values as the commit stored them (a real column's 2.0 arrives as
      // the integer 2, a json column's text as text).
      if (c.op == Op::kUpsert) {
        DS_RETURN_IF_ERROR(
            validate_fields(type.schema, c.key, c.f).with_context(where + " version " + std::to_string(c.v)));
      }
      out.changes.emplace(c.v, QueryStore::RecoveredChange{*batch, partition, std::move(c)});
    }
  }
  return out;
}

std::vector<QueryStore::RecoveredChange> take_continuing(StreamChanges& read, uint64_t head) {
  std::vector<QueryStore::RecoveredChange> out;
  for (auto it = read.changes.begin(); it != read.changes.end() && it->first == head + 1;
       it = read.changes.erase(it)) {
    out.push_back(std::move(it->second));
    ++head;
  }
  return out;
}

}  // namespace ds
