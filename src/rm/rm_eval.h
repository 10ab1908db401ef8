// rm_eval.h — forwarding ranked groups through a reward model, and evaluating it: the pairwise
// accuracy / K-wise loss on ranked data (training's eval, `rlhf_eval rm-acc`) and the mean reward
// on demonstrations (the bias fit).
// Contract: group_rewards is local (no collectives); evaluate_ranked and mean_reward_on are
// collective (rows sharded by rank_chunks, sums all-reduced), run in eval mode without gradients
// and restore the model's mode.
#pragma once
#include <cstdint>
#include <vector>

#include "common/data/batch.h"
#include "common/data/data.h"
#include "common/dist/dist.h"
#include "common/model/model.h"
#include "rm/rm_loss.h"

namespace rlhf {

// Rewards [R] of every response of `groups` (dataset group indices), in group order; offsets
// receives the group boundaries into R (size G + 1) and ranks the responses' ranks. Each prompt is
// forwarded once and its responses attend to its cached keys/values (see rm_eval.cpp).
torch::Tensor group_rewards(ScalarModel& rm, const RankedData& d, const std::vector<int64_t>& groups,
                            const SpecialIds& ids, int64_t max_len, const torch::Device& dev,
                            std::vector<int64_t>* offsets, std::vector<int32_t>* ranks);

struct RankEval {
  double loss = 0;       // mean K-wise loss over groups
  int64_t pairs = 0;
  int64_t correct = 0;
  double margin_sum = 0;
  int64_t groups = 0;
  int64_t forward_rows = 0;  // responses forwarded (each exactly once)
  double accuracy() const { return pairs ? static_cast<double>(correct) / pairs : 0.0; }
  double mean_margin() const { return pairs ? margin_sum / pairs : 0.0; }
};

// Pairwise accuracy / loss / margin of `rm` on the first max_groups groups (all when <= 0),
// sharded over ranks, `micro_groups` groups per forward. Collective. If `rewards` is given it
// receives every evaluated response's reward (all ranks' shards, in file order; responses of groups
// beyond max_groups are 0).
RankEval evaluate_ranked(ScalarModel& rm, const RankedData& data, const SpecialIds& ids,
                         int64_t max_len, int64_t micro_groups, int64_t max_groups,
                         Communicator& comm, const torch::Device& device,
                         std::vector<float>* rewards = nullptr,
                         PairNormalizer normalizer = PairNormalizer::Paper);

// Mean reward of `rm` on the (prompt, response) rows of an SFT dataset (first max_rows). Collective.
double mean_reward_on(ScalarModel& rm, const SftData& data, const SpecialIds& ids, int64_t max_len,
                      int64_t micro_batch, int64_t max_rows, Communicator& comm,
                      const torch::Device& device);

}  // namespace rlhf
