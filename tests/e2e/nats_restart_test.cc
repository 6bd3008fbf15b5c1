// Scenario 4: nats-server is restarted on the same port with its JetStream
// store while a producer ingests: a real outage, a quick bounce and a crash.
// The hub, the agents and the producer
// reconnect by themselves (nobody else is restarted); nothing acknowledged
// is lost and the agents converge.
#include <gtest/gtest.h>

#include "tests/e2e/under_load.h"

namespace ds::testing {
namespace {

class NatsRestart : public UnderLoadTest {};

TEST_F(NatsRestart, BrokerBouncedUnderLoadEveryoneReconnectsAndConverges) {
  // A real outage: down until the producer has seen it, then back.
  ASSERT_TRUE(fleet_.nats().stop().is_ok());
  ASSERT_TRUE(producer_->wait_failed(producer_->failed_attempts() + 1)) << fleet_.logs();
  Status back = fleet_.nats().start();
  ASSERT_TRUE(back.is_ok()) << back.to_string();
  ASSERT_NO_FATAL_FAILURE(keep_loading(50));
  Status live = fleet_.wait_all_live();
  ASSERT_TRUE(live.is_ok()) << live.to_string();

  // A quick graceful bounce, then a crash (SIGKILL) and start.
  Status bounced = fleet_.nats().restart();
  ASSERT_TRUE(bounced.is_ok()) << bounced.to_string();
  ASSERT_NO_FATAL_FAILURE(keep_loading(50));
  fleet_.nats().kill();
  bounced = fleet_.nats().start();
  ASSERT_TRUE(bounced.is_ok()) << bounced.to_string();
  ASSERT_NO_FATAL_FAILURE(keep_loading(50));
  live = fleet_.wait_all_live();
  ASSERT_TRUE(live.is_ok()) << live.to_string();
  ASSERT_NO_FATAL_FAILURE(finish());
}

}  // namespace
}  // namespace ds::testing
