#pragma once
// Private to shared/codec_decode.cc: typed, path-aware reads out of an unpacked
// msgpack::object tree. Every failure is an InvalidArgument whose message
// starts with the field path ("records[3].op: ..."), so a producer can find
// the offending value. Nothing here throws, and the views never outlive the
// msgpack::object_handle (zone) they point into.

#include <msgpack.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "shared/status.h"

namespace ds::msgpack_reader {

// "nil", "bool", "integer", "float", "str", "bin", "array", "map", "ext".
inline std::string_view kind_name(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "bool";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return "integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "str";
    case msgpack::type::BIN: return "bin";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT: return "ext";
  }
  return "unknown";
}

inline std::string child_path(std::string_view parent, std::string_view key) {
  std::string p(parent);
  if (!p.empty()) p += '.';
  p += key;
  return p;
}

inline std::string index_path(std::string_view parent, size_t index) {
  return std::string(parent) + "[" + std::to_string(index) + "]";
}

// "<path>: <problem>"; the top-level object is called "message".
inline Status field_error(std::string_view path, std::string_view problem) {
  std::string m = path.empty() ? std::string("message") : std::string(path);
  m += ": ";
  m += problem;
  return Status::invalid_argument(std::move(m));
}

inline Status type_error(std::string_view path, std::string_view expected, const msgpack::object& got) {
  return field_error(path, "expected " + std::string(expected) + ", got " + std::string(kind_name(got)));
}

// ---- scalar reads: one overload per destination type ----

inline Status read(const msgpack::object& o, std::string_view path, std::string& out) {
  if (o.type != msgpack::type::STR) return type_error(path, "str", o);
  out.assign(o.via.str.ptr, o.via.str.size);
  return Status::ok();
}

inline Status read(const msgpack::object& o, std::string_view path, bool& out) {
  if (o.type != msgpack::type::BOOLEAN) return type_error(path, "bool", o);
  out = o.via.boolean;
  return Status::ok();
}

inline Status read(const msgpack::object& o, std::string_view path, int64_t& out) {
  if (o.type == msgpack::type::NEGATIVE_INTEGER) {
    out = o.via.i64;
    return Status::ok();
  }
  if (o.type != msgpack::type::POSITIVE_INTEGER) return type_error(path, "integer", o);
  if (o.via.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return field_error(path, "integer " + std::to_string(o.via.u64) + " is out of range (maximum " +
                                 std::to_string(std::numeric_limits<int64_t>::max()) + ")");
  }
  out = static_cast<int64_t>(o.via.u64);
  return Status::ok();
}

inline Status read_unsigned(const msgpack::object& o, std::string_view path, uint64_t max, uint64_t& out) {
  if (o.type == msgpack::type::NEGATIVE_INTEGER) {
    return field_error(path, "expected a non-negative integer, got " + std::to_string(o.via.i64));
  }
  if (o.type != msgpack::type::POSITIVE_INTEGER) return type_error(path, "integer", o);
  if (o.via.u64 > max) {
    return field_error(path, "integer " + std::to_string(o.via.u64) + " is out of range (maximum " +
                                 std::to_string(max) + ")");
  }
  out = o.via.u64;
  return Status::ok();
}

inline Status read(const msgpack::object& o, std::string_view path, uint64_t& out) {
  return read_unsigned(o, path, std::numeric_limits<uint64_t>::max(), out);
}

inline Status read(const msgpack::object& o, std::string_view path, uint32_t& out) {
  uint64_t wide = 0;
  DS_RETURN_IF_ERROR(read_unsigned(o, path, std::numeric_limits<uint32_t>::max(), wide));
  out = static_cast<uint32_t>(wide);
  return Status::ok();
}

// The elements of an array, or an error naming `path`.
inline Status read_array(const msgpack::object& o, std::string_view path, std::span<const msgpack::object>& out) {
  if (o.type != msgpack::type::ARRAY) return type_error(path, "array", o);
  out = std::span<const msgpack::object>(o.via.array.ptr, o.via.array.size);
  return Status::ok();
}

// A map with string keys, read by key. Keys that are not strings and keys the
// reader never asks for are ignored (docs/protocol.md: unknown keys are ignored);
// a key that is asked for and appears twice is an error, so two decoders can
// never disagree about which copy counts.
class MapReader {
 public:
  static Result<MapReader> open(const msgpack::object& o, std::string path) {
    if (o.type != msgpack::type::MAP) return type_error(path, "map", o);
    return MapReader(o.via.map, std::move(path));
  }

  const std::string& path() const { return path_; }
  std::string path(std::string_view key) const { return child_path(path_, key); }

  // Sets `out` to the value of `key`, or nullptr when absent.
  Status find(std::string_view key, const msgpack::object*& out) const {
    out = nullptr;
    for (uint32_t i = 0; i < map_.size; ++i) {
      const msgpack::object& k = map_.ptr[i].key;
      if (k.type != msgpack::type::STR || std::string_view(k.via.str.ptr, k.via.str.size) != key) continue;
      if (out != nullptr) return field_error(path(key), "duplicate key");
      out = &map_.ptr[i].val;
    }
    return Status::ok();
  }

  Status required(std::string_view key, const msgpack::object*& out) const {
    DS_RETURN_IF_ERROR(find(key, out));
    if (out == nullptr) return field_error(path(key), "missing required key");
    return Status::ok();
  }

  template <typename T>
  Status required(std::string_view key, T& out) const {
    const msgpack::object* o = nullptr;
    DS_RETURN_IF_ERROR(required(key, o));
    return read(*o, path(key), out);
  }

  // Absent and nil both leave `out` empty.
  template <typename T>
  Status optional(std::string_view key, std::optional<T>& out) const {
    out.reset();
    const msgpack::object* o = nullptr;
    DS_RETURN_IF_ERROR(find(key, o));
    if (o == nullptr || o->type == msgpack::type::NIL) return Status::ok();
    T value{};
    DS_RETURN_IF_ERROR(read(*o, path(key), value));
    out = std::move(value);
    return Status::ok();
  }

 private:
  MapReader(const msgpack::object_map& map, std::string path) : map_(map), path_(std::move(path)) {}

  msgpack::object_map map_;
  std::string path_;
};

}  // namespace ds::msgpack_reader
