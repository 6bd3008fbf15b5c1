#pragma once
// What an HA hub does until it is the active one (docs/operations.md, "High
// availability"): it stands by, following every type's stream into its own
// store (StandbyFollower, hub/standby_follower.h) while its LeaseKeeper
// tries to win the lease; it holds no consumer, sends no heartbeat and
// serves no ingest. Once the lease is won it finishes the streams' tails
// and returns; the caller then starts the Hub as the active one.
//
// Owns, for the length of the call: a NATS connection of its own
// ("deltasync-hub-standby"), the store's writer connection, the [metrics]
// listener when one is set (its standby series; docs/operations.md,
// "Standby series") and the [http] listener when one is set (a standby's
// API, HttpApi::start_standby: /healthz, and 503 "standby: ..." from
// /readyz and the other endpoints), all closed before it returns, so the
// Hub opens the file and the listeners next.
//
// Thread: the caller's (main); it polls the streams every kFollowPollMs
// once caught up, and rounds back to back while behind.

#include <cstdint>
#include <stop_token>

#include "hub/lease_keeper.h"
#include "shared/config.h"
#include "shared/status.h"

namespace ds {

inline constexpr int64_t kFollowPollMs = 100;

// True once this hub holds the lease and its store has every stream's end;
// false when `stop` is requested first. A store that cannot follow a stream
// (StandbyFollower: DataLoss) is an error, as is a store that cannot be
// opened; broker trouble is retried (each episode logged once).
Result<bool> stand_by(const HubConfig& config, LeaseKeeper& keeper, std::stop_token stop);

}  // namespace ds
