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
  // The broker takes no message over its max_payload (cnats refuses it
  // with a bare "Maximum Payload Exceeded"): say what the limit is and what to do.
  if (const int64_t max_payload = nc_.max_payload();
      max_payload > 0 && body.size() > static_cast<size_t>(max_payload)) {
    const std::string what =
        request.records.size() == 1
            ? "its one record is too large for any message: make the record smaller, or raise max_payload in the "
              "nats-server configuration"
            : "push fewer records per batch (--batch), or raise max_payload in the nats-server configuration";
    return Status::invalid_argument("batch " + std::to_string(seq_) + " is " + std::to_string(body.size()) +
                                    " bytes, over the broker's max_payload of " + std::to_string(max_payload) +
                                    " bytes for one message; nothing of it was sent: " + what);
  }

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
    if (!last.is_transient() || attempt == options_.attempts) break;
    spdlog::warn("batch {}: {}; retrying in {} ms", seq_, last.to_string(), backoff_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 5000);
  }
  return last.with_context("batch " + std::to_string(seq_) + " (" + subject + ")");
}

}  // namespace ds
