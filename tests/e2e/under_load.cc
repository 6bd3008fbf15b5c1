#include "tests/e2e/under_load.h"

#include <cstdio>

namespace ds::testing {
namespace {

// Batches acknowledged before a test injects its fault.
constexpr uint64_t kWarmupBatches = 30;

}  // namespace

void start_load(Fleet& fleet, std::unique_ptr<LoadProducer>& producer, uint64_t warmup) {
  producer = std::make_unique<LoadProducer>(fleet.nats_url(), "erp");
  Status producing = producer->start();
  ASSERT_TRUE(producing.is_ok()) << producing.to_string();
  keep_loading(fleet, *producer, warmup);
}

void keep_loading(Fleet& fleet, LoadProducer& producer, uint64_t batches) {
  const uint64_t target = producer.acked_batches() + batches;
  if (producer.wait_acked(target)) return;
  Status stopped = producer.stop();
  FAIL() << producer.acked_batches() << " of " << target << " batches acknowledged; producer: "
         << stopped.to_string() << fleet.logs();
}

void UnderLoadTest::SetUp() {
  Status started = fleet_.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  start_load(fleet_, producer_, kWarmupBatches);
}

void UnderLoadTest::TearDown() { producer_.reset(); }

void UnderLoadTest::keep_loading(uint64_t batches) { ds::testing::keep_loading(fleet_, *producer_, batches); }

void UnderLoadTest::finish() {
  Status produced = producer_->stop();
  ASSERT_TRUE(produced.is_ok()) << produced.to_string() << fleet_.logs();
  std::printf("[ info ] %llu batches acknowledged, %llu attempts unanswered\n",
              static_cast<unsigned long long>(producer_->acked_batches()),
              static_cast<unsigned long long>(producer_->failed_attempts()));
  ASSERT_TRUE(fleet_.converged());
  EXPECT_TRUE(hub_holds_exactly(fleet_, producer_->acked()));
}

}  // namespace ds::testing
