#include "shared/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace ds {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.is_ok());
  EXPECT_TRUE(static_cast<bool>(s));
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.to_string(), "ok");
}

TEST(StatusTest, FactoriesSetCodeAndMessage) {
  EXPECT_EQ(Status::invalid_argument("m").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Status::not_found("m").code(), StatusCode::kNotFound);
  EXPECT_EQ(Status::already_exists("m").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Status::unavailable("m").code(), StatusCode::kUnavailable);
  EXPECT_EQ(Status::deadline_exceeded("m").code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Status::data_loss("m").code(), StatusCode::kDataLoss);
  EXPECT_EQ(Status::permission_denied("m").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Status::internal("m").code(), StatusCode::kInternal);
  Status s = Status::not_found("no such type 'x'");
  EXPECT_FALSE(s.is_ok());
  EXPECT_FALSE(static_cast<bool>(s));
  EXPECT_EQ(s.message(), "no such type 'x'");
}

TEST(StatusTest, ToStringPrefixesTheCodeName) {
  EXPECT_EQ(Status::invalid_argument("bad op").to_string(), "invalid_argument: bad op");
  EXPECT_EQ(Status::permission_denied("nope").to_string(), "permission_denied: nope");
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsCode) {
  Status s = Status::unavailable("broker down").with_context("publish ds.delta.prices._all");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "publish ds.delta.prices._all: broker down");
  EXPECT_EQ(s.with_context("ingest").message(), "ingest: publish ds.delta.prices._all: broker down");
}

TEST(StatusTest, WithContextOnOkStaysOk) {
  Status s = Status::ok().with_context("anything");
  EXPECT_TRUE(s.is_ok());
  EXPECT_EQ(s.message(), "");
}

TEST(StatusTest, CodeNamesRoundTrip) {
  for (StatusCode c : {StatusCode::kOk, StatusCode::kInvalidArgument, StatusCode::kNotFound,
                       StatusCode::kAlreadyExists, StatusCode::kUnavailable, StatusCode::kDeadlineExceeded,
                       StatusCode::kDataLoss, StatusCode::kPermissionDenied, StatusCode::kInternal}) {
    EXPECT_EQ(status_code_from_name(status_code_name(c)), c) << status_code_name(c);
  }
  EXPECT_EQ(status_code_name(StatusCode::kInvalidArgument), "invalid_argument");
  EXPECT_EQ(status_code_name(StatusCode::kDeadlineExceeded), "deadline_exceeded");
}

TEST(StatusTest, UnknownCodeNameMapsToInternal) {
  EXPECT_EQ(status_code_from_name("no_such_code"), StatusCode::kInternal);
  EXPECT_EQ(status_code_from_name(""), StatusCode::kInternal);
}

TEST(ResultTest, HoldsValue) {
  Result<std::string> r = std::string("value");
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(r.value(), "value");
  EXPECT_EQ(*r, "value");
  EXPECT_TRUE(r.status().is_ok());
}

TEST(ResultTest, HoldsError) {
  Result<int> r = Status::not_found("missing");
  EXPECT_FALSE(r.is_ok());
  EXPECT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "missing");
}

TEST(ResultTest, ArrowAndMoveOutOfValue) {
  Result<std::string> r = std::string("hello");
  EXPECT_EQ(r->size(), 5u);
  std::string moved = std::move(r).value();
  EXPECT_EQ(moved, "hello");

  Result<std::unique_ptr<int>> p = std::make_unique<int>(7);
  std::unique_ptr<int> owned = std::move(p).value();
  ASSERT_NE(owned, nullptr);
  EXPECT_EQ(*owned, 7);
}

Status fail_if_negative(int x) {
  if (x < 0) return Status::invalid_argument("negative: " + std::to_string(x));
  return Status::ok();
}

Result<int> half_of_even(int x) {
  if (x % 2 != 0) return Status::invalid_argument("odd: " + std::to_string(x));
  return x / 2;
}

Status check_then_continue(int x, bool& reached_end) {
  reached_end = false;
  DS_RETURN_IF_ERROR(fail_if_negative(x));
  reached_end = true;
  return Status::ok();
}

Result<int> quarter(int x) {
  DS_ASSIGN_OR_RETURN(int half, half_of_even(x));
  DS_ASSIGN_OR_RETURN(int q, half_of_even(half));
  return q;
}

TEST(StatusMacrosTest, ReturnIfErrorPropagatesAndStops) {
  bool reached_end = true;
  Status s = check_then_continue(-3, reached_end);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "negative: -3");
  EXPECT_FALSE(reached_end);
}

TEST(StatusMacrosTest, ReturnIfErrorContinuesOnOk) {
  bool reached_end = false;
  EXPECT_TRUE(check_then_continue(3, reached_end).is_ok());
  EXPECT_TRUE(reached_end);
}

TEST(StatusMacrosTest, AssignOrReturnAssignsOrPropagates) {
  Result<int> ok = quarter(12);
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(*ok, 3);

  Result<int> first_fails = quarter(7);
  EXPECT_EQ(first_fails.status().message(), "odd: 7");
  Result<int> second_fails = quarter(6);
  EXPECT_EQ(second_fails.status().message(), "odd: 3");
}

}  // namespace
}  // namespace ds
