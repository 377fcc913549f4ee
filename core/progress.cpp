#include "core/progress.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace berth {
namespace {

bool same_but_progress(const Berth& a, const Berth& b) {
  return a.owner == b.owner && a.seq == b.seq && a.request == b.request &&
         a.owner_uid == b.owner_uid && a.placement == b.placement && a.vfs == b.vfs &&
         a.routes == b.routes && a.target == b.target && a.plan == b.plan &&
         a.leftovers == b.leftovers;
}

nlohmann::json done_to_json(const DoneStep& d) {
  return {{"step", step_to_json(d.step)}, {"undo", d.undo}};
}

}  // namespace

std::optional<std::string> progress_line(Berth& written, const Berth& now) {
  if (!same_but_progress(written, now)) return std::nullopt;
  const auto differs =
      std::mismatch(written.done.begin(), written.done.end(), now.done.begin(), now.done.end());
  const size_t keep = static_cast<size_t>(differs.first - written.done.begin());
  nlohmann::json line = {
      {"state", to_string(now.state)}, {"operation", to_string(now.op)}, {"keep", keep}};
  if (keep < now.done.size()) {
    auto& add = line["add"] = nlohmann::json::array();
    for (size_t i = keep; i < now.done.size(); ++i) add.push_back(done_to_json(now.done[i]));
  }
  if (now.in_flight) line["in_flight"] = step_to_json(*now.in_flight);
  if (!now.error.empty()) line["error"] = now.error;
  if (!now.reason.empty()) line["reason"] = now.reason;

  written.state = now.state;
  written.op = now.op;
  written.done.erase(written.done.begin() + static_cast<std::ptrdiff_t>(keep), written.done.end());
  written.done.insert(written.done.end(), now.done.begin() + static_cast<std::ptrdiff_t>(keep),
                      now.done.end());
  written.in_flight = now.in_flight;
  written.error = now.error;
  written.reason = now.reason;
  return line.dump();
}

Status apply_progress(Berth& b, const nlohmann::json& line) {
  try {
    auto state = berth_state_from_string(line.at("state").get<std::string>());
    if (!state)
      return make_error(ErrorCode::bad_request,
                        "unknown state '" + line.at("state").get<std::string>() + "'");
    const auto keep = line.at("keep").get<size_t>();
    if (keep > b.done.size())
      return make_error(ErrorCode::bad_request, "progress keeps " + std::to_string(keep) +
                                                    " steps of " + std::to_string(b.done.size()));
    std::vector<DoneStep> added;
    if (line.contains("add"))
      for (const auto& d : line.at("add")) {
        auto step = step_from_json(d.at("step"));
        if (!step) return step.error();
        added.push_back({std::move(*step), d.at("undo").get<std::string>()});
      }
    std::optional<Step> in_flight;
    if (line.contains("in_flight")) {
      auto step = step_from_json(line.at("in_flight"));
      if (!step) return step.error();
      in_flight = std::move(*step);
    }
    // Nothing is changed until the whole line has been read.
    b.state = *state;
    b.op = operation_from_string(line.at("operation").get<std::string>());
    b.done.erase(b.done.begin() + static_cast<std::ptrdiff_t>(keep), b.done.end());
    b.done.insert(b.done.end(), std::make_move_iterator(added.begin()),
                  std::make_move_iterator(added.end()));
    b.in_flight = std::move(in_flight);
    b.error = line.value("error", "");
    b.reason = line.value("reason", "");
    return ok_status();
  } catch (const std::exception& e) {
    return make_error(ErrorCode::bad_request, std::string("bad progress line: ") + e.what());
  }
}

}  // namespace berth
