// dpo_trainer.h — `dpo_train`: Direct Preference Optimisation of a policy on ranked data
// (Rafailov et al. 2023), an alternative to RM + PPO: the SFT policy is trained directly on the
// ranked groups of ranked.h5 with dpo_loss.h against a frozen reference policy.
//
// Contract:
// - init: the SFT checkpoint the policy starts from (required). The reference is dpo.reference,
//   or init when it is empty; with model.lora.rank > 0 and no dpo.reference it is the policy
//   itself with its adapters off (lora.h AdaptersOff: no second copy of the weights).
// - No dropout of any kind: model.dropout and model.lora.dropout are overridden to 0 (logged), as
//   in PPO: the reference's log-probs have none, so dropout would be noise inside every margin.
// - Reference log-probs are computed on the fly, under NoGradGuard and in eval mode, for each
//   training micro-batch (no cache: one extra forward without activations kept, exact on
//   resume); for the held-out set (data.eval) they are cached on the first evaluation.
// - A step: train.global_batch_size ranked groups over all ranks, train.micro_batch_size groups
//   per forward; loss = the global batch's mean over groups of dpo_loss's group losses (each
//   group weighted as rm.pair_normalizer says). Metrics per step (metrics.jsonl): loss, accuracy
//   (pairs with h > 0), margin (mean h = mean implicit reward margin), chosen_reward,
//   rejected_reward (mean β·(log π − log π_ref) of the pairs' chosen/rejected responses),
//   chosen_logp, rejected_logp (mean sequence log-prob under the policy), pairs, ties.
// - Checkpoints: model.h5 of kind causal_lm (a LoRA file with adapters), read by rlhf_eval and by
//   `init` of a later stage; resume as every stage (train/loop.h).
// - Collective: every rank calls run_dpo.
#pragma once

#include "common/model/model.h"
#include "common/train/run.h"
#include "common/train/train_common.h"

namespace rlhf {

// The trained policy and its frozen reference. reference == policy (same module) when the
// reference is the policy's base with the LoRA adapters off.
struct DpoModels {
  CausalLM policy{nullptr};
  CausalLM reference{nullptr};
  bool shared() const { return reference.ptr() == policy.ptr(); }
};

// The policy from ms (init; ms.cfg.dropout as run_dpo sets it, 0) with cfg's LoRA adapters, their
// dropout off (logged on root), and the reference as the contract above says, frozen.
DpoModels load_dpo_models(const Config& cfg, const ModelSetup& ms, const torch::Device& dev, bool root);

int run_dpo(int argc, char** argv);  // entry point of dpo_train; exit code as run_sft
int run_dpo(const RunRequest& req);  // the same, with the config built by the caller (tests)

}  // namespace rlhf
