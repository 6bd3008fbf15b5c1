#include "testing/simulated_fleet.h"

#include <algorithm>
#include <thread>

#include "shared/codec.h"
#include "shared/messages.h"
#include "shared/names.h"
#include "shared/version.h"

namespace ds {
namespace {

constexpr int64_t kRegisterTimeoutMs = 30000;

int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

SimulatedFleet::SimulatedFleet(Options options) : options_(std::move(options)) {}

SimulatedFleet::~SimulatedFleet() { subscriptions_.clear(); }

Result<std::unique_ptr<SimulatedFleet>> SimulatedFleet::start(Options options) {
  if (options.agents == 0) return Status::invalid_argument("simulated fleet: no agents");
  options.connections = std::clamp<size_t>(options.connections, 1, options.agents);
  std::unique_ptr<SimulatedFleet> fleet(new SimulatedFleet(std::move(options)));
  SimulatedFleet* f = fleet.get();
  const Options& o = f->options_;
  f->state_.resize(o.agents);
  f->agents_of_connection_.resize(o.connections);
  for (size_t i = 0; i < o.agents; ++i) {
    f->ids_.push_back(o.id_prefix + std::to_string(i));
    f->agents_of_connection_[i % o.connections].push_back(i);
  }
  const Subjects subjects;
  for (size_t c = 0; c < o.connections; ++c) {
    ConnectOptions co;
    co.config.url = o.nats_url;
    co.name = "bench-fleet-" + std::to_string(c);
    DS_ASSIGN_OR_RETURN(auto nc, Connection::connect(std::move(co)));
    f->connections_.push_back(std::move(nc));
  }
  if (o.answer_heartbeats) {
    for (size_t c = 0; c < o.connections; ++c) {
      const std::vector<size_t>* mine = &f->agents_of_connection_[c];
      DS_ASSIGN_OR_RETURN(auto sub, f->connections_[c]->subscribe(subjects.heartbeat(o.type), [f, mine](Message) {
        f->answer(*mine);
      }));
      f->subscriptions_.push_back(std::move(sub));
    }
    DS_ASSIGN_OR_RETURN(auto probes, f->connections_[0]->subscribe(subjects.probe("*"), [f](Message m) {
      const size_t agent = f->agent_of_probe(m.subject());
      if (agent < f->ids_.size()) f->answer({agent});
    }));
    f->subscriptions_.push_back(std::move(probes));
    for (auto& nc : f->connections_) DS_RETURN_IF_ERROR(nc->flush());
  }
  return fleet;
}

size_t SimulatedFleet::agent_of_probe(std::string_view subject) const {
  // The agent id is the token before the last one (ds.agent.<id>.hb).
  const size_t last_dot = subject.rfind('.');
  if (last_dot == std::string_view::npos || last_dot == 0) return ids_.size();
  const size_t id_dot = subject.rfind('.', last_dot - 1);
  if (id_dot == std::string_view::npos) return ids_.size();
  const std::string_view id = subject.substr(id_dot + 1, last_dot - id_dot - 1);
  if (id.substr(0, options_.id_prefix.size()) != options_.id_prefix) return ids_.size();
  const std::string_view digits = id.substr(options_.id_prefix.size());
  if (digits.empty() || digits.size() > 9) return ids_.size();
  size_t index = 0;
  for (char ch : digits) {
    if (ch < '0' || ch > '9') return ids_.size();
    index = index * 10 + static_cast<size_t>(ch - '0');
  }
  if (index >= ids_.size() || ids_[index] != id || Subjects().probe(id) != subject) return ids_.size();
  return index;
}

void SimulatedFleet::answer(const std::vector<size_t>& agents) {
  const auto now = Clock::now();
  std::vector<size_t> answering;
  std::vector<bool> on_feed;
  std::string hash;
  {
    std::lock_guard lock(mu_);
    hash = schema_hash_;
    for (size_t a : agents) {
      AgentState& s = state_[a];
      if (!s.registered) continue;
      if (s.silent) {
        if (!s.first_unanswered) s.first_unanswered = now;
        continue;
      }
      answering.push_back(a);
      on_feed.push_back(s.on_feed);
      s.last_answer = now;
      if (s.last_answer_due) s.silent = true;
    }
    answers_ += answering.size();
  }
  HeartbeatReply reply;
  reply.ts = wall_now_ms();
  reply.status = AgentHealth::kOk;
  reply.checkpoints[options_.type] = Checkpoint{0, 0, 0, hash};
  const Subjects subjects;
  for (size_t i = 0; i < answering.size(); ++i) {
    const size_t a = answering[i];
    reply.agent = ids_[a];
    reply.checkpoints[options_.type].feed = on_feed[i];
    // A failed publish is a missed beat, which is what the hub measures.
    (void)connections_[a % connections_.size()]->publish(subjects.hub_beat(ids_[a]), encode(reply));
  }
}

Status SimulatedFleet::register_slice(size_t connection, Clock::time_point deadline) {
  Connection& nc = *connections_[connection];
  const Subjects subjects;
  for (size_t a : agents_of_connection_[connection]) {
    if (Clock::now() > deadline) return Status::deadline_exceeded("registration of the simulated fleet took too long");
    RegisterRequest req;
    req.agent = ids_[a];
    req.host = "bench-fleet";
    req.version = kVersion;
    SubscriptionReport sub;
    sub.type = options_.type;
    sub.partition = std::string(kAnyPartition);
    sub.feed = options_.live_feed;
    req.subscriptions = {sub};
    DS_ASSIGN_OR_RETURN(Message m, nc.request(subjects.register_agent(req.agent), encode(req), kRegisterTimeoutMs));
    DS_ASSIGN_OR_RETURN(RegisterReply reply, decode_register_reply(m.data()));
    if (!reply.ok()) return Status::internal("register " + req.agent + " refused: " + reply.error->message);
    if (reply.deliveries.size() != 1) {
      return Status::internal("register " + req.agent + ": expected 1 delivery, got " +
                              std::to_string(reply.deliveries.size()));
    }
    std::lock_guard lock(mu_);
    if (schema_hash_.empty()) schema_hash_ = reply.deliveries[0].schema_hash;
    state_[a].registered = true;
    state_[a].on_feed = reply.deliveries[0].feed;
  }
  return Status::ok();
}

Status SimulatedFleet::register_all(double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_s));
  std::vector<Status> results(connections_.size());
  std::vector<std::thread> workers;
  for (size_t c = 0; c < connections_.size(); ++c) {
    workers.emplace_back([this, c, deadline, &results] { results[c] = register_slice(c, deadline); });
  }
  for (auto& w : workers) w.join();
  for (const Status& s : results) DS_RETURN_IF_ERROR(s);
  return Status::ok();
}

void SimulatedFleet::fall_silent_after_next_answer(size_t agent) {
  std::lock_guard lock(mu_);
  state_[agent].last_answer_due = true;
}

void SimulatedFleet::fall_silent(size_t agent) {
  std::lock_guard lock(mu_);
  state_[agent].silent = true;
}

std::optional<SimulatedFleet::Clock::time_point> SimulatedFleet::last_answer(size_t agent) const {
  std::lock_guard lock(mu_);
  return state_[agent].last_answer;
}

std::optional<SimulatedFleet::Clock::time_point> SimulatedFleet::first_unanswered(size_t agent) const {
  std::lock_guard lock(mu_);
  return state_[agent].first_unanswered;
}

size_t SimulatedFleet::on_live_feed() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const AgentState& s : state_) n += s.on_feed ? 1 : 0;
  return n;
}

uint64_t SimulatedFleet::answers() const {
  std::lock_guard lock(mu_);
  return answers_;
}

}  // namespace ds
