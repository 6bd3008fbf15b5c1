#include "hub/stream_publisher.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <chrono>
#include <optional>
#include <thread>

#include "hub/retry_key_header.h"
#include "hub/stream_changes.h"
#include "shared/codec.h"
#include "shared/sqlite.h"

namespace ds {
namespace {

// What an operator can do when a type's store is behind its stream and the
// stream cannot fill the gap (docs/operations.md, "Backup and restore").
// A newer backup must reach `needed`; giving up loses the versions from
// `first_lost` to `last_lost` (the last the stream held, when known).
std::string gap_advice(uint64_t needed, uint64_t first_lost, std::optional<uint64_t> last_lost) {
  return fmt::format(
      "Restore a newer backup of the store (one taken after version {}) and start the hub again; or, to give up "
      "versions {}..{} for good, follow docs/operations.md \"Backup and restore\", \"When the stream cannot fill "
      "the gap\"",
      needed, first_lost, last_lost ? std::to_string(*last_lost) : std::string("(the last the stream held)"));
}

// The ack wait for one publish round. Generous: a slow disk on the broker
// must not turn into a reply "unavailable" for a batch it stores anyway.
constexpr int64_t kAckTimeoutMs = 10000;
// Changes read from the log per publish round.
constexpr size_t kRoundChanges = 10000;
// A takeover's claims of one stream (claim_streams) the old active's last
// publications may refuse.
constexpr int kClaimAttempts = 5;
// The pause before claiming again after the broker did not answer.
constexpr int64_t kClaimRetryMs = 200;

uint64_t micros_since(std::chrono::steady_clock::time_point t0) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
}

// The encoded size of `b` as the cutting rule counts it (an upper bound of
// encode(b.delta).size()).
size_t batch_bound(const PendingBatch& b) {
  size_t bytes = delta_batch_overhead(b.delta.type);
  for (const Change& c : b.delta.changes) bytes += encoded_size(c);
  for (const ProducerRetryKey& k : b.retry_keys) bytes += retry_key_header_bound(k.producer);
  return bytes;
}

// The bytes the headers add that the cutting rule counts (the retry keys).
size_t counted_header_bytes(const Headers& headers) {
  for (const auto& [name, value] : headers) {
    if (name == kRetryKeysHeader) return value.size();
  }
  return 0;
}

Status too_large(const std::string& type, const PendingBatch& b, size_t bytes, size_t limit) {
  const Change& c = b.delta.changes.front();
  return Status::internal("type '" + type + "': delta batch " + std::to_string(b.batch) + " (change " +
                          std::to_string(c.v) + ", key '" + c.key + "') is " + std::to_string(bytes) +
                          " bytes, over the " + std::to_string(limit) +
                          " bytes a message may carry under the server's max_payload; it cannot be cut smaller: "
                          "raise max_payload in the nats-server configuration above " +
                          std::to_string(bytes + static_cast<size_t>(kPayloadHeadroom)) +
                          " bytes (the type's later changes wait behind it)");
}

}  // namespace

std::optional<uint64_t> batch_of(const StoredMessage& m) {
  // "<type>:<batch>", or "<type>:<batch>:<hub>" from an HA hub.
  if (m.msg_id) {
    const auto colon = m.msg_id->find(':');
    if (colon != std::string::npos) {
      uint64_t v = 0;
      const char* begin = m.msg_id->data() + colon + 1;
      const char* end = m.msg_id->data() + m.msg_id->size();
      auto [ptr, ec] = std::from_chars(begin, end, v);
      if (ec == std::errc() && ptr != begin && (ptr == end || *ptr == ':')) return v;
    }
  }
  auto delta = decode_delta_batch(m.data);
  if (delta.is_ok() && !delta->changes.empty()) return delta->changes.front().v;
  return std::nullopt;
}

size_t StreamPublisher::max_batch_bytes() const { return message_body_limit(js_.max_payload()); }

