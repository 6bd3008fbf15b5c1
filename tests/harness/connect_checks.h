#pragma once
// Checks shared by the authentication tests that run against a real
// nats-server (nkey seed files, JWT creds files, the hub's identities):
// count_of() for counting what a server's log says ("authentication
// error", "Violation"), and connect_repeatedly() for many connects in a row,
// each signing a new nonce, from a few threads at once.
//
// Both are thread-safe (connect_repeatedly starts and joins its own threads).

#include <string>

#include "shared/nats.h"

namespace ds::testing {

// How often `what` occurs in `text` (occurrences may overlap).
size_t count_of(const std::string& text, const std::string& what);

struct ConnectRun {
  int failures = 0;           // connects (or their first flush) that failed
  std::string first_failure;  // the first failure's status, "" when none
  double seconds = 0;         // wall time of the whole run
};

// Connects `connects` times with `options`, spread over `threads` threads;
// each connection is flushed once (a round trip: the server accepted its
// CONNECT) and then closed.
ConnectRun connect_repeatedly(const ConnectOptions& options, int connects, int threads);

}  // namespace ds::testing
