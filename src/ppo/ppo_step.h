// ppo_step.h — one PPO-ptx iteration as three named steps, shared by ppo_train and bench_ppo:
//
//   make_experience  rollout → RM score → old / reference log-probs → old values → per-token KL →
//                    shaped rewards → GAE → advantages whitened over all ranks
//   ppo_update       epochs × minibatches × micro-batches of
//                    policy loss + vf_coef · value loss + ptx_coef · LM loss, optimizer steps
//                    (+ β · KL as a loss term with ppo.kl_in_loss, kl_loss.h, instead of the
//                    −β·KL_t rewards: GRPO's form)
//   ppo_metrics      the iteration's metrics row (global over ranks)
//
// The objective (InstructGPT, Ouyang et al. 2022, eq. 2), maximised over the policy φ:
//   objective(φ) = E_{(x,y) ~ π_φ^RL} [ r_θ(x, y) − β · log(π_φ^RL(y|x) / π^SFT(y|x)) ]
//                + γ · E_{x ~ D_pretrain} [ log π_φ^RL(x) ]
// with the first term optimised by PPO-clip on per-token rewards (−β·KL_t, + r_θ at the last
// token; ppo_loss.h) and the second by the ptx LM loss (γ = ppo.ptx_coef).
//
// Normalisation: each minibatch's loss is aggregated over the WHOLE minibatch (all its
// micro-batches on all ranks): policy, value and KL losses by ppo.loss_aggregation (loss_weights
// in ppo_loss.h: token_mean over its response tokens by default, or per response), the ptx LM
// loss as the mean over its pretraining targets. Each micro-batch adds its tokens' weighted sum,
// so neither micro_rows nor the number of ranks changes the gradient (as SFT, loop.h). The
// minibatches themselves (epoch_order in ppo_step.cpp), the sampled responses (one generator per
// global row) and the ptx windows (one global list) do not depend on the number of ranks either:
// 1 rank and N ranks take the same steps up to round-off (tests/scripts/test_ppo_dp.sh).
//
// Contract: make_experience, minibatch_backward and ppo_metrics are collective (global whitening,
// token counts, sums); ppo_update is collective through them and the optimizer steps (gradient
// all-reduce). Every log-prob forward uses the sampling temperature (rollout.h). The actor and
// critic run without dropout of any kind (model.dropout and model.lora.dropout off: ppo_setup.cpp).
#pragma once
#include <functional>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "common/core/rng.h"
#include "common/data/data.h"
#include "common/dist/dist.h"
#include "common/model/model.h"
#include "common/train/optimizer.h"
#include "ppo/advantages.h"
#include "ppo/ppo_loss.h"
#include "ppo/rollout.h"

