// test_serve.cpp — rlhf_serve rm's pieces (tools/serve/rm_server.h): the request parser's 400
// messages, the BatchScorer's batching, bound and error paths with a scoring function whose
// answer is known, and the whole server on loopback under load: 8 clients × 200 requests against
// a random reward model, every answer equal to the model's own score of that one row, computed
// alone (no batch, no padding); malformed requests get HTTP 400 and the server keeps serving.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <random>

#ifdef RLHF_WITH_HTTP
#include <httplib.h>
#endif

#include "common/tokenizer/tokenizer.h"
#include "support/test_support.h"
#include "tools/serve/rm_server.h"

namespace rlhf {
namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string bad_request(const std::string& body) {
  try {
    parse_reward_request(body, 4);
  } catch (const BadRequest& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(Serve, RequestParser) {
  const auto q = parse_reward_request(R"({"query": ["a", "bc"], "eos": [false, true]})", 4);
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].text, "a");
  EXPECT_FALSE(q[0].eos);
  EXPECT_TRUE(q[1].eos);
  EXPECT_TRUE(parse_reward_request(R"({"query": ["x"]})", 4)[0].eos);  // OpenRLHF: no "eos"
  EXPECT_TRUE(contains(bad_request("{bad"), "not valid JSON"));
  EXPECT_TRUE(contains(bad_request("[1]"), "\"query\" list"));
  EXPECT_TRUE(contains(bad_request(R"({"queries": ["a"]})"), "\"query\" list"));
  EXPECT_TRUE(contains(bad_request(R"({"query": "a"})"), "must be a list of strings, got string"));
  EXPECT_TRUE(contains(bad_request(R"({"query": []})"), "empty"));
  EXPECT_TRUE(contains(bad_request(R"({"query": ["a", 2]})"), "query[1] must be a string, got number"));
  EXPECT_TRUE(contains(bad_request(R"({"query": ["a","b","c","d","e"]})"), "at most 4"));
  EXPECT_TRUE(contains(bad_request(R"({"query": ["a"], "eos": [true, true]})"), "list of 1 booleans"));
  EXPECT_TRUE(contains(bad_request(R"({"query": ["a"], "eos": [1]})"), "eos[0] must be true or false"));
}

// A scoring function whose answer is known: the sum of each row's real ids.
torch::Tensor sum_of_ids(const torch::Tensor& tokens, const torch::Tensor& mask) {
  return (tokens * mask.to(torch::kLong)).sum(1).to(torch::kFloat);
}

TEST(Serve, BatchScorerAnswersEachJobItsRows) {
  BatchScorer s(sum_of_ids, /*pad*/ 7, /*batch*/ 5, /*queue*/ 1000);
  std::vector<std::future<std::vector<float>>> f;
  int64_t rows_sent = 0;
  for (int j = 0; j < 40; ++j) {
    rows_sent += 1 + j % 3;
    std::vector<std::vector<int32_t>> rows;
    for (int r = 0; r <= j % 3; ++r) rows.push_back(std::vector<int32_t>(1 + (j + r) % 6, j + r));
    f.push_back(s.submit(rows));
  }
  for (int j = 0; j < 40; ++j) {
    const std::vector<float> got = f[j].get();
    ASSERT_EQ(got.size(), static_cast<size_t>(1 + j % 3));
    for (int r = 0; r <= j % 3; ++r) EXPECT_EQ(got[r], float((1 + (j + r) % 6) * (j + r))) << j << " " << r;
  }
  const BatchStats st = s.stats();
  EXPECT_EQ(st.requests, 40);
  EXPECT_EQ(st.rows, rows_sent);
  EXPECT_LE(st.max_batch_rows, 5);
  EXPECT_EQ(st.queued_rows, 0);
}

TEST(Serve, BatchScorerQueueIsBoundedAndErrorsReachTheCaller) {
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::atomic<int> calls{0};
  BatchScorer s([&](const torch::Tensor& t, const torch::Tensor& m) {
                  if (calls++ == 0) gate.wait();  // the first forward waits: the queue fills
                  if (t[0][0].item<int64_t>() == 99) throw std::runtime_error("forward failed");
                  return sum_of_ids(t, m);
                },
                0, /*batch*/ 2, /*queue*/ 4);
  auto first = s.submit({{1}});
  while (calls.load() == 0) std::this_thread::yield();  // taken by the scorer: 0 rows waiting
  auto a = s.submit({{2}, {3}, {4}});                   // 3 waiting
  EXPECT_THROW(s.submit({{5}, {6}}), BatchScorer::QueueFull);  // 5 > 4: refused, not queued
  auto b = s.submit({{99}});                            // 4 waiting: at the bound, accepted
  EXPECT_EQ(s.stats().rejected, 1);
  release.set_value();
  EXPECT_EQ(first.get(), std::vector<float>{1});
  EXPECT_EQ(a.get(), (std::vector<float>{2, 3, 4}));
  EXPECT_THROW(b.get(), std::runtime_error);
  auto c = s.submit({{8}});  // still serving after a failed forward
  EXPECT_EQ(c.get(), std::vector<float>{8});
}

TEST(Serve, RequestBoundAboveTheQueueBoundIsRefused) {
  ServeOptions o;
  o.max_request_rows = 100;
  o.max_queue_rows = 50;
  ModelConfig cfg = testing::tiny_config(Family::Llama, 2);
  cfg.vocab_size = 259;
  const std::string err = testing::error_of([&] {
    RmServer s(ScalarModel(cfg), std::make_shared<ByteTokenizer>(), QueryFraming{256, 257}, 64, "x", o, torch::kCPU);
  });
  EXPECT_TRUE(contains(err, "--max-request-rows 100 exceeds --max-queue-rows 50")) << err;
}

#ifdef RLHF_WITH_HTTP
// The server's whole path on loopback: a random reward model over the byte tokenizer.
class ServeHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelConfig cfg = testing::tiny_config(Family::Llama, 2);
    cfg.vocab_size = 259;
    torch::manual_seed(3);
    rm_ = ScalarModel(cfg);  // served
    torch::manual_seed(3);
    ref_ = ScalarModel(cfg);  // the same weights, for the reference scores (one model per thread)
    ref_->eval();
    ServeOptions o;
    o.port = 0;
    o.threads = 8;
    o.max_batch_rows = 16;
    server_ = std::make_unique<RmServer>(rm_, std::make_shared<ByteTokenizer>(), QueryFraming{256, 257},
                                         cfg.max_seq_len, "random", o, torch::kCPU);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->run(); });
  }
  void TearDown() override {
    server_->stop();
    thread_.join();
  }
  // The model's own score of one query, alone: [BOS] + bytes + [EOS if eos].
  float own_score(const std::string& text, bool eos) {
    std::lock_guard<std::mutex> lk(own_mu_);  // the clients share the reference model
    torch::NoGradGuard ng;
    std::vector<int64_t> ids = {256};
    for (unsigned char c : text) ids.push_back(c);
    if (eos) ids.push_back(257);
    const auto t = torch::tensor(ids).unsqueeze(0);
    return ref_->score_last(t, torch::ones_like(t, torch::kBool)).item<float>();
  }
  std::mutex own_mu_;
  ScalarModel rm_{nullptr}, ref_{nullptr};
  std::unique_ptr<RmServer> server_;
  int port_ = 0;
  std::thread thread_;
};

