// test_reward_remote.cpp — ppo.reward: remote's client (ppo/reward/remote.h) against small
// in-process HTTP servers that answer right, wrong, late or not at all: scores in order across
// request batches, retries of 5xx, no retry of 4xx, each bad answer an error naming the URL, and
// a rollout's rows turned into queries by the rule of reward_query.h.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

#ifdef RLHF_WITH_HTTP
#include <httplib.h>
#endif

#include "common/tokenizer/tokenizer.h"
#include "ppo/reward/remote.h"
#include "support/test_support.h"

namespace rlhf {
namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(RewardRemote, Url) {
  EXPECT_EQ(split_reward_url("http://127.0.0.1:5000/get_reward"),
            (std::pair<std::string, std::string>{"http://127.0.0.1:5000", "/get_reward"}));
  EXPECT_EQ(split_reward_url("https://rm.example"), (std::pair<std::string, std::string>{"https://rm.example", "/"}));
  EXPECT_TRUE(contains(testing::error_of([] { split_reward_url("127.0.0.1:5000"); }), "ppo.reward_url"));
  EXPECT_TRUE(contains(testing::error_of([] { split_reward_url("ftp://x/y"); }), "not an http"));
  EXPECT_EQ(split_reward_url("http://[::1]:8000").first, "http://[::1]:8000");
  for (const char* bad : {"http://h:99999999999/r", "http://h:0/r", "http://h:port/r", "http://h:65536"})
    EXPECT_TRUE(contains(testing::error_of([&] { split_reward_url(bad); }), "port in 1..65535")) << bad;
}

TEST(RewardRemote, RolloutRowsBecomeQueries) {
  // Two left-padded rows over the byte tokenizer: [pad BOS "ab" | "c" EOS] and [BOS "xy" | "z" "w"].
  Rollout ro;
  ro.tokens = torch::tensor({258, 256, 'a', 'b', 'c', 257, 256, 'x', 'y', 'z', 'w', 258}, torch::kLong).view({2, 6});
  ro.attention_mask = torch::tensor({0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}, torch::kBool).view({2, 6});
  ByteTokenizer tok;
  const auto q = rollout_queries(ro, QueryFraming{256, 257}, tok);
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].text, "abc");
  EXPECT_TRUE(q[0].eos);
  EXPECT_EQ(q[1].text, "xyzw");
  EXPECT_FALSE(q[1].eos);
}

#ifdef RLHF_WITH_HTTP
// A server on a free loopback port whose /r handler is given; stopped on destruction.
struct StubServer {
  httplib::Server http;
  int port = 0;
  std::thread thread;
  std::atomic<int> hits{0};
  explicit StubServer(std::function<void(const httplib::Request&, httplib::Response&, int hit)> h) {
    http.Post("/r", [this, h](const httplib::Request& q, httplib::Response& r) { h(q, r, ++hits); });
    port = http.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { http.listen_after_bind(); });
    while (!http.is_running()) std::this_thread::yield();  // stop() before listen would be lost
  }
  ~StubServer() {
    http.stop();
    thread.join();
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}/r", port); }
};

std::vector<RewardQuery> queries(int n) {
  std::vector<RewardQuery> q;
  for (int i = 0; i < n; ++i) q.push_back({std::string(i + 1, 'a'), i % 2 == 0});
  return q;
}

// Each query's score: its length, negated when eos is false; requests logged.
void length_scores(const httplib::Request& q, httplib::Response& r) {
  const auto j = nlohmann::json::parse(q.body);
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < j["query"].size(); ++i)
    out.push_back((j["eos"][i].get<bool>() ? 1.0 : -1.0) * j["query"][i].get<std::string>().size());
  r.set_content(nlohmann::json{{"rewards", out}}.dump(), "application/json");
}

TEST(RewardRemote, ScoresInOrderAcrossRequests) {
  StubServer s([](const httplib::Request& q, httplib::Response& r, int) { length_scores(q, r); });
  RemoteRewardOptions o{s.url(), 5, 0, /*batch*/ 3};
  const CommandOutcome r = post_reward_queries(o, queries(7));
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.scores, (std::vector<double>{1, -2, 3, -4, 5, -6, 7}));
  EXPECT_EQ(s.hits.load(), 3);  // 3 + 3 + 1 queries
}

TEST(RewardRemote, ServerErrorsAreRetriedClientErrorsAreNot) {
  StubServer flaky([](const httplib::Request& q, httplib::Response& r, int hit) {
    if (hit <= 2) {
      r.status = 503;
      r.set_content("busy", "text/plain");
    } else {
      length_scores(q, r);
    }
  });
  const CommandOutcome ok = post_reward_queries({flaky.url(), 5, 2, 64}, queries(2));
  EXPECT_EQ(ok.error, "");
  EXPECT_EQ(ok.scores, (std::vector<double>{1, -2}));
  EXPECT_EQ(flaky.hits.load(), 3);

  StubServer down([](const httplib::Request&, httplib::Response& r, int) {
    r.status = 500;
    r.set_content("model crashed", "text/plain");
  });
  const CommandOutcome fail = post_reward_queries({down.url(), 5, 1, 64}, queries(2));
  EXPECT_TRUE(fail.scores.empty());
  EXPECT_TRUE(contains(fail.error, "ppo.reward_url " + down.url())) << fail.error;
  EXPECT_TRUE(contains(fail.error, "attempt 2 of 2: HTTP 500: model crashed")) << fail.error;
  EXPECT_EQ(down.hits.load(), 2);

  StubServer strict([](const httplib::Request&, httplib::Response& r, int) {
    r.status = 400;
    r.set_content("{\"error\": \"query[0] is too long\"}", "application/json");
  });
  const CommandOutcome no = post_reward_queries({strict.url(), 5, 3, 64}, queries(1));
  EXPECT_TRUE(contains(no.error, "HTTP 400: {\"error\": \"query[0] is too long\"} (not retried)")) << no.error;
  EXPECT_EQ(strict.hits.load(), 1);
}

TEST(RewardRemote, BadAnswersNameWhatWasWrong) {
  auto answer = [](std::string body) {
    return [body](const httplib::Request&, httplib::Response& r, int) { r.set_content(body, "application/json"); };
  };
  StubServer short_list(answer(R"({"rewards": [1.0]})"));
  EXPECT_TRUE(contains(post_reward_queries({short_list.url(), 5, 0, 64}, queries(2)).error,
                       "queries [0, 2), attempt 1 of 1: it answered 1 rewards for 2 queries"));
  StubServer text(answer(R"({"rewards": [1.0, "x"]})"));
  EXPECT_TRUE(contains(post_reward_queries({text.url(), 5, 0, 64}, queries(2)).error,
                       "rewards[1] is \"x\", not a finite number"));
  StubServer huge(answer(R"({"rewards": [1.0, 1e308]})"));
  EXPECT_TRUE(contains(post_reward_queries({huge.url(), 5, 0, 64}, queries(2)).error,
                       "rewards[1] is 1e+308, beyond ±1e+06"));
  StubServer html(answer("<html>hello</html>"));
  EXPECT_TRUE(contains(post_reward_queries({html.url(), 5, 0, 64}, queries(2)).error,
                       "not a JSON object with a \"rewards\" array: '<html>hello</html>'"));
}

TEST(RewardRemote, NoServerAndASlowServerFailWithinTheTimeout) {
  int free_port = 0;
  {
    StubServer gone([](const httplib::Request&, httplib::Response&, int) {});
    free_port = gone.port;
  }  // stopped: nothing listens there now
  const std::string url = fmt::format("http://127.0.0.1:{}/r", free_port);
  const CommandOutcome refused = post_reward_queries({url, 2, 1, 64}, queries(1));
  EXPECT_TRUE(contains(refused.error, "ppo.reward_url " + url)) << refused.error;
  EXPECT_TRUE(contains(refused.error, "attempt 2 of 2: no answer")) << refused.error;

  StubServer slow([](const httplib::Request& q, httplib::Response& r, int) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    length_scores(q, r);
  });
  const auto t0 = std::chrono::steady_clock::now();
  const CommandOutcome late = post_reward_queries({slow.url(), 0.3, 0, 64}, queries(1));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(contains(late.error, "no answer")) << late.error;
  EXPECT_TRUE(contains(late.error, "ppo.reward_timeout_s = 0.3 s")) << late.error;
  EXPECT_LT(s, 1.2);
}
#endif

}  // namespace
}  // namespace rlhf
