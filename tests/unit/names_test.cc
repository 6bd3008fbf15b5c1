#include "shared/names.h"

#include <gtest/gtest.h>

#include <string>

namespace ds {
namespace {

TEST(NamesTest, ValidTypeNamesAreAccepted) {
  for (const char* name : {"prices", "a", "inventory_2", "x_y_z", "abc123"}) {
    EXPECT_TRUE(validate_type_name(name).is_ok()) << name;
  }
  EXPECT_TRUE(validate_type_name(std::string(64, 'a')).is_ok());
}

TEST(NamesTest, InvalidTypeNamesAreRejectedWithTheRule) {
  for (const char* name : {"", "Prices", "1prices", "_prices", "pri-ces", "pri ces", "pri.ces", "pri*"}) {
    Status s = validate_type_name(name);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << name;
    EXPECT_NE(s.message().find("a-z 0-9 _"), std::string::npos) << s.message();
  }
  EXPECT_FALSE(validate_type_name(std::string(65, 'a')).is_ok());
  EXPECT_EQ(validate_type_name("Bad Name").message(),
            "invalid business type name 'Bad Name': use 1-64 characters from a-z 0-9 _, starting with a letter a-z");
}

TEST(NamesTest, AgentIdsFollowTheTokenRule) {
  for (const char* id : {"store-17", "A", "pos_3", "ABC-def_123"}) {
    EXPECT_TRUE(validate_agent_id(id).is_ok()) << id;
  }
  EXPECT_TRUE(validate_agent_id(std::string(64, 'Z')).is_ok());
  for (const char* id : {"", "a b", "a.b", "a*", "a>", "storé"}) {
    EXPECT_EQ(validate_agent_id(id).code(), StatusCode::kInvalidArgument) << id;
  }
  EXPECT_FALSE(validate_agent_id(std::string(65, 'a')).is_ok());
  EXPECT_EQ(validate_agent_id("a b").message(), "invalid agent id 'a b': use 1-64 characters from A-Z a-z 0-9 _ -");
}

TEST(NamesTest, ControlCharactersInRejectedNamesAreEscaped) {
  Status s = validate_agent_id(std::string("a\nb\x01", 4));
  EXPECT_NE(s.message().find("'a\\x0ab\\x01'"), std::string::npos) << s.message();
}

TEST(NamesTest, PartitionsAreSubjectTokensAndAllIsReserved) {
  EXPECT_TRUE(validate_partition("store-17").is_ok());
  EXPECT_TRUE(validate_partition("EU_west").is_ok());
  EXPECT_FALSE(validate_partition("").is_ok());
  EXPECT_FALSE(validate_partition("a.b").is_ok());
  EXPECT_FALSE(validate_partition("*").is_ok());
  EXPECT_FALSE(validate_partition(std::string(65, 'p')).is_ok());
  Status reserved = validate_partition(kAllPartitions);
  EXPECT_EQ(reserved.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(reserved.message().find("reserved"), std::string::npos);
}

TEST(NamesTest, SubjectPrefixIsDotSeparatedTokens) {
  for (const char* p : {"ds", "acme.ds", "a-b.c_d.E1"}) {
    EXPECT_TRUE(validate_subject_prefix(p).is_ok()) << p;
  }
  for (const char* p : {"", ".", "ds.", ".ds", "a..b", "d s", "ds.*", "ds.>"}) {
    EXPECT_EQ(validate_subject_prefix(p).code(), StatusCode::kInvalidArgument) << p;
  }
}

TEST(NamesTest, SubjectsFollowTheDesign) {
  Subjects s;
  EXPECT_EQ(s.prefix(), "ds");
  EXPECT_EQ(s.ingest("prices", "erp"), "ds.ingest.prices.erp");
  EXPECT_EQ(s.ingest_wildcard(), "ds.ingest.*.*");
  EXPECT_EQ(s.register_agent("store-1"), "ds.hub.register.store-1");
  EXPECT_EQ(s.register_wildcard(), "ds.hub.register.*");
  EXPECT_EQ(s.snapshot("store-1"), "ds.hub.snapshot.store-1");
  EXPECT_EQ(s.snapshot_wildcard(), "ds.hub.snapshot.*");
  EXPECT_EQ(s.heartbeat("prices"), "ds.hb.prices");
  EXPECT_EQ(s.probe("store-1"), "ds.agent.store-1.hb");
  EXPECT_EQ(s.hub_beat("store-1"), "ds.hub.beat.store-1");
  EXPECT_EQ(s.hub_beat_wildcard(), "ds.hub.beat.*");
  EXPECT_EQ(s.delta("prices", "_all"), "ds.delta.prices._all");
  EXPECT_EQ(s.delta("inventory", "store-17"), "ds.delta.inventory.store-17");
  EXPECT_EQ(s.delta_filter("prices"), "ds.delta.prices.>");
  EXPECT_EQ(s.push("store-1", "prices"), "ds.push.store-1.prices");
}

TEST(NamesTest, SubjectsUseTheConfiguredPrefix) {
  Subjects s("acme.sync");
  EXPECT_EQ(s.ingest("prices", "erp"), "acme.sync.ingest.prices.erp");
  auto parsed = s.parse_ingest("acme.sync.ingest.prices.erp");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->type, "prices");
  EXPECT_EQ(parsed->producer, "erp");
  EXPECT_FALSE(s.parse_ingest("acme.sync.ingest.prices").has_value());
  EXPECT_FALSE(s.parse_ingest("acme.sync.ingest.prices.erp.x").has_value());
  EXPECT_FALSE(s.parse_ingest("ds.ingest.prices.erp").has_value());
  EXPECT_EQ(s.probe("a1"), "acme.sync.agent.a1.hb");
  EXPECT_EQ(s.delta_filter("prices"), "acme.sync.delta.prices.>");
}

TEST(NamesTest, LastTokenOfASubject) {
  EXPECT_EQ(Subjects::last_token("ds.hub.register.store-1"), "store-1");
  EXPECT_EQ(Subjects::last_token("single"), "single");
  EXPECT_EQ(Subjects::last_token("ends.with."), "");
}

TEST(NamesTest, StreamConsumerInboxAndMsgIdNames) {
  EXPECT_EQ(stream_name("prices"), "DS_PRICES");
  EXPECT_EQ(stream_name("order_lines2"), "DS_ORDER_LINES2");
  EXPECT_EQ(consumer_name("store-17"), "ag_store-17");
  EXPECT_EQ(inbox_prefix("store-17"), "_INBOX_store-17");
  EXPECT_EQ(msg_id("prices", 1234), "prices:1234");
  EXPECT_EQ(msg_id("prices", UINT64_MAX), "prices:18446744073709551615");
}

}  // namespace
}  // namespace ds
