#pragma once
// MetricsServer: the [metrics] listen endpoint of the hub and the agent. It
// serves GET /metrics (Prometheus text, no token) and nothing else: every
// other path is 404, every other method 405, and a request body is never
// read. It is for a Prometheus on the same host or a trusted network; the
// default address is loopback (docs/security.md, "Metrics").
//
// Threads: one asio io_context on a thread of its own, so a scrape never
// runs on the threads that ingest, apply or send heartbeats. `render` is
// called on that thread for every scrape; it must be thread-safe against the
// rest of the process (the hub and the agent build the text from atomics and
// from state behind their own mutexes, hub/hub_metrics.h,
// agent/agent_metrics.h). One scrape at a time: a slow render delays only
// other scrapes.

#include <functional>
#include <memory>
#include <string>

#include "shared/status.h"

namespace ds {

class MetricsServer {
 public:
  using Render = std::function<std::string()>;
  // Listens on `listen` (as metrics_listen_address() gives it: "host:port",
  // IPv6 as "[::1]:9464"). Unavailable when it cannot bind.
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& listen, Render render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Closes the listener and joins the thread. Idempotent.
  void stop();

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds
