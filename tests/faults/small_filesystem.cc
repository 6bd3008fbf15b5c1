#include "tests/faults/small_filesystem.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

#include "shared/sqlite.h"

namespace ds::testing {
namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// A bound on the filler's writes, so a filesystem that never says ENOSPC
// cannot keep the test writing for ever (4 GiB in 64 KiB writes).
constexpr size_t kMaxFillerWrites = 65536;

}  // namespace

bool SmallFilesystem::can_mount() { return ::geteuid() == 0; }

Result<SmallFilesystem> SmallFilesystem::mount(uint64_t bytes) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/deltasync-smallfs-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) return Status::internal(errno_text("mkdtemp " + pattern));
  std::string path(buf.data());
  const std::string options = "size=" + std::to_string(bytes) + ",mode=0755";
  if (::mount("deltasync-test", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    Status s = Status::unavailable(errno_text("mount tmpfs (" + options + ") on " + path));
    ::rmdir(path.c_str());
    return s;
  }
  return SmallFilesystem(std::move(path));
}

SmallFilesystem::~SmallFilesystem() {
  if (path_.empty()) return;
  ::unlink(filler().c_str());
  if (::umount2(path_.c_str(), MNT_DETACH) != 0) {
    std::fprintf(stderr, "[ warn ] %s\n", errno_text("umount " + path_).c_str());
    return;  // never rmdir into a filesystem still mounted
  }
  ::rmdir(path_.c_str());
}

uint64_t SmallFilesystem::free_bytes() const {
  struct statvfs st {};
  if (::statvfs(path_.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

Status SmallFilesystem::fill() {
  const int fd = ::open(filler().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Status::internal(errno_text("open " + filler()));
  // Big writes first, then single bytes for the last partial page.
  std::vector<char> block(64 * 1024, 'x');
  Status result = Status::internal("filling " + path_ + ": no ENOSPC after " + std::to_string(kMaxFillerWrites) +
                                   " writes");
  size_t size = block.size();
  for (size_t i = 0; i < kMaxFillerWrites; ++i) {
    const ssize_t n = ::write(fd, block.data(), size);
    if (n >= 0) continue;
    if (errno == EINTR) continue;
    if (errno != ENOSPC) {
      result = Status::internal(errno_text("write " + filler()));
      break;
    }
    if (size == 1) {
      result = Status::ok();
      break;
    }
    size = 1;
  }
  ::close(fd);
  return result;
}

Status SmallFilesystem::release() {
  if (::unlink(filler().c_str()) != 0 && errno != ENOENT) return Status::internal(errno_text("unlink " + filler()));
  return Status::ok();
}

std::string integrity_check(const std::string& path) {
  OpenOptions opts;
  opts.read_only = true;
  opts.create = false;
  auto db = Database::open(path, opts);
  if (!db.is_ok()) return db.status().to_string();
  auto s = (*db)->prepare("PRAGMA integrity_check");
  if (!s.is_ok()) return s.status().to_string();
  std::string out;
  for (;;) {
    auto row = s->step();
    if (!row.is_ok()) return row.status().to_string();
    if (!*row) break;
    out += (out.empty() ? "" : "\n") + s->column_text(0);
  }
  return out;
}

size_t count_lines(const std::string& text, const std::string& needle) {
  std::istringstream lines(text);
  size_t n = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

}  // namespace ds::testing
