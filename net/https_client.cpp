#include "net/https_client.hpp"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace berth::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

asio::awaitable<Expected<HttpsResponse>> https_request(std::string method, std::string url,
                                                       std::map<std::string, std::string> headers,
                                                       std::string body, std::string ca_file,
                                                       std::chrono::seconds timeout) {
  constexpr std::string_view scheme = "https://";
  if (!url.starts_with(scheme))
    co_return make_error(ErrorCode::bad_request, "'" + url + "' is not an https:// URL");
  const std::string rest = url.substr(scheme.size());
  const auto slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  const std::string target = slash == std::string::npos ? "/" : rest.substr(slash);
  std::string host = authority, port = "443";
  if (auto colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  auto fail = [&](const std::string& what, const beast::error_code& ec) {
    const std::string why = ec == beast::error::timeout
                                ? "timed out after " + std::to_string(timeout.count()) + " s"
                                : ec.message();
    return make_error(ErrorCode::internal, method + " " + url + ": " + what + ": " + why);
  };
  asio::ssl::context tls(asio::ssl::context::tls_client);
  beast::error_code ec;
  if (ca_file.empty())
    tls.set_default_verify_paths(ec);
  else
    tls.load_verify_file(ca_file, ec);
  if (ec) co_return fail("CA certificates", ec);
  tls.set_verify_mode(asio::ssl::verify_peer);
  auto ex = co_await asio::this_coro::executor;
  beast::ssl_stream<beast::tcp_stream> stream(ex, tls);
  stream.set_verify_callback(asio::ssl::host_name_verification(host));
  if (!SSL_set_tlsext_host_name(stream.native_handle(), host.c_str()))
    co_return make_error(ErrorCode::internal, method + " " + url + ": cannot set SNI");
  auto& tcp = beast::get_lowest_layer(stream);
  tcp.expires_after(timeout);
  asio::ip::tcp::resolver resolver(ex);
  auto [rec, endpoints] =
      co_await resolver.async_resolve(host, port, asio::as_tuple(asio::use_awaitable));
  if (rec) co_return fail("resolve", rec);
  auto [cec, ep] = co_await tcp.async_connect(endpoints, asio::as_tuple(asio::use_awaitable));
  if (cec) co_return fail("connect", cec);
  auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client,
                                               asio::as_tuple(asio::use_awaitable));
  if (hec) co_return fail("TLS handshake", hec);
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
  req.set(bhttp::field::host, authority);
  req.set(bhttp::field::user_agent, "berthd");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = std::move(body);
  req.prepare_payload();
  auto [wec, wn] = co_await bhttp::async_write(stream, req, asio::as_tuple(asio::use_awaitable));
  if (wec) co_return fail("write", wec);
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(4 << 20);
  auto [red, rn] =
      co_await bhttp::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
  if (red) co_return fail("read", red);
  HttpsResponse out;
  out.status = parser.get().result_int();
  out.body = parser.get().body();
  tcp.expires_after(std::chrono::seconds(1));
  auto [sec] = co_await stream.async_shutdown(asio::as_tuple(asio::use_awaitable));
  (void)sec;
  co_return out;
}

}  // namespace berth::net
