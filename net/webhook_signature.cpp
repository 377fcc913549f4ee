#include "net/webhook_signature.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include <array>

namespace berth::net {

std::string_view to_string(SignatureCheck c) {
  switch (c) {
    case SignatureCheck::valid:
      return "valid";
    case SignatureCheck::missing:
      return "missing";
    case SignatureCheck::malformed:
      return "malformed";
    case SignatureCheck::mismatch:
      return "mismatch";
  }
  return "mismatch";
}

namespace {

bool mac(std::string_view secret, std::string_view body, std::array<unsigned char, 32>& out) {
  unsigned int len = 0;
  return HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
              reinterpret_cast<const unsigned char*>(body.data()), body.size(), out.data(),
              &len) != nullptr &&
         len == out.size();
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string hmac_sha256_hex(std::string_view secret, std::string_view body) {
  std::array<unsigned char, 32> digest{};
  if (!mac(secret, body, digest)) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (unsigned char b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

// An HMAC-SHA256 context with its key set; what each check starts from.
struct WebhookKeys::Keyed {
  EVP_MAC_CTX* ctx = nullptr;
  ~Keyed() { EVP_MAC_CTX_free(ctx); }
};

WebhookKeys::WebhookKeys(const std::vector<std::string>& secrets) {
  EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (!hmac) return;  // no secret can match: every check is a mismatch
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                               OSSL_PARAM_construct_end()};
  for (const auto& secret : secrets) {
    if (secret.empty()) continue;
    auto k = std::make_unique<Keyed>();
    k->ctx = EVP_MAC_CTX_new(hmac);
    if (k->ctx && EVP_MAC_init(k->ctx, reinterpret_cast<const unsigned char*>(secret.data()),
                               secret.size(), params) == 1)
      keyed_.push_back(std::move(k));
  }
  EVP_MAC_free(hmac);
}

WebhookKeys::~WebhookKeys() = default;
WebhookKeys::WebhookKeys(WebhookKeys&&) noexcept = default;
WebhookKeys& WebhookKeys::operator=(WebhookKeys&&) noexcept = default;

SignatureCheck WebhookKeys::check(std::string_view header, std::string_view body) const {
  if (header.empty()) return SignatureCheck::missing;
  constexpr std::string_view prefix = "sha256=";
  if (!header.starts_with(prefix) || header.size() != prefix.size() + 64)
    return SignatureCheck::malformed;
  std::array<unsigned char, 32> given{};
  for (size_t i = 0; i < given.size(); ++i) {
    const int hi = hex_value(header[prefix.size() + 2 * i]);
    const int lo = hex_value(header[prefix.size() + 2 * i + 1]);
    if (hi < 0 || lo < 0) return SignatureCheck::malformed;
    given[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  // Every secret is tried, so the time taken does not tell which one (or whether one) matched.
  bool ok = false;
  for (const auto& k : keyed_) {
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(k->ctx);
    std::array<unsigned char, 32> want{};
    size_t len = 0;
    const bool done = ctx &&
                      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(body.data()),
                                     body.size()) == 1 &&
                      EVP_MAC_final(ctx, want.data(), &len, want.size()) == 1 && len == want.size();
    EVP_MAC_CTX_free(ctx);
    if (done) ok |= CRYPTO_memcmp(want.data(), given.data(), want.size()) == 0;
  }
  return ok ? SignatureCheck::valid : SignatureCheck::mismatch;
}

SignatureCheck check_signature(std::string_view header, std::string_view body,
                               const std::vector<std::string>& secrets) {
  return WebhookKeys(secrets).check(header, body);
}

}  // namespace berth::net
