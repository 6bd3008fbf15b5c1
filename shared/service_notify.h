#pragma once
// Service readiness for a service manager that supervises deltasync-hub and
// deltasync-agent with Type=notify (deploy/systemd/*.service): sd_notify(3)
// datagrams to the unix socket named by $NOTIFY_SOCKET.
//
//   READY=1     sent once, when the process is really of use: the hub is
//               connected to NATS with its streams and subscriptions up; the
//               agent has registered with the hub (and loaded any snapshot).
//   STATUS=...  one line saying what the process waits for (NATS retries,
//               registration retries); `systemctl status` shows it.
//   STOPPING=1  when a stop signal starts the drain.
//
// Without $NOTIFY_SOCKET (a shell, start-stop-daemon, the tests) every call
// does nothing. A datagram that cannot be sent is logged at warn and
// otherwise ignored: readiness reporting never stops the service.
//
// Owns nothing: each call opens, sends on and closes its own socket inside
// libsystemd, so the functions are safe from any thread.

#include <string>
#include <string_view>

namespace ds {

// The datagram for `state` ("READY=1", "STOPPING=1" or "" for a status
// only) and the status line `status` (omitted when empty). A status never
// spans lines: every control character in it becomes a space, so no value
// in it can add an assignment of its own (e.g. a peer's error text saying
// "\nREADY=1").
std::string service_notify_message(std::string_view state, std::string_view status);

void notify_ready(std::string_view status);
void notify_status(std::string_view status);
void notify_stopping(std::string_view status);

}  // namespace ds
