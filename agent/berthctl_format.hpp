#pragma once
// berthctl's readable output: tables from the API's JSON documents.
#include <string>

#include <nlohmann/json.hpp>

namespace berth::ctl {

std::string format_inventory(const nlohmann::json& inv);
std::string format_berth_list(const nlohmann::json& berths);
std::string format_berth(const nlohmann::json& berth);

}  // namespace berth::ctl
