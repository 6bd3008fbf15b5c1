// The key-value bucket wrapper (shared/key_value.h) and the hub's active
// lease (hub/hub_lease.h) against a real nats-server. Time is each lease's
// own FakeClock, moved by hand; the two candidates' clocks have different
// epochs, as two hosts' steady clocks do.

#include <memory>
#include <optional>
#include <regex>
#include <string>

#include <gtest/gtest.h>

#include "hub/hub_lease.h"
#include "shared/key_value.h"
#include "shared/nats.h"
#include "tests/harness/fake_env.h"
#include "tests/harness/nats_server.h"

namespace ds::testing {
namespace {

// A nats-server, a client and its JetStream context js_.
class JetStreamClientTest : public NatsTest {
 protected:
  void SetUp() override {
    NatsTest::SetUp();
    if (HasFatalFailure()) return;
    js_ = jetstream(*nc_);
    ASSERT_NE(js_, nullptr);
  }
  void TearDown() override {
    js_.reset();
    NatsTest::TearDown();
  }

  std::unique_ptr<JetStream> js_;
};

class KeyValueTest : public JetStreamClientTest {
 protected:
  void SetUp() override {
    JetStreamClientTest::SetUp();
    if (HasFatalFailure()) return;
    kv_ = open("KV_TEST");
    ASSERT_NE(kv_, nullptr);
  }
  void TearDown() override {
    kv_.reset();
    JetStreamClientTest::TearDown();
  }

  std::unique_ptr<KeyValue> open(const std::string& bucket, int replicas = 1) {
    KeyValueSpec spec;
    spec.bucket = bucket;
    spec.replicas = replicas;
    auto kv = KeyValue::open_or_create(*js_, spec);
    EXPECT_TRUE(kv.is_ok()) << kv.status().to_string();
    if (!kv.is_ok()) return nullptr;
    return std::move(kv).value();
  }

  std::unique_ptr<KeyValue> kv_;
};

TEST_F(KeyValueTest, CreateWritesAMissingKeyOnceAndGetReadsItBack) {
  auto missing = kv_->get("k");
  ASSERT_TRUE(missing.is_ok()) << missing.status().to_string();
  EXPECT_FALSE(missing->has_value());

  auto rev = kv_->create("k", "one");
  ASSERT_TRUE(rev.is_ok()) << rev.status().to_string();
  EXPECT_GT(*rev, 0u);
  auto got = kv_->get("k");
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "one");
  EXPECT_EQ((*got)->revision, *rev);

  auto again = kv_->create("k", "two");
  ASSERT_FALSE(again.is_ok());
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists) << again.status().to_string();
  EXPECT_TRUE(is_revision_conflict(again.status()));
  EXPECT_NE(again.status().message().find("KV_TEST"), std::string::npos) << again.status().message();
  EXPECT_NE(again.status().message().find("key k"), std::string::npos) << again.status().message();
  EXPECT_EQ((*kv_->get("k"))->value, "one");
}

TEST_F(KeyValueTest, UpdateSucceedsOnlyAtTheLatestRevision) {
  auto r1 = kv_->create("k", "one");
  ASSERT_TRUE(r1.is_ok()) << r1.status().to_string();
  auto r2 = kv_->update("k", "two", *r1);
  ASSERT_TRUE(r2.is_ok()) << r2.status().to_string();
  EXPECT_GT(*r2, *r1);

  auto stale = kv_->update("k", "three", *r1);
  ASSERT_FALSE(stale.is_ok());
  EXPECT_TRUE(is_revision_conflict(stale.status())) << stale.status().to_string();
  EXPECT_NE(stale.status().message().find("wrong last sequence"), std::string::npos) << stale.status().message();
  EXPECT_NE(stale.status().message().find("KV_TEST"), std::string::npos) << stale.status().message();

  auto got = kv_->get("k");
  ASSERT_TRUE(got.is_ok() && got->has_value());
  EXPECT_EQ((*got)->value, "two");
  EXPECT_EQ((*got)->revision, *r2);

  // A revision of another key is not this key's latest either.
  auto other = kv_->create("other", "x");
  ASSERT_TRUE(other.is_ok());
  EXPECT_TRUE(is_revision_conflict(kv_->update("k", "four", *other).status()));
  // Nor is any revision of a key never written.
  EXPECT_TRUE(is_revision_conflict(kv_->update("never", "x", *r2).status()));
}

