#include "hub/fault_hook.h"

#include <signal.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <string>

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

// DELTASYNC_FAULT=stop_before_publish: the process stops itself (SIGSTOP)
// at kLeaseChecked once the trigger file exists, removing it first, so one
// hub of a pair is paused exactly between its lease check and its publish.
FaultHook stop_before_publish_hook() {
  const char* trigger = std::getenv("DELTASYNC_FAULT_TRIGGER");
  if (trigger == nullptr || *trigger == '\0') {
    spdlog::warn("DELTASYNC_FAULT=stop_before_publish needs DELTASYNC_FAULT_TRIGGER (a file path): ignored");
    return {};
  }
  spdlog::warn("test-only fault hook armed: DELTASYNC_FAULT=stop_before_publish, trigger {}", trigger);
  return [path = std::string(trigger)](FaultPoint at) {
    if (at != FaultPoint::kLeaseChecked) return FaultAction::kGoOn;
    std::error_code ec;
    if (!std::filesystem::remove(path, ec)) return FaultAction::kGoOn;  // no trigger (or another hub took it)
    spdlog::warn("DELTASYNC_FAULT=stop_before_publish: stopping this process between its lease check and its "
                 "publication");
    spdlog::default_logger()->flush();
    ::raise(SIGSTOP);
    return FaultAction::kGoOn;
  };
}

}  // namespace

FaultHook fault_hook_from_env() {
  const char* value = std::getenv("DELTASYNC_FAULT");
  if (value == nullptr || *value == '\0') return {};
  const std::string name(value);
  if (name == "stop_before_publish") return stop_before_publish_hook();
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
  spdlog::warn("DELTASYNC_FAULT={} is no known fault (exit_after_commit, exit_after_publish, writer_thread_exit, "
               "stop_before_publish): ignored",
               name);
  return {};
}

}  // namespace ds
