#pragma once
// The JSON Web Token a GitHub App authenticates with: RS256 over base64url(header).base64url(
// claims), claims iss (the app id), iat (60 s in the past, for clock drift) and exp (iat + 9 min:
// GitHub refuses more than 10). OpenSSL signs; the key is the app's PEM private key.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/expected.hpp"

namespace berth::net {

std::string base64url(std::string_view bytes);

Expected<std::string> github_app_jwt(const std::string& private_key_pem, uint64_t app_id,
                                     int64_t now);

}  // namespace berth::net
