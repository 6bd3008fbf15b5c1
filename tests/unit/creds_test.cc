// The pure parts of `deltasync creds` (tools/creds.h) and the identity
// registry it writes (shared/identities.h): argument parsing, validation, the
// authorization block text, identities.json, the file rules and the
// incremental changes (add, grant, revoke, rotate) on a credentials
// directory. That the block really grants and denies what it says, and that
// the hub holds every identity to its grants, is
// tests/integration/security_test.cc; that the changes take effect on a
// running nats-server and hub, tests/integration/creds_change_test.cc.

#include "tools/creds.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <thread>

#include "shared/identities.h"
#include "shared/nats.h"
#include "shared/nkeys.h"
#include "testing/local_host.h"
#include "testing/temp_dir.h"

namespace ds {
namespace {

Identity identity(IdentityRole role, std::string_view arg) {
  auto parsed = parse_creds_identity(role, arg);
  EXPECT_TRUE(parsed.is_ok()) << arg << ": " << parsed.status().to_string();
  return parsed.is_ok() ? *parsed : Identity{};
}

TEST(CredsTest, ParsesNamesAndTypes) {
  const Identity agent = identity(IdentityRole::kAgent, "store-1:prices,products");
  EXPECT_EQ(agent.name, "store-1");
  EXPECT_EQ(agent.grants, (std::vector<Grant>{{"prices", "*"}, {"products", "*"}}));
  const Identity hub = identity(IdentityRole::kHub, "hub");
  EXPECT_EQ(hub.name, "hub");
  EXPECT_TRUE(hub.grants.empty());
  const Identity bound = identity(IdentityRole::kAgent, "store-1:prices:store-1,products");
  EXPECT_EQ(bound.grants, (std::vector<Grant>{{"prices", "store-1"}, {"products", "*"}}));
  EXPECT_EQ(grants_text(bound), "prices:store-1,products");
}

TEST(CredsTest, BadIdentitiesAreRejectedWithTheReason) {
  struct Case {
    IdentityRole role;
    std::string arg;
    std::string says;
  };
  const std::vector<Case> cases = {
      {IdentityRole::kAgent, "store.1:prices", "invalid agent id"},   // a dot would split the subject token
      {IdentityRole::kAgent, "store-1", "has no business types"},
      {IdentityRole::kAgent, "store-1:", "invalid business type name"},
      {IdentityRole::kAgent, "store-1:Prices", "invalid business type name"},
      {IdentityRole::kAgent, "store-1:prices,,products", "invalid business type name"},
      {IdentityRole::kAgent, "store-1:prices,prices", "listed twice"},
      {IdentityRole::kAgent, ":prices", "invalid agent id"},
      {IdentityRole::kProducer, "erp*:prices", "invalid producer name"},
      {IdentityRole::kProducer, "erp", "has no business types"},
      {IdentityRole::kHub, "hub:prices", "takes no types"},
      {IdentityRole::kHub, "", "invalid hub name"},
      {IdentityRole::kAgent, "store-1:prices:", "partition"},
      {IdentityRole::kAgent, "store-1:prices:a.b", "partition"},
      {IdentityRole::kProducer, "erp:prices:store-1", "only agents are bound to a partition"},
  };
  for (const auto& c : cases) {
    auto parsed = parse_creds_identity(c.role, c.arg);
    ASSERT_FALSE(parsed.is_ok()) << c.arg;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << c.arg;
    EXPECT_NE(parsed.status().message().find(c.says), std::string::npos)
        << c.arg << ": " << parsed.status().message();
  }
}

TEST(CredsTest, RequestNeedsUniqueNamesAndAValidPrefix) {
  CredsRequest request;
  request.out_dir = "/tmp/unused";
  EXPECT_FALSE(validate_creds_request(request).is_ok());  // nothing to generate
  request.identities = {identity(IdentityRole::kAgent, "erp:prices"), identity(IdentityRole::kProducer, "erp:prices")};
  Status dup = validate_creds_request(request);
  EXPECT_NE(dup.message().find("used twice"), std::string::npos) << dup.to_string();
  request.identities.pop_back();
  EXPECT_TRUE(validate_creds_request(request).is_ok());
  request.subject_prefix = "ds.";
  EXPECT_FALSE(validate_creds_request(request).is_ok());
  request.subject_prefix = "ds";
  request.out_dir.clear();
  EXPECT_FALSE(validate_creds_request(request).is_ok());
}

Identity with_key(Identity id) {
  id.public_key = "UKEY";
  return id;
}

TEST(CredsTest, AgentEntryGrantsItsOwnSubjectsOnly) {
  const std::string entry =
      nats_user_entry(with_key(identity(IdentityRole::kAgent, "store-1:prices:store-1,products")), "acme.ds");
  // The live feed of each grant: its one partition, or every one.
  EXPECT_EQ(entry,
            "    { nkey: \"UKEY\", permissions: {\n"
            "        publish:   { allow: [\"acme.ds.hub.*.store-1\", \"$JS.ACK.*.ag_store-1.>\"] }\n"
            "        subscribe: { allow: [\"acme.ds.push.store-1.>\", \"acme.ds.agent.store-1.>\", "
            "\"acme.ds.hb.prices\", \"acme.ds.feed.prices.store-1\", \"acme.ds.hb.products\", "
            "\"acme.ds.feed.products.>\", \"_INBOX_store-1.>\"] }\n"
            "        allow_responses: true } }\n");
  EXPECT_EQ(entry.find("CONSUMER.CREATE"), std::string::npos);
  EXPECT_EQ(entry.find("MSG.GET"), std::string::npos);
}

TEST(CredsTest, ProducerAndHubEntries) {
  // The producer's name is the ingest subject's last token: the hub knows
  // who sent a batch from the subject, not from the body.
  EXPECT_EQ(nats_user_entry(with_key(identity(IdentityRole::kProducer, "erp:prices,products")), "ds"),
            "    { nkey: \"UKEY\", permissions: {\n"
            "        publish:   { allow: [\"ds.ingest.prices.erp\", \"ds.ingest.products.erp\"] }\n"
            "        subscribe: { allow: [\"_INBOX_erp.>\"] } } }\n");
  // A hub of a registry from before publisher keys: as it was.
  EXPECT_EQ(nats_user_entry(with_key(identity(IdentityRole::kHub, "hub")), "ds"),
            "    { nkey: \"UKEY\", permissions: { publish: { allow: \">\", deny: [\"$JS.API.STREAM.PURGE.>\", "
            "\"$JS.API.STREAM.DELETE.>\", \"$JS.API.STREAM.MSG.DELETE.>\", \"ds.feed.>\"] }, subscribe: \">\" } }\n");
  // With a publisher key: the service key may not publish into the delta
  // streams, and the publisher key may do only that (and the stream calls).
  Identity hub = with_key(identity(IdentityRole::kHub, "hub"));
  hub.publisher_public_key = "UPUB";
  EXPECT_EQ(nats_user_entry(hub, "ds"),
            "    { nkey: \"UKEY\", permissions: { publish: { allow: \">\", deny: [\"$JS.API.STREAM.PURGE.>\", "
            "\"$JS.API.STREAM.DELETE.>\", \"$JS.API.STREAM.MSG.DELETE.>\", \"ds.feed.>\", \"ds.delta.>\"] }, "
            "subscribe: \">\" } }\n"
            "    # hub hub delta publisher\n"
            "    { nkey: \"UPUB\", permissions: {\n"
            "        publish:   { allow: [\"ds.delta.>\", \"$JS.API.STREAM.CREATE.*\", \"$JS.API.STREAM.UPDATE.*\", "
            "\"$JS.API.STREAM.INFO.*\", \"$JS.API.STREAM.MSG.GET.*\"] }\n"
            "        subscribe: { allow: [\"_INBOX_hub.>\"] } } }\n");
}

TEST(CredsTest, WritesOwnerOnlySeedsMatchingTheAuthBlock) {
  TempDir dir("deltasync-creds-unit");
  CredsRequest request;
  request.out_dir = dir.file("new/creds");  // created, with its parent
  request.identities = {identity(IdentityRole::kHub, "hub"), identity(IdentityRole::kAgent, "store-1:prices")};
  auto result = write_credentials(request);
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  ASSERT_EQ(result->issued.size(), 2u);

  struct stat st {};
  ASSERT_EQ(::stat(request.out_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  const std::string conf = read_text_file(result->auth_conf);
  for (const auto& c : result->issued) {
    ASSERT_EQ(::stat(c.seed_file.c_str(), &st), 0) << c.seed_file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << c.seed_file;
    const std::string text = read_text_file(c.seed_file);
    ASSERT_EQ(text.size(), 59u) << "one seed line: " << c.seed_file;
    EXPECT_EQ(text.back(), '\n');
    auto pub = nkey_public_key_from_seed_file(c.seed_file);  // how connections read it
    ASSERT_TRUE(pub.is_ok()) << pub.status().to_string();
    EXPECT_EQ(*pub, c.identity.public_key);
    EXPECT_NE(conf.find("nkey: \"" + c.identity.public_key + "\""), std::string::npos);
    EXPECT_EQ(conf.find(text.substr(0, 58)), std::string::npos) << "a seed leaked into auth.conf";
  }
  IdentityRegistry issued{"ds", {}};
  for (const auto& c : result->issued) issued.identities.push_back(c.identity);
  EXPECT_EQ(conf, nats_authorization_block(issued).value());

  // The registry the hub reads holds the same identities, keys and grants,
  // and no secret.
  ASSERT_TRUE(::stat(result->identities.c_str(), &st) == 0);
  auto registry = load_identities(result->identities);
  ASSERT_TRUE(registry.is_ok()) << registry.status().to_string();
  EXPECT_EQ(registry->subject_prefix, "ds");
  ASSERT_EQ(registry->identities.size(), 2u);
  for (const auto& c : result->issued) {
    const Identity* id = registry->find(c.identity.name);
    ASSERT_NE(id, nullptr) << c.identity.name;
    EXPECT_EQ(id->role, c.identity.role);
    EXPECT_EQ(id->public_key, c.identity.public_key);
    EXPECT_EQ(id->grants, c.identity.grants);
    EXPECT_EQ(read_text_file(result->identities).find(read_text_file(c.seed_file).substr(0, 58)), std::string::npos);
  }
}

TEST(CredsTest, RefusesToOverwriteWithoutForce) {
  TempDir dir("deltasync-creds-unit");
  CredsRequest request;
  request.out_dir = dir.path();
  request.identities = {identity(IdentityRole::kAgent, "store-1:prices"), identity(IdentityRole::kAgent, "store-2:prices")};
  auto first = write_credentials(request);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  const std::string seed1 = read_text_file(dir.file("store-1.nk"));

  // Adding store-3 alone must not silently replace auth.conf (store-1 and 2 would lose access).
  request.identities.push_back(identity(IdentityRole::kAgent, "store-3:prices"));
  auto again = write_credentials(request);
  ASSERT_FALSE(again.is_ok());
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(again.status().message().find("--force"), std::string::npos) << again.status().to_string();
  EXPECT_NE(again.status().message().find("creds add"), std::string::npos) << again.status().to_string();
  EXPECT_FALSE(std::filesystem::exists(dir.file("store-3.nk"))) << "nothing is written when refusing";
  EXPECT_EQ(read_text_file(dir.file("store-1.nk")), seed1);

  request.force = true;
  auto forced = write_credentials(request);
  ASSERT_TRUE(forced.is_ok()) << forced.status().to_string();
  EXPECT_NE(read_text_file(dir.file("store-1.nk")), seed1);
  EXPECT_TRUE(std::filesystem::exists(dir.file("store-3.nk")));
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << "leftover " << entry.path();
  }
}


TEST(IdentitiesTest, JsonRoundTripsAndRefusesWhatItDoesNotKnow) {
  IdentityRegistry reg;
  reg.subject_prefix = "acme";
  reg.identities = {with_key(identity(IdentityRole::kProducer, "erp:prices")),
                    with_key(identity(IdentityRole::kAgent, "store-1:prices:store-1,products")),
                    with_key(identity(IdentityRole::kHub, "hub"))};
  const std::string text = registry_to_json(reg);
  auto back = parse_registry_json(text, "identities.json");
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->subject_prefix, "acme");
  ASSERT_EQ(back->identities.size(), 3u);
  EXPECT_EQ(back->identities[0].name, "erp");  // written sorted by name
  EXPECT_EQ(back->find("store-1")->grants, (std::vector<Grant>{{"prices", "store-1"}, {"products", "*"}}));
  EXPECT_EQ(registry_to_json(*back), text);

  struct Case {
    std::string text;
    std::string says;
  };
  const std::vector<Case> bad = {
      {"not json", "not valid JSON"},
      {R"({"format":2,"subject_prefix":"ds","identities":[]})", "format"},
      {R"({"format":1,"subject_prefix":"ds","identities":[],"extra":1})", "unknown key"},
      {R"({"format":1,"subject_prefix":"ds","identities":[{"name":"a","role":"king"}]})", "unknown role"},
      {R"({"format":1,"subject_prefix":"ds","identities":[{"name":"a","role":"agent","grants":[]}]})",
       "has no business types"},
      {R"({"format":1,"subject_prefix":"ds","identities":[{"name":"a","role":"agent","grants":[{"type":"p","partition":"x.y"}]}]})",
       "partition"},
      {R"({"format":1,"subject_prefix":"ds","identities":[{"name":"a","role":"hub"},{"name":"a","role":"hub"}]})",
       "used twice"},
  };
  for (const Case& c : bad) {
    auto parsed = parse_registry_json(c.text, "identities.json");
    ASSERT_FALSE(parsed.is_ok()) << c.text;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(parsed.status().message().find(c.says), std::string::npos) << c.text << ": " << parsed.status().message();
    EXPECT_NE(parsed.status().message().find("identities.json"), std::string::npos) << parsed.status().message();
  }
}

// ---- incremental changes ----

// Every file of a directory by name, with its bytes.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    files[entry.path().filename().string()] = read_text_file(entry.path().string());
  }
  return files;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

class CredsDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CredsRequest request;
    request.out_dir = dir_.path();
    request.identities = {identity(IdentityRole::kHub, "hub"), identity(IdentityRole::kAgent, "store-1:prices:store-1"),
                          identity(IdentityRole::kProducer, "erp:prices")};
    auto r = write_credentials(request);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  }

  IdentityRegistry registry() {
    auto r = read_creds_dir(dir_.path());
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? *r : IdentityRegistry{};
  }

  // auth.conf is exactly what the registry on disk derives, and every seed
  // file in the directory matches its identity's key.
  void expect_consistent() {
    const IdentityRegistry reg = registry();
    EXPECT_EQ(read_text_file(creds_auth_conf(dir_.path())), nats_authorization_block(reg).value());
    for (const Identity& id : reg.identities) {
      EXPECT_EQ(seed_file_state(dir_.path(), id), "ok") << id.name;
      EXPECT_EQ(mode_of(creds_seed_file(dir_.path(), id.name)), 0600u) << id.name;
    }
    for (const auto& [name, text] : snapshot(dir_.path())) {
      EXPECT_EQ(name.find(".tmp-"), std::string::npos) << "leftover " << name;
    }
  }

  TempDir dir_{"deltasync-creds-dir"};
};

