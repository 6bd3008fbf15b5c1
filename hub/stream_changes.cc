#include "hub/stream_changes.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "hub/retry_key_header.h"
#include "hub/stream_publisher.h"
#include "shared/codec.h"
#include "shared/names.h"
#include "shared/schema.h"

namespace ds {
namespace {

// Messages `from`..`to` (at most kGetWindow) of `stream`, by sequence,
// read kGetsInFlight at a time (see the header); NotFound for one gone. A
// failure other than NotFound stops every reader and is the result, with
// the sequence it happened at (the lowest, when several failed).
Result<std::vector<Result<StoredMessage>>> get_window(StreamReader& js, const std::string& stream, uint64_t from,
                                                      uint64_t to) {
  const size_t n = to - from + 1;
  std::vector<Result<StoredMessage>> got(n, Result<StoredMessage>(Status::internal("not read")));
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::optional<std::pair<size_t, Status>> failure;  // the lowest index that failed; guarded by mu
  const size_t workers = std::min<size_t>(kGetsInFlight, n);
  auto read = [&](size_t first) {
    for (size_t i = first; i < n && !failed.load(); i += workers) {
      got[i] = js.get_message(stream, from + i);
      if (got[i].is_ok() || got[i].status().code() == StatusCode::kNotFound) continue;
      std::lock_guard lock(mu);
      if (!failure || i < failure->first) failure.emplace(i, got[i].status());
      failed.store(true);
    }
  };
  if (workers <= 1) {
    read(0);
  } else {
    std::vector<std::jthread> threads;  // joined before `got` is read
    threads.reserve(workers);
    for (size_t w = 0; w < workers; ++w) threads.emplace_back(read, w);
  }
  if (failure) {
    return failure->second.with_context("read " + stream + " message " + std::to_string(from + failure->first));
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
    if (at == 0) {
      DS_ASSIGN_OR_RETURN(window, get_window(js, stream, seq, std::min(to_seq, seq + kGetWindow - 1)));
    }
    Result<StoredMessage>& m = window[at];
    if (!m.is_ok()) continue;  // deleted or aged out meanwhile (NotFound; get_window returned any other failure)
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
