#include "shared/clock.h"

#include <chrono>

namespace ds {
namespace {

class RealClock final : public Clock {
 public:
  int64_t now_steady_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  int64_t now_system_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

Clock& real_clock() {
  static RealClock clock;  // no state: reads the system's clocks
  return clock;
}

}  // namespace ds