StreamPublisher::StreamPublisher(JetStream& js, QueryStore& store, const HubConfig& config, HubMetrics& metrics,
                                 FaultHook faults)
    : StreamPublisher(std::make_unique<NatsStreamAccess>(js), store, config, metrics, std::move(faults)) {}

StreamPublisher::StreamPublisher(StreamAccess& streams, QueryStore& store, const HubConfig& config,
                                 HubMetrics& metrics, FaultHook faults)
    : js_(streams),
      store_(store),
      config_(config),
      subjects_(config.nats.subject_prefix),
      metrics_(metrics),
      faults_(std::move(faults)) {
  for (const TypeConfig& t : config_.types) backlog_.insert(t.name);
}

StreamPublisher::StreamPublisher(std::unique_ptr<StreamAccess> own, QueryStore& store, const HubConfig& config,
                                 HubMetrics& metrics, FaultHook faults)
    : StreamPublisher(*own, store, config, metrics, std::move(faults)) {
  own_streams_ = std::move(own);
}

Status StreamPublisher::ensure_streams() {
  for (const TypeConfig& t : config_.types) {
    StreamSpec spec;
    spec.name = stream_name(t.name);
    spec.subjects = {subjects_.delta_filter(t.name)};
    spec.max_age_ms = t.max_age_s * 1000;
    spec.max_bytes = t.max_bytes;
    spec.duplicate_window_ms = 120000;
    spec.replicas = static_cast<int>(config_.stream_replicas);
    // The live feed (docs/protocol.md, "Live feed"): a stream created
    // before it keeps none (StreamSpec says why).
    spec.republish_source = spec.subjects.front();
    spec.republish_destination = subjects_.feed_filter(t.name);
    DS_RETURN_IF_ERROR(js_.ensure_stream(spec).with_context(
        "stream " + spec.name + " ([streams] replicas = " + std::to_string(spec.replicas) + ")"));
  }
  return Status::ok();
}

Result<StreamPublisher::Acked> StreamPublisher::publish_batches(const std::string& type,
                                                               const std::vector<const PendingBatch*>& batches) {
  if (batches.empty()) return Status::invalid_argument("publish: no delta batch of type '" + type + "'");
  const auto t0 = std::chrono::steady_clock::now();
  // Encoded and checked before anything is sent: a batch the server would
  // refuse must not leave the ones before it half published.
  const size_t limit = max_batch_bytes();
  // With a fence (HA, see the header): the first message must follow what
  // this hub last published (its mark), each other one the message before
  // it, so the stream takes all of the round or, from the first it refuses,
  // nothing more.
  std::optional<uint64_t> mark_seq;
  if (fenced()) {
    if (!fence_.lease_valid()) {
      fence_refused_ = true;
      const std::string why = "this hub's HA lease has run out";
      fence_.fenced(why);
      return Status::unavailable("publish type '" + type + "': " + why +
                                 ", so it publishes nothing (another hub may be taking over)");
    }
    at_fault_point(faults_, FaultPoint::kLeaseChecked);
    DS_ASSIGN_OR_RETURN(TypeState st, store_.type_state(type));
    mark_seq = mark_of(type, st).seq;
  }
  std::vector<std::string> bodies;
  std::vector<Headers> headers;
  std::vector<std::string> ids;
  bodies.reserve(batches.size());
  headers.reserve(batches.size());
  ids.reserve(batches.size());
  for (const PendingBatch* b : batches) {
    bodies.push_back(encode(b->delta));
    ids.push_back(delta_msg_id(type, b->batch));
    Headers& h = headers.emplace_back();
    if (!b->retry_keys.empty()) h.emplace_back(kRetryKeysHeader, encode_retry_keys(b->retry_keys));
    if (mark_seq) {
      h.emplace_back(kHubHeader, fence_.holder);
      if (ids.size() == 1) {
        h.emplace_back(kExpectedLastSeqHeader, std::to_string(*mark_seq));
      } else {
        h.emplace_back(kExpectedLastMsgIdHeader, ids[ids.size() - 2]);
      }
    }
    const size_t bytes = bodies.back().size() + counted_header_bytes(h);
    if (bytes > limit) return too_large(type, *b, bytes, limit);
  }
  // All asynchronously, then one wait: it returns as soon as every ack is
  // in, or (Unavailable) as soon as the connection is back from a drop that
  // took acks with it, rather than after kAckTimeoutMs. The last batch's ack
  // names the stream sequence the published mark records (for a duplicate,
  // the original's sequence).
  size_t changes = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    const PendingBatch& b = *batches[i];
    changes += b.delta.changes.size();
    Status s = js_.publish_async(subjects_.delta(type, b.partition), bodies[i], ids[i], headers[i]);
    if (!s.is_ok()) {
      (void)js_.wait_published(kAckTimeoutMs);  // settles what was sent; the round fails anyway
      return Status::unavailable(s.message());
    }
  }
  const PendingBatch& last = *batches.back();
  std::map<std::string, PubAck> acks;
  Status waited = js_.wait_published(kAckTimeoutMs, &acks);
  if (!waited.is_ok()) {
    // A refused expected sequence (the fence) says the stream moved on;
    // anything else is the broker's trouble.
    return waited.code() == StatusCode::kAlreadyExists ? waited : Status::unavailable(waited.message());
  }
  const auto ack = acks.find(ids.back());
  if (ack == acks.end()) {
    return Status::unavailable("publish type '" + type + "': no ack recorded for delta batch " +
                               std::to_string(last.batch));
  }
  at_fault_point(faults_, FaultPoint::kPublished);
  metrics_.published_batches += batches.size();
  metrics_.published_changes += changes;
  metrics_.publish_duration.observe(static_cast<double>(micros_since(t0)) / 1e6);
  return Acked{last.batch, ack->second.seq};
}

