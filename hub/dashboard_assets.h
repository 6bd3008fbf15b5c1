#pragma once
// The fleet dashboard's files (hub/dashboard/: index.html, dashboard.js,
// dashboard.css), compiled into the hub by cmake/embed_files.cmake so that
// GET / serves them with no file on disk and no network access (no CDN).
// The definition is generated at build time (build/generated/hub/).
//
// Thread-safety: read-only data; any thread.

#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace ds {

// The file's bytes by its name ("dashboard.js"); nullopt for any other name.
std::optional<std::string_view> dashboard_file(std::string_view name);
// Every file's name, in the order CMake lists them (index.html first): what
// a test walks to check each file the hub serves.
std::vector<std::string_view> dashboard_file_names();

}  // namespace ds
