#pragma once
// TempDir: a fresh private directory for the processes that start other
// processes (the benchmark in bench/, the test harness in tests/harness):
// SQLite files, nats-server stores, config files and logs. It is made under
// $TMPDIR (or /tmp) and removed recursively, with everything in it, when the
// object is destroyed.
//
// Not thread-safe; one owner. Making the directory and writing a file into it
// are set-up steps: when they fail the environment is broken, so they throw
// std::runtime_error (a test reports it as a failure; the benchmark's main
// catches it and exits with the message).

#include <string>
#include <string_view>

namespace ds {

class TempDir {
 public:
  // `prefix` names the directory: $TMPDIR/<prefix>-XXXXXX.
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

}  // namespace ds