Status StreamPublisher::publish_round(const std::string& type, uint64_t after_batch, uint64_t* last_batch,
                                      size_t* count) {
  *count = 0;
  DS_ASSIGN_OR_RETURN(std::vector<PendingBatch> batches, store_.batches_after(type, after_batch, kRoundChanges));
  if (batches.empty()) return Status::ok();
  // A batch cut under a larger max_payload (or by an older hub that cut by
  // count only) is cut again in the log, by the commit's rule; the next round
  // reads the new batches. Each re-cut makes more batches of the same
  // changes, so this ends.
  const size_t limit = max_batch_bytes();
  for (const PendingBatch& b : batches) {
    const size_t bytes = batch_bound(b);
    if (bytes <= limit) continue;
    if (b.delta.changes.size() == 1) return too_large(type, b, bytes, limit);
    store_.set_max_batch_bytes(limit);
    DS_ASSIGN_OR_RETURN(size_t parts, store_.recut_batch(type, b.batch));
    if (parts < 2) return Status::internal("publish " + type + ": cutting batch " + std::to_string(b.batch) + " again made no progress");
    spdlog::info("publish {}: delta batch {} ({} changes, {} bytes) exceeds the {} bytes the server's max_payload "
                 "allows; cut again into {} batches",
                 type, b.batch, b.delta.changes.size(), bytes, limit, parts);
    *count = parts;
    return Status::ok();
  }
  std::vector<const PendingBatch*> round;
  round.reserve(batches.size());
  for (const PendingBatch& b : batches) round.push_back(&b);
  DS_ASSIGN_OR_RETURN(Acked mark, publish_batches(type, round));
  write_mark(type, mark);
  *last_batch = mark.batch;
  *count = batches.size();
  return Status::ok();
}

Status StreamPublisher::publish(const std::string& type, const std::vector<PendingBatch>& created) {
  fence_refused_ = false;
  Status s = publish_now(type, created);
  if (!fenced() || s.code() != StatusCode::kAlreadyExists) return s;
  return after_stream_moved(type, s);
}

