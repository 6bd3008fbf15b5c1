#pragma once
// FaultHook: test-only fault injection at named points of the ingest path,
// so an integration test can stop the hub exactly there
// (tests/integration/hub_recovery_test.cc, hub_readiness_test.cc).
//
// The hub builds the hook once, from the environment variable
// DELTASYNC_FAULT (fault_hook_from_env), and hands it to the two objects
// that own the points: the ingest writer (kCommitted, kReconciled, kIdle)
// and the stream publisher (kPublished, kLeaseChecked). Unit tests inject their own hooks,
// also to wait for the writer's idle rounds instead of sleeping. An empty hook, the production case, does
// nothing. Never set DELTASYNC_FAULT in production.
//
//   DELTASYNC_FAULT=exit_after_commit   _exit(86) after a group commit,
//                                       before anything of it is published
//   DELTASYNC_FAULT=exit_after_publish  _exit(86) after JetStream acked a
//                                       publication, before its mark is
//                                       written in the log
//   DELTASYNC_FAULT=writer_thread_exit  the writer thread ends by itself
//                                       after its first reconciliation (the
//                                       process goes on, as after a bug in
//                                       the writer's loop)
//   DELTASYNC_FAULT=stop_before_publish the process stops itself (SIGSTOP)
//                                       between an HA hub's lease check and
//                                       its publication, once the file
//                                       DELTASYNC_FAULT_TRIGGER names exists
//                                       (it is removed: one stop per file)
//
// Thread-safety: the hook built here keeps no state (but the trigger file);
// it is called on the writer thread.

#include <functional>
#include <string>

namespace ds {

enum class FaultPoint {
  kCommitted,   // a group commit succeeded; nothing of it is published yet
  kPublished,   // JetStream acked a publication; its mark is not written yet
  kReconciled,  // a reconciliation of the writer ended
  kIdle,        // an idle round of the writer ended (its checks are done)
  kLeaseChecked,  // an HA hub's publication passed its lease check; nothing is sent yet
};

// What the caller does after the hook returns (when it returns at all).
enum class FaultAction {
  kGoOn,
  kEndThread,  // the calling thread's loop returns
};

using FaultHook = std::function<FaultAction(FaultPoint)>;

// The exit code of the hook's _exit.
constexpr int kFaultExitCode = 86;

// The hook DELTASYNC_FAULT names (above), or an empty one when it is unset
// or empty. Logs a warning when armed; an unknown value is warned about and
// does nothing.
FaultHook fault_hook_from_env();

// Calls `hook` at `point`; kGoOn when it is empty.
inline FaultAction at_fault_point(const FaultHook& hook, FaultPoint point) {
  return hook ? hook(point) : FaultAction::kGoOn;
}

}  // namespace ds
