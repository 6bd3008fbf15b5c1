#include "tests/harness/test_credentials.h"

#include <filesystem>

namespace ds::testing {

Result<CredsResult> write_test_credentials(const std::string& dir,
                                           std::initializer_list<std::pair<IdentityRole, std::string_view>> identities) {
  CredsRequest request;
  request.out_dir = dir;
  for (const auto& [role, arg] : identities) {
    DS_ASSIGN_OR_RETURN(Identity identity, parse_creds_identity(role, arg));
    request.identities.push_back(std::move(identity));
  }
  return write_credentials(request);
}

std::string include_auth_conf(const std::string& creds_dir) {
  return "include \"../" + std::filesystem::path(creds_dir).filename().string() + "/auth.conf\"\n";
}

}  // namespace ds::testing