TEST_F(CredsDirTest, AddWritesOnlyTheNewSeedAndKeepsEveryOtherByteIdentical) {
  const auto before = snapshot(dir_.path());
  auto change = add_identity(dir_.path(), identity(IdentityRole::kAgent, "store-2:prices:store-2"));
  ASSERT_TRUE(change.is_ok()) << change.status().to_string();
  EXPECT_TRUE(change->changed);
  EXPECT_TRUE(change->auth_conf_changed);
  EXPECT_EQ(change->seed_file, creds_seed_file(dir_.path(), "store-2"));
  EXPECT_NE(change->summary.find("added agent store-2"), std::string::npos) << change->summary;

  const auto after = snapshot(dir_.path());
  for (const std::string name : {"hub.nk", "store-1.nk", "erp.nk"}) EXPECT_EQ(after.at(name), before.at(name)) << name;
  EXPECT_EQ(after.size(), before.size() + 1);
  const IdentityRegistry reg = registry();
  ASSERT_EQ(reg.identities.size(), 4u);
  for (const Identity& id : reg.identities) {
    // The old identities keep their keys; the new one has the seed's.
    EXPECT_NE(read_text_file(creds_auth_conf(dir_.path())).find(id.public_key), std::string::npos) << id.name;
  }
  EXPECT_EQ(reg.find("store-2")->public_key, change->identity.public_key);
  expect_consistent();
}

