#include "shared/messaging.h"

#include <utility>

namespace ds {
namespace {

class NatsSubscription final : public MessagingSubscription {
 public:
  explicit NatsSubscription(std::unique_ptr<Subscription> sub) : sub_(std::move(sub)) {}

 private:
  std::unique_ptr<Subscription> sub_;  // its destructor unsubscribes and waits for the handler
};

}  // namespace

Status NatsMessaging::publish(std::string_view subject, std::string_view data) { return nc_.publish(subject, data); }

Result<std::string> NatsMessaging::request(std::string_view subject, std::string_view data, int64_t timeout_ms) {
  DS_ASSIGN_OR_RETURN(Message reply, nc_.request(subject, data, timeout_ms));
  return std::string(reply.data());
}

Result<std::unique_ptr<MessagingSubscription>> NatsMessaging::subscribe(std::string_view subject,
                                                                        EnvelopeHandler handler) {
  DS_ASSIGN_OR_RETURN(auto sub, nc_.subscribe(subject, [handler = std::move(handler)](Message msg) {
    handler(Envelope{std::string(msg.subject()), std::string(msg.reply()), std::string(msg.data())});
  }));
  return std::unique_ptr<MessagingSubscription>(std::make_unique<NatsSubscription>(std::move(sub)));
}

Status NatsMessaging::flush(int64_t timeout_ms) { return nc_.flush(timeout_ms); }

bool NatsMessaging::connected() const { return nc_.connected(); }

Status NatsConsumerControl::add_consumer(std::string_view stream, const ConsumerSpec& spec) {
  return js_.add_consumer(stream, spec);
}

Status NatsConsumerControl::delete_consumer(std::string_view stream, std::string_view name) {
  return js_.delete_consumer(stream, name);
}

Result<std::optional<ConsumerInfo>> NatsConsumerControl::consumer_info(std::string_view stream,
                                                                       std::string_view name, int64_t timeout_ms) {
  return js_.consumer_info(stream, name, timeout_ms);
}

}  // namespace ds
