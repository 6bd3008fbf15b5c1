#pragma once
// UnderLoadTest: the fixture of the fault scenarios. SetUp starts a Fleet
// and a LoadProducer and lets some batches be acknowledged, so the fault a
// test injects happens while updates flow; finish() stops the load and checks
// the end every scenario shares: `deltasync verify` passes for every agent
// and type, and the hub holds exactly what was acknowledged.

#include <cstdint>
#include <memory>

#include <gtest/gtest.h>

#include "tests/e2e/fleet.h"
#include "tests/e2e/workload.h"

namespace ds::testing {

// Starts a LoadProducer ("erp") against the fleet's nats-server and waits
// until `warmup` batches are acknowledged. Call with ASSERT_NO_FATAL_FAILURE.
void start_load(Fleet& fleet, std::unique_ptr<LoadProducer>& producer, uint64_t warmup);
// Waits until `batches` more batches are acknowledged; fails the test with
// the producer's status and the fleet's logs when they are not.
void keep_loading(Fleet& fleet, LoadProducer& producer, uint64_t batches);

class UnderLoadTest : public ::testing::Test {
 protected:
  UnderLoadTest() = default;
  // A fleet other than the default one (e.g. on a NATS cluster).
  UnderLoadTest(std::vector<AgentSpec> agents, FleetOptions options) : fleet_(std::move(agents), std::move(options)) {}

  void SetUp() override;
  void TearDown() override;

  // Waits until `batches` more batches are acknowledged (the system takes
  // load again, or keeps taking it).
  void keep_loading(uint64_t batches);
  // Stops the producer, then checks convergence and that nothing
  // acknowledged is lost. Call with ASSERT_NO_FATAL_FAILURE.
  void finish();

  Fleet fleet_;
  std::unique_ptr<LoadProducer> producer_;
};

}  // namespace ds::testing
