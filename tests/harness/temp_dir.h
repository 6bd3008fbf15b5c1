#pragma once
// TempDir: a fresh directory under /tmp for one test (SQLite files, nats
// store dirs, config files), removed recursively with everything in it when
// the object is destroyed.
//
// Not thread-safe; one owner. Creation failure is a broken test environment,
// so the constructor throws std::runtime_error (gtest reports it as a failure).

#include <string>
#include <string_view>

namespace ds::testing {

class TempDir {
 public:
  // `prefix` names the directory: /tmp/<prefix>-XXXXXX.
  explicit TempDir(std::string_view prefix = "deltasync-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // "<path>/<name>"; the file itself is not created.
  std::string file(std::string_view name) const;
  // Writes `text` to "<path>/<name>" (replacing it) and returns the full path.
  std::string write_file(std::string_view name, std::string_view text) const;
  // The content of "<path>/<name>"; "" when it does not exist (yet).
  std::string read_file(std::string_view name) const;

 private:
  std::string path_;
};

}  // namespace ds::testing
