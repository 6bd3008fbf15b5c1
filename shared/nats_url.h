#pragma once
// parse_nats_servers: the one reader of a NATS server list, for the hub's
// and agents' [nats] url and the CLI's --nats.
//
// A list is comma-separated entries, each "nats://host:port" or
// "tls://host:port" (the port may be left out: 4222; an IPv6 host in
// brackets), blanks around an entry ignored. InvalidArgument naming the
// entry when one is empty, has another scheme, no host, a port that is not
// 1..65535, or repeats an earlier entry; an entry with credentials
// (user@, user:password@) is refused by its position only, so the secret is
// never repeated. Connection::connect hands the list to cnats, which tries
// them in random order and, once connected, also learns the cluster's other
// members from the server.

#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace ds {

Result<std::vector<std::string>> parse_nats_servers(std::string_view urls);

}  // namespace ds
