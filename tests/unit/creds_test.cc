// The pure parts of `deltasync creds` (tools/creds.h) and the identity
// registry it writes (shared/identities.h): argument parsing, validation, the
// authorization block text, identities.json and the file rules. That the
// block really grants and denies what it says, and that the hub holds every
// identity to its grants, is tests/integration/security_test.cc.

#include "tools/creds.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "shared/identities.h"
#include "shared/nats.h"
#include "shared/nkeys.h"
#include "tools/local_host.h"
#include "tools/temp_dir.h"

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
      nats_user_entry(with_key(identity(IdentityRole::kAgent, "store-1:prices,products")), "acme.ds");
  EXPECT_EQ(entry,
            "    { nkey: \"UKEY\", permissions: {\n"
            "        publish:   { allow: [\"acme.ds.hub.*.store-1\", \"$JS.API.CONSUMER.INFO.*.ag_store-1\", "
            "\"$JS.ACK.*.ag_store-1.>\"] }\n"
            "        subscribe: { allow: [\"acme.ds.push.store-1.>\", \"acme.ds.agent.store-1.>\", "
            "\"acme.ds.hb.prices\", \"acme.ds.hb.products\", \"_INBOX_store-1.>\"] }\n"
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
  EXPECT_EQ(nats_user_entry(with_key(identity(IdentityRole::kHub, "hub")), "ds"),
            "    { nkey: \"UKEY\", permissions: { publish: { allow: \">\", deny: [\"$JS.API.STREAM.PURGE.>\", "
            "\"$JS.API.STREAM.DELETE.>\", \"$JS.API.STREAM.MSG.DELETE.>\"] }, subscribe: \">\" } }\n");
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
  EXPECT_EQ(conf, nats_authorization_block(result->issued, "ds"));

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

}  // namespace
}  // namespace ds
