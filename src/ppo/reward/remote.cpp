// remote.cpp — see remote.h.
#include "ppo/reward/remote.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iterator>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#ifdef RLHF_WITH_HTTP
#include <httplib.h>
#endif

#include "common/core/check.h"
#include "common/train/log.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {
namespace {

constexpr size_t kBodyTail = 300;  // characters of a server's answer kept for an error

std::string clip(const std::string& s) {
  return s.size() <= kBodyTail ? s : s.substr(0, kBodyTail) + "...";
}

// The scores in a server's answer, or an error saying what was wrong with it.
std::string parse_rewards(const std::string& body, size_t n, std::vector<double>& out) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("rewards") || !j["rewards"].is_array())
    return fmt::format("the answer is not a JSON object with a \"rewards\" array: '{}'", clip(body));
  const nlohmann::json& r = j["rewards"];
  if (r.size() != n) return fmt::format("it answered {} rewards for {} queries", r.size(), n);
  for (size_t i = 0; i < n; ++i) {
    if (!r[i].is_number() || !std::isfinite(r[i].get<double>()))
      return fmt::format("rewards[{}] is {}, not a finite number", i, r[i].dump());
    if (std::abs(r[i].get<double>()) > kMaxRewardMagnitude)
      return fmt::format("rewards[{}] is {}, beyond ±{:g} (rewards this large overflow the returns "
                         "and advantages; scale them down)", i, r[i].dump(), kMaxRewardMagnitude);
    out.push_back(r[i].get<double>());
  }
  return {};
}

#ifdef RLHF_WITH_HTTP
// One request of queries [a, b) with its retries; "" on success (scores appended to out).
std::string post_range(httplib::Client& cli, const std::string& path, const RemoteRewardOptions& o,
                       const std::vector<RewardQuery>& q, size_t a, size_t b, std::vector<double>& out) {
  nlohmann::json req = {{"query", nlohmann::json::array()}, {"eos", nlohmann::json::array()}};
  for (size_t i = a; i < b; ++i) {
    req["query"].push_back(q[i].text);
    req["eos"].push_back(q[i].eos);
  }
  const std::string body = req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const int64_t attempts = 1 + o.retries;
  std::string why;
  for (int64_t k = 1; k <= attempts; ++k) {
    if (k > 1)
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(4000, 250 << std::min<int64_t>(k - 2, 4))));
    const std::string at = fmt::format("ppo.reward_url {}: queries [{}, {}), attempt {} of {}: ", o.url, a, b, k, attempts);
    httplib::Result res = cli.Post(path.c_str(), body, "application/json");
    if (!res) {
      why = at + fmt::format("no answer ({}; ppo.reward_timeout_s = {} s)", httplib::to_string(res.error()), o.timeout_s);
      continue;
    }
    if (res->status >= 500 || res->status == 429) {
      why = at + fmt::format("HTTP {}: {}", res->status, clip(res->body));
      continue;
    }
    if (res->status != 200) return at + fmt::format("HTTP {}: {} (not retried)", res->status, clip(res->body));
    const std::string bad = parse_rewards(res->body, b - a, out);
    return bad.empty() ? std::string() : at + bad;
  }
  return why;
}
#endif

}  // namespace

bool http_client_available() {
#ifdef RLHF_WITH_HTTP
  return true;
#else
  return false;
#endif
}

std::pair<std::string, std::string> split_reward_url(const std::string& url) {
  // scheme://host[:port][/path]; host a name, an IPv4 address or a bracketed IPv6 address
  static const std::regex re(R"(^(https?://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:([0-9]{1,5}))?)(/[^\s#]*)?$)");
  std::smatch m;
  const bool ok = std::regex_match(url, m, re) && (!m[4].matched || (std::stoi(m[4].str()) >= 1 && std::stoi(m[4].str()) <= 65535));
  RLHF_CHECK(ok, "ppo.reward_url: '{}' is not an http:// or https:// URL with a port in 1..65535 "
             "(expected e.g. http://127.0.0.1:5000/get_reward)", url);
  return {m[1].str(), m[5].matched ? m[5].str() : std::string("/")};
}

CommandOutcome post_reward_queries(const RemoteRewardOptions& o, const std::vector<RewardQuery>& queries) {
  CommandOutcome r;
#ifdef RLHF_WITH_HTTP
  const auto [base, path] = split_reward_url(o.url);
  httplib::Client cli(base);
  // Each phase (connect, send, each wait for answer bytes) gets the limit; at least 1 ms.
  const auto limit = std::chrono::milliseconds(static_cast<int64_t>(std::clamp(o.timeout_s * 1000, 1.0, 1e12)));
  cli.set_connection_timeout(limit);
  cli.set_read_timeout(limit);
  cli.set_write_timeout(limit);
  cli.set_keep_alive(true);
  const size_t step = static_cast<size_t>(std::max<int64_t>(1, o.batch_size));
  for (size_t a = 0; a < queries.size(); a += step) {
    r.error = post_range(cli, path, o, queries, a, std::min(queries.size(), a + step), r.scores);
    if (!r.error.empty()) {
      r.scores.clear();
      return r;
    }
  }
#else
  (void)queries;
  r.error = fmt::format("ppo.reward_url {}: this build has no HTTP client (cpp-httplib, Debian's "
                        "libcpp-httplib-dev, was not found when it was configured)", o.url);
#endif
  return r;
}

std::vector<RewardQuery> rollout_queries(const Rollout& ro, const QueryFraming& f, const Tokenizer& tok) {
  const torch::Tensor toks = ro.tokens.to(torch::kCPU), mask = ro.attention_mask.to(torch::kCPU);
  std::vector<RewardQuery> q;
  for (int64_t b = 0; b < ro.batch(); ++b) {
    const torch::Tensor row = toks[b].masked_select(mask[b]);
    std::vector<int32_t> ids(row.numel());
    const int64_t* p = row.data_ptr<int64_t>();
    for (int64_t i = 0; i < row.numel(); ++i) ids[i] = static_cast<int32_t>(p[i]);
    q.push_back(reward_query(tok, f, ids));
  }
  return q;
}

std::vector<torch::Tensor> remote_scores(const RemoteRewardOptions& o, const std::vector<RolloutBatch>& batches,
                                         const QueryFraming& f, const Tokenizer& tok, Communicator& comm) {
  std::vector<RewardQuery> q;
  for (const RolloutBatch& b : batches) {
    std::vector<RewardQuery> qb = rollout_queries(*b.ro, f, tok);
    q.insert(q.end(), std::make_move_iterator(qb.begin()), std::make_move_iterator(qb.end()));
  }
  const int64_t inexact = std::count_if(q.begin(), q.end(), [](const RewardQuery& x) { return !x.exact; });
  if (inexact > 0)
    log_warn("# warning: ppo.reward: remote: {} of this rank's {} rows do not survive the trip to text "
             "(invalid UTF-8, or tokens that are not the canonical encoding of their text): the server "
             "scores the re-encoded text (common/tokenizer/reward_query.h)", inexact, q.size());
  const CommandOutcome r = q.empty() ? CommandOutcome{} : post_reward_queries(o, q);
  return collective_scores(r, batches, comm);
}

}  // namespace rlhf
