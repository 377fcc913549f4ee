#pragma once
// A berth's progress through an operation, written as a line after its record instead of the
// record again. An attach or a detach changes the record at every step, but only in a few fields
// (its state and operation, the steps done, the step in flight, its error and reason); a line
// with those is a fraction of the record to encode and one append to write.
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/berth.hpp"
#include "core/expected.hpp"

namespace berth {

// The line that takes the record `written` to `now`, and `written` brought up to `now`; nullopt
// (and `written` untouched) when `now` differs in more than its progress: its whole record is
// then written again. Only what a record keeps is compared (not the request id of the operation
// nor its first error, which a restart does not keep either).
std::optional<std::string> progress_line(Berth& written, const Berth& now);

// Applies a line of progress_line() to the berth read from the record before it.
Status apply_progress(Berth& b, const nlohmann::json& line);

}  // namespace berth