Status StreamPublisher::after_stream_moved(const std::string& type, const Status& refused) {
  const std::string stream = stream_name(type);
  DS_ASSIGN_OR_RETURN(StreamState state, js_.stream_state(stream));
  DS_ASSIGN_OR_RETURN(TypeState st, store_.type_state(type));
  // Every message after the mark must be this hub's own (acks it lost);
  // one of another hub's means that hub is active.
  for (uint64_t seq = std::max(mark_of(type, st).seq + 1, state.first_seq); seq <= state.last_seq; ++seq) {
    auto m = js_.get_message(stream, seq);
    if (!m.is_ok() && m.status().code() == StatusCode::kNotFound) continue;
    if (!m.is_ok()) return m.status().with_context("publish type '" + type + "': after " + refused.message());
    if (m->header(kHubHeader) == fence_.holder) continue;
    return another_hub_published("publish " + stream, stream, *m);
  }
  // This hub's own messages, whose acks were lost: the mark lags the
  // stream. Reconciling sets it and publishes the rest.
  spdlog::info("publish {}: the stream holds this hub's batches up to seq {} beyond its mark; reconciling", stream,
               state.last_seq);
  Status reconciled = reconcile_type(type);
  if (reconciled.is_ok()) backlog_.erase(type);
  return reconciled;
}

std::string StreamPublisher::delta_msg_id(const std::string& type, uint64_t batch) const {
  // An HA hub's ids name it: two hubs continuing from the same head must
  // not meet in the duplicate window, which JetStream checks before the
  // expected sequence.
  return fenced() ? msg_id(type, batch) + ":" + fence_.holder : msg_id(type, batch);
}

Status StreamPublisher::another_hub_published(const std::string& context, const std::string& stream,
                                              const StoredMessage& m) {
  const std::optional<std::string> by = m.header(kHubHeader);
  const std::string why =
      fmt::format("stream {} took message {} from {} after this hub's last publication: another hub is active",
                  stream, m.seq, by ? "hub " + *by : std::string("another publisher"));
  spdlog::warn("{}: fenced: {}", context, why);
  fence_.fenced(why);
  fence_refused_ = true;
  return Status::unavailable(context + ": fenced: " + why);
}

void StreamPublisher::give_up_lease(const std::string& why) {
  if (fenced()) fence_.fenced(why);
}

Status StreamPublisher::claim_streams() {
  if (!fenced()) return Status::ok();
  for (const TypeConfig& t : config_.types) {
    const std::string stream = stream_name(t.name);
    for (int attempt = 1;; ++attempt) {
      DS_ASSIGN_OR_RETURN(StreamState state, js_.stream_state(stream));
      if (state.last_seq == 0) break;  // never published: nothing an old active could follow on from
      auto last = js_.get_message(stream, state.last_seq);
      if (!last.is_ok() && last.status().code() == StatusCode::kNotFound) break;  // aged out: nothing to copy
      if (!last.is_ok()) return last.status().with_context("claim " + stream);
      if (last->header(kHubHeader) == fence_.holder) break;
      const std::optional<uint64_t> batch = batch_of(*last);
      if (!batch) return Status::data_loss("claim " + stream + ": its last message is not a delta batch of this hub");
      const Headers headers = {{std::string(kHubHeader), fence_.holder},
                               {std::string(kClaimHeader), "1"},
                               {std::string(kExpectedLastSeqHeader), std::to_string(state.last_seq)}};
      Status sent = js_.publish_async(last->subject, last->data, delta_msg_id(t.name, *batch), headers);
      if (sent.is_ok()) sent = js_.wait_published(kAckTimeoutMs);
      if (sent.is_ok()) {
        spdlog::info("ha: claimed {}: its last batch {} again at seq {} under this hub ({})", stream, *batch,
                     state.last_seq + 1, fence_.holder);
        break;
      }
      if (attempt >= kClaimAttempts || !(sent.code() == StatusCode::kAlreadyExists || sent.is_transient())) {
        return sent.with_context("claim " + stream);
      }
      // The old active published meanwhile (claim after its message), or the
      // broker did not answer (the claim may have landed: the next attempt
      // finds it last).
      if (sent.is_transient()) std::this_thread::sleep_for(std::chrono::milliseconds(kClaimRetryMs));
    }
  }
  return Status::ok();
}

