#pragma once
// A webhook delivery's body reduced to what berth reads, by simdjson's on-demand parser: the
// action; workflow_job's id, run_id, labels and runner_name; repository full_name and
// owner.login; installation.id. Nothing else of a payload of many kilobytes is materialized.
// The result has the payload's own shape (core::github reads it as it would the whole); a body
// that is not a JSON object gives a discarded value.
#include <string_view>

#include <nlohmann/json.hpp>

namespace berth::net {

nlohmann::json parse_webhook_payload(std::string_view body);

}  // namespace berth::net
