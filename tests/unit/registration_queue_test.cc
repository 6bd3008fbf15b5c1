// RegistrationQueue's rule (hub/registration_queue.h): a batch is the
// queue's head in arrival order, at most one registration per agent.

#include "hub/registration_queue.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ds {
namespace {

QueuedRegistration from(const std::string& agent, const std::string& inbox) {
  return {Envelope{"ds.hub.register." + agent, inbox, ""}, 0};
}

std::vector<std::string> inboxes(const std::vector<QueuedRegistration>& batch) {
  std::vector<std::string> out;
  for (const QueuedRegistration& r : batch) out.push_back(r.msg.reply);
  return out;
}

TEST(RegistrationQueueTest, ABatchIsTheHeadInArrivalOrderUpToItsSize) {
  RegistrationQueue queue;
  for (const char* agent : {"a1", "a2", "a3", "a4"}) queue.push(from(agent, std::string("in-") + agent));
  EXPECT_EQ(inboxes(queue.take(3)), (std::vector<std::string>{"in-a1", "in-a2", "in-a3"}));
  EXPECT_EQ(inboxes(queue.take(3)), (std::vector<std::string>{"in-a4"}));
  EXPECT_TRUE(queue.take(3).empty());
}

TEST(RegistrationQueueTest, AnAgentsSecondRegistrationWaitsInItsPlaceForTheNextBatch) {
  RegistrationQueue queue;
  queue.push(from("a1", "first"));
  queue.push(from("a2", "a2"));
  queue.push(from("a1", "second"));
  queue.push(from("a3", "a3"));
  queue.push(from("a1", "third"));
  EXPECT_EQ(inboxes(queue.take(8)), (std::vector<std::string>{"first", "a2", "a3"}));
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(inboxes(queue.take(8)), (std::vector<std::string>{"second"}));
  EXPECT_EQ(inboxes(queue.take(8)), (std::vector<std::string>{"third"}));
  EXPECT_EQ(queue.size(), 0u);
}

TEST(RegistrationQueueTest, AFullBatchLeavesLaterAgentsQueued) {
  RegistrationQueue queue;
  queue.push(from("a1", "a1"));
  queue.push(from("a1", "a1-again"));
  queue.push(from("a2", "a2"));
  queue.push(from("a3", "a3"));
  EXPECT_EQ(inboxes(queue.take(2)), (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(inboxes(queue.take(2)), (std::vector<std::string>{"a1-again", "a3"}));
}

}  // namespace
}  // namespace ds
