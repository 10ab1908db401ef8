// rm_trainer.h — stage 2: the reward model (SFT trunk + scalar head) trained with InstructGPT's
// K-wise ranking loss, then a bias fitted so the SFT demonstrations get mean reward 0.
// Also the ranked-data evaluation shared with `rlhf_eval rm-acc`.
#pragma once
#include <cstdint>
#include <string>

#include "common/batch.h"
#include "common/data.h"
#include "common/dist.h"
#include "common/model.h"

namespace rlhf {

int run_rm(int argc, char** argv);  // entry point of rm_train; exit code as run_sft

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
                         std::vector<float>* rewards = nullptr);

// Mean reward of `rm` on the (prompt, response) rows of an SFT dataset (first max_rows). Collective.
double mean_reward_on(ScalarModel& rm, const SftData& data, const SpecialIds& ids, int64_t max_len,
                      int64_t micro_batch, int64_t max_rows, Communicator& comm,
                      const torch::Device& device);

}  // namespace rlhf