namespace rlhf {

// The four models of stage 3: actor (trained), reference (frozen SFT), reward (frozen RM with its
// fitted bias), critic (trained, initialised from the RM). With a critic-free ppo.advantage
// (critic_free.h) the critic is an empty holder (ScalarModel{nullptr}): no values, no value loss;
// with ppo.reward: rule / command / remote the reward model is empty too; with LoRA the reference
// is the actor itself (its adapters switched off for reference log-probs). Holders: a copy shares
// the modules.
struct PpoModels {
  CausalLM actor{nullptr}, reference{nullptr};
  ScalarModel reward{nullptr}, critic{nullptr};
  // The models that only score: the reward model, and the reference unless it is the actor's base.
  std::vector<torch::nn::Module*> frozen() {
    std::vector<torch::nn::Module*> f;
    if (!reward.is_empty()) f.push_back(reward.get());
    if (reference.ptr() != actor.ptr()) f.push_back(reference.get());
    return f;
  }
  // The trained models that carry adapters with model.lora.
  std::vector<torch::nn::Module*> lora_models() {
    if (critic.is_empty()) return {actor.get()};
    return {actor.get(), critic.get()};
  }
};

struct ExperienceOptions {
  double temperature = 1.0;     // the sampling temperature (every log-prob forward)
  double no_eos_penalty = 0.0;  // subtracted from the score of a response without EOS
  double score_clip = 0.0;      // 0 = off; else the score is clipped to ±score_clip
  double kl_coef = 0.0;         // β of this iteration
  KlEstimator estimator = KlEstimator::K1;
  bool kl_in_loss = false;      // ppo.kl_in_loss: no KL in the rewards (ppo_update adds kl_loss.h)
  double gamma = 1.0, gae_lambda = 0.95;
  AdvantageKind advantage = AdvantageKind::Gae;  // not Gae: critic_free.h, m.critic unused
  int64_t group = 1;  // ppo.samples_per_prompt: consecutive rows per prompt
};

// Fills ro's raw_score, score, old_logp, ref_logp, old_values, kl, rewards, advantages and returns
// (all [B, N] but the scores [B]; 0 off the response mask). Runs without gradients, in eval mode.
// ppo_train sets ro.raw_score beforehand (ppo.reward through reward/source.h); then m.reward is
// not used (and may be an empty holder). Unset, m.reward scores (bench_ppo, tests).
void make_experience(PpoModels& m, Rollout& ro, const ExperienceOptions& opt, Communicator& comm);

struct UpdateOptions {
  int64_t epochs = 1;
  int64_t minibatch_rows = 0;   // this rank's rows per optimizer step (divides the rollout)
  int64_t micro_rows = 0;       // rows per forward (divides minibatch_rows)
  double temperature = 1.0;
  double clip_eps = 0.2, value_clip = 0.2, vf_coef = 0.5;
  double lr = 0.0, critic_lr = 0.0, grad_clip = 1.0, bucket_mb = 25.0;
  // Per-iteration seed, the same on every rank: each epoch visits the rows in a new order.
  uint64_t shuffle_seed = 0;
  // The pretraining mix: ptx_rows per rank per minibatch of ptx_seq_len-token windows of *ptx,
  // drawn from one list of ptx_rows · world windows per minibatch (ptx_seed: the same on every
  // rank).
  const PretrainData* ptx = nullptr;
  int64_t ptx_rows = 0, ptx_seq_len = 0;
  double ptx_coef = 0.0;
  uint64_t ptx_seed = 0;
  // ppo.kl_in_loss: + kl_loss_coef · kl_loss (kl_loss.h) with kl_estimator; 0 = KL in the reward.
  double kl_loss_coef = 0.0;
  KlEstimator kl_estimator = KlEstimator::K1;
  // ppo.loss_aggregation (loss_weights in ppo_loss.h); horizon: its seq_mean_token_sum_norm
  // constant (ppo.max_new_tokens).
  LossAggregation aggregation = LossAggregation::TokenMean;
  double horizon = 0.0;
};

// Sums over this rank's micro-batches of their shares of each minibatch's global token mean:
// all-reduced (sum) and divided by optimizer_steps, they are the mean over minibatches of the
// minibatch losses (ppo_metrics). ptx_nll / ptx_tokens: this rank's plain sums.
struct UpdateStats {
  double loss = 0;  // policy loss + vf_coef · value loss (+ the KL loss term)
  double policy_loss = 0, value_loss = 0, clip_frac = 0, value_clip_frac = 0, approx_kl = 0,
         entropy = 0, kl_loss = 0;
  double ptx_nll = 0, ptx_tokens = 0;
  int64_t micro_batches = 0, optimizer_steps = 0, skipped = 0;
  double grad_norm = 0, critic_grad_norm = 0;  // of the last optimizer step
};

// This rank's rows of each minibatch of one epoch, as one index tensor [rows] (minibatch k is
// entries [k·minibatch_rows, (k+1)·minibatch_rows)): a stratified shuffle, seeded by (seed,
// epoch) alone — every epoch visits the rows in a new order, a resumed run repeats it, and the
// minibatches are the same sets of global rows on 1 rank or N (see ppo_step.cpp).
torch::Tensor epoch_order(int64_t rows, int64_t minibatch_rows, uint64_t seed, int64_t epoch,
                          int rank, const torch::Device& dev);

// The next minibatch's pretraining windows of this rank (start offsets into opt.ptx): every rank
// draws the global list of ptx_rows · world starts from rng and keeps its slice.
std::vector<int64_t> ptx_window_starts(const UpdateOptions& opt, SplitMix64& rng, int rank, int world);

// Forward and backward of one minibatch: this rank's rows `rows` [n] (int64, ro's device) of ro in
// micro-batches of opt.micro_rows (dividing n), and its pretraining windows ptx_starts spread over
// the micro-batches. Gradients accumulate into the actor's and critic's .grad (all-reduce
// averaging then gives the minibatch's token-mean gradient); stats are added to st. Returns
// whether this rank's loss was finite. Collective (one all-reduce of the token count).
// after_backward runs after each micro-batch's backward (ppo_update: the optimizers' ZeRO
// gradient reduce-scatter).
bool minibatch_backward(PpoModels& m, const Rollout& ro, const torch::Tensor& rows,
                        const std::vector<int64_t>& ptx_starts, const UpdateOptions& opt,
                        Communicator& comm, const torch::Device& dev, UpdateStats& st,
                        const std::function<void()>& after_backward = {});

// critic_opt: nullptr when there is no critic (m.critic empty).
UpdateStats ppo_update(PpoModels& m, AdamW& actor_opt, AdamW* critic_opt, const Rollout& ro,
                       const UpdateOptions& opt, Communicator& comm, const torch::Device& dev);

struct IterationTimes {
  double generate = 0, score = 0, train = 0, total = 0;  // seconds on this rank
};

// The metrics row of one iteration (global over ranks; global_batch rows in all).
nlohmann::json ppo_metrics(const Rollout& ro, const UpdateStats& st, const IterationTimes& t,
                           int64_t global_batch, double beta, double lr, Communicator& comm);

}  // namespace rlhf
