#include "hub/fault_hook.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cstdlib>

namespace ds {
namespace {

// The point each DELTASYNC_FAULT value acts at, and how.
struct Fault {
  const char* name;
  FaultPoint point;
  FaultAction action;  // kGoOn: _exit(kFaultExitCode) there
  const char* where;   // the point, for the log
};

constexpr Fault kFaults[] = {
    {"exit_after_commit", FaultPoint::kCommitted, FaultAction::kGoOn, "after the commit, before publishing"},
    {"exit_after_publish", FaultPoint::kPublished, FaultAction::kGoOn, "after the acks, before marking published"},
    {"writer_thread_exit", FaultPoint::kReconciled, FaultAction::kEndThread, "after a reconciliation"},
};

}  // namespace

FaultHook fault_hook_from_env() {
  const char* value = std::getenv("DELTASYNC_FAULT");
  if (value == nullptr || *value == '\0') return {};
  const std::string name(value);
  for (const Fault& f : kFaults) {
    if (name != f.name) continue;
    spdlog::warn("test-only fault hook armed: DELTASYNC_FAULT={}", name);
    return [f](FaultPoint at) {
      if (at != f.point) return FaultAction::kGoOn;
      if (f.action == FaultAction::kEndThread) {
        spdlog::warn("DELTASYNC_FAULT={}: the writer thread ends now, {}", f.name, f.where);
        return FaultAction::kEndThread;
      }
      spdlog::warn("DELTASYNC_FAULT={}: exiting with code {} {}", f.name, kFaultExitCode, f.where);
      spdlog::default_logger()->flush();
      ::_exit(kFaultExitCode);
    };
  }
  spdlog::warn("DELTASYNC_FAULT={} is no known fault (exit_after_commit, exit_after_publish, writer_thread_exit): "
               "ignored",
               name);
  return {};
}

}  // namespace ds