TEST_F(KeyValueTest, AnEmptyValueIsAValueAndADeletedKeyIsMissing) {
  auto r1 = kv_->create("k", "one");
  ASSERT_TRUE(r1.is_ok());
  auto r2 = kv_->update("k", "", *r1);
  ASSERT_TRUE(r2.is_ok()) << r2.status().to_string();
  auto empty = kv_->get("k");
  ASSERT_TRUE(empty.is_ok() && empty->has_value());
  EXPECT_EQ((*empty)->value, "");
  EXPECT_EQ((*empty)->revision, *r2);

  ASSERT_TRUE(kv_->remove("k").is_ok());
  auto deleted = kv_->get("k");
  ASSERT_TRUE(deleted.is_ok()) << deleted.status().to_string();
  EXPECT_FALSE(deleted->has_value());
  // The delete marker is the latest revision: the old one no longer is.
  EXPECT_TRUE(is_revision_conflict(kv_->update("k", "two", *r2).status()));
  // A deleted key can be created again.
  auto r3 = kv_->create("k", "three");
  ASSERT_TRUE(r3.is_ok()) << r3.status().to_string();
  EXPECT_EQ((*kv_->get("k"))->value, "three");
}

TEST_F(KeyValueTest, OpenBindsToAnExistingBucketWhateverItsReplicas) {
  ASSERT_TRUE(kv_->create("k", "one").is_ok());
  // A lone server cannot place 3 replicas, yet the bucket exists: bound.
  auto bound = open("KV_TEST", 3);
  ASSERT_NE(bound, nullptr);
  auto got = bound->get("k");
  ASSERT_TRUE(got.is_ok() && got->has_value());
  EXPECT_EQ((*got)->value, "one");
  auto st = js_->stream_state("KV_KV_TEST");
  ASSERT_TRUE(st.is_ok()) << st.status().to_string();
  EXPECT_EQ(st->replicas, 1);

  // A new bucket with 3 replicas on a lone server: refused, and says which bucket.
  KeyValueSpec spec;
  spec.bucket = "KV_R3";
  spec.replicas = 3;
  auto r3 = KeyValue::open_or_create(*js_, spec);
  ASSERT_FALSE(r3.is_ok());
  EXPECT_NE(r3.status().message().find("KV_R3"), std::string::npos) << r3.status().to_string();
}

TEST_F(KeyValueTest, BadNamesAreInvalidArguments) {
  EXPECT_EQ(kv_->get("a b").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(kv_->create("", "x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(kv_->update("k", "x", 0).status().code(), StatusCode::kInvalidArgument);
  KeyValueSpec spec;
  spec.bucket = "bad.name";
  EXPECT_EQ(KeyValue::open_or_create(*js_, spec).status().code(), StatusCode::kInvalidArgument);
}

constexpr int64_t kLeaseMs = 3000;
constexpr int64_t kMarginMs = kLeaseMs / 10;

class HubLeaseTest : public JetStreamClientTest {
 protected:

  std::unique_ptr<HubLease> open(const std::string& name, const Clock& clock, JetStream* js = nullptr) {
    HubLeaseOptions opts;
    opts.hub_name = name;
    opts.lease_ms = kLeaseMs;
    auto lease = HubLease::open(js != nullptr ? *js : *js_, opts, clock);
    EXPECT_TRUE(lease.is_ok()) << lease.status().to_string();
    if (!lease.is_ok()) return nullptr;
    return std::move(lease).value();
  }

  // Both hosts' time moves on by `ms`.
  void advance(int64_t ms) {
    clock_a_.advance(ms);
    clock_b_.advance(ms);
  }

  bool acquire(HubLease& lease) {
    auto won = lease.try_acquire();
    EXPECT_TRUE(won.is_ok()) << won.status().to_string();
    return won.is_ok() && *won;
  }

  std::optional<std::string> holder_now(HubLease& lease) {
    auto h = lease.current_holder();
    EXPECT_TRUE(h.is_ok()) << h.status().to_string();
    return h.is_ok() ? *h : std::nullopt;
  }

  FakeClock clock_a_{5'000'000};
  FakeClock clock_b_{77'000};
};

TEST_F(HubLeaseTest, TheFirstCandidateAcquiresAndRenews) {
  auto a = open("hub-a", clock_a_);
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(std::regex_match(a->holder(), std::regex("hub-a/[0-9a-f]{8}"))) << a->holder();
  EXPECT_EQ(a->renew_period_ms(), kLeaseMs / 3);
  EXPECT_FALSE(a->valid_at(clock_a_.now_steady_ms()));
  EXPECT_EQ(holder_now(*a), std::nullopt);

  ASSERT_TRUE(acquire(*a));
  EXPECT_TRUE(a->holding());
  EXPECT_TRUE(a->valid_at(clock_a_.now_steady_ms()));
  EXPECT_EQ(holder_now(*a), a->holder());
  for (int i = 0; i < 5; ++i) {
    advance(a->renew_period_ms());
    Status renewed = a->renew();
    ASSERT_TRUE(renewed.is_ok()) << renewed.to_string();
    EXPECT_TRUE(a->valid_at(clock_a_.now_steady_ms()));
  }
  EXPECT_EQ(holder_now(*a), a->holder());
}

TEST_F(HubLeaseTest, OpenRefusesAShortLeaseAndAnEmptyName) {
  HubLeaseOptions opts;
  opts.hub_name = "hub-a";
  opts.lease_ms = kMinHubLeaseMs - 1;
  EXPECT_EQ(HubLease::open(*js_, opts, clock_a_).status().code(), StatusCode::kInvalidArgument);
  opts.lease_ms = kMinHubLeaseMs;
  opts.hub_name = "";
  EXPECT_EQ(HubLease::open(*js_, opts, clock_a_).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(HubLeaseTest, AStandbyDoesNotAcquireWhileTheHolderRenews) {
  auto a = open("hub-a", clock_a_);
  auto b = open("hub-b", clock_b_);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(acquire(*a));
  // Four leases' worth of time, renewed every period.
  for (int i = 0; i < 12; ++i) {
    advance(a->renew_period_ms());
    ASSERT_TRUE(a->renew().is_ok());
    EXPECT_FALSE(acquire(*b)) << "round " << i;
    EXPECT_FALSE(b->holding());
    EXPECT_FALSE(b->valid_at(clock_b_.now_steady_ms()));
  }
  EXPECT_TRUE(a->valid_at(clock_a_.now_steady_ms()));
  EXPECT_EQ(holder_now(*b), a->holder());
}

TEST_F(HubLeaseTest, AStandbyTakesOverOnlyAfterALeaseWithoutRenewalAndTheOldHolderIsLost) {
  auto a = open("hub-a", clock_a_);
  auto b = open("hub-b", clock_b_);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(acquire(*a));
  EXPECT_FALSE(acquire(*b));  // b starts watching the current revision
  advance(a->renew_period_ms());
  ASSERT_TRUE(a->renew().is_ok());
  const int64_t last_renew_a = clock_a_.now_steady_ms();
  EXPECT_FALSE(acquire(*b));  // a new revision: the watch starts over
  const int64_t watch_from_b = clock_b_.now_steady_ms();

  // a stops renewing (it hangs, or is cut off). b tries every 100 ms.
  int64_t took_over_b = -1;
  for (int i = 0; i < 100 && took_over_b < 0; ++i) {
    advance(100);
    if (acquire(*b)) {
      took_over_b = clock_b_.now_steady_ms();
      // The old holder had stopped believing it is active by then.
      EXPECT_FALSE(a->valid_at(clock_a_.now_steady_ms()));
    }
  }
  ASSERT_GE(took_over_b, 0) << "b never took over";
  // Exactly the first attempt more than a lease after b first saw the revision.
  EXPECT_EQ(took_over_b, watch_from_b + kLeaseMs + 100);
  EXPECT_TRUE(b->holding());
  EXPECT_TRUE(b->valid_at(clock_b_.now_steady_ms()));
  EXPECT_EQ(holder_now(*a), b->holder());

  // a's own view had ended lease - margin after its last renew was sent.
  EXPECT_TRUE(a->valid_at(last_renew_a + kLeaseMs - kMarginMs - 1));
  EXPECT_FALSE(a->valid_at(last_renew_a + kLeaseMs - kMarginMs));

  Status renewed = a->renew();
  EXPECT_TRUE(is_lease_lost(renewed)) << renewed.to_string();
  EXPECT_NE(renewed.message().find(b->holder()), std::string::npos) << renewed.message();
  EXPECT_FALSE(a->holding());
  EXPECT_FALSE(a->valid_at(clock_a_.now_steady_ms()));
  // Now a is the standby: it does not get the lease back while b renews.
  for (int i = 0; i < 6; ++i) {
    advance(b->renew_period_ms());
    ASSERT_TRUE(b->renew().is_ok());
    EXPECT_FALSE(acquire(*a));
  }
}

TEST_F(HubLeaseTest, ValidityCountsFromTheLastSuccessfulWriteMinusTheMargin) {
  auto a = open("hub-a", clock_a_);
  ASSERT_NE(a, nullptr);
  const int64_t t0 = clock_a_.now_steady_ms();
  ASSERT_TRUE(acquire(*a));
  EXPECT_TRUE(a->valid_at(t0));
  EXPECT_TRUE(a->valid_at(t0 + kLeaseMs - kMarginMs - 1));
  EXPECT_FALSE(a->valid_at(t0 + kLeaseMs - kMarginMs));

  clock_a_.advance(1000);
  ASSERT_TRUE(a->renew().is_ok());
  EXPECT_TRUE(a->valid_at(t0 + 1000 + kLeaseMs - kMarginMs - 1));
  EXPECT_FALSE(a->valid_at(t0 + 1000 + kLeaseMs - kMarginMs));
}

TEST_F(HubLeaseTest, AFailedRenewKeepsTheHolderButNotItsValidity) {
  // A context with a short timeout, so that the broker's absence shows fast.
  auto js = nc_->jetstream(500);
  ASSERT_TRUE(js.is_ok()) << js.status().to_string();
  auto a = open("hub-a", clock_a_, js->get());
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(acquire(*a));
  const int64_t t0 = clock_a_.now_steady_ms();

  ASSERT_TRUE(server_->stop().is_ok());
  clock_a_.advance(1000);
  Status failed = a->renew();
  ASSERT_FALSE(failed.is_ok());
  EXPECT_TRUE(failed.is_transient()) << failed.to_string();
  EXPECT_FALSE(is_lease_lost(failed));
  EXPECT_TRUE(a->holding());
  EXPECT_FALSE(a->valid_at(t0 + kLeaseMs - kMarginMs));  // still counted from t0

  ASSERT_TRUE(server_->start().is_ok());
  clock_a_.advance(1000);
  // Retried each period until the broker is back (the store survives a restart).
  ASSERT_TRUE(wait_until([&] { return a->renew().is_ok(); }, 20000, 100));
  const int64_t t1 = clock_a_.now_steady_ms();
  EXPECT_TRUE(a->valid_at(t1 + kLeaseMs - kMarginMs - 1));
  EXPECT_EQ(holder_now(*a), a->holder());
}

TEST_F(HubLeaseTest, ARenewWhoseAnswerWasLostIsNotALoss) {
  auto a = open("hub-a", clock_a_);
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(acquire(*a));
  // The key now names a at a revision a does not know: what a timed-out
  // renew that did land leaves behind.
  KeyValueSpec spec;
  spec.bucket = kHubLeaseBucket;
  auto kv = KeyValue::open_or_create(*js_, spec);
  ASSERT_TRUE(kv.is_ok());
  auto entry = (*kv)->get(kHubLeaseKey);
  ASSERT_TRUE(entry.is_ok() && entry->has_value());
  ASSERT_TRUE((*kv)->update(kHubLeaseKey, a->holder(), (*entry)->revision).is_ok());

  clock_a_.advance(1000);
  Status renewed = a->renew();
  ASSERT_TRUE(renewed.is_ok()) << renewed.to_string();
  EXPECT_TRUE(a->holding());
  EXPECT_TRUE(a->valid_at(clock_a_.now_steady_ms() + kLeaseMs - kMarginMs - 1));
  clock_a_.advance(1000);
  EXPECT_TRUE(a->renew().is_ok());
}

TEST_F(HubLeaseTest, AReleasedLeaseIsTakenAtOnce) {
  auto a = open("hub-a", clock_a_);
  auto b = open("hub-b", clock_b_);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(acquire(*a));
  EXPECT_FALSE(acquire(*b));
  Status released = a->release();
  ASSERT_TRUE(released.is_ok()) << released.to_string();
  EXPECT_FALSE(a->holding());
  EXPECT_FALSE(a->valid_at(clock_a_.now_steady_ms()));
  EXPECT_EQ(holder_now(*b), std::nullopt);
  // No time passes: the empty value is free.
  EXPECT_TRUE(acquire(*b));
  EXPECT_EQ(holder_now(*a), b->holder());
  EXPECT_TRUE(is_lease_lost(a->renew()));
}

TEST_F(HubLeaseTest, ARestartedHubWithTheSameNameIsANewHolder) {
  auto before = open("hub-a", clock_a_);
  ASSERT_NE(before, nullptr);
  ASSERT_TRUE(acquire(*before));
  // The same hub started again (on the same host) while its former self
  // still holds the lease, e.g. hung rather than dead.
  auto after = open("hub-a", clock_a_);
  ASSERT_NE(after, nullptr);
  EXPECT_NE(after->holder(), before->holder());
  EXPECT_EQ(after->holder().rfind("hub-a/", 0), 0u) << after->holder();
  EXPECT_FALSE(acquire(*after));
  clock_a_.advance(kLeaseMs);
  EXPECT_FALSE(acquire(*after));
  clock_a_.advance(1);
  EXPECT_TRUE(acquire(*after));
  EXPECT_TRUE(is_lease_lost(before->renew()));
  EXPECT_EQ(holder_now(*after), after->holder());
}

}  // namespace
}  // namespace ds::testing