Status StreamPublisher::publish_now(const std::string& type, const std::vector<PendingBatch>& created) {
  mark_failure_ = Status::ok();
  // The log should know what the stream holds before more is published; a
  // mark it still refuses stays the mark in memory.
  if (const auto held = unwritten_marks_.find(type); held != unwritten_marks_.end()) {
    const Acked mark = held->second;  // write_mark erases the entry it succeeds for
    write_mark(type, mark);
  }
  if (backlog_.count(type) != 0) {
    // The log may hold batches before these that the stream lacks: publish
    // everything after the mark, in order (these included).
    Status s = publish_pending(type);
    if (s.is_ok()) backlog_.erase(type);
    return s;
  }
  std::vector<const PendingBatch*> mine;
  for (const PendingBatch& b : created) {
    if (b.delta.type == type) mine.push_back(&b);
  }
  if (mine.empty()) return Status::ok();  // only retries, and everything before is published
  auto mark = publish_batches(type, mine);
  if (!mark.is_ok()) {
    ++metrics_.publish_failures;
    backlog_.insert(type);
    return mark.status().with_context("publish type '" + type + "'");
  }
  write_mark(type, *mark);
  return Status::ok();
}

StreamPublisher::Acked StreamPublisher::mark_of(const std::string& type, const TypeState& st) const {
  const auto unwritten = unwritten_marks_.find(type);
  return unwritten == unwritten_marks_.end() ? Acked{st.published_batch, st.published_seq} : unwritten->second;
}

Result<uint64_t> StreamPublisher::published_batch(const std::string& type) {
  DS_ASSIGN_OR_RETURN(TypeState st, store_.type_state(type));
  return mark_of(type, st).batch;
}

void StreamPublisher::write_mark(const std::string& type, const Acked& mark) {
  Status s = store_.mark_published(type, mark.batch, mark.seq);
  if (s.is_ok()) {
    unwritten_marks_.erase(type);
    return;
  }
  const bool first = unwritten_marks_.count(type) == 0;
  unwritten_marks_[type] = mark;
  mark_failure_ = s;
  // A full disk is the writer's store-full episode, with its one warning.
  if (first && !is_disk_full(s)) {
    spdlog::warn("publish {}: published up to stream seq {}, but the published mark was not stored ({}); it is "
                 "kept in memory and written again before the type's next publication",
                 type, mark.seq, s.message());
  }
}

void StreamPublisher::write_unwritten_marks() {
  mark_failure_ = Status::ok();
  const auto marks = unwritten_marks_;
  for (const auto& [type, mark] : marks) write_mark(type, mark);
}

Status StreamPublisher::publish_pending(const std::string& type) {
  DS_ASSIGN_OR_RETURN(uint64_t after, published_batch(type));
  for (;;) {
    size_t count = 0;
    Status s = publish_round(type, after, &after, &count);
    if (!s.is_ok()) {
      ++metrics_.publish_failures;
      return s.with_context("publish type '" + type + "'");
    }
    if (count == 0) return Status::ok();
  }
}

