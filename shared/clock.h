#pragma once
// Clock: the two clocks deltasync's services read, as an interface, so a
// service takes time in instead of reading it (leveldb's Env::NowMicros).
// Production passes real_clock(); tests pass a clock they move by hand
// (tests/harness/fake_env.h), so nothing has to sleep to let time pass.
//
//   now_steady_ms  monotonic milliseconds (an arbitrary epoch): durations,
//                  silences, rate limits; never jumps.
//   now_system_ms  wall-clock milliseconds since the Unix epoch: what is
//                  stored or shown to people; may jump (NTP, operator).
//
// Implementations are thread-safe (services read them from cnats threads,
// their own thread and the HTTP thread).

#include <cstdint>

namespace ds {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t now_steady_ms() const = 0;
  virtual int64_t now_system_ms() const = 0;
};

// std::chrono::steady_clock and system_clock. Stateless; lives for the
// whole program.
Clock& real_clock();

}  // namespace ds
