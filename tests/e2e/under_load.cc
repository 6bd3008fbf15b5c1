#include "tests/e2e/under_load.h"

#include <cstdio>

namespace ds::testing {
namespace {

// Batches acknowledged before a test injects its fault.
constexpr uint64_t kWarmupBatches = 30;

}  // namespace

void UnderLoadTest::SetUp() {
  Status started = fleet_.start();
  ASSERT_TRUE(started.is_ok()) << started.to_string();
  producer_ = std::make_unique<LoadProducer>(fleet_.nats().url(), "erp");
  Status producing = producer_->start();
  ASSERT_TRUE(producing.is_ok()) << producing.to_string();
  keep_loading(kWarmupBatches);
}

void UnderLoadTest::TearDown() { producer_.reset(); }

void UnderLoadTest::keep_loading(uint64_t batches) {
  const uint64_t target = producer_->acked_batches() + batches;
  if (producer_->wait_acked(target)) return;
  Status producer = producer_->stop();
  FAIL() << producer_->acked_batches() << " of " << target << " batches acknowledged; producer: "
         << producer.to_string() << fleet_.logs();
}

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
