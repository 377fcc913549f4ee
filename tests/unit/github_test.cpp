// The webhook front door's pure parts: flavors, the runner book's state machine, the runner's
// OCI config, the signature and the GitHub App JWT.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/app/github_config.hpp"
#include "core/github.hpp"
#include "core/runner_spec.hpp"
#include "net/github_jwt.hpp"
#include "net/webhook_payload.hpp"
#include "net/webhook_signature.hpp"

namespace berth::github {
namespace {
using nlohmann::json;

json flavor(const std::string& name, json labels, bool exact = false, unsigned max = 0) {
  return {{"name", name},
          {"labels", labels},
          {"exact", exact},
          {"max", max},
          {"request", {{"gpus", 1}}},
          {"runner", {{"rootfs", "/srv/runner"}, {"args", {"/run.sh", "{jit_config}"}}}}};
}

Settings settings(json flavors, unsigned max_runners = 4) {
  auto s = parse_settings({{"flavors", flavors}, {"max_runners", max_runners}});
  EXPECT_TRUE(s) << (s ? "" : s.error().message);
  return s ? *s : Settings{};
}

Delivery job_event(const std::string& action, uint64_t id, json labels,
                   const std::string& runner = "", const std::string& delivery = "") {
  json p = {
      {"action", action},
      {"workflow_job", {{"id", id}, {"run_id", 7}, {"labels", labels}, {"runner_name", runner}}},
      {"repository", {{"full_name", "octo/repo"}, {"owner", {{"login", "octo"}}}}},
      {"installation", {{"id", 99}}}};
  return {delivery.empty() ? action + "-" + std::to_string(id) : delivery, "workflow_job", p};
}

size_t starts(const Outcome& o) {
  size_t n = 0;
  for (const auto& a : o.actions) n += std::holds_alternative<gh::Start>(a);
  return n;
}
size_t stops(const Outcome& o) {
  size_t n = 0;
  for (const auto& a : o.actions) n += std::holds_alternative<gh::Stop>(a);
  return n;
}

TEST(GithubFlavors, FewestLabelsWinAndSelfHostedIsImplicitAndCaseIsIgnored) {
  auto s = settings(
      json::array({flavor("big", {"gpu", "a100", "x8"}), flavor("small", {"gpu", "a100"})}));
  auto m = match_flavor(s.flavors, {"self-hosted", "GPU", "a100"});
  ASSERT_TRUE(m.flavor);
  EXPECT_EQ(m.flavor->name, "small");
  m = match_flavor(s.flavors, {"gpu", "x8"});
  ASSERT_TRUE(m.flavor);
  EXPECT_EQ(m.flavor->name, "big");
  m = match_flavor(s.flavors, {"gpu", "h100"});
  EXPECT_FALSE(m.flavor);
  EXPECT_NE(m.reason.find("no flavor takes labels [gpu,h100]"), std::string::npos);
}

TEST(GithubFlavors, ExactFlavorsTakeOnlyTheirOwnLabels) {
  auto s = settings(json::array({flavor("big", {"gpu", "x8"}, true)}));
  EXPECT_FALSE(match_flavor(s.flavors, {"gpu"}).flavor) << "a small job took a big runner";
  EXPECT_TRUE(match_flavor(s.flavors, {"self-hosted", "x8", "gpu"}).flavor);
}

TEST(GithubFlavors, TiesAreFoundAtLoad) {
  auto tie = parse_settings(
      {{"flavors", json::array({flavor("a", {"gpu", "x"}), flavor("b", {"gpu", "y"})})}});
  ASSERT_FALSE(tie);
  EXPECT_NE(tie.error().message.find("flavors 'a' and 'b' tie"), std::string::npos);
  EXPECT_TRUE(parse_settings(
      {{"flavors", json::array({flavor("a", {"gpu", "x"}), flavor("b", {"cpu", "y"})})}}));
  EXPECT_TRUE(parse_settings({{"flavors", json::array({flavor("a", {"gpu", "x"}, true),
                                                       flavor("b", {"gpu", "y"}, true)})}}));
  EXPECT_FALSE(
      parse_settings({{"flavors", json::array({flavor("a", {"gpu"}), flavor("a", {"cpu"})})}}));
}

TEST(GithubFlavors, BadFlavorsNameTheirField) {
  json f = flavor("a", {"gpu"});
  f["runner"]["rootfs"] = "relative";
  auto r = parse_settings({{"flavors", {f}}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("flavors[0].runner.rootfs"), std::string::npos);
  f = flavor("a", {"gpu"});
  f["request"] = {{"gpus", "two"}};
  r = parse_settings({{"flavors", {f}}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("flavors[0].request"), std::string::npos);
  f = flavor("a", {"self-hosted"});
  EXPECT_FALSE(parse_settings({{"flavors", {f}}}));
}

TEST(GithubBook, QueuedStartsARunnerOnceWhateverTheDeliveries) {
  auto s = settings(json::array({flavor("gpu", {"gpu"})}));
  Book b;
  auto o = on_delivery(b, s, job_event("queued", 1, {"gpu"}, "", "d1"), 100);
  EXPECT_EQ(o.status, 200u);
  EXPECT_EQ(starts(o), 1u);
  EXPECT_EQ(b.runners.at(1).state, State::starting);
  for (int i = 0; i < 4; ++i) {
    o = on_delivery(b, s, job_event("queued", 1, {"gpu"}, "", "d1"), 101);
    EXPECT_EQ(starts(o), 0u);
    EXPECT_NE(o.reason.find("already handled"), std::string::npos);
  }
  o = on_delivery(b, s, job_event("queued", 1, {"gpu"}, "", "d2"), 102);
  EXPECT_EQ(starts(o), 0u) << "the same job under another delivery id started a second runner";
  EXPECT_EQ(b.runners.size(), 1u);
  EXPECT_EQ(b.deliveries.size(), 2u);
}

TEST(GithubBook, NonMatchingAndOtherEventsAre202) {
  auto s = settings(json::array({flavor("gpu", {"gpu"})}));
  Book b;
  EXPECT_EQ(on_delivery(b, s, job_event("queued", 1, {"ubuntu-latest"}), 1).status, 202u);
  EXPECT_EQ(on_delivery(b, s, job_event("waiting", 2, {"gpu"}), 1).status, 202u);
  EXPECT_EQ(on_delivery(b, s, {"x", "push", json::object()}, 1).status, 202u);
  EXPECT_EQ(on_delivery(b, s, {"y", "ping", json::object()}, 1).status, 200u);
  EXPECT_EQ(on_delivery(b, s, {"z", "workflow_job", json{{"action", "queued"}}}, 1).status, 400u);
  EXPECT_TRUE(b.runners.empty());
}

TEST(GithubBook, CompletedStopsTheRunnerAndALaterCompletedIsHarmless) {
  auto s = settings(json::array({flavor("gpu", {"gpu"})}));
  Book b;
  (void)on_delivery(b, s, job_event("queued", 1, {"gpu"}), 1);
  (void)on_started(b, s, 1, 2);
  EXPECT_EQ(b.runners.at(1).state, State::running);
  auto o = on_delivery(b, s, job_event("in_progress", 1, {"gpu"}, "berth-1"), 3);
  EXPECT_EQ(b.runners.at(1).took_job, 1u);
  o = on_delivery(b, s, job_event("completed", 1, {"gpu"}, "berth-1"), 4);
  EXPECT_EQ(stops(o), 1u);
  EXPECT_EQ(b.runners.at(1).state, State::stopping);
  (void)on_stopped(b, s, 1, 5);
  EXPECT_EQ(b.runners.at(1).state, State::finished);
  o = on_delivery(b, s, job_event("completed", 1, {"gpu"}, "berth-1", "again"), 6);
  EXPECT_EQ(stops(o) + starts(o), 0u);
}

TEST(GithubBook, CompletedBeforeQueuedNeverStartsARunner) {
  auto s = settings(json::array({flavor("gpu", {"gpu"})}));
  Book b;
  auto o = on_delivery(b, s, job_event("completed", 1, {"gpu"}), 1);
  EXPECT_EQ(stops(o) + starts(o), 0u);
  o = on_delivery(b, s, job_event("queued", 1, {"gpu"}), 2);
  EXPECT_EQ(starts(o), 0u);
  EXPECT_NE(o.reason.find("already completed"), std::string::npos);
  o = on_delivery(b, s, job_event("in_progress", 2, {"gpu"}, "elsewhere"), 3);
  o = on_delivery(b, s, job_event("queued", 2, {"gpu"}), 4);
  EXPECT_EQ(starts(o), 0u) << "a job another runner already took got a runner";
}

TEST(GithubBook, TheRunnerDyingReleasesAndALaterCompletedIsHarmless) {
  auto s = settings(json::array({flavor("gpu", {"gpu"})}));
  Book b;
  (void)on_delivery(b, s, job_event("queued", 1, {"gpu"}), 1);
  (void)on_started(b, s, 1, 2);
  auto o = on_exited(b, s, 1, "runner exited", 3);
  EXPECT_EQ(stops(o), 1u);
  (void)on_stopped(b, s, 1, 4);
  o = on_delivery(b, s, job_event("completed", 1, {"gpu"}, "berth-1"), 5);
  EXPECT_EQ(stops(o) + starts(o), 0u);
  EXPECT_EQ(b.runners.at(1).state, State::finished);
}

TEST(GithubBook, LimitsQueueInOrderAndCapacityMovesTheQueue) {
  auto s = settings(json::array({flavor("gpu", {"gpu"}, false, 1), flavor("cpu", {"cpu"})}), 2);
  Book b;
  EXPECT_EQ(starts(on_delivery(b, s, job_event("queued", 1, {"gpu"}), 1)), 1u);
  EXPECT_EQ(starts(on_delivery(b, s, job_event("queued", 2, {"gpu"}), 2)), 0u) << "flavor max";
  EXPECT_EQ(starts(on_delivery(b, s, job_event("queued", 3, {"gpu"}), 3)), 0u);
  EXPECT_EQ(starts(on_delivery(b, s, job_event("queued", 4, {"cpu"}), 4)), 1u)
      << "another flavor's capacity is not held up by a full one";
  EXPECT_EQ(starts(on_delivery(b, s, job_event("queued", 5, {"cpu"}), 5)), 0u) << "global max";
  (void)on_exited(b, s, 1, "done", 6);
  auto o = on_stopped(b, s, 1, 7);
  ASSERT_EQ(starts(o), 1u);
  EXPECT_EQ(std::get<gh::Start>(o.actions[0]).job_id, 2u) << "not first in, first out";
  (void)on_exited(b, s, 4, "done", 8);
  o = on_stopped(b, s, 4, 9);
  ASSERT_EQ(starts(o), 1u);
  EXPECT_EQ(std::get<gh::Start>(o.actions[0]).job_id, 5u)
      << "job 3 waits for its flavor; job 5 fits";
}

TEST(GithubBook, NoCapacityPutsTheRunnerBackInItsPlace) {
  auto s = settings(json::array({flavor("gpu", {"gpu"})}), 1);
  Book b;
  (void)on_delivery(b, s, job_event("queued", 1, {"gpu"}), 1);
  (void)on_delivery(b, s, job_event("queued", 2, {"gpu"}), 2);
  auto o = on_start_failed(b, s, 1, "no_capacity", true, 3);
  EXPECT_EQ(b.runners.at(1).state, State::queued);
  EXPECT_EQ(starts(on_tick(b, s, 4)), 0u) << "retried before its pause";
  o = on_tick(b, s, 10);
  ASSERT_EQ(starts(o), 1u);
  EXPECT_EQ(std::get<gh::Start>(o.actions[0]).job_id, 1u);
}

TEST(GithubBook, RunnersThatNeverStartOrNeverFinishAreReaped) {
  auto s = settings(json::array({flavor("gpu", {"gpu"})}));
  s.reap_after_s = 60;
  s.max_runtime_s = 600;
  Book b;
  (void)on_delivery(b, s, job_event("queued", 1, {"gpu"}), 0);
  (void)on_delivery(b, s, job_event("queued", 2, {"gpu"}), 0);
  (void)on_started(b, s, 2, 1);
  (void)on_delivery(b, s, job_event("in_progress", 2, {"gpu"}, "berth-2"), 2);
  EXPECT_EQ(stops(on_tick(b, s, 30)), 0u);
  auto o = on_tick(b, s, 61);
  ASSERT_EQ(stops(o), 1u);
  EXPECT_EQ(std::get<gh::Stop>(o.actions[0]).job_id, 1u);
  EXPECT_NE(b.runners.at(1).outcome.find("reaped: never started"), std::string::npos);
  o = on_tick(b, s, 601);
  ASSERT_EQ(stops(o), 1u);
  EXPECT_NE(b.runners.at(2).outcome.find("max_runtime_s"), std::string::npos);
}

TEST(GithubBook, AStolenRunnerIsStoppedByTheJobItTook) {
  auto s = settings(json::array({flavor("gpu", {"gpu"})}));
  Book b;
  (void)on_delivery(b, s, job_event("queued", 1, {"gpu"}), 0);
  (void)on_delivery(b, s, job_event("queued", 2, {"gpu"}), 0);
  (void)on_started(b, s, 1, 1);
  (void)on_started(b, s, 2, 1);
  // GitHub gave job 2 to the runner started for job 1, and job 1 to the one for job 2.
  (void)on_delivery(b, s, job_event("in_progress", 2, {"gpu"}, "berth-1"), 2);
  (void)on_delivery(b, s, job_event("in_progress", 1, {"gpu"}, "berth-2"), 2);
  auto o = on_delivery(b, s, job_event("completed", 2, {"gpu"}, "berth-1"), 3);
  ASSERT_EQ(stops(o), 1u);
  EXPECT_EQ(std::get<gh::Stop>(o.actions[0]).job_id, 1u) << "stopped a runner still at work";
  EXPECT_EQ(b.runners.at(2).state, State::running);
}

TEST(GithubBook, TheFilteredParseKeepsWhatTheBookReads) {
  auto full = job_event("in_progress", 42, {"gpu", "x"}, "berth-42").payload;
  full["workflow_job"]["steps"] = json::array({{{"name", "a"}, {"number", 1}}});
  full["sender"] = {{"login", "someone"}, {"id", 5}};
  auto kept = net::parse_webhook_payload(full.dump());
  ASSERT_FALSE(kept.is_discarded());
  EXPECT_FALSE(kept.contains("sender"));
  EXPECT_FALSE(kept["workflow_job"].contains("steps"));
  auto a = parse_workflow_job(full), b = parse_workflow_job(kept);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->id, b->id);
  EXPECT_EQ(a->labels, b->labels);
  EXPECT_EQ(a->runner_name, b->runner_name);
  EXPECT_EQ(a->repo, b->repo);
  EXPECT_EQ(a->owner, b->owner);
  EXPECT_EQ(a->installation_id, b->installation_id);
  EXPECT_EQ(kept["action"], "in_progress");
  EXPECT_TRUE(net::parse_webhook_payload("{not json").is_discarded());
  EXPECT_TRUE(net::parse_webhook_payload("{\"action\": \"queued\"} trailing").is_discarded());
  EXPECT_TRUE(net::parse_webhook_payload("[1, 2]").is_discarded());
  EXPECT_TRUE(net::parse_webhook_payload(R"({"workflow_job": {"id": "seven"}})").is_discarded());
  auto null_runner =
      net::parse_webhook_payload(R"({"workflow_job": {"id": 1, "runner_name": null}})");
  EXPECT_TRUE(null_runner["workflow_job"]["runner_name"].is_null());
}

TEST(GithubBook, SurvivesARoundTripThroughJson) {
  auto s = settings(json::array({flavor("gpu", {"gpu"})}), 1);
  Book b;
  (void)on_delivery(b, s, job_event("queued", 1, {"gpu"}), 1);
  (void)on_delivery(b, s, job_event("queued", 2, {"gpu"}), 2);
  auto back = book_from_json(json::parse(book_to_json(b).dump()));
  ASSERT_TRUE(back);
  EXPECT_EQ(book_to_json(*back), book_to_json(b));
  EXPECT_EQ(starts(on_delivery(*back, s, job_event("queued", 2, {"gpu"}, "", "new"), 3)), 0u)
      << "a restart forgot the job was queued";
}

TEST(GithubRunnerSpec, PlaceholdersCpusetMemoryAndNamespaces) {
  auto s = settings(json::array({flavor("gpu", {"gpu"})}));
  Runner r;
  r.job.id = 5;
  r.job.labels = {"gpu", "a b;rm"};
  r.name = "berth-5";
  RunnerTemplate t = s.flavors[0].runner;
  t.env = {"JOB={job_id}", "LABELS={labels}"};
  t.memory_mb = 512;
  auto spec = runner_oci_config(t, placeholders_for(r, "SECRETJIT"), {"0-3", "0"}, "berth-5");
  EXPECT_EQ(spec["process"]["args"], json({"/run.sh", "SECRETJIT"}));
  EXPECT_EQ(spec["process"]["env"][1], "JOB=5");
  EXPECT_EQ(spec["process"]["env"][2], "LABELS=gpu,a_b_rm") << "payload text reached a shell";
  EXPECT_EQ(spec["linux"]["resources"]["cpu"]["cpus"], "0-3");
  EXPECT_EQ(spec["linux"]["resources"]["cpu"]["mems"], "0");
  EXPECT_EQ(spec["linux"]["resources"]["memory"]["limit"], 512u << 20);
  EXPECT_EQ(spec["root"]["readonly"], true);
  EXPECT_EQ(spec["linux"]["namespaces"].size(), 5u);
  EXPECT_EQ(expand("{unknown} {job_id}", {{"job_id", "1"}}), "{unknown} 1");
}

}  // namespace
}  // namespace berth::github

namespace berth::net {
namespace {

TEST(WebhookSignature, GithubsTestVector) {
  // From GitHub's "Validating webhook deliveries".
  EXPECT_EQ(hmac_sha256_hex("It's a Secret to Everybody", "Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
  const std::string header =
      "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
  EXPECT_EQ(check_signature(header, "Hello, World!", {"It's a Secret to Everybody"}),
            SignatureCheck::valid);
  EXPECT_EQ(check_signature(header, "Hello, World!", {"old", "It's a Secret to Everybody"}),
            SignatureCheck::valid)
      << "the second (rotation) secret is not tried";
  EXPECT_EQ(check_signature(header, "Hello, World?", {"It's a Secret to Everybody"}),
            SignatureCheck::mismatch);
  EXPECT_EQ(check_signature(header, "Hello, World!", {"wrong"}), SignatureCheck::mismatch);
  EXPECT_EQ(check_signature("", "x", {"s"}), SignatureCheck::missing);
  EXPECT_EQ(check_signature("sha1=abc", "x", {"s"}), SignatureCheck::malformed);
  EXPECT_EQ(check_signature(header.substr(0, 70), "x", {"s"}), SignatureCheck::malformed);
  EXPECT_EQ(check_signature("sha256=" + std::string(64, 'g'), "x", {"s"}),
            SignatureCheck::malformed);
}

TEST(GithubAppJwt, Rs256WithIssuerAndAtMostTenMinutes) {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  ASSERT_TRUE(key);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  const std::string pem(data, static_cast<size_t>(len));
  BIO_free(bio);
  auto jwt = github_app_jwt(pem, 12345, 1700000000);
  ASSERT_TRUE(jwt) << jwt.error().message;
  const auto dot1 = jwt->find('.');
  const auto dot2 = jwt->find('.', dot1 + 1);
  ASSERT_NE(dot2, std::string::npos);
  auto decode = [](std::string s) {
    for (char& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
    while (s.size() % 4) s += '=';
    std::string out(s.size(), '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(s.data()),
                                  static_cast<int>(s.size()));
    out.resize(static_cast<size_t>(n));
    while (!s.empty() && s.back() == '=') {
      s.pop_back();
      out.pop_back();
    }
    return out;
  };
  auto header = nlohmann::json::parse(decode(jwt->substr(0, dot1)));
  auto claims = nlohmann::json::parse(decode(jwt->substr(dot1 + 1, dot2 - dot1 - 1)));
  EXPECT_EQ(header["alg"], "RS256");
  EXPECT_EQ(claims["iss"], "12345");
  EXPECT_EQ(claims["iat"], 1700000000 - 60);
  EXPECT_LE(claims["exp"].get<int64_t>() - claims["iat"].get<int64_t>(), 600);
  // The signature verifies under the public key.
  const std::string input = jwt->substr(0, dot2);
  const std::string sig = decode(jwt->substr(dot2 + 1));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ASSERT_EQ(EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key), 1);
  EXPECT_EQ(EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(input.data()), input.size()),
            1);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  EXPECT_FALSE(github_app_jwt("not a key", 1, 0));
}

}  // namespace
}  // namespace berth::net

namespace berth::agent {
namespace {

TEST(GithubConfig, ListenerNeedsASecretAndTheSecretMustBePrivate) {
  using nlohmann::json;
  json flavors = json::array({{{"name", "gpu"},
                               {"labels", {"gpu"}},
                               {"request", {{"gpus", 1}}},
                               {"runner", {{"rootfs", "/r"}, {"args", {"/run"}}}}}});
  auto no_secret = parse_github_config({{"listen", "127.0.0.1:8787"}, {"flavors", flavors}}, "/");
  ASSERT_FALSE(no_secret);
  EXPECT_NE(no_secret.error().message.find("secret_file"), std::string::npos);
  const std::string dir = ::testing::TempDir() + "/berth-gh-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string secret = dir + "/secret";
  { std::ofstream(secret) << "s3cret\n"; }
  auto c = parse_github_config(
      {{"listen", "127.0.0.1:8787"}, {"secret_file", "secret"}, {"flavors", flavors}}, dir);
  ASSERT_TRUE(c) << c.error().message;
  std::filesystem::permissions(secret, std::filesystem::perms::owner_read |
                                           std::filesystem::perms::group_read |
                                           std::filesystem::perms::others_read);
  auto loose = read_secrets(*c);
  ASSERT_FALSE(loose);
  EXPECT_NE(loose.error().message.find("readable by group or others"), std::string::npos);
  std::filesystem::permissions(secret, std::filesystem::perms::owner_read);
  auto ok = read_secrets(*c);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->at(0), "s3cret");
  EXPECT_FALSE(parse_github_config(
      {{"listen", "nowhere"}, {"secret_file", "secret"}, {"flavors", flavors}}, dir));
  EXPECT_FALSE(parse_github_config({{"listen", "127.0.0.1:1"},
                                    {"secret_file", "secret"},
                                    {"flavors", flavors},
                                    {"registration", "app"}},
                                   dir))
      << "app registration without app_id and key";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace berth::agent

namespace berth::github {
namespace {

TEST(GithubJournal, ReplayOverTheSnapshotGivesTheSameBookAndATornLastLineIsIgnored) {
  using nlohmann::json;
  auto s = parse_settings(
      {{"flavors", json::array({{{"name", "gpu"},
                                 {"labels", {"gpu"}},
                                 {"request", {{"gpus", 1}}},
                                 {"runner", {{"rootfs", "/r"}, {"args", {"/x"}}}}}})},
       {"max_runners", 1}});
  ASSERT_TRUE(s);
  auto event = [](const std::string& action, uint64_t id) {
    return Delivery{action + std::to_string(id), "workflow_job",
                    json{{"action", action},
                         {"workflow_job", {{"id", id}, {"labels", {"gpu"}}, {"runner_name", ""}}}}};
  };
  Book live;
  (void)on_delivery(live, *s, event("queued", 1), 1);
  const json snapshot = book_to_json(live);
  (void)take_journal(live);
  std::string journal;
  (void)on_delivery(live, *s, event("queued", 2), 2);
  (void)on_started(live, *s, 1, 3);
  journal += take_journal(live);
  (void)on_exited(live, *s, 1, "exited", 4);
  (void)on_stopped(live, *s, 1, 5);
  journal += take_journal(live);
  auto back = book_from_json(snapshot);
  ASSERT_TRUE(back);
  auto applied = replay_journal(*back, journal + "{\"runner\": {\"job_", 10000);
  ASSERT_TRUE(applied) << applied.error().message;
  EXPECT_EQ(book_to_json(*back), book_to_json(live));
  EXPECT_EQ(back->runners.at(2).state, State::starting);
  EXPECT_FALSE(replay_journal(*back, "garbage\n{}\n", 10000));
}

}  // namespace
}  // namespace berth::github