Status StreamPublisher::reconcile_type(const std::string& type) {
  const std::string stream = stream_name(type);
  DS_ASSIGN_OR_RETURN(TypeState st, store_.type_state(type));
  DS_ASSIGN_OR_RETURN(StreamState state, js_.stream_state(stream));

  std::optional<uint64_t> stream_batch;  // the last batch the stream holds
  uint64_t stream_seq = 0;
  if (state.last_seq == 0) {
    stream_batch = 0;  // the stream never held a message (new or recreated)
  } else {
    auto last = js_.get_message(stream, state.last_seq);
    if (last.is_ok() && fenced() && last->header(kHubHeader) != fence_.holder) {
      // Claimed at the takeover (claim_streams), so another hub's since.
      return another_hub_published("reconcile " + stream, stream, *last);
    }
    if (last.is_ok()) {
      stream_batch = batch_of(*last);
      stream_seq = last->seq;
      if (!stream_batch) {
        return Status::data_loss("stream " + stream + ": message " + std::to_string(last->seq) +
                                 " is not a delta batch of this hub");
      }
    } else if (last.status().code() == StatusCode::kNotFound) {
      const Acked mark = mark_of(type, st);
      if (state.last_seq > mark.seq) {
        // Messages after the last one the log marked published were
        // stored, then aged out or purged: the store is older than the
        // stream (restored from a backup), and nothing can give the rest
        // back.
        return Status::data_loss(fmt::format(
            "type '{}': the store ends at version {} (restored from an older backup?), published up to stream "
            "seq {}, but stream {} holds messages up to seq {}, and they are gone (aged out or purged): the hub "
            "cannot take back what the backup lacks, and refuses ingest of type '{}' (new versions would collide "
            "with those the agents hold). {}",
            type, st.version, mark.seq, stream, state.last_seq, type,
            gap_advice(st.version, st.version + 1, std::nullopt)));
      }
      spdlog::warn("reconcile {}: the stream's last message (seq {}) is gone (aged out or purged); trusting the "
                   "published batch {}",
                   stream, state.last_seq, mark.batch);
    } else {
      return last.status().with_context("reconcile " + stream);
    }
  }

  // The stream's last message says what it holds (the broker may have lost
  // messages since an ack, or be empty): that is the mark from now on, in
  // the log or, while the log refuses it, in memory (write_mark), forward or
  // back, so the publication below starts right after it.
  if (stream_batch && (*stream_batch != st.published_batch || stream_seq != st.published_seq ||
                       unwritten_marks_.count(type) != 0)) {
    if (*stream_batch > st.version) {
      DS_RETURN_IF_ERROR(recover_from_stream(type, st, state.first_seq, state.last_seq, *stream_batch));
      DS_ASSIGN_OR_RETURN(st, store_.type_state(type));
    }
    const uint64_t marked = mark_of(type, st).batch;
    if (*stream_batch > marked) {
      spdlog::info("reconcile {}: the stream already holds batches up to {} (marked {}): marking them published",
                   stream, *stream_batch, marked);
    } else if (*stream_batch < marked) {
      spdlog::warn("reconcile {}: the stream holds batches only up to {} but {} was marked published: the "
                   "broker lost acknowledged messages; republishing",
                   stream, *stream_batch, marked);
    }
    write_mark(type, Acked{*stream_batch, stream_seq});
  }

  const uint64_t batches_before = metrics_.published_batches.load();
  DS_RETURN_IF_ERROR(publish_pending(type));
  const uint64_t republished = metrics_.published_batches.load() - batches_before;
  metrics_.republished_batches += republished;
  DS_ASSIGN_OR_RETURN(TypeState after, store_.type_state(type));
  const Acked now = mark_of(type, after);
  if (republished > 0) {
    spdlog::info("reconcile {}: republished {} delta batch(es); stream now at batch {} (seq {}), log version {}",
                 stream, republished, now.batch, now.seq, after.version);
  } else {
    spdlog::info("reconcile {}: in step with the log (batch {}, seq {}, version {})", stream, now.batch, now.seq,
                 after.version);
  }
  return Status::ok();
}

