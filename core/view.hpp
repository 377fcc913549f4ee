#pragma once
// API documents: a berth or the inventory as callers see them (persistence has its own format).
#include <nlohmann/json.hpp>

#include "core/berth.hpp"
#include "core/ledger.hpp"

namespace berth {

nlohmann::json berth_view(const Berth& b, const Inventory& inv);
nlohmann::json inventory_view(const Inventory& inv, const Ledger& ledger);

}  // namespace berth
