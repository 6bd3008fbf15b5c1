#pragma once
// Credentials exactly as `deltasync creds` writes them (tools/creds.h), for
// tests that run a real nats-server with the generated auth.conf and the hub
// with the generated identities.json.
//
//   TempDir creds("my-test-creds");
//   auto issued = write_test_credentials(creds.path(), {{IdentityRole::kHub, "hub"},
//                                                       {IdentityRole::kAgent, "store-1:prices:store-1"}});
//   NatsServer server(include_auth_conf(creds.path()));

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "shared/identities.h"
#include "shared/status.h"
#include "tools/creds.h"

namespace ds::testing {

// Writes <dir>/<name>.nk, auth.conf and identities.json for identities given
// as `deltasync creds` takes them on its command line ("store-1:prices,products").
Result<CredsResult> write_test_credentials(const std::string& dir,
                                           std::initializer_list<std::pair<IdentityRole, std::string_view>> identities);

// The nats-server configuration line that includes <creds_dir>/auth.conf as an
// operator writes it: relative to the server's config file, which NatsServer
// keeps in a sibling temp directory (nats-server refuses absolute includes).
std::string include_auth_conf(const std::string& creds_dir);

}  // namespace ds::testing