Status StreamPublisher::recover_from_stream(const std::string& type, const TypeState& st, uint64_t first_seq,
                                            uint64_t last_seq, uint64_t stream_batch) {
  const std::string stream = stream_name(type);
  // Batches are in the stream in ascending order, and a batch at or below
  // the head belongs to a commit the store holds whole: the missing changes
  // are in the messages after the one the log marked published. Start there
  // (or at the stream's first message when the mark is not in it).
  uint64_t from = st.published_seq + 1;
  if (from < first_seq || from > last_seq) from = std::max<uint64_t>(first_seq, 1);
  spdlog::warn("recover {}: the stream holds batches up to {} but the store ends at version {} (restored from an "
               "older backup?): reading stream messages {}..{} to take back what the store lacks",
               stream, stream_batch, st.version, from, last_seq);
  const TypeConfig* tc = config_.find_type(type);
  if (tc == nullptr) return Status::not_found("recover: unknown business type '" + type + "'");
  DS_ASSIGN_OR_RETURN(StreamChanges found, read_stream_changes(js_, *tc, from, last_seq, st.version));
  // The changes must continue the head without a gap, up to the stream's
  // last batch at least.
  std::vector<QueryStore::RecoveredChange> changes = take_continuing(found, st.version);
  const uint64_t expect = st.version + changes.size() + 1;
  if (changes.empty() || !found.changes.empty() || expect <= stream_batch) {
    const uint64_t missing = expect;
    return Status::data_loss(fmt::format(
        "type '{}': the store ends at version {} (restored from an older backup?) but stream {} holds batches up "
        "to {}, and version {} is no longer in the stream (its messages are {}..{}): the hub cannot take back "
        "what the backup lacks, and refuses ingest of type '{}' (new versions would collide with those the stream "
        "and the agents hold). {}",
        type, st.version, stream, stream_batch, missing, first_seq, last_seq, type,
        gap_advice(missing - 1, st.version + 1,
                   std::max(stream_batch, found.changes.empty() ? stream_batch : found.changes.rbegin()->first))));
  }
  const uint64_t first = changes.front().change.v;
  const uint64_t last = changes.back().change.v;
  DS_RETURN_IF_ERROR(store_.apply_recovered(type, changes, found.retry_keys).with_context("recover " + stream));
  metrics_.recovered_changes += changes.size();
  spdlog::warn("recover {}: took back versions {}..{} ({} changes from {} stream messages) that the store lacked, "
               "with the producers' retry keys the stream carried",
               stream, first, last, changes.size(), found.messages.size());
  return Status::ok();
}

Result<std::optional<uint64_t>> StreamPublisher::first_stream_batch(const std::string& type) {
  const std::string stream = stream_name(type);
  DS_ASSIGN_OR_RETURN(StreamState state, js_.stream_state(stream));
  if (state.messages == 0) return std::optional<uint64_t>();
  DS_ASSIGN_OR_RETURN(StoredMessage first, js_.get_message(stream, state.first_seq));
  const std::optional<uint64_t> batch = batch_of(first);
  if (!batch) return Status::data_loss(stream + ": message " + std::to_string(first.seq) + " is not a delta batch");
  return batch;
}

Status StreamPublisher::reconcile(std::map<std::string, Status>* failures) {
  ++metrics_.reconciliations;
  mark_failure_ = Status::ok();
  // Until a type is reconciled, its next publication reads the log.
  for (const TypeConfig& t : config_.types) backlog_.insert(t.name);
  // A broker that lost its store (or an operator who deleted a stream) comes
  // back without the streams: recreate them, then refill them from the log.
  // Unavailable or timed out: a broker away or a NATS cluster electing
  // leaders, so a warning (the caller retries); anything else is an error.
  auto level_of = [](const Status& s) {
    return s.is_transient() ? spdlog::level::warn : spdlog::level::err;
  };
  Status first = ensure_streams();
  if (!first.is_ok()) {
    spdlog::log(level_of(first), "reconcile: {}", first.to_string());
    if (failures != nullptr) {
      for (const TypeConfig& t : config_.types) (*failures)[t.name] = first;
    }
    return first;
  }
  for (const TypeConfig& t : config_.types) {
    Status s = reconcile_type(t.name);
    if (s.is_ok()) backlog_.erase(t.name);  // the stream holds what its log says was published
    if (!s.is_ok() && failures != nullptr) (*failures)[t.name] = s;
    if (!s.is_ok()) {
      spdlog::log(level_of(s), "reconcile type '{}': {}", t.name, s.to_string());
      if (first.is_ok()) first = s;
    }
  }
  return first;
}

}  // namespace ds
