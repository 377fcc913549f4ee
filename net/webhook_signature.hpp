#pragma once
// GitHub's webhook signature: X-Hub-Signature-256 is "sha256=" and the hex HMAC-SHA256 of the raw
// body under the shared secret. Checked in constant time against each configured secret (the
// second one lets a secret be rotated without dropping deliveries), before the body is parsed.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace berth::net {

enum class SignatureCheck { valid, missing, malformed, mismatch };
std::string_view to_string(SignatureCheck c);

// Lower-case hex of HMAC-SHA256(secret, body).
std::string hmac_sha256_hex(std::string_view secret, std::string_view body);

// The configured secrets, each keyed into an HMAC context once: a check copies the keyed
// context instead of fetching the algorithm and hashing the key for every delivery.
class WebhookKeys {
 public:
  explicit WebhookKeys(const std::vector<std::string>& secrets);
  ~WebhookKeys();
  WebhookKeys(WebhookKeys&&) noexcept;
  WebhookKeys& operator=(WebhookKeys&&) noexcept;
  WebhookKeys(const WebhookKeys&) = delete;
  WebhookKeys& operator=(const WebhookKeys&) = delete;

  SignatureCheck check(std::string_view header, std::string_view body) const;

 private:
  struct Keyed;
  std::vector<std::unique_ptr<Keyed>> keyed_;
};

// One check with keys made for it (tests; the webhook listener keeps a WebhookKeys).
SignatureCheck check_signature(std::string_view header, std::string_view body,
                               const std::vector<std::string>& secrets);

}  // namespace berth::net
