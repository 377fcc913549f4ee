#pragma once
// GET /: the node's live status page, one self-contained HTML document (CSS and a little
// JavaScript inline; no CDN, no framework) compiled into berthd. It reads /v1/inventory,
// /v1/berths and /v1/usage, and follows /v1/events to update without reloading.
#include <string_view>

namespace berth::agent {

std::string_view status_page_html();

}  // namespace berth::agent
