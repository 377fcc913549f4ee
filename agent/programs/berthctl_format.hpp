#pragma once
// berthctl's readable output: tables from the API's JSON documents.
#include <string>

#include <nlohmann/json.hpp>

namespace berth::ctl {

std::string format_inventory(const nlohmann::json& inv);
std::string format_berth_list(const nlohmann::json& berths);
// GET /v1/runners: queued, starting, running, finished CI runners.
std::string format_runners(const nlohmann::json& doc);
std::string format_berth(const nlohmann::json& berth);

// One event of the stream on one line, e.g. "[12] berth slurm/4 degraded: GPU ... gone".
std::string format_event(const nlohmann::json& ev);

}  // namespace berth::ctl
