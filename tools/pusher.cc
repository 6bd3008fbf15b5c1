#include "tools/pusher.h"

#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>

#include "shared/codec.h"

namespace ds {

Pusher::Pusher(Connection& nc, Subjects subjects, std::string type, PushOptions options)
    : nc_(nc), subjects_(std::move(subjects)), type_(std::move(type)), options_(std::move(options)),
      seq_(options_.first_seq) {}

Result<IngestReply> Pusher::push(std::vector<IngestRecord> records) {
  IngestRequest request;
  request.seq = seq_;
  request.records = std::move(records);
  const std::string body = encode(request);
  const std::string subject = subjects_.ingest(type_, options_.producer);

  Status last;
  int64_t backoff_ms = 200;
  for (int attempt = 1; attempt <= options_.attempts; ++attempt) {
    auto answer = nc_.request(subject, body, options_.timeout_ms);
    if (answer) {
      auto reply = decode_ingest_reply(answer->data());
      if (!reply) return reply.status().with_context("hub's answer to batch " + std::to_string(seq_));
      if (reply->ok()) {
        ++seq_;
        return reply;
      }
      last = reply->error->to_status();
    } else {
      last = answer.status();
    }
    bool transient = last.code() == StatusCode::kUnavailable || last.code() == StatusCode::kDeadlineExceeded;
    if (!transient || attempt == options_.attempts) break;
    spdlog::warn("batch {}: {}; retrying in {} ms", seq_, last.to_string(), backoff_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 5000);
  }
  return last.with_context("batch " + std::to_string(seq_) + " (" + subject + ")");
}

}  // namespace ds