TEST_F(ServeHttp, EightClientsTwoHundredRequestsEachGetTheModelsOwnScores) {
  constexpr int kClients = 8, kRequests = 200;
  std::atomic<int> wrong{0}, failed{0};
  std::atomic<double> worst{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c)
    clients.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", port_);
      std::mt19937 rng(c);
      for (int r = 0; r < kRequests; ++r) {
        const int n = 1 + rng() % 4;
        nlohmann::json req = {{"query", nlohmann::json::array()}, {"eos", nlohmann::json::array()}};
        std::vector<std::pair<std::string, bool>> sent;
        for (int i = 0; i < n; ++i) {
          std::string text;
          for (int k = 0, len = 1 + rng() % 40; k < len; ++k) text += char('a' + rng() % 26);
          const bool eos = rng() % 4 != 0;
          req["query"].push_back(text);
          req["eos"].push_back(eos);
          sent.emplace_back(text, eos);
        }
        auto res = cli.Post("/get_reward", req.dump(), "application/json");
        if (!res || res->status != 200) {
          ++failed;
          continue;
        }
        const auto got = nlohmann::json::parse(res->body).at("rewards");
        if (got.size() != sent.size()) {
          ++wrong;
          continue;
        }
        for (size_t i = 0; i < sent.size(); ++i) {
          const double d = std::abs(got[i].get<double>() - own_score(sent[i].first, sent[i].second));
          if (d > 1e-5) ++wrong;
          double w = worst.load();
          while (d > w && !worst.compare_exchange_weak(w, d)) {}
        }
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0) << "largest |server - own score| " << worst.load();
  const BatchStats st = server_->stats();
  EXPECT_EQ(st.requests, kClients * kRequests);
  EXPECT_LT(st.batches, st.requests) << "concurrent requests were never batched together";
  EXPECT_LE(st.max_batch_rows, 16);  // --max-batch-rows
  std::printf("# %d requests, %lld rows in %lld batches (largest %lld rows), max |diff| %.3g\n",
              kClients * kRequests, (long long)st.rows, (long long)st.batches, (long long)st.max_batch_rows,
              worst.load());
}

TEST_F(ServeHttp, MalformedRequestsGet400AndTheServerKeepsServing) {
  httplib::Client cli("127.0.0.1", port_);
  struct Case { std::string body, part; };
  const std::vector<Case> cases = {
      {"{\"query\": [\"ab\"", "not valid JSON"},
      {"{\"query\": 3}", "must be a list of strings"},
      {"{\"query\": [\"ab\", null]}", "query[1] must be a string"},
      {"{\"query\": [\"ab\"], \"eos\": \"yes\"}", "must be a list of 1 booleans"},
      {"{\"query\": [\"" + std::string(80, 'x') + "\"]}", "at most 64"},  // 82 tokens > max_seq_len
  };
  for (const Case& c : cases) {
    auto res = cli.Post("/get_reward", c.body, "application/json");
    ASSERT_TRUE(res) << c.body;
    EXPECT_EQ(res->status, 400) << c.body;
    EXPECT_TRUE(contains(res->body, c.part)) << res->body;
    EXPECT_NO_THROW(nlohmann::json::parse(res->body).at("error"));
  }
  auto missing = cli.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  auto ok = cli.Post("/get_reward", R"({"query": ["2+3=5"]})", "application/json");
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200);
  EXPECT_NEAR(nlohmann::json::parse(ok->body)["rewards"][0].get<double>(), own_score("2+3=5", true), 1e-5);
  auto health = cli.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  const auto h = nlohmann::json::parse(health->body);
  EXPECT_EQ(h["status"], "ok");
  EXPECT_EQ(h["requests"], 1);  // the 400s never reached the queue
}
#endif

}  // namespace
}  // namespace rlhf
