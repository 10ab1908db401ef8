// remote.h — rewards from an HTTP reward server (ppo.reward: remote, issue 19), e.g.
// `rlhf_serve rm` (tools/serve/rm_server.h) or OpenRLHF's reward server: once per iteration, each
// rank POSTs its rows to ppo.reward_url as JSON, at most ppo.reward_batch_size queries a request,
//   {"query": ["<prompt and response as text>", ...], "eos": [true, ...]}
// and expects {"rewards": [<one finite number per query>, ...]} (other keys are ignored). Each
// query is the whole scored sequence as text and "eos" says whether it ended with the EOS, by the
// rule of common/tokenizer/reward_query.h — so a reward model behind the URL scores the ids that
// ppo.reward: rm would have scored. The number is the raw score that the no-EOS penalty and the
// score clip act on, as a reward model's.
//
// Contract:
// - post_reward_queries never throws for what the server or the network does: a connection
//   failure, a timeout (ppo.reward_timeout_s for each of connecting, sending and each wait for
//   answer bytes), HTTP 5xx or 429 is retried up to
//   ppo.reward_retries times (backoff 0.25 s, doubling, at most 4 s); that, or any other status,
//   or an answer that is not the shape above (wrong count, a non-number, nan), comes back as
//   CommandOutcome::error naming ppo.reward_url, the request (queries [a, b)), the attempt and
//   the server's status and message.
// - remote_scores is collective (reward/command.h collective_scores): a failure on any rank
//   throws StepAbortedError on every rank, so the run checkpoints its completed steps first.
// - Built without cpp-httplib (libcpp-httplib-dev), http_client_available() is false and the
//   trainer refuses ppo.reward: remote at start-up with that explanation.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/tokenizer/reward_query.h"
#include "common/dist/dist.h"
#include "ppo/reward/command.h"
#include "ppo/rollout.h"

namespace rlhf {

struct RemoteRewardOptions {
  std::string url;          // http[s]://host[:port][/path]
  double timeout_s = 60;    // per request
  int64_t retries = 2;
  int64_t batch_size = 64;  // queries per request
};

bool http_client_available();

// "http://host:port/path" → {"http://host:port", "/path"} ("/" when none); throws rlhf::Error
// naming ppo.reward_url for anything else.
std::pair<std::string, std::string> split_reward_url(const std::string& url);

// POSTs the queries (see the header comment); one score per query when error is empty.
CommandOutcome post_reward_queries(const RemoteRewardOptions& o, const std::vector<RewardQuery>& queries);

// The queries of ro's rows: each row's real tokens (attention mask) by reward_query().
std::vector<RewardQuery> rollout_queries(const Rollout& ro, const QueryFraming& f, const class Tokenizer& tok);

// Raw scores of this rank's batches (possibly none): their rows posted in order, in requests of
// at most o.batch_size queries; one [B_i] float32 tensor per batch on its rollout's device.
// Collective (see the contract): every rank calls it once, whatever its number of batches.
std::vector<torch::Tensor> remote_scores(const RemoteRewardOptions& o, const std::vector<RolloutBatch>& batches,
                                         const QueryFraming& f, const class Tokenizer& tok, Communicator& comm);

}  // namespace rlhf
