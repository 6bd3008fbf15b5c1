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

class UnderLoadTest : public ::testing::Test {
 protected:
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
