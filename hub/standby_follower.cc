#include "hub/standby_follower.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "hub/stream_changes.h"
#include "shared/names.h"

namespace ds {
namespace {

// What an operator does when the store cannot follow the stream.
constexpr std::string_view kReseedAdvice =
    "This store cannot follow the stream: stop this hub, replace its store with a backup of the active hub's "
    "(docs/operations.md, \"High availability\") and start it again";

}  // namespace

StandbyFollower::StandbyFollower(StreamReader& streams, QueryStore& store, const HubConfig& config)
    : streams_(streams), store_(store), config_(config) {}

Result<uint64_t> StandbyFollower::follow_round() {
  if (!started_) {
    DS_ASSIGN_OR_RETURN(auto states, store_.type_states());
    for (const TypeConfig& t : config_.types) {
      const TypeState st = states[t.name];
      unconfirmed_to_[t.name] = st.version;
      if (st.version > st.published_version) {
        spdlog::info("standby: type '{}': the store holds versions {}..{} beyond the stream's acknowledgement (this "
                     "hub committed them while active); checking them against the stream as it reaches them",
                     t.name, st.published_version + 1, st.version);
      }
    }
    started_ = true;
  }
  uint64_t stored = 0;
  bool all_at_end = true;
  for (const TypeConfig& t : config_.types) {
    bool at_end = false;
    DS_ASSIGN_OR_RETURN(uint64_t n, follow_type(t, &at_end));
    stored += n;
    all_at_end = all_at_end && at_end;
  }
  caught_up_ = all_at_end;
  return stored;
}

Result<uint64_t> StandbyFollower::follow_type(const TypeConfig& type, bool* at_end) {
  *at_end = false;
  const std::string stream = stream_name(type.name);
  DS_ASSIGN_OR_RETURN(TypeState st, store_.type_state(type.name));
  auto state = streams_.stream_state(stream);
  if (!state.is_ok()) {
    if (state.status().code() != StatusCode::kNotFound) return state.status().with_context("standby: " + stream);
    *at_end = true;  // the active hub has not created it yet: nothing to follow
    return uint64_t{0};
  }
  if (state->last_seq < st.published_seq) {
    return Status::data_loss(fmt::format(
        "standby: stream {} ends at seq {}, but this store followed it up to seq {}: the stream was purged or "
        "recreated since. {}",
        stream, state->last_seq, st.published_seq, kReseedAdvice));
  }
  if (state->last_seq == st.published_seq) {
    *at_end = true;
    return uint64_t{0};
  }
  uint64_t from = st.published_seq + 1;
  const bool skipped_gone = from < state->first_seq;  // messages after the mark aged out or were purged
  from = std::max(from, state->first_seq);
  const uint64_t to = std::min(state->last_seq, from + kMessagesPerRound - 1);
  DS_ASSIGN_OR_RETURN(StreamChanges read, read_stream_changes(streams_, type, from, to, st.published_version));

  // Versions the store holds: those it held before following are compared
  // with the stream's; those this follower stored need nothing.
  uint64_t head = st.version;
  const uint64_t unconfirmed_to = unconfirmed_to_[type.name];
  for (auto it = read.changes.begin(); it != read.changes.end() && it->first <= head; it = read.changes.erase(it)) {
    if (it->first <= unconfirmed_to) DS_RETURN_IF_ERROR(check_same(type, it->second));
  }
  std::vector<QueryStore::RecoveredChange> changes = take_continuing(read, head);
  const uint64_t stored = changes.size();
  if (!changes.empty()) {
    head = changes.back().change.v;
    DS_RETURN_IF_ERROR(
        store_.apply_recovered(type.name, changes, read.retry_keys).with_context("standby: store from " + stream));
  }
  const bool missed = skipped_gone || read.messages.size() < to - from + 1;
  const bool at_stream_end = to == state->last_seq;
  // A hole: messages after the mark are gone and what is left does not
  // continue the head, or nothing is left at all to tell; or the stream's
  // end is reached with changes that still do not continue it, round after
  // round (an HA hub's batches hold consecutive versions, so this is not a
  // publication under way).
  stalled_rounds_[type.name] = at_stream_end && !read.changes.empty() && stored == 0
                                   ? stalled_rounds_[type.name] + 1
                                   : 0;
  if ((missed && at_stream_end && (!read.changes.empty() || read.messages.empty())) ||
      stalled_rounds_[type.name] >= kStalledRounds) {
    return Status::data_loss(fmt::format(
        "standby: type '{}': the store ends at version {} and stream {} does not hold version {} (its messages "
        "after this store's seq {} aged out or were deleted before the standby read them, or were never "
        "published). {}",
        type.name, head, stream, head + 1, st.published_seq, kReseedAdvice));
  }
  // The mark: the last message read whose changes are all stored, when every
  // one before it is too.
  std::optional<StreamChanges::Read> whole;
  for (const StreamChanges::Read& m : read.messages) {
    if (m.last_version > head) break;
    whole = m;
  }
  if (whole) DS_RETURN_IF_ERROR(store_.mark_published(type.name, whole->batch, whole->seq));
  *at_end = to == state->last_seq && read.changes.empty();  // then every message read is stored whole
  return stored;
}

Status StandbyFollower::check_same(const TypeConfig& type, const QueryStore::RecoveredChange& from_stream) {
  const Change& theirs = from_stream.change;
  DS_ASSIGN_OR_RETURN(std::optional<Change> mine, store_.logged_change(type.name, theirs.v));
  if (mine && mine->key == theirs.key && mine->op == theirs.op && mine->ts == theirs.ts && mine->hts == theirs.hts &&
      mine->f == theirs.f) {
    return Status::ok();
  }
  return Status::data_loss(fmt::format(
      "standby: type '{}' version {}: this store holds {} but the stream holds key {} committed at hub time {}: "
      "another hub committed other changes at versions this hub committed while it was active and never saw "
      "acknowledged. {}",
      type.name, theirs.v,
      mine ? fmt::format("key {} committed at hub time {}", quoted_for_message(mine->key), mine->hts)
           : std::string("no change"),
      quoted_for_message(theirs.key), theirs.hts, kReseedAdvice));
}

}  // namespace ds
