// read_stream_changes (hub/stream_changes.h) over the in-memory broker: the
// messages of a range come back in stream order although several are read
// at once, a message gone is skipped, and a failed read stops the read
// with the sequence it happened at.
#include "hub/stream_changes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "shared/codec.h"
#include "shared/names.h"
#include "tests/harness/fake_env.h"

namespace ds {
namespace {

using ds::testing::FakeStreamAccess;

// The broker's messages, but `gone` are NotFound and `failing` is
// unavailable; each read takes a millisecond, so reads overlap when several
// threads make them, and the most at once is counted.
class SlowReader final : public StreamReader {
 public:
  explicit SlowReader(FakeStreamAccess& broker) : broker_(broker) {}
  Result<StreamState> stream_state(std::string_view stream) override { return broker_.stream_state(stream); }
  Result<StoredMessage> get_message(std::string_view stream, uint64_t seq) override {
    const int now = ++in_flight_;
    int seen = most_in_flight_.load();
    while (now > seen && !most_in_flight_.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    --in_flight_;
    ++reads_;
    if (gone.contains(seq)) return Status::not_found("message " + std::to_string(seq) + " deleted");
    if (seq == failing) return Status::unavailable("the broker did not answer");
    return broker_.get_message(stream, seq);
  }

  std::set<uint64_t> gone;
  uint64_t failing = 0;
  int most_in_flight() const { return most_in_flight_.load(); }
  int reads() const { return reads_.load(); }

 private:
  FakeStreamAccess& broker_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> most_in_flight_{0};
  std::atomic<int> reads_{0};
};

class StreamChangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    type_.name = "prices";
    type_.schema.key = "sku";
    type_.schema.columns = {{"price", ColumnType::kReal}};
    // Versions 1..200, one message each (seq == version).
    for (uint64_t v = 1; v <= 200; ++v) {
      DeltaBatch b{"prices", {Change{v, "k" + std::to_string(v), Op::kUpsert, {{"price", 1.5}}, 0, 0}}};
      broker_.append(stream_name("prices"), StoredMessage{0, "ds.delta.prices._", encode(b), msg_id("prices", v)});
    }
  }

  TypeConfig type_;
  FakeStreamAccess broker_;
  SlowReader reader_{broker_};
};

TEST_F(StreamChangesTest, ARangeComesBackInStreamOrderThoughSeveralReadsAreInFlight) {
  reader_.gone = {70, 130};
  auto read = read_stream_changes(reader_, type_, 1, 200, 0);
  ASSERT_TRUE(read.is_ok()) << read.status().to_string();
  ASSERT_EQ(read->messages.size(), 198u);
  EXPECT_TRUE(std::is_sorted(read->messages.begin(), read->messages.end(),
                             [](const auto& a, const auto& b) { return a.seq < b.seq; }));
  EXPECT_EQ(read->changes.size(), 198u);
  EXPECT_FALSE(read->changes.contains(70)) << "a message gone is skipped";
  EXPECT_EQ(read->changes.at(71).change.key, "k71");
  EXPECT_GT(reader_.most_in_flight(), 1);
  EXPECT_LE(reader_.most_in_flight(), static_cast<int>(kGetsInFlight));
}

TEST_F(StreamChangesTest, AFailedReadStopsTheReadAndNamesItsSequence) {
  reader_.failing = 90;
  auto read = read_stream_changes(reader_, type_, 1, 200, 0);
  ASSERT_FALSE(read.is_ok());
  EXPECT_EQ(read.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(read.status().message().find("read DS_PRICES message 90"), std::string::npos) << read.status().message();
  // The window holding seq 90 (65..128) is the last one read, and its
  // readers stop at the failure.
  EXPECT_LE(reader_.reads(), 128);
}

}  // namespace
}  // namespace ds
