// ppo_step.h — one PPO-ptx iteration as three named steps, shared by ppo_train and bench_ppo:
//
//   make_experience  rollout → RM score → old / reference log-probs → old values → per-token KL →
//                    shaped rewards → GAE → advantages whitened over all ranks
//   ppo_update       epochs × minibatches × micro-batches of
//                    policy loss + vf_coef · value loss + ptx_coef · LM loss, optimizer steps
//   ppo_metrics      the iteration's metrics row (global over ranks)
//
// The objective (InstructGPT, Ouyang et al. 2022, eq. 2), maximised over the policy φ:
//   objective(φ) = E_{(x,y) ~ π_φ^RL} [ r_θ(x, y) − β · log(π_φ^RL(y|x) / π^SFT(y|x)) ]
//                + γ · E_{x ~ D_pretrain} [ log π_φ^RL(x) ]
// with the first term optimised by PPO-clip on per-token rewards (−β·KL_t, + r_θ at the last
// token; ppo_loss.h) and the second by the ptx LM loss (γ = ppo.ptx_coef).
//
// Contract: make_experience and ppo_metrics are collective (global whitening / sums); ppo_update
// is collective through the optimizer steps (gradient all-reduce). Every log-prob forward uses
// the sampling temperature (rollout.h). The actor and critic run without dropout (ppo_trainer).
#pragma once
#include <cstdint>

#include <nlohmann/json.hpp>

#include "common/data/data.h"
#include "common/dist/dist.h"
#include "common/model/model.h"
#include "common/train/optimizer.h"
#include "ppo/ppo_loss.h"
#include "ppo/rollout.h"

namespace rlhf {

// The four models of stage 3: actor (trained), reference (frozen SFT), reward (frozen RM with its
// fitted bias), critic (trained, initialised from the RM).
struct PpoModels {
  CausalLM& actor;
  CausalLM& reference;
  ScalarModel& reward;
  ScalarModel& critic;
};

struct ExperienceOptions {
  double temperature = 1.0;     // the sampling temperature (every log-prob forward)
  double no_eos_penalty = 0.0;  // subtracted from the score of a response without EOS
  double score_clip = 0.0;      // 0 = off; else the score is clipped to ±score_clip
  double kl_coef = 0.0;         // β of this iteration
  KlEstimator estimator = KlEstimator::K1;
  double gamma = 1.0, gae_lambda = 0.95;
};

// Fills ro's raw_score, score, old_logp, ref_logp, old_values, kl, rewards, advantages and returns
// (all [B, N] but the scores [B]; 0 off the response mask). Runs without gradients, in eval mode.
void make_experience(PpoModels& m, Rollout& ro, const ExperienceOptions& opt, Communicator& comm);

struct UpdateOptions {
  int64_t epochs = 1;
  int64_t minibatch_rows = 0;   // this rank's rows per optimizer step (divides the rollout)
  int64_t micro_rows = 0;       // rows per forward (divides minibatch_rows)
  double temperature = 1.0;
  double clip_eps = 0.2, value_clip = 0.2, vf_coef = 0.5;
  double lr = 0.0, critic_lr = 0.0, grad_clip = 1.0, bucket_mb = 25.0;
  uint64_t shuffle_seed = 0;    // per-iteration seed: each epoch visits the rows in a new order
  // The pretraining mix: ptx_rows per rank per minibatch of ptx_seq_len-token windows of *ptx.
  const PretrainData* ptx = nullptr;
  int64_t ptx_rows = 0, ptx_seq_len = 0;
  double ptx_coef = 0.0;
  uint64_t ptx_seed = 0;
};

// Sums over this rank's micro-batches (means are formed in ppo_metrics).
struct UpdateStats {
  double loss = 0;  // policy loss + vf_coef · value loss
  double policy_loss = 0, value_loss = 0, clip_frac = 0, value_clip_frac = 0, approx_kl = 0,
         entropy = 0;
  double ptx_nll = 0, ptx_tokens = 0;
  int64_t micro_batches = 0, optimizer_steps = 0, skipped = 0;
  double grad_norm = 0, critic_grad_norm = 0;  // of the last optimizer step
};

UpdateStats ppo_update(PpoModels& m, AdamW& actor_opt, AdamW& critic_opt, const Rollout& ro,
                       const UpdateOptions& opt, Communicator& comm, const torch::Device& dev);

struct IterationTimes {
  double generate = 0, score = 0, train = 0, total = 0;  // seconds on this rank
};

// The metrics row of one iteration (global over ranks; global_batch rows in all).
nlohmann::json ppo_metrics(const Rollout& ro, const UpdateStats& st, const IterationTimes& t,
                           int64_t global_batch, double beta, double lr, Communicator& comm);

}  // namespace rlhf