TEST_F(CredsDirTest, AddingTheSameIdentityAgainIsANoOpAndOtherGrantsAreAnError) {
  ASSERT_TRUE(add_identity(dir_.path(), identity(IdentityRole::kAgent, "store-2:prices,stock")).is_ok());
  const auto before = snapshot(dir_.path());

  // Same grants in another order: a re-run, nothing changes, no new key.
  auto again = add_identity(dir_.path(), identity(IdentityRole::kAgent, "store-2:stock,prices"));
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_FALSE(again->changed);
  EXPECT_FALSE(again->auth_conf_changed);
  EXPECT_TRUE(again->seed_file.empty());
  EXPECT_NE(again->summary.find("nothing to do"), std::string::npos) << again->summary;
  EXPECT_EQ(snapshot(dir_.path()), before);

  auto other = add_identity(dir_.path(), identity(IdentityRole::kAgent, "store-2:prices,stock,orders"));
  ASSERT_FALSE(other.is_ok());
  EXPECT_EQ(other.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(other.status().message().find("creds grant"), std::string::npos) << other.status().message();
  auto role = add_identity(dir_.path(), identity(IdentityRole::kProducer, "store-2:prices"));
  ASSERT_FALSE(role.is_ok());
  EXPECT_NE(role.status().message().find("already an agent"), std::string::npos) << role.status().message();
  EXPECT_EQ(snapshot(dir_.path()), before) << "a refused add changes nothing";
}

TEST_F(CredsDirTest, ARerunRepairsAnAuthConfAnInterruptedRunLeftStale) {
  const std::string good = read_text_file(creds_auth_conf(dir_.path()));
  dir_.write_file("auth.conf", "authorization { users = [] }\n");  // as if the last write never happened
  auto again = add_identity(dir_.path(), identity(IdentityRole::kAgent, "store-1:prices:store-1"));
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_FALSE(again->changed);
  EXPECT_TRUE(again->auth_conf_changed);
  EXPECT_EQ(read_text_file(creds_auth_conf(dir_.path())), good);
}

TEST_F(CredsDirTest, GrantAddsTypesAndKeepsTheKey) {
  const auto before = snapshot(dir_.path());
  const std::string key = registry().find("store-1")->public_key;
  auto change = grant_types(dir_.path(), "store-1", {parse_grant("stock:store-1").value(), parse_grant("products").value()});
  ASSERT_TRUE(change.is_ok()) << change.status().to_string();
  EXPECT_TRUE(change->changed);
  EXPECT_TRUE(change->auth_conf_changed);  // the agent now subscribes to ds.hb.stock and ds.hb.products
  EXPECT_TRUE(change->seed_file.empty());
  const IdentityRegistry now = registry();
  const Identity* store1 = now.find("store-1");
  ASSERT_NE(store1, nullptr);
  EXPECT_EQ(store1->public_key, key);
  EXPECT_EQ(store1->grants, (std::vector<Grant>{{"prices", "store-1"}, {"stock", "store-1"}, {"products", "*"}}));
  EXPECT_NE(read_text_file(creds_auth_conf(dir_.path())).find("\"ds.hb.stock\""), std::string::npos);
  const auto after = snapshot(dir_.path());
  for (const std::string name : {"hub.nk", "store-1.nk", "erp.nk"}) EXPECT_EQ(after.at(name), before.at(name)) << name;
  expect_consistent();

  // Granting what it holds is a no-op; another partition for a held type is not a grant.
  auto again = grant_types(dir_.path(), "store-1", {parse_grant("products").value()});
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_FALSE(again->changed);
  const auto settled = snapshot(dir_.path());
  auto other = grant_types(dir_.path(), "store-1", {parse_grant("prices").value()});
  ASSERT_FALSE(other.is_ok());
  EXPECT_EQ(other.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(other.status().message().find("partition store-1"), std::string::npos) << other.status().message();
  EXPECT_EQ(snapshot(dir_.path()), settled);
}

TEST_F(CredsDirTest, GrantRefusesWhatTheRoleCannotHoldAndUnknownNames) {
  const auto before = snapshot(dir_.path());
  auto hub = grant_types(dir_.path(), "hub", {parse_grant("prices").value()});
  ASSERT_FALSE(hub.is_ok());
  EXPECT_EQ(hub.status().code(), StatusCode::kInvalidArgument);
  auto producer = grant_types(dir_.path(), "erp", {parse_grant("stock:store-1").value()});
  ASSERT_FALSE(producer.is_ok());
  EXPECT_NE(producer.status().message().find("only agents are bound to a partition"), std::string::npos)
      << producer.status().message();
  auto unknown = grant_types(dir_.path(), "store-9", {parse_grant("prices").value()});
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("known: erp, hub, store-1"), std::string::npos) << unknown.status().message();
  EXPECT_EQ(snapshot(dir_.path()), before);

  for (const std::string bad : {"Prices", "prices:", "prices:a.b", ""}) {
    auto g = parse_grant(bad);
    ASSERT_FALSE(g.is_ok()) << bad;
    EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(parse_grant("prices:store-1").value(), (Grant{"prices", "store-1"}));
}

TEST_F(CredsDirTest, RevokeRemovesTheKeyAndTheSeedAndNeverTheLastIdentity) {
  const auto before = snapshot(dir_.path());
  const std::string key = registry().find("store-1")->public_key;
  auto change = revoke_identity(dir_.path(), "store-1");
  ASSERT_TRUE(change.is_ok()) << change.status().to_string();
  EXPECT_TRUE(change->auth_conf_changed);
  EXPECT_EQ(registry().find("store-1"), nullptr);
  EXPECT_EQ(read_text_file(creds_auth_conf(dir_.path())).find(key), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(creds_seed_file(dir_.path(), "store-1")));
  const auto after = snapshot(dir_.path());
  for (const std::string name : {"hub.nk", "erp.nk"}) EXPECT_EQ(after.at(name), before.at(name)) << name;
  expect_consistent();

  auto unknown = revoke_identity(dir_.path(), "store-1");
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);

  ASSERT_TRUE(revoke_identity(dir_.path(), "erp").is_ok());
  const auto one_left = snapshot(dir_.path());
  auto last = revoke_identity(dir_.path(), "hub");
  ASSERT_FALSE(last.is_ok());
  EXPECT_NE(last.status().message().find("last identity"), std::string::npos) << last.status().message();
  EXPECT_EQ(snapshot(dir_.path()), one_left);
}

TEST_F(CredsDirTest, RotateReplacesOnlyThatSeed) {
  const auto before = snapshot(dir_.path());
  const Identity old = *registry().find("erp");
  auto change = rotate_identity(dir_.path(), "erp");
  ASSERT_TRUE(change.is_ok()) << change.status().to_string();
  EXPECT_TRUE(change->auth_conf_changed);
  EXPECT_NE(change->identity.public_key, old.public_key);
  EXPECT_EQ(change->identity.grants, old.grants);
  const std::string conf = read_text_file(creds_auth_conf(dir_.path()));
  EXPECT_EQ(conf.find(old.public_key), std::string::npos);
  EXPECT_NE(conf.find(change->identity.public_key), std::string::npos);
  const auto after = snapshot(dir_.path());
  EXPECT_NE(after.at("erp.nk"), before.at("erp.nk"));
  for (const std::string name : {"hub.nk", "store-1.nk"}) EXPECT_EQ(after.at(name), before.at(name)) << name;
  expect_consistent();
  EXPECT_EQ(rotate_identity(dir_.path(), "nobody").status().code(), StatusCode::kNotFound);
}

TEST_F(CredsDirTest, ListShowsWhetherEachSeedMatches) {
  const IdentityRegistry reg = registry();
  EXPECT_EQ(seed_file_state(dir_.path(), *reg.find("erp")), "ok");
  std::filesystem::rename(creds_seed_file(dir_.path(), "erp"), dir_.file("elsewhere"));
  EXPECT_EQ(seed_file_state(dir_.path(), *reg.find("erp")), "absent");
  std::filesystem::copy_file(creds_seed_file(dir_.path(), "hub"), creds_seed_file(dir_.path(), "erp"));
  EXPECT_EQ(seed_file_state(dir_.path(), *reg.find("erp")), "MISMATCH");
}

TEST_F(CredsDirTest, ConcurrentChangesLoseNoUpdate) {
  // Each thread opens the directory itself, as separate processes would: the
  // flock, not a mutex of ours, keeps every read-modify-write whole.
  constexpr int kAgents = 8;
  std::vector<std::thread> threads;
  std::vector<Status> results(kAgents);
  for (int i = 0; i < kAgents; ++i) {
    threads.emplace_back([this, i, &results] {
      auto id = parse_creds_identity(IdentityRole::kAgent, fmt::format("agent-{}:prices", i));
      results[static_cast<size_t>(i)] = id.is_ok() ? add_identity(dir_.path(), *id).status() : id.status();
    });
  }
  threads.emplace_back([this] { EXPECT_TRUE(grant_types(dir_.path(), "store-1", {Grant{"stock", "store-1"}}).is_ok()); });
  threads.emplace_back([this] { EXPECT_TRUE(rotate_identity(dir_.path(), "erp").is_ok()); });
  for (auto& t : threads) t.join();
  for (const Status& s : results) EXPECT_TRUE(s.is_ok()) << s.to_string();
  const IdentityRegistry reg = registry();
  EXPECT_EQ(reg.identities.size(), 3u + kAgents);
  EXPECT_NE(reg.find("store-1")->grant("stock"), nullptr);
  expect_consistent();
}

TEST(CredsDirErrorsTest, ADirectoryWithoutARegistryIsNotACredentialsDirectory) {
  TempDir dir("deltasync-creds-dir");
  auto r = read_creds_dir(dir.path());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("not a credentials directory"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("creds init"), std::string::npos) << r.status().message();
  auto add = add_identity(dir.file("missing"), identity(IdentityRole::kHub, "hub"));
  ASSERT_FALSE(add.is_ok());
  EXPECT_NE(add.status().message().find("no such directory"), std::string::npos) << add.status().message();
  EXPECT_FALSE(std::filesystem::exists(dir.file("missing")));
  EXPECT_TRUE(snapshot(dir.path()).empty());
}

TEST(CredsReloadTest, OnlyARunningNatsServerIsSignalled) {
  TempDir dir("deltasync-creds-reload");
  // This test binary is running but is not nats-server.
  auto self = find_nats_server(std::to_string(::getpid()));
  ASSERT_FALSE(self.is_ok());
  EXPECT_EQ(self.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(self.status().message().find("not nats-server"), std::string::npos) << self.status().message();
  // The same through a pid file.
  auto from_file = find_nats_server(dir.write_file("nats.pid", std::to_string(::getpid()) + "\n"));
  ASSERT_FALSE(from_file.is_ok());
  EXPECT_NE(from_file.status().message().find("nats.pid"), std::string::npos) << from_file.status().message();
  // A process that has exited.
  pid_t gone = 0;
  if (pid_t child = ::fork(); child == 0) {
    ::_exit(0);
  } else {
    ASSERT_GT(child, 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    gone = child;
  }
  auto exited = find_nats_server(std::to_string(gone));
  ASSERT_FALSE(exited.is_ok());
  EXPECT_EQ(exited.status().code(), StatusCode::kNotFound);
  for (const std::string& bad : std::vector<std::string>{"", "nats", dir.write_file("junk.pid", "twelve\n"), "1"}) {
    auto r = find_nats_server(bad);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad << ": " << r.status().message();
  }
}

}  // namespace
}  // namespace ds
