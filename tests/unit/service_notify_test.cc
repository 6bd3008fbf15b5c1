#include "shared/service_notify.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

TEST(ServiceNotifyMessage, StateAndStatusAreOneAssignmentPerLine) {
  EXPECT_EQ(service_notify_message("READY=1", "hub 'h' ready"), "READY=1\nSTATUS=hub 'h' ready");
  EXPECT_EQ(service_notify_message("", "waiting for NATS"), "STATUS=waiting for NATS");
  EXPECT_EQ(service_notify_message("STOPPING=1", ""), "STOPPING=1");
  EXPECT_EQ(service_notify_message("", ""), "");
}

TEST(ServiceNotifyMessage, StatusTextCannotAddAnAssignmentOfItsOwn) {
  // e.g. a broker's error text carried into the status line.
  EXPECT_EQ(service_notify_message("", "refused\nREADY=1\r\x7f"), "STATUS=refused READY=1  ");
}

}  // namespace
}  // namespace ds
