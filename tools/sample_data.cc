#include "tools/sample_data.h"

#include <array>
#include <random>

#include <fmt/format.h>

namespace ds {
namespace {

constexpr std::array<const char*, 8> kCategories = {"dairy", "bakery", "produce", "beverages",
                                                    "frozen", "household", "snacks", "personal care"};
constexpr std::array<const char*, 4> kUnits = {"piece", "kg", "litre", "pack"};
constexpr std::array<const char*, 10> kWords = {"organic", "classic", "family", "fresh", "premium",
                                                "value", "mini", "extra", "light", "original"};

std::string sku(uint64_t i) { return fmt::format("sku-{:05}", i + 1); }
std::string store(uint64_t s) { return fmt::format("store-{}", s + 1); }

// Business time of a record: a fixed origin plus the round, so repeated runs
// produce the same data and later rounds are later in business time.
int64_t business_ts(uint64_t round, uint64_t i) {
  return 1767225600000 + static_cast<int64_t>(round) * 3600000 + static_cast<int64_t>(i);
}

bool deleted(const SampleSpec& spec, uint64_t n) {
  return spec.round > 0 && spec.delete_every > 0 && n % spec.delete_every == spec.delete_every - 1;
}

}  // namespace

const std::vector<std::string>& sample_types() {
  static const std::vector<std::string> kTypes = {"products", "prices", "inventory"};
  return kTypes;
}

Result<std::vector<IngestRecord>> sample_records(const SampleSpec& spec) {
  std::mt19937_64 rng(spec.seed * 7919 + spec.round);
  std::vector<IngestRecord> out;
  uint64_t n = 0;
  auto add = [&](std::string key, Fields fields, std::optional<std::string> partition) {
    IngestRecord r;
    r.key = std::move(key);
    r.ts = business_ts(spec.round, n);
    if (deleted(spec, n)) {
      r.op = Op::kDelete;
      r.partition = std::move(partition);
    } else {
      r.fields = std::move(fields);
    }
    ++n;
    out.push_back(std::move(r));
  };

  if (spec.type == "products") {
    for (uint64_t i = 0; i < spec.articles; ++i) {
      std::string name = fmt::format("{} {} {}", kWords[rng() % kWords.size()], kCategories[i % kCategories.size()],
                                     i + 1);
      add(sku(i),
          Fields{{"name", name},
                 {"category", std::string(kCategories[i % kCategories.size()])},
                 {"unit", std::string(kUnits[rng() % kUnits.size()])},
                 {"active", (rng() % 20) != 0},
                 {"attributes", JsonText{fmt::format(R"({{"shelf_life_days":{},"organic":{}}})", 1 + rng() % 365,
                                                     (rng() % 4 == 0) ? "true" : "false")}}},
          std::nullopt);
    }
  } else if (spec.type == "prices" || spec.type == "inventory") {
    const bool prices = spec.type == "prices";
    for (uint64_t s = 0; s < spec.stores; ++s) {
      for (uint64_t i = 0; i < spec.articles; ++i) {
        Fields f{{"store_id", store(s)}, {"sku", sku(i)}};
        if (prices) {
          f.emplace("price", static_cast<double>(99 + rng() % 4900) / 100.0);
          f.emplace("currency", std::string("EUR"));
          f.emplace("valid_from", business_ts(spec.round, 0));
        } else {
          int64_t on_hand = static_cast<int64_t>(rng() % 500);
          f.emplace("on_hand", on_hand);
          f.emplace("reserved", static_cast<int64_t>(rng() % 20));
          f.emplace("updated_by", std::string(spec.round == 0 ? "initial-load" : "till"));
        }
        add(store(s) + "/" + sku(i), std::move(f), store(s));
      }
    }
  } else {
    return Status::invalid_argument("no sample data for type '" + spec.type +
                                    "' (there is for products, prices, inventory)");
  }
  return out;
}

}  // namespace ds
