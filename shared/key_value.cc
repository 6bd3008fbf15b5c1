#include "shared/key_value.h"

#include <nats/nats.h>

#include <climits>
#include <cstring>
#include <utility>

namespace ds {
namespace {

// cnats 3.4.1 gives no jsErrCode from kvStore_Update/Create (it publishes
// with errCode = NULL): a rejected expected revision is NATS_ERR carrying
// the server's description of jsErrCode 10071, "wrong last sequence: <seq>".
bool is_wrong_last_sequence(natsStatus s) {
  if (s != NATS_ERR) return false;
  natsStatus last = NATS_OK;
  const char* detail = nats_GetLastError(&last);
  return detail != nullptr && std::strstr(detail, "wrong last sequence") != nullptr;
}

}  // namespace

KeyValue::KeyValue(std::string bucket, KvStorePtr kv) : bucket_(std::move(bucket)), kv_(std::move(kv)) {}

KeyValue::~KeyValue() = default;

std::string KeyValue::context(std::string_view key) const {
  return "key-value bucket " + bucket_ + " key " + std::string(key);
}

Result<std::unique_ptr<KeyValue>> KeyValue::open_or_create(JetStream& js, const KeyValueSpec& spec) {
  const std::string where = "key-value bucket " + spec.bucket;
  if (spec.replicas < 1 || spec.replicas > 5) {
    return Status::invalid_argument(where + ": replicas must be 1 to 5, not " + std::to_string(spec.replicas));
  }
  if (spec.history < 1 || spec.history > 64) {
    return Status::invalid_argument(where + ": history must be 1 to 64, not " + std::to_string(spec.history));
  }
  kvStore* raw = nullptr;
  natsStatus s = js_KeyValue(&raw, js.raw(), spec.bucket.c_str());
  if (s == NATS_OK) return std::unique_ptr<KeyValue>(new KeyValue(spec.bucket, KvStorePtr(raw)));
  if (s != NATS_NOT_FOUND) return nats_status(s, where + ": bind");

  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = spec.bucket.c_str();
  cfg.Description = spec.description.empty() ? nullptr : spec.description.c_str();
  cfg.History = static_cast<uint8_t>(spec.history);
  cfg.Replicas = spec.replicas;
  cfg.StorageType = js_FileStorage;
  s = js_CreateKeyValue(&raw, js.raw(), &cfg);
  if (s == NATS_OK) return std::unique_ptr<KeyValue>(new KeyValue(spec.bucket, KvStorePtr(raw)));
  // Created by another process in between (with another configuration,
  // cnats refuses with "Existing configuration is different"): bind to it.
  Status created = nats_status(s, where + ": create with " + std::to_string(spec.replicas) + " replicas");
  raw = nullptr;
  if (js_KeyValue(&raw, js.raw(), spec.bucket.c_str()) == NATS_OK) {
    return std::unique_ptr<KeyValue>(new KeyValue(spec.bucket, KvStorePtr(raw)));
  }
  return created;
}

Result<std::optional<KeyValueEntry>> KeyValue::get(std::string_view key) {
  const std::string k(key);
  kvEntry* raw = nullptr;
  natsStatus s = kvStore_Get(&raw, kv_.get(), k.c_str());
  if (s == NATS_NOT_FOUND) return std::optional<KeyValueEntry>();
  if (s != NATS_OK) return nats_status(s, context(key) + ": get");
  KvEntryPtr entry(raw);
  KeyValueEntry out;
  const int len = kvEntry_ValueLen(entry.get());
  const void* data = kvEntry_Value(entry.get());
  if (len > 0 && data != nullptr) out.value.assign(static_cast<const char*>(data), static_cast<size_t>(len));
  out.revision = kvEntry_Revision(entry.get());
  return std::optional<KeyValueEntry>(std::move(out));
}

Status KeyValue::write_status(int s, std::string_view key, std::string_view what) const {
  const auto ns = static_cast<natsStatus>(s);
  Status converted = nats_status(s, context(key) + ": " + std::string(what));
  if (is_wrong_last_sequence(ns)) return Status::already_exists(converted.message());
  return converted;
}

Result<uint64_t> KeyValue::create(std::string_view key, std::string_view value) {
  if (value.size() > static_cast<size_t>(INT_MAX)) return Status::invalid_argument(context(key) + ": value too large");
  const std::string k(key);
  uint64_t rev = 0;
  natsStatus s = kvStore_Create(&rev, kv_.get(), k.c_str(), value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) return write_status(s, key, "create");
  return rev;
}

Result<uint64_t> KeyValue::update(std::string_view key, std::string_view value, uint64_t last_revision) {
  if (value.size() > static_cast<size_t>(INT_MAX)) return Status::invalid_argument(context(key) + ": value too large");
  if (last_revision == 0) {
    // cnats reads 0 as "no message yet", i.e. create() without its delete-marker step.
    return Status::invalid_argument(context(key) + ": update needs a revision (0 given)");
  }
  const std::string k(key);
  uint64_t rev = 0;
  natsStatus s =
      kvStore_Update(&rev, kv_.get(), k.c_str(), value.data(), static_cast<int>(value.size()), last_revision);
  if (s != NATS_OK) return write_status(s, key, "update at revision " + std::to_string(last_revision));
  return rev;
}

Status KeyValue::remove(std::string_view key) {
  const std::string k(key);
  natsStatus s = kvStore_Delete(kv_.get(), k.c_str());
  if (s != NATS_OK) return nats_status(s, context(key) + ": delete");
  return Status::ok();
}

}  // namespace ds
